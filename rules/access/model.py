"""The access-control data model: what the property manager configures and the platform syncs.

Everything here is a frozen pydantic model so it validates on the way in (API, CSV, MQTT sync) and
serialises to JSON unchanged for the SQLite store and the wire (``model_dump(mode="json")``).
Nothing here holds a plaintext PIN: credentials carry ``pin_hash`` made by :mod:`rules.access.pin`.

Times: validity windows are aware datetimes (absolute instants, no DST question); schedules are
local wall-clock ``HH:MM`` in the site's time zone (see :mod:`rules.access.schedule` for the DST
policy); holidays are local calendar dates.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

# Ids are short, printable and safe in MQTT topics, SQL and log lines.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$"
Id = Annotated[str, Field(pattern=ID_PATTERN)]
PIN_HASH_PATTERN = r"^hs256\$[0-9a-f]{64}$"
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

SECONDS_PER_DAY = 86_400


def _printable(value: str) -> str:
    if _CONTROL_CHARS.search(value):
        raise ValueError("must not contain control characters")
    return value


Name = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_printable)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _unique_ids(items: tuple[str, ...], what: str) -> tuple[str, ...]:
    if len(set(items)) != len(items):
        raise ValueError(f"{what} must not repeat")
    return items


# --- holders and credentials -------------------------------------------------------------------


class HolderKind(StrEnum):
    RESIDENT = "resident"
    STAFF = "staff"
    VISITOR = "visitor"


class _Validity(_Frozen):
    """A validity window: valid from ``valid_from`` (inclusive) until ``valid_until`` (exclusive)."""

    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _window_in_order(self) -> Self:
        if self.valid_from is not None and self.valid_until is not None and self.valid_from >= self.valid_until:
            raise ValueError("valid_from must be before valid_until")
        return self


class Holder(_Validity):
    id: Id
    name: Name
    kind: HolderKind
    apartment: Annotated[str, Field(min_length=1, max_length=32), AfterValidator(_printable)] | None = None
    enabled: bool = True
    access_levels: tuple[Id, ...] = ()
    # Passes doors in lockdown (security staff, responders); still needs a valid credential and PIN.
    lockdown_override: bool = False
    # Accessibility: doors stay unlocked for their extended time (and may be held open longer).
    extended_unlock: bool = False

    @model_validator(mode="after")
    def _kind_rules(self) -> Self:
        _unique_ids(self.access_levels, "access_levels")
        if self.kind is HolderKind.RESIDENT and self.apartment is None:
            raise ValueError("a resident needs an apartment")
        if self.kind is HolderKind.VISITOR and self.valid_until is None:
            raise ValueError("a visitor needs valid_until (visitor access is always time-limited)")
        return self


class CardFormat(StrEnum):
    """Wiegand formats as decoded by the reader driver into facility + card number."""

    H10301 = "h10301"  # 26-bit: facility 8 bits, card 16 bits
    H10306 = "h10306"  # 34-bit: facility 16 bits, card 16 bits
    C1000_35 = "c1000_35"  # 35-bit Corporate 1000: company 12 bits, card 20 bits
    C1000_48 = "c1000_48"  # 48-bit Corporate 1000: company 22 bits, card 23 bits
    RAW = "raw"  # undecoded bits as an integer; facility is always 0


# (max facility, max card number) per format: a number out of range cannot come from a real read.
CARD_FORMAT_LIMITS: dict[CardFormat, tuple[int, int]] = {
    CardFormat.H10301: ((1 << 8) - 1, (1 << 16) - 1),
    CardFormat.H10306: ((1 << 16) - 1, (1 << 16) - 1),
    CardFormat.C1000_35: ((1 << 12) - 1, (1 << 20) - 1),
    CardFormat.C1000_48: ((1 << 22) - 1, (1 << 23) - 1),
    CardFormat.RAW: (0, (1 << 128) - 1),
}

CardKey = tuple[str, int, int]  # (format, facility, number): the O(1) lookup key


class Card(_Frozen):
    format: CardFormat
    facility: int = Field(ge=0)
    number: int = Field(ge=0)

    @model_validator(mode="after")
    def _in_format_range(self) -> Self:
        check_card_range(self.format, self.facility, self.number)
        return self

    @property
    def key(self) -> CardKey:
        return (self.format.value, self.facility, self.number)


def check_card_range(card_format: CardFormat, facility: int, number: int) -> None:
    max_facility, max_number = CARD_FORMAT_LIMITS[card_format]
    if not 0 <= facility <= max_facility:
        raise ValueError(f"facility {facility} is out of range 0..{max_facility} for {card_format.value}")
    if not 0 <= number <= max_number:
        raise ValueError(f"card number {number} is out of range 0..{max_number} for {card_format.value}")


class CredentialKind(StrEnum):
    CARD = "card"
    PIN = "pin"  # PIN alone, for card_or_pin doors; PIN-only PINs are unique on the site
    CARD_AND_PIN = "card_and_pin"  # a card with its own PIN, asked for at card_and_pin doors


class Credential(_Validity):
    id: Id
    holder_id: Id
    kind: CredentialKind
    card: Card | None = None
    pin_hash: Annotated[str, Field(pattern=PIN_HASH_PATTERN)] | None = None
    enabled: bool = True

    @model_validator(mode="after")
    def _fields_match_kind(self) -> Self:
        needs_card = self.kind in (CredentialKind.CARD, CredentialKind.CARD_AND_PIN)
        needs_pin = self.kind in (CredentialKind.PIN, CredentialKind.CARD_AND_PIN)
        if needs_card != (self.card is not None):
            raise ValueError(f"a {self.kind.value} credential {'needs' if needs_card else 'has no'} card")
        if needs_pin != (self.pin_hash is not None):
            raise ValueError(f"a {self.kind.value} credential {'needs' if needs_pin else 'has no'} pin_hash")
        return self


# --- schedules, holidays, access levels ---------------------------------------------------------


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def number(self) -> int:
        """Monday 0 … Sunday 6, as ``date.weekday()``."""
        return _WEEKDAY_ORDER.index(self)


_WEEKDAY_ORDER = tuple(Weekday)
ALL_DAYS: tuple[Weekday, ...] = _WEEKDAY_ORDER


def _hhmm(value: str) -> str:
    if not _HHMM.match(value):
        raise ValueError("must be HH:MM between 00:00 and 24:00")
    return value


HHMM = Annotated[str, AfterValidator(_hhmm)]


def hhmm_to_seconds(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60


class TimeInterval(_Frozen):
    """Local wall-clock ``[start, end)``. ``end <= start`` crosses midnight: 22:00-06:00 runs into the
    next day and belongs to the day it starts (that day's mask and holiday status decide it).
    ``24:00`` is allowed as an end; ``start == end`` is rejected as ambiguous (empty or all day?)."""

    start: HHMM
    end: HHMM

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == "24:00":
            raise ValueError("start must be before 24:00")
        if self.start == self.end:
            raise ValueError("start and end are equal; write 00:00-24:00 for a whole day")
        return self

    @property
    def crosses_midnight(self) -> bool:
        return hhmm_to_seconds(self.end) < hhmm_to_seconds(self.start)


class ScheduleInterval(TimeInterval):
    days: tuple[Weekday, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _days_unique(self) -> Self:
        _unique_ids(tuple(self.days), "days")
        return self


class Schedule(_Frozen):
    """When an access level's doors may be used.

    On a date listed in any of ``holiday_groups`` the day's normal intervals are replaced by
    ``holiday_intervals``: empty (the default) removes access on holidays, a list gives holiday
    hours. A schedule with no ``holiday_groups`` ignores holidays (e.g. 24/7 security staff).
    """

    id: Id
    name: Name
    intervals: tuple[ScheduleInterval, ...] = ()
    holiday_groups: tuple[Id, ...] = ()
    holiday_intervals: tuple[TimeInterval, ...] = ()


class HolidayGroup(_Frozen):
    id: Id
    name: Name
    dates: tuple[date, ...] = ()  # local calendar dates in the site's time zone


class DoorGroup(_Frozen):
    id: Id
    name: Name
    doors: tuple[Id, ...] = ()


class LevelGrant(_Frozen):
    door_group: Id
    schedule: Id


class AccessLevel(_Frozen):
    """Door groups x schedules: the holder may use each group's doors during its schedule."""

    id: Id
    name: Name
    grants: tuple[LevelGrant, ...] = ()


# --- doors and areas ----------------------------------------------------------------------------


class DoorMode(StrEnum):
    CARD = "card"
    CARD_AND_PIN = "card_and_pin"
    CARD_OR_PIN = "card_or_pin"


class AntiPassback(StrEnum):
    NONE = "none"
    SOFT = "soft"  # grant, but flag the violation
    HARD = "hard"  # deny


class Area(_Frozen):
    """A space between doors. Its anti-passback mode applies to doors leading *into* it."""

    id: Id
    name: Name
    antipassback: AntiPassback = AntiPassback.NONE
    # Timed forgiveness: a position recorded in this area older than this is forgotten.
    forgive_after_s: int | None = Field(default=None, gt=0)


class Door(_Frozen):
    """A door's reader side "in" leads from ``area_from`` to ``area_to``; "out" the other way."""

    id: Id
    name: Name
    mode: DoorMode = DoorMode.CARD
    area_from: Id | None = None
    area_to: Id | None = None
    lockdown: bool = False
    unlock_schedule: Id | None = None  # scheduled unlock (free passage) window, if any
    first_person_in: bool = False  # the scheduled unlock waits for a staff grant inside the window

    @model_validator(mode="after")
    def _areas(self) -> Self:
        if (self.area_from is None) != (self.area_to is None):
            raise ValueError("give both area_from and area_to, or neither")
        if self.area_from is not None and self.area_from == self.area_to:
            raise ValueError("area_from and area_to must differ")
        if self.first_person_in and self.unlock_schedule is None:
            raise ValueError("first_person_in needs an unlock_schedule")
        return self


# --- site-wide settings -------------------------------------------------------------------------


class LockoutPolicy(_Frozen):
    """``max_failures`` wrong PINs within ``window_s`` lock out for ``lockout_s``."""

    max_failures: int = Field(ge=1, le=1000)
    window_s: int = Field(gt=0)
    lockout_s: int = Field(gt=0)


def _zone_name(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


class SiteSettings(_Frozen):
    timezone: Annotated[str, AfterValidator(_zone_name)] = "UTC"
    # A 4-digit PIN has 10,000 values: 5 tries per 5 minutes, then 15 minutes out, makes guessing
    # one card's PIN take weeks. The reader limit catches guessing across cards / PIN-only codes.
    pin_lockout_credential: LockoutPolicy = LockoutPolicy(max_failures=5, window_s=300, lockout_s=900)
    pin_lockout_reader: LockoutPolicy = LockoutPolicy(max_failures=10, window_s=60, lockout_s=300)


# --- the synced whole: snapshot and delta --------------------------------------------------------

COLLECTIONS = (
    "holders",
    "credentials",
    "access_levels",
    "door_groups",
    "schedules",
    "holiday_groups",
    "doors",
    "areas",
)


class AccessItems(_Frozen):
    """One list per collection; ids are unique within a list."""

    holders: tuple[Holder, ...] = ()
    credentials: tuple[Credential, ...] = ()
    access_levels: tuple[AccessLevel, ...] = ()
    door_groups: tuple[DoorGroup, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    holiday_groups: tuple[HolidayGroup, ...] = ()
    doors: tuple[Door, ...] = ()
    areas: tuple[Area, ...] = ()

    @model_validator(mode="after")
    def _ids_unique(self) -> Self:
        for name in COLLECTIONS:
            ids = [item.id for item in getattr(self, name)]
            if len(set(ids)) != len(ids):
                raise ValueError(f"{name}: an id appears more than once")
        return self


class Snapshot(AccessItems):
    """The complete access configuration at ``version``."""

    version: int = Field(ge=0)
    site: SiteSettings = SiteSettings()


class DeleteIds(_Frozen):
    holders: tuple[Id, ...] = ()
    credentials: tuple[Id, ...] = ()
    access_levels: tuple[Id, ...] = ()
    door_groups: tuple[Id, ...] = ()
    schedules: tuple[Id, ...] = ()
    holiday_groups: tuple[Id, ...] = ()
    doors: tuple[Id, ...] = ()
    areas: tuple[Id, ...] = ()


class Delta(_Frozen):
    """The change from ``base_version`` to ``base_version + 1``: deletes, upserts, maybe new settings."""

    base_version: int = Field(ge=0)
    version: int = Field(ge=1)
    site: SiteSettings | None = None
    upsert: AccessItems = AccessItems()
    delete: DeleteIds = DeleteIds()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.version != self.base_version + 1:
            raise ValueError("version must be base_version + 1")
        for name in COLLECTIONS:
            deleted = getattr(self.delete, name)
            if len(set(deleted)) != len(deleted):
                raise ValueError(f"delete.{name}: an id appears more than once")
            both = set(deleted) & {item.id for item in getattr(self.upsert, name)}
            if both:
                raise ValueError(f"{name}: {sorted(both)[0]!r} is both upserted and deleted")
        return self
