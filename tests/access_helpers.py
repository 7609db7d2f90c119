"""A small, fixed compound for the access-control tests (time zone Europe/Berlin).

Doors: ``gate`` (outside -> lobby, hard anti-passback), ``garage`` (outside -> garage, soft),
``office`` (card_and_pin), ``side`` (card_or_pin), ``vault`` (in lockdown), ``main`` (scheduled
unlock on ``business`` with first-person-in) and ``test`` (for schedule tests: each schedule S has a
level ``test-S`` opening only this door).

Holders (card numbers, facility 10, H10301): alice resident 1001 (+ PIN-only 4711), bob staff 1002
with PIN 1234, carol visitor 1003 (valid 2026-03-01..08), dave disabled 1004, erin staff with
lockdown override 1005 (PIN 9999), frank 1006 with a disabled card, gina 1007 without levels, hank
staff 1008 with a card but no PIN.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from rules.access import (
    AccessIndex,
    AccessLevel,
    AccessRequest,
    AccessState,
    AntiPassback,
    Area,
    Card,
    CardFormat,
    CardRead,
    Credential,
    CredentialKind,
    Decision,
    Direction,
    Door,
    DoorGroup,
    DoorMode,
    Holder,
    HolderKind,
    HolidayGroup,
    LevelGrant,
    PinHasher,
    Schedule,
    ScheduleInterval,
    SiteSettings,
    Snapshot,
    TimeInterval,
    Weekday,
    decide,
    resolve_local,
)
from rules.access.model import ALL_DAYS

HASHER = PinHasher(b"test-pin-key-0123456789abcdef")
ZONE = ZoneInfo("Europe/Berlin")
FACILITY = 10
WEEKDAYS = (Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI)
MAY_DAY = date(2026, 5, 1)  # a Friday, on the "public" holiday list
TESTER_CARD = 2000


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A Berlin wall-clock time that exists exactly once, as an aware UTC instant."""
    return resolve_local(datetime(year, month, day, hour, minute, second), ZONE)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


MONDAY_10 = local(2026, 3, 2, 10)  # an ordinary working morning


def card(number: int, facility: int = FACILITY) -> CardRead:
    return CardRead(CardFormat.H10301.value, facility, number)


def card_credential(
    holder_id: str,
    number: int,
    pin: str | None = None,
    *,
    enabled: bool = True,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
) -> Credential:
    credential_id = f"{holder_id}.card"
    return Credential(
        id=credential_id,
        holder_id=holder_id,
        kind=CredentialKind.CARD_AND_PIN if pin else CredentialKind.CARD,
        card=Card(format=CardFormat.H10301, facility=FACILITY, number=number),
        pin_hash=HASHER.for_card(credential_id, pin) if pin else None,
        enabled=enabled,
        valid_from=valid_from,
        valid_until=valid_until,
    )


def pin_credential(holder_id: str, pin: str) -> Credential:
    return Credential(
        id=f"{holder_id}.pin", holder_id=holder_id, kind=CredentialKind.PIN, pin_hash=HASHER.pin_only(pin)
    )


def every_day(start: str, end: str) -> ScheduleInterval:
    return ScheduleInterval(days=ALL_DAYS, start=start, end=end)


SCHEDULES = (
    Schedule(id="always", name="Always", intervals=(every_day("00:00", "24:00"),)),
    Schedule(
        id="business",
        name="Business hours",
        intervals=(ScheduleInterval(days=WEEKDAYS, start="08:00", end="18:00"),),
        holiday_groups=("public",),
    ),
    Schedule(
        id="business-holiday-hours",
        name="Business hours, short on holidays",
        intervals=(ScheduleInterval(days=WEEKDAYS, start="08:00", end="18:00"),),
        holiday_groups=("public",),
        holiday_intervals=(TimeInterval(start="10:00", end="12:00"),),
    ),
    Schedule(
        id="friday-night",
        name="Friday night shift",
        intervals=(ScheduleInterval(days=(Weekday.FRI,), start="22:00", end="06:00"),),
        holiday_groups=("public",),
    ),
    Schedule(
        id="sunday-2-3",
        name="Sunday 02-03",
        intervals=(ScheduleInterval(days=(Weekday.SUN,), start="02:00", end="03:00"),),
    ),
    Schedule(
        id="sunday-1-4",
        name="Sunday 01-04",
        intervals=(ScheduleInterval(days=(Weekday.SUN,), start="01:00", end="04:00"),),
    ),
    Schedule(
        id="saturday-night",
        name="Saturday night",
        intervals=(ScheduleInterval(days=(Weekday.SAT,), start="22:00", end="06:00"),),
    ),
)

