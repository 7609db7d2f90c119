"""Scheduled unlock from the access configuration (rules/access schedules, holidays, first-person-in,
DST) as the door's schedule input, and the door following it through a day.

The site is tests/access_helpers.py's compound in Europe/Berlin, plus a few doors with unlock schedules.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rules.access import (
    AccessIndex,
    AccessState,
    Door,
    Schedule,
    ScheduleInterval,
    Snapshot,
    Weekday,
)
from rules.door import (
    DEFAULT_HORIZON,
    AccessGranted,
    ControllerStarted,
    DoorMachine,
    RelayState,
    ScheduleWindowEnded,
    ScheduleWindowStarted,
    Tick,
    schedule_window_input,
)
from tests.access_helpers import HASHER, ask, local, standard_snapshot
from tests.door_helpers import door_settings

BOB = 1002  # staff
ALICE = 1001  # resident

EXTRA_SCHEDULES = (
    # On the fall-back night (2026-10-25) 02:00-02:59 happens twice: the window is left at 02:30
    # CEST and entered again when the clock jumps back to 02:00 CET.
    Schedule(
        id="sunday-0130-0230",
        name="Sunday 01:30-02:30",
        intervals=(ScheduleInterval(days=(Weekday.SUN,), start="01:30", end="02:30"),),
    ),
    # On the spring-forward night (2026-03-29) 02:30 never happens: the window starts at 03:00 CEST.
    Schedule(
        id="sunday-0230-0400",
        name="Sunday 02:30-04:00",
        intervals=(ScheduleInterval(days=(Weekday.SUN,), start="02:30", end="04:00"),),
    ),
)
EXTRA_DOORS = (
    Door(id="lobby", name="Lobby (business hours)", unlock_schedule="business"),
    Door(id="shop", name="Shop (short hours on holidays)", unlock_schedule="business-holiday-hours"),
    Door(id="locked-down", name="Locked down", unlock_schedule="business", lockdown=True),
    Door(id="fallback", name="Fall-back test", unlock_schedule="sunday-0130-0230"),
    Door(id="springforward", name="Spring-forward test", unlock_schedule="sunday-0230-0400"),
    Door(id="gap", name="Window inside the gap", unlock_schedule="sunday-2-3"),
)


def site_index() -> AccessIndex:
    snapshot = standard_snapshot()
    snapshot = snapshot.model_copy(
        update={
            "doors": (*snapshot.doors, *EXTRA_DOORS),
            "schedules": (*snapshot.schedules, *EXTRA_SCHEDULES),
        }
    )
    return AccessIndex.build(Snapshot.model_validate(snapshot.model_dump()), HASHER)


INDEX = site_index()


def window(
    door_id: str, now: datetime, state: AccessState | None = None
) -> ScheduleWindowStarted | ScheduleWindowEnded:
    return schedule_window_input(INDEX, state or AccessState(), door_id, now)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- business hours ------------------------------------------------------------------------------------------------


def test_before_opening_time_the_next_look_is_at_opening_time() -> None:
    assert window("lobby", local(2026, 3, 2, 7, 0)) == ScheduleWindowEnded(recheck_at=local(2026, 3, 2, 8, 0))


def test_inside_the_window_it_runs_until_closing_time() -> None:
    assert window("lobby", local(2026, 3, 2, 8, 0)) == ScheduleWindowStarted(ends_at=local(2026, 3, 2, 18, 0))
    assert window("lobby", local(2026, 3, 2, 17, 59, 59)) == ScheduleWindowStarted(ends_at=local(2026, 3, 2, 18))


def test_friday_evening_looks_again_on_monday_morning() -> None:
    assert window("lobby", local(2026, 3, 6, 18, 0)) == ScheduleWindowEnded(recheck_at=local(2026, 3, 9, 8, 0))


def test_a_holiday_is_skipped() -> None:
    # 2026-05-01 is a Friday on the "public" holiday list: from Thursday evening, next is Monday.
    assert window("lobby", local(2026, 4, 30, 18, 0)) == ScheduleWindowEnded(recheck_at=local(2026, 5, 4, 8, 0))


def test_holiday_hours_replace_the_day_s_hours() -> None:
    assert window("shop", local(2026, 5, 1, 9)) == ScheduleWindowEnded(recheck_at=local(2026, 5, 1, 10))
    assert window("shop", local(2026, 5, 1, 10)) == ScheduleWindowStarted(ends_at=local(2026, 5, 1, 12))
    assert window("shop", local(2026, 5, 1, 12)) == ScheduleWindowEnded(recheck_at=local(2026, 5, 4, 8))


def test_doors_without_a_scheduled_unlock_need_no_recheck() -> None:
    assert window("gate", local(2026, 3, 2, 9)) == ScheduleWindowEnded(recheck_at=None)
    assert window("no-such-door", local(2026, 3, 2, 9)) == ScheduleWindowEnded(recheck_at=None)


def test_a_door_in_configured_lockdown_never_opens_on_schedule() -> None:
    now = local(2026, 3, 2, 9)
    assert window("locked-down", now) == ScheduleWindowEnded(recheck_at=now + DEFAULT_HORIZON)


def test_naive_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule_window_input(INDEX, AccessState(), "lobby", datetime(2026, 3, 2, 9))


# --- first person in ---------------------------------------------------------------------------------------------


def test_first_person_in_waits_for_a_staff_grant_inside_the_window() -> None:
    state = AccessState()
    nine = local(2026, 3, 2, 9)
    assert window("main", nine, state) == ScheduleWindowEnded(recheck_at=nine + DEFAULT_HORIZON)
    assert ask(INDEX, state, nine, door="main", card_number=ALICE).granted  # a resident does not release it
    assert window("main", nine, state) == ScheduleWindowEnded(recheck_at=nine + DEFAULT_HORIZON)
    assert ask(INDEX, state, nine, door="main", card_number=BOB).granted
    assert window("main", nine, state) == ScheduleWindowStarted(ends_at=local(2026, 3, 2, 18))
    # Yesterday's grant does not open today's window.
    tomorrow = local(2026, 3, 3, 9)
    assert window("main", tomorrow, state) == ScheduleWindowEnded(recheck_at=tomorrow + DEFAULT_HORIZON)


def test_first_person_in_door_follows_the_staff_grant() -> None:
    state = AccessState()
    machine = DoorMachine(door_settings(door_id="main"))
    nine = local(2026, 3, 2, 9)
    machine.apply(ControllerStarted(door_open=False), nine)
    assert machine.apply(window("main", nine, state), nine).commands == ()
    decision = ask(INDEX, state, nine, door="main", card_number=BOB)
    out = machine.apply(AccessGranted(holder_id=decision.holder_id), nine)
    assert out.commands[-1].duration_s == 5.0  # first the grant itself
    out = machine.apply(window("main", nine, state), nine)  # the caller asks again after the grant
    assert [c.state for c in out.commands] == [RelayState.UNLOCKED]
    assert out.commands[0].duration_s is None
    assert out.next_deadline == local(2026, 3, 2, 18)


# --- DST ----------------------------------------------------------------------------------------------------------


def test_fall_back_leaves_and_reenters_a_window_in_the_repeated_hour() -> None:
    saturday = local(2026, 10, 24, 12)
    assert window("fallback", saturday) == ScheduleWindowEnded(recheck_at=utc(2026, 10, 24, 23, 30))  # 01:30 CEST
    assert window("fallback", utc(2026, 10, 24, 23, 30)) == ScheduleWindowStarted(ends_at=utc(2026, 10, 25, 0, 30))
    # 02:30 CEST: out; at 03:00 CEST the clock goes back to 02:00 CET, inside 01:30-02:30 again.
    assert window("fallback", utc(2026, 10, 25, 0, 30)) == ScheduleWindowEnded(recheck_at=utc(2026, 10, 25, 1, 0))
    assert window("fallback", utc(2026, 10, 25, 1, 0)) == ScheduleWindowStarted(ends_at=utc(2026, 10, 25, 1, 30))
    # Found to the second from any starting point, not just from whole hours.
    just_after_leaving = utc(2026, 10, 25, 0, 30) + timedelta(seconds=7)
    assert window("fallback", just_after_leaving) == ScheduleWindowEnded(recheck_at=utc(2026, 10, 25, 1, 0))
    # Next Sunday, normal time.
    assert window("fallback", utc(2026, 10, 25, 1, 30)) == ScheduleWindowEnded(recheck_at=utc(2026, 11, 1, 0, 30))


def test_spring_forward_starts_a_window_at_the_end_of_the_gap() -> None:
    saturday = local(2026, 3, 28, 12, 0, 7)
    assert window("springforward", saturday) == ScheduleWindowEnded(recheck_at=utc(2026, 3, 29, 1, 0))  # 03:00 CEST
    assert window("springforward", utc(2026, 3, 29, 1)) == ScheduleWindowStarted(ends_at=utc(2026, 3, 29, 2))


def test_a_window_inside_the_gap_does_not_happen() -> None:
    saturday = local(2026, 3, 28, 12)
    # 02:00-03:00 does not exist on 2026-03-29; the next one is a week later, 02:00 CEST.
    assert window("gap", saturday) == ScheduleWindowEnded(recheck_at=utc(2026, 4, 5, 0, 0))


# --- a day at the lobby door ---------------------------------------------------------------------------------------


def test_the_lobby_door_opens_and_closes_on_schedule_through_a_day() -> None:
    """The caller's loop from rules/door/machine.py, ticking only at the deadlines it is given."""
    state = AccessState()
    machine = DoorMachine(door_settings(door_id="lobby"))
    now = local(2026, 3, 2, 6)
    transitions: list[tuple[datetime, RelayState]] = []
    out = machine.apply(ControllerStarted(door_open=False), now)
    out = machine.apply(schedule_window_input(INDEX, state, "lobby", now), now)
    end = local(2026, 3, 3, 12)
    wakes = 0
    while out.next_deadline is not None and out.next_deadline < end:
        now = out.next_deadline
        wakes += 1
        if machine.schedule_update_due(now):
            out = machine.apply(schedule_window_input(INDEX, state, "lobby", now), now)
            transitions += [(now, command.state) for command in out.commands]
        out = machine.apply(Tick(), now)
        transitions += [(now, command.state) for command in out.commands]
    assert transitions == [
        (local(2026, 3, 2, 8), RelayState.UNLOCKED),
        (local(2026, 3, 2, 18), RelayState.LOCKED),
        (local(2026, 3, 3, 8), RelayState.UNLOCKED),
    ]
    assert wakes == 3  # no busy waiting
