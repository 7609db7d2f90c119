"""The access decision matrix: schedules across midnight, holidays, DST days, validity, anti-passback,
card+PIN, PIN lockout, lockdown, unknown and disabled credentials, first-person-in, audit events.

The site is tests/access_helpers.py's compound in Europe/Berlin.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pytest

from edge.events import Event, EventFactory, Severity
from rules.access import (
    AccessIndex,
    AccessRequest,
    AccessState,
    CardRead,
    Direction,
    Reason,
    decide,
    may_start_scheduled_unlock,
)
from tests.access_helpers import (
    HASHER,
    MONDAY_10,
    TESTER_CARD,
    ZONE,
    ask,
    card,
    card_credential,
    index_with_tester,
    local,
    standard_index,
    standard_snapshot,
    utc,
)

ALICE, BOB, CAROL, DAVE, ERIN, FRANK, GINA, HANK = 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008
IVY = 1020  # resident who needs the extended unlock time
MINUTE = timedelta(minutes=1)


@pytest.fixture(scope="module")
def index() -> AccessIndex:
    return standard_index()


@pytest.fixture
def state() -> AccessState:
    return AccessState()


def reason_for_tester(schedule_id: str, now: datetime) -> Reason:
    return ask(index_with_tester(schedule_id), AccessState(), now, card_number=TESTER_CARD).reason


def granted_minutes(index: AccessIndex, start: datetime, end: datetime) -> int:
    """How many real minutes between two instants the tester is let in (one decision per minute)."""
    minutes, now = 0, start
    while now < end:
        minutes += ask(index, AccessState(), now, card_number=TESTER_CARD).granted
        now += MINUTE
    return minutes


# --- schedules across midnight and holidays ------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (local(2026, 3, 6, 21, 59), Reason.OUTSIDE_SCHEDULE),  # Friday, before the shift
        (local(2026, 3, 6, 22, 0), Reason.GRANTED),  # Friday 22:00: starts
        (local(2026, 3, 6, 23, 59, 59), Reason.GRANTED),
        (local(2026, 3, 7, 0, 0), Reason.GRANTED),  # Saturday after midnight: still Friday's window
        (local(2026, 3, 7, 5, 59, 59), Reason.GRANTED),
        (local(2026, 3, 7, 6, 0), Reason.OUTSIDE_SCHEDULE),  # the end is exclusive
        (local(2026, 3, 7, 23, 0), Reason.OUTSIDE_SCHEDULE),  # Saturday is not in the mask
        (local(2026, 3, 6, 2, 0), Reason.OUTSIDE_SCHEDULE),  # Friday early: Thursday's, not in the mask
        (local(2026, 3, 8, 2, 0), Reason.OUTSIDE_SCHEDULE),  # Sunday early: Saturday's, not in the mask
    ],
)
def test_a_night_window_belongs_to_the_day_it_starts(when: datetime, expected: Reason) -> None:
    assert reason_for_tester("friday-night", when) is expected


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (local(2026, 5, 1, 23, 0), Reason.HOLIDAY),  # Friday 1 May is a holiday: its night shift is off
        (local(2026, 5, 2, 2, 0), Reason.HOLIDAY),  # ... including the part after midnight
        (local(2026, 10, 2, 23, 0), Reason.GRANTED),  # Friday before a Saturday holiday (3 Oct)
        (local(2026, 10, 3, 2, 0), Reason.GRANTED),  # the spill into the holiday still belongs to Friday
        (local(2026, 5, 8, 23, 0), Reason.GRANTED),  # the Friday after: normal again
    ],
)
def test_holidays_are_judged_on_the_windows_starting_day(when: datetime, expected: Reason) -> None:
    snapshot = index_with_tester("friday-night").to_snapshot()
    public = snapshot.holiday_groups[0]
    with_unity_day = public.model_copy(update={"dates": (*public.dates, date(2026, 10, 3))})  # a Saturday
    index = AccessIndex.build(snapshot.model_copy(update={"holiday_groups": (with_unity_day,)}), HASHER)
    assert ask(index, AccessState(), when, card_number=TESTER_CARD).reason is expected


@pytest.mark.parametrize(
    ("schedule_id", "when", "expected"),
    [
        ("business", local(2026, 5, 1, 10, 30), Reason.HOLIDAY),  # holiday removes access
        ("business", local(2026, 5, 1, 19, 0), Reason.OUTSIDE_SCHEDULE),  # no normal hours then either
        ("business", local(2026, 5, 4, 10, 30), Reason.GRANTED),  # the Monday after
        ("business-holiday-hours", local(2026, 5, 1, 9, 0), Reason.HOLIDAY),
        ("business-holiday-hours", local(2026, 5, 1, 10, 30), Reason.GRANTED),  # holiday hours 10-12
        ("business-holiday-hours", local(2026, 5, 1, 12, 0), Reason.HOLIDAY),
        ("business-holiday-hours", local(2026, 5, 2, 10, 30), Reason.OUTSIDE_SCHEDULE),  # Saturday
        ("always", local(2026, 5, 1, 3, 0), Reason.GRANTED),  # a schedule without holiday groups ignores them
    ],
)
def test_holidays_remove_access_or_use_holiday_hours(schedule_id: str, when: datetime, expected: Reason) -> None:
    assert reason_for_tester(schedule_id, when) is expected


# --- DST change days in Europe/Berlin --------------------------------------------------------------


def test_spring_forward_a_window_inside_the_skipped_hour_never_opens() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00 UTC. Readings 02:00-02:59 never happen.
    index = index_with_tester("sunday-2-3")
    assert granted_minutes(index, utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)) == 0
    for instant in (utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30)):
        assert ask(index, AccessState(), instant, card_number=TESTER_CARD).reason is Reason.OUTSIDE_SCHEDULE
    # A normal Sunday has the full hour.
    assert granted_minutes(index, utc(2026, 3, 22, 0), utc(2026, 3, 22, 3)) == 60


def test_spring_forward_a_window_around_the_gap_keeps_its_wall_clock_ends() -> None:
    index = index_with_tester("sunday-1-4")  # 01:00-04:00 local: two real hours that night
    assert granted_minutes(index, utc(2026, 3, 28, 23), utc(2026, 3, 29, 4)) == 120
    assert ask(index, AccessState(), utc(2026, 3, 29, 0, 0), card_number=TESTER_CARD).granted  # 01:00 CET
    assert ask(index, AccessState(), utc(2026, 3, 29, 1, 0), card_number=TESTER_CARD).granted  # 03:00 CEST
    assert not ask(index, AccessState(), utc(2026, 3, 29, 2, 0), card_number=TESTER_CARD).granted  # 04:00 CEST


def test_spring_forward_night_shift_is_an_hour_shorter() -> None:
    index = index_with_tester("saturday-night")  # Sat 22:00 - Sun 06:00 local
    assert granted_minutes(index, utc(2026, 3, 28, 20), utc(2026, 3, 29, 6)) == 7 * 60


def test_fall_back_0230_is_judged_the_same_on_both_passes() -> None:
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET at 01:00 UTC; 02:30 happens at 00:30 and 01:30 UTC.
    first, second = utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)
    assert first.astimezone(ZONE).strftime("%H:%M") == second.astimezone(ZONE).strftime("%H:%M") == "02:30"
    for schedule_id, expected in [
        ("sunday-2-3", Reason.GRANTED),
        ("saturday-night", Reason.GRANTED),
        ("friday-night", Reason.OUTSIDE_SCHEDULE),
        ("business", Reason.OUTSIDE_SCHEDULE),
    ]:
        index = index_with_tester(schedule_id)
        decisions = [ask(index, AccessState(), moment, card_number=TESTER_CARD) for moment in (first, second)]
        assert decisions[0] == decisions[1]
        assert decisions[0].reason is expected, schedule_id


def test_fall_back_windows_covering_the_repeated_hour_last_longer() -> None:
    assert granted_minutes(index_with_tester("sunday-2-3"), utc(2026, 10, 24, 22), utc(2026, 10, 25, 4)) == 120
    assert granted_minutes(index_with_tester("saturday-night"), utc(2026, 10, 24, 18), utc(2026, 10, 25, 8)) == 9 * 60


def test_a_berlin_aware_time_in_the_gap_is_read_as_the_instant_it_names() -> None:
    # datetime(02:30, tzinfo=Berlin) on the spring day names 01:30 UTC (03:30 CEST): outside 02-03.
    nonexistent = datetime(2026, 3, 29, 2, 30, tzinfo=ZONE)
    assert reason_for_tester("sunday-2-3", nonexistent) is Reason.OUTSIDE_SCHEDULE
    assert reason_for_tester("sunday-1-4", nonexistent) is Reason.GRANTED


def test_naive_time_is_refused(index: AccessIndex, state: AccessState) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ask(index, state, datetime(2026, 3, 2, 10), card_number=ALICE)


# --- validity windows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (local(2026, 2, 28, 23, 59), Reason.NOT_YET_VALID),
        (local(2026, 3, 1, 0, 0), Reason.GRANTED),
        (local(2026, 3, 7, 23, 59, 59), Reason.GRANTED),
        (local(2026, 3, 8, 0, 0), Reason.EXPIRED),  # valid_until is exclusive
    ],
)
def test_visitor_validity_window(index: AccessIndex, state: AccessState, when: datetime, expected: Reason) -> None:
    decision = ask(index, state, when, door="side", card_number=CAROL)
    assert decision.reason is expected
    assert decision.holder_id == "carol"


def test_credential_validity_is_checked_as_well_as_the_holders() -> None:
    snapshot = standard_snapshot()
    expiring = card_credential("alice", ALICE, valid_until=local(2026, 3, 2, 9))
    starting = card_credential("bob", BOB, pin="1234", valid_from=local(2026, 3, 3))
    credentials = tuple({"alice.card": expiring, "bob.card": starting}.get(c.id, c) for c in snapshot.credentials)
    index = AccessIndex.build(snapshot.model_copy(update={"credentials": credentials}), HASHER)
    assert ask(index, AccessState(), MONDAY_10, door="side", card_number=ALICE).reason is Reason.EXPIRED
    assert ask(index, AccessState(), MONDAY_10, door="side", card_number=BOB).reason is Reason.NOT_YET_VALID
    assert ask(index, AccessState(), MONDAY_10, door="side", pin="4711").granted  # alice's PIN is separate


# --- unknown, disabled, no level, tamper -------------------------------------------------------------


@pytest.mark.parametrize(
    ("door", "card_number", "expected", "holder"),
    [
        ("side", 4242, Reason.UNKNOWN_CREDENTIAL, None),
        ("side", DAVE, Reason.DISABLED, "dave"),
        ("side", FRANK, Reason.DISABLED, "frank"),
        ("side", GINA, Reason.NO_ACCESS_LEVEL, "gina"),
        ("test", ALICE, Reason.NO_ACCESS_LEVEL, "alice"),  # her levels do not include this door
        ("nowhere", ALICE, Reason.UNKNOWN_DOOR, None),
        ("side", ALICE, Reason.GRANTED, "alice"),
    ],
)
def test_identity_and_level_checks(
    index: AccessIndex, state: AccessState, door: str, card_number: int, expected: Reason, holder: str | None
) -> None:
    decision = ask(index, state, MONDAY_10, door=door, card_number=card_number)
    assert decision.reason is expected
    assert decision.granted is (expected is Reason.GRANTED)
    assert decision.holder_id == holder


def test_a_card_with_the_wrong_facility_is_unknown(index: AccessIndex, state: AccessState) -> None:
    request = AccessRequest(door_id="side", reader_id="r", card=card(ALICE, facility=11))
    assert decide(index, state, request, MONDAY_10).reason is Reason.UNKNOWN_CREDENTIAL


def test_a_driver_decoded_card_matches_the_enrolled_one(index: AccessIndex, state: AccessState) -> None:
    # drivers/osdp/wiegand.py names formats in upper case and gives raw reads no facility.
    assert CardRead.decoded("H10301", 10, ALICE) == card(ALICE)
    assert CardRead.decoded("raw", None, 5).key == ("raw", 0, 5)
    request = AccessRequest(door_id="side", reader_id="r", card=CardRead.decoded("H10301", 10, ALICE))
    assert decide(index, state, request, MONDAY_10).holder_id == "alice"


def test_a_tampered_reader_lets_nobody_in(index: AccessIndex, state: AccessState) -> None:
    decision = ask(index, state, MONDAY_10, door="vault", card_number=ERIN, tamper=True)
    assert (decision.granted, decision.reason) == (False, Reason.READER_TAMPER)
    assert decision.events[0].severity is Severity.ALARM


def test_nothing_presented(index: AccessIndex, state: AccessState) -> None:
    assert ask(index, state, MONDAY_10, door="side").reason is Reason.NO_CREDENTIAL


# --- card + PIN ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("door", "card_number", "pin", "expected"),
    [
        ("office", BOB, "1234", Reason.GRANTED),
        ("office", BOB, None, Reason.PIN_REQUIRED),
        ("office", BOB, "4321", Reason.WRONG_PIN),
        ("office", BOB, "12", Reason.WRONG_PIN),  # not even PIN-shaped
        ("office", HANK, "1234", Reason.PIN_NOT_ENROLLED),
        ("office", None, "1234", Reason.CARD_REQUIRED),
        ("test", None, "4711", Reason.CARD_REQUIRED),  # a card door ignores the keypad
        ("side", None, "4711", Reason.GRANTED),  # card_or_pin: alice's PIN-only credential
        ("side", None, "0000", Reason.WRONG_PIN),
        ("side", None, "1234", Reason.WRONG_PIN),  # bob's card PIN is not a PIN-only credential
        ("side", ALICE, None, Reason.GRANTED),  # card_or_pin: the card alone
        ("side", BOB, "0000", Reason.GRANTED),  # card_or_pin: a card is enough, the PIN is not checked
        ("test", BOB, "0000", Reason.GRANTED),  # card door: PIN not checked
    ],
)
def test_card_and_pin_modes(
    index: AccessIndex, state: AccessState, door: str, card_number: int | None, pin: str | None, expected: Reason
) -> None:
    assert ask(index, state, MONDAY_10, door=door, card_number=card_number, pin=pin).reason is expected


def test_pin_only_grant_names_the_holder(index: AccessIndex, state: AccessState) -> None:
    decision = ask(index, state, MONDAY_10, door="side", pin="4711")
    assert (decision.holder_id, decision.credential_id) == ("alice", "alice.pin")


def test_no_pin_ever_appears_in_a_decision_or_request_repr(index: AccessIndex, state: AccessState) -> None:
    for pin in ("1234", "5678"):
        decision = ask(index, state, MONDAY_10, door="office", card_number=BOB, pin=pin)
        text = json.dumps([dict(event.data) for event in decision.events]) + repr(decision)
        assert pin not in text
        assert pin not in repr(AccessRequest(door_id="office", reader_id="r", pin=pin))


# --- PIN retry lockout ----------------------------------------------------------------------------------


def test_wrong_pins_lock_the_credential_out_until_the_lockout_expires(index: AccessIndex, state: AccessState) -> None:
    # Policy (SiteSettings default): 5 wrong within 300 s -> 900 s out.
    start = MONDAY_10
    for attempt in range(5):
        decision = ask(index, state, start + timedelta(seconds=attempt), door="office", card_number=BOB, pin="0000")
        assert decision.reason is Reason.WRONG_PIN
        assert decision.state_changed
    lockout_events = [event for event in decision.events if event.type == "access.lockout"]
    assert len(lockout_events) == 1
    assert lockout_events[0].data["scope"] == "credential"
    assert lockout_events[0].data["credential"] == "bob.card"

    locked_at = start + timedelta(seconds=4)
    for later in (timedelta(seconds=5), timedelta(seconds=899)):
        right = ask(index, state, locked_at + later, door="office", card_number=BOB, pin="1234")
        assert right.reason is Reason.LOCKED_OUT  # even the right PIN
    assert ask(index, state, locked_at + timedelta(seconds=900), door="office", card_number=BOB, pin="1234").granted


def test_failures_outside_the_window_do_not_add_up(index: AccessIndex, state: AccessState) -> None:
    for attempt in range(4):
        ask(index, state, MONDAY_10 + timedelta(seconds=attempt), door="office", card_number=BOB, pin="0000")
    later = MONDAY_10 + timedelta(seconds=310)
    assert ask(index, state, later, door="office", card_number=BOB, pin="0000").reason is Reason.WRONG_PIN
    assert ask(index, state, later + timedelta(seconds=1), door="office", card_number=BOB, pin="1234").granted
    # The success cleared the count: four more wrong PINs do not lock out.
    for attempt in range(4):
        ask(index, state, later + timedelta(seconds=2 + attempt), door="office", card_number=BOB, pin="0000")
    assert ask(index, state, later + timedelta(seconds=10), door="office", card_number=BOB, pin="1234").granted


def test_a_locked_credential_is_locked_at_every_reader(index: AccessIndex, state: AccessState) -> None:
    for attempt in range(5):
        ask(
            index,
            state,
            MONDAY_10 + timedelta(seconds=attempt),
            door="office",
            card_number=BOB,
            pin="0000",
            reader=f"office-reader-{attempt}",
        )
    assert (
        ask(
            index,
            state,
            MONDAY_10 + timedelta(seconds=10),
            door="office",
            card_number=BOB,
            pin="1234",
            reader="office-reader-9",
        ).reason
        is Reason.LOCKED_OUT
    )
    # Another holder's card at the same door is unaffected.
    assert ask(index, state, MONDAY_10 + timedelta(seconds=10), door="office", card_number=ERIN, pin="9999").granted


def test_pin_guessing_at_a_keypad_locks_that_reader(index: AccessIndex, state: AccessState) -> None:
    # Reader policy: 10 wrong within 60 s -> 300 s out. Guesses of PIN-only codes at the side door.
    for attempt in range(10):
        decision = ask(index, state, MONDAY_10 + timedelta(seconds=attempt), door="side", pin=f"{attempt:04d}")
        assert decision.reason is Reason.WRONG_PIN
    assert any(event.type == "access.lockout" and event.data["scope"] == "reader" for event in decision.events)
    soon = MONDAY_10 + timedelta(seconds=30)
    assert ask(index, state, soon, door="side", pin="4711").reason is Reason.LOCKED_OUT
    assert ask(index, state, soon, door="side", pin="4711", reader="side-reader-2").granted  # other reader
    assert ask(index, state, soon, door="side", card_number=ALICE).granted  # a card alone needs no keypad
    assert ask(index, state, MONDAY_10 + timedelta(seconds=9 + 300), door="side", pin="4711").granted


def test_manual_lockout_clear(index: AccessIndex, state: AccessState) -> None:
    for attempt in range(5):
        ask(index, state, MONDAY_10 + timedelta(seconds=attempt), door="office", card_number=BOB, pin="0000")
    state.clear_lockout("credential:bob.card")
    assert ask(index, state, MONDAY_10 + timedelta(seconds=6), door="office", card_number=BOB, pin="1234").granted


# --- lockdown ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("card_number", "pin", "expected"),
    [
        (BOB, None, Reason.LOCKDOWN),  # staff with a level for the door, no override
        (HANK, None, Reason.LOCKDOWN),
        (ERIN, None, Reason.GRANTED),  # override
        (4242, None, Reason.UNKNOWN_CREDENTIAL),
        (DAVE, None, Reason.DISABLED),
    ],
)
def test_lockdown_lets_only_override_holders_through(
    index: AccessIndex, state: AccessState, card_number: int, pin: str | None, expected: Reason
) -> None:
    assert ask(index, state, MONDAY_10, door="vault", card_number=card_number, pin=pin).reason is expected


def test_lockdown_override_still_needs_the_pin_at_a_card_and_pin_door() -> None:
    snapshot = standard_snapshot()
    doors = tuple(d.model_copy(update={"lockdown": True}) if d.id == "office" else d for d in snapshot.doors)
    index = AccessIndex.build(snapshot.model_copy(update={"doors": doors}), HASHER)
    assert ask(index, AccessState(), MONDAY_10, door="office", card_number=BOB, pin="1234").reason is Reason.LOCKDOWN
    assert ask(index, AccessState(), MONDAY_10, door="office", card_number=ERIN, pin="0000").reason is Reason.WRONG_PIN
    assert ask(index, AccessState(), MONDAY_10, door="office", card_number=ERIN, pin="9999").granted


# --- anti-passback ---------------------------------------------------------------------------------------


def test_hard_antipassback_denies_a_second_entry(index: AccessIndex, state: AccessState) -> None:
    t = MONDAY_10
    assert ask(index, state, t, door="gate", card_number=ALICE).granted
    second = ask(index, state, t + MINUTE, door="gate", card_number=ALICE)
    assert (second.granted, second.reason) == (False, Reason.ANTIPASSBACK)
    assert state.positions["alice"].area == "lobby"  # a denial moves nobody
    assert ask(index, state, t + 2 * MINUTE, door="gate", card_number=ALICE, direction=Direction.OUT).granted
    assert ask(index, state, t + 3 * MINUTE, door="gate", card_number=ALICE).granted


def test_leaving_into_an_area_without_antipassback_is_never_refused(index: AccessIndex, state: AccessState) -> None:
    for minute in range(2):
        decision = ask(
            index, state, MONDAY_10 + minute * MINUTE, door="gate", card_number=ALICE, direction=Direction.OUT
        )
        assert decision.granted and not decision.antipassback_violation
    assert state.positions["alice"].area == "outside"


def test_soft_antipassback_grants_and_flags(index: AccessIndex, state: AccessState) -> None:
    assert not ask(index, state, MONDAY_10, door="garage", card_number=ALICE).antipassback_violation
    second = ask(index, state, MONDAY_10 + MINUTE, door="garage", card_number=ALICE)
    assert second.granted and second.antipassback_violation
    (event,) = second.events
    assert event.type == "access.granted"
    assert event.data["antipassback_violation"] is True
    assert event.severity is Severity.WARNING


def test_position_is_tracked_across_doors(index: AccessIndex, state: AccessState) -> None:
    assert ask(index, state, MONDAY_10, door="gate", card_number=ALICE).granted  # now in the lobby
    # Entering the garage from outside while recorded in the lobby: a (soft) violation.
    assert ask(index, state, MONDAY_10 + MINUTE, door="garage", card_number=ALICE).antipassback_violation


def test_timed_forgiveness(index: AccessIndex, state: AccessState) -> None:
    assert ask(index, state, MONDAY_10, door="gate", card_number=ALICE).granted
    almost = MONDAY_10 + timedelta(hours=12) - timedelta(seconds=1)
    assert ask(index, state, almost, door="gate", card_number=ALICE).reason is Reason.ANTIPASSBACK
    assert ask(index, state, MONDAY_10 + timedelta(hours=12), door="gate", card_number=ALICE).granted


def test_manual_antipassback_reset(index: AccessIndex, state: AccessState) -> None:
    for card_number in (ALICE, BOB):
        assert ask(index, state, MONDAY_10, door="gate", card_number=card_number).granted
    state.reset_antipassback("alice")
    assert ask(index, state, MONDAY_10 + MINUTE, door="gate", card_number=ALICE).granted
    assert ask(index, state, MONDAY_10 + MINUTE, door="gate", card_number=BOB).reason is Reason.ANTIPASSBACK
    state.reset_antipassback()
    assert ask(index, state, MONDAY_10 + 2 * MINUTE, door="gate", card_number=BOB).granted


# --- first-person-in ----------------------------------------------------------------------------------------


def test_scheduled_unlock_waits_for_a_staff_grant_inside_the_window(index: AccessIndex, state: AccessState) -> None:
    monday, tuesday = local(2026, 3, 2, 8, 5), local(2026, 3, 3, 8, 5)
    assert not may_start_scheduled_unlock(index, state, "main", local(2026, 3, 2, 7, 59))
    assert not may_start_scheduled_unlock(index, state, "main", monday)
    assert ask(index, state, local(2026, 3, 2, 8, 10), door="main", card_number=ALICE).granted  # a resident
    assert not may_start_scheduled_unlock(index, state, "main", local(2026, 3, 2, 8, 11))
    staff = ask(index, state, local(2026, 3, 2, 8, 20), door="main", card_number=BOB)
    assert staff.granted and staff.state_changed
    assert may_start_scheduled_unlock(index, state, "main", local(2026, 3, 2, 8, 21))
    assert may_start_scheduled_unlock(index, state, "main", local(2026, 3, 2, 17, 59))
    assert not may_start_scheduled_unlock(index, state, "main", local(2026, 3, 2, 18, 0))
    # Next morning needs a new first person; a grant before the window opens does not count.
    assert ask(index, state, local(2026, 3, 3, 7, 55), door="main", card_number=BOB).granted
    assert not may_start_scheduled_unlock(index, state, "main", tuesday)
    assert ask(index, state, local(2026, 3, 3, 8, 6), door="main", card_number=BOB).granted
    assert may_start_scheduled_unlock(index, state, "main", local(2026, 3, 3, 8, 7))


def test_scheduled_unlock_without_first_person_in_and_in_lockdown() -> None:
    snapshot = standard_snapshot()
    doors = {d.id: d for d in snapshot.doors}
    doors["main"] = doors["main"].model_copy(update={"first_person_in": False})
    doors["vault"] = doors["vault"].model_copy(update={"unlock_schedule": "always"})
    index = AccessIndex.build(snapshot.model_copy(update={"doors": tuple(doors.values())}), HASHER)
    state = AccessState()
    assert may_start_scheduled_unlock(index, state, "main", local(2026, 3, 2, 8, 0))
    assert not may_start_scheduled_unlock(index, state, "main", local(2026, 3, 7, 9, 0))  # Saturday
    assert not may_start_scheduled_unlock(index, state, "vault", MONDAY_10)  # lockdown wins
    assert not may_start_scheduled_unlock(index, state, "gate", MONDAY_10)  # no unlock schedule
    assert not may_start_scheduled_unlock(index, state, "nowhere", MONDAY_10)


# --- events, state persistence, determinism -------------------------------------------------------------------


def test_events_become_edge_events(index: AccessIndex, state: AccessState) -> None:
    factory = EventFactory("site-1", "ctl-1")
    granted = ask(index, state, MONDAY_10, door="gate", card_number=ALICE)
    denied = ask(index, state, MONDAY_10, door="side", card_number=4242)
    events: list[Event] = [
        factory(e.type, e.source, dict(e.data), e.severity) for d in (granted, denied) for e in d.events
    ]
    assert [e.type for e in events] == ["access.granted", "access.denied"]
    assert events[0].data == {
        "door": "gate",
        "reader": "gate-reader",
        "direction": "in",
        "reason": "granted",
        "holder": "alice",
        "credential": "alice.card",
        "card": {"format": "h10301", "facility": 10, "number": ALICE},
    }
    assert events[1].data["reason"] == "unknown_credential"
    assert events[1].data["holder"] is None
    assert events[1].data["card"]["number"] == 4242  # so a manager can enrol it
    assert events[1].severity is Severity.WARNING


def test_state_round_trips_through_json_and_decides_the_same(index: AccessIndex) -> None:
    state = AccessState()
    ask(index, state, MONDAY_10, door="gate", card_number=ALICE)
    for attempt in range(3):
        ask(index, state, MONDAY_10 + timedelta(seconds=attempt), door="office", card_number=BOB, pin="0000")
    for attempt in range(10):
        ask(index, state, MONDAY_10 + timedelta(seconds=attempt), door="side", pin="0000")
    ask(index, state, local(2026, 3, 2, 8, 20), door="main", card_number=BOB)
    restored = AccessState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    later = MONDAY_10 + timedelta(seconds=20)
    for kwargs in (
        {"door": "gate", "card_number": ALICE},
        {"door": "office", "card_number": BOB, "pin": "0000"},
        {"door": "side", "pin": "4711"},
    ):
        assert ask(index, state, later, **kwargs) == ask(index, restored, later, **kwargs)
    assert may_start_scheduled_unlock(index, restored, "main", local(2026, 3, 2, 9))


def test_state_changed_only_when_something_changed(index: AccessIndex, state: AccessState) -> None:
    assert not ask(index, state, MONDAY_10, door="side", card_number=ALICE).state_changed  # no areas, no PIN
    assert not ask(index, state, MONDAY_10, door="side", card_number=4242).state_changed
    assert ask(index, state, MONDAY_10, door="gate", card_number=ALICE).state_changed


def test_prune_forgets_expired_lockouts_and_stale_failures(index: AccessIndex, state: AccessState) -> None:
    for attempt in range(10):
        ask(index, state, MONDAY_10 + timedelta(seconds=attempt), door="side", pin="0000")
    ask(index, state, MONDAY_10, door="office", card_number=BOB, pin="0000")
    state.prune(MONDAY_10 + timedelta(hours=1), longest_failure_window_s=300)
    assert state.lockouts == {} and state.pin_failures == {}


def test_extended_unlock_comes_with_the_holders_grant_only(index: AccessIndex, state: AccessState) -> None:
    ivy = ask(index, state, MONDAY_10, door="gate", card_number=IVY)
    assert ivy.granted and ivy.extended_unlock
    assert ivy.events[0].data["extended_unlock"] is True
    alice = ask(index, state, MONDAY_10, door="gate", card_number=ALICE)
    assert alice.granted and not alice.extended_unlock
    assert "extended_unlock" not in alice.events[0].data
    denied = ask(index, state, MONDAY_10, door="vault", card_number=IVY)  # not in her levels
    assert not denied.granted and not denied.extended_unlock