DOORS = (
    Door(id="gate", name="Main gate", area_from="outside", area_to="lobby"),
    Door(id="garage", name="Garage", area_from="outside", area_to="garage"),
    Door(id="office", name="Management office", mode=DoorMode.CARD_AND_PIN),
    Door(id="side", name="Side door", mode=DoorMode.CARD_OR_PIN),
    Door(id="vault", name="Plant room", lockdown=True),
    Door(id="main", name="Lobby door", unlock_schedule="business", first_person_in=True),
    Door(id="test", name="Test door"),
)


def standard_snapshot(version: int = 1) -> Snapshot:
    holders = (
        Holder(id="alice", name="Alice Wang", kind=HolderKind.RESIDENT, apartment="3-201", access_levels=("resident",)),
        Holder(id="bob", name="Bob Li", kind=HolderKind.STAFF, access_levels=("staff-all",)),
        Holder(
            id="carol",
            name="Carol (visitor)",
            kind=HolderKind.VISITOR,
            access_levels=("resident",),
            valid_from=local(2026, 3, 1),
            valid_until=local(2026, 3, 8),
        ),
        Holder(
            id="dave",
            name="Dave",
            kind=HolderKind.RESIDENT,
            apartment="1-101",
            enabled=False,
            access_levels=("resident",),
        ),
        Holder(id="erin", name="Erin", kind=HolderKind.STAFF, access_levels=("staff-all",), lockdown_override=True),
        Holder(id="frank", name="Frank", kind=HolderKind.RESIDENT, apartment="2-202", access_levels=("resident",)),
        Holder(id="gina", name="Gina", kind=HolderKind.RESIDENT, apartment="2-203"),
        Holder(id="hank", name="Hank", kind=HolderKind.STAFF, access_levels=("staff-all",)),
        Holder(
            id="ivy",
            name="Ivy (wheelchair user)",
            kind=HolderKind.RESIDENT,
            apartment="1-102",
            access_levels=("resident",),
            extended_unlock=True,
        ),
    )
    credentials = (
        card_credential("alice", 1001),
        pin_credential("alice", "4711"),
        card_credential("bob", 1002, pin="1234"),
        card_credential("carol", 1003),
        card_credential("dave", 1004),
        card_credential("erin", 1005, pin="9999"),
        card_credential("frank", 1006, enabled=False),
        card_credential("gina", 1007),
        card_credential("hank", 1008),
        card_credential("ivy", 1020),
    )
    door_groups = (
        DoorGroup(id="all", name="All doors", doors=tuple(door.id for door in DOORS)),
        DoorGroup(id="residential", name="Residents' doors", doors=("gate", "garage", "side", "main")),
        DoorGroup(id="test", name="Test door", doors=("test",)),
    )
    levels = (
        AccessLevel(id="resident", name="Resident", grants=(LevelGrant(door_group="residential", schedule="always"),)),
        AccessLevel(id="staff-all", name="Staff", grants=(LevelGrant(door_group="all", schedule="always"),)),
        *(
            AccessLevel(id=f"test-{s.id}", name=f"Test {s.id}", grants=(LevelGrant(door_group="test", schedule=s.id),))
            for s in SCHEDULES
        ),
    )
    areas = (
        Area(id="outside", name="Outside"),
        Area(id="lobby", name="Lobby", antipassback=AntiPassback.HARD, forgive_after_s=12 * 3600),
        Area(id="garage", name="Garage", antipassback=AntiPassback.SOFT),
    )
    return Snapshot(
        version=version,
        site=SiteSettings(timezone="Europe/Berlin"),
        holders=holders,
        credentials=credentials,
        access_levels=levels,
        door_groups=door_groups,
        schedules=SCHEDULES,
        holiday_groups=(HolidayGroup(id="public", name="Public holidays", dates=(MAY_DAY, date(2026, 12, 25))),),
        doors=DOORS,
        areas=areas,
    )


def standard_index() -> AccessIndex:
    return AccessIndex.build(standard_snapshot(), HASHER)


def index_with_tester(schedule_id: str) -> AccessIndex:
    """The standard site plus holder ``tester`` (card TESTER_CARD) whose only level is ``test-<schedule_id>``."""
    snapshot = standard_snapshot()
    tester = Holder(id="tester", name="Tester", kind=HolderKind.STAFF, access_levels=(f"test-{schedule_id}",))
    snapshot = snapshot.model_copy(
        update={
            "holders": (*snapshot.holders, tester),
            "credentials": (*snapshot.credentials, card_credential("tester", TESTER_CARD)),
        }
    )
    return AccessIndex.build(snapshot, HASHER)


def ask(
    index: AccessIndex,
    state: AccessState,
    now: datetime,
    *,
    door: str = "test",
    card_number: int | None = None,
    pin: str | None = None,
    reader: str | None = None,
    direction: Direction = Direction.IN,
    tamper: bool = False,
) -> Decision:
    request = AccessRequest(
        door_id=door,
        reader_id=reader or f"{door}-reader",
        card=card(card_number) if card_number is not None else None,
        pin=pin,
        direction=direction,
        reader_tamper=tamper,
    )
    return decide(index, state, request, now)
