"""The access data model's validation, PIN hashing, and local-time resolution around DST."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from rules.access import (
    AmbiguousLocalTime,
    Card,
    CardFormat,
    Credential,
    CredentialKind,
    Door,
    Holder,
    HolderKind,
    NonexistentLocalTime,
    PinHasher,
    ScheduleInterval,
    SiteSettings,
    TimeInterval,
    Weekday,
    resolve_local,
    start_of_local_day,
)
from rules.access.schedule import WindowOccurrence
from tests.access_helpers import HASHER

BERLIN = ZoneInfo("Europe/Berlin")


# --- validation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "resident"}, "a resident needs an apartment"),
        ({"kind": "visitor"}, "a visitor needs valid_until"),
        ({"kind": "staff", "valid_from": datetime(2026, 1, 1)}, "timezone"),
        (
            {
                "kind": "staff",
                "valid_from": datetime(2026, 2, 1, tzinfo=UTC),
                "valid_until": datetime(2026, 1, 1, tzinfo=UTC),
            },
            "valid_from must be before valid_until",
        ),
        ({"kind": "staff", "access_levels": ("a", "a")}, "must not repeat"),
        ({"kind": "staff", "id": "has space"}, "String should match pattern"),
        ({"kind": "staff", "name": "tab\there"}, "control characters"),
        ({"kind": "staff", "unexpected": 1}, "Extra inputs are not permitted"),
    ],
)
def test_holder_validation(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Holder.model_validate({"id": "h1", "name": "H", **fields})


def test_holders_are_frozen() -> None:
    holder = Holder(id="h1", name="H", kind=HolderKind.STAFF)
    with pytest.raises(ValidationError):
        holder.enabled = False


@pytest.mark.parametrize(
    ("card_format", "facility", "number", "ok"),
    [
        (CardFormat.H10301, 255, 65535, True),
        (CardFormat.H10301, 256, 1, False),
        (CardFormat.H10301, 1, 65536, False),
        (CardFormat.H10306, 65535, 65535, True),
        (CardFormat.C1000_35, 4095, (1 << 20) - 1, True),
        (CardFormat.C1000_35, 4096, 1, False),
        (CardFormat.C1000_48, (1 << 22) - 1, (1 << 23) - 1, True),
        (CardFormat.RAW, 0, (1 << 100), True),
        (CardFormat.RAW, 1, 1, False),
    ],
)
def test_card_ranges_follow_the_format(card_format: CardFormat, facility: int, number: int, ok: bool) -> None:
    if ok:
        Card(format=card_format, facility=facility, number=number)
    else:
        with pytest.raises(ValidationError, match="out of range"):
            Card(format=card_format, facility=facility, number=number)


@pytest.mark.parametrize(
    ("kind", "has_card", "has_pin", "ok"),
    [
        (CredentialKind.CARD, True, False, True),
        (CredentialKind.CARD, True, True, False),
        (CredentialKind.PIN, False, True, True),
        (CredentialKind.PIN, True, True, False),
        (CredentialKind.CARD_AND_PIN, True, True, True),
        (CredentialKind.CARD_AND_PIN, True, False, False),
    ],
)
def test_credential_fields_match_its_kind(kind: CredentialKind, has_card: bool, has_pin: bool, ok: bool) -> None:
    fields: dict[str, object] = {"id": "c1", "holder_id": "h1", "kind": kind}
    if has_card:
        fields["card"] = Card(format=CardFormat.H10301, facility=1, number=2)
    if has_pin:
        fields["pin_hash"] = HASHER.pin_only("1234")
    if ok:
        Credential.model_validate(fields)
    else:
        with pytest.raises(ValidationError):
            Credential.model_validate(fields)


def test_a_plain_pin_is_not_a_pin_hash() -> None:
    with pytest.raises(ValidationError, match="pattern"):
        Credential(id="c1", holder_id="h1", kind=CredentialKind.PIN, pin_hash="1234")


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("08:00", "08:00", "start and end are equal"),
        ("24:00", "06:00", "start must be before 24:00"),
        ("8:00", "09:00", "HH:MM"),
        ("08:00", "24:01", "HH:MM"),
        ("08:60", "09:00", "HH:MM"),
    ],
)
def test_interval_validation(start: str, end: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TimeInterval(start=start, end=end)


def test_interval_midnight_crossing_and_day_mask() -> None:
    assert TimeInterval(start="22:00", end="06:00").crosses_midnight
    assert TimeInterval(start="22:00", end="00:00").crosses_midnight  # i.e. to midnight: no spill
    assert not TimeInterval(start="00:00", end="24:00").crosses_midnight
    with pytest.raises(ValidationError):
        ScheduleInterval(days=(), start="08:00", end="09:00")
    with pytest.raises(ValidationError, match="must not repeat"):
        ScheduleInterval(days=(Weekday.MON, Weekday.MON), start="08:00", end="09:00")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"area_from": "a"}, "give both area_from and area_to"),
        ({"area_from": "a", "area_to": "a"}, "must differ"),
        ({"first_person_in": True}, "needs an unlock_schedule"),
    ],
)
def test_door_validation(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Door.model_validate({"id": "d1", "name": "D", **fields})


def test_site_time_zone_must_exist() -> None:
    assert SiteSettings(timezone="Asia/Shanghai").timezone == "Asia/Shanghai"
    with pytest.raises(ValidationError, match="unknown time zone"):
        SiteSettings(timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="unknown time zone"):
        SiteSettings(timezone="../../etc/passwd")


# --- PIN hashing -------------------------------------------------------------------------------------------------


def test_pin_hashes() -> None:
    assert HASHER.pin_only("1234") == HASHER.pin_only("1234")  # the keypad lookup key
    assert HASHER.for_card("c1", "1234") != HASHER.for_card("c2", "1234")  # salted per card credential
    assert HASHER.for_card("c1", "1234") != HASHER.pin_only("1234")
    assert PinHasher(b"another-key-0123456789").pin_only("1234") != HASHER.pin_only("1234")
    stored = HASHER.for_card("c1", "1234")
    assert HASHER.matches_card_pin(stored, "c1", "1234")
    assert not HASHER.matches_card_pin(stored, "c1", "1235")
    assert not HASHER.matches_card_pin(stored, "c2", "1234")
    assert not HASHER.matches_card_pin(stored, "c1", "12")  # not a PIN at all: no exception
    assert HASHER.lookup_key("12a4") is None
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PinHasher(b"short")
    with pytest.raises(ValueError, match="4 to 8 digits") as caught:
        HASHER.pin_only("123456789")
    assert "123456789" not in str(caught.value)


# --- local times around DST ----------------------------------------------------------------------------------------


def test_resolve_local_refuses_skipped_and_repeated_times() -> None:
    with pytest.raises(NonexistentLocalTime, match="does not exist"):
        resolve_local(datetime(2026, 3, 29, 2, 30), BERLIN)
    with pytest.raises(AmbiguousLocalTime, match="happens twice"):
        resolve_local(datetime(2026, 10, 25, 2, 30), BERLIN)
    assert resolve_local(datetime(2026, 3, 29, 3, 0), BERLIN) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert resolve_local(datetime(2026, 10, 25, 3, 0), BERLIN) == datetime(2026, 10, 25, 2, 0, tzinfo=UTC)
    assert resolve_local(datetime(2026, 10, 25, 1, 59), BERLIN) == datetime(2026, 10, 24, 23, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "day", "expected_local"),
    [
        ("Europe/Berlin", date(2026, 3, 29), "2026-03-29T00:00:00+01:00"),
        ("America/Santiago", date(2026, 9, 6), "2026-09-06T01:00:00-03:00"),  # midnight skipped
        ("America/Havana", date(2026, 3, 8), "2026-03-08T01:00:00-04:00"),  # midnight skipped
        ("America/Havana", date(2026, 11, 1), "2026-11-01T00:00:00-04:00"),  # midnight twice: the first
    ],
)
def test_start_of_local_day(zone: str, day: date, expected_local: str) -> None:
    tz = ZoneInfo(zone)
    start = start_of_local_day(day, tz)
    assert start.astimezone(tz).isoformat() == expected_local


def test_window_occurrence_round_trip() -> None:
    occurrence = WindowOccurrence(date(2026, 3, 2), 8 * 3600)
    assert WindowOccurrence.from_json(occurrence.to_json()) == occurrence
