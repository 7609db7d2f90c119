"""Access control decisions as pure code: data model, index, versioned sync, decide(), CSV import.

No I/O and no clock reads: configuration arrives as an :class:`AccessIndex`, mutable state as an
:class:`AccessState`, the time as an argument. See DESIGN.md (``rules`` imports only the event
model) and issue 5.
"""

from rules.access.csv_import import COLUMNS as CSV_COLUMNS
from rules.access.csv_import import ImportResult, ImportRow, RowError, parse_holders_csv
from rules.access.decide import (
    AccessEvent,
    AccessRequest,
    CardRead,
    Decision,
    Direction,
    Reason,
    decide,
    may_start_scheduled_unlock,
)
from rules.access.index import AccessDataError, AccessIndex
from rules.access.model import (
    AccessItems,
    AccessLevel,
    AntiPassback,
    Area,
    Card,
    CardFormat,
    Credential,
    CredentialKind,
    DeleteIds,
    Delta,
    Door,
    DoorGroup,
    DoorMode,
    Holder,
    HolderKind,
    HolidayGroup,
    LevelGrant,
    LockoutPolicy,
    Schedule,
    ScheduleInterval,
    SiteSettings,
    Snapshot,
    TimeInterval,
    Weekday,
)
from rules.access.pin import PinHasher
from rules.access.schedule import AmbiguousLocalTime, NonexistentLocalTime, resolve_local, start_of_local_day
from rules.access.state import AccessState
from rules.access.sync import StaleDeltaError, StaleSnapshotError, apply_delta, apply_snapshot

__all__ = [
    "CSV_COLUMNS",
    "AccessDataError",
    "AccessEvent",
    "AccessIndex",
    "AccessItems",
    "AccessLevel",
    "AccessRequest",
    "AccessState",
    "AmbiguousLocalTime",
    "AntiPassback",
    "Area",
    "Card",
    "CardFormat",
    "CardRead",
    "Credential",
    "CredentialKind",
    "Decision",
    "DeleteIds",
    "Delta",
    "Direction",
    "Door",
    "DoorGroup",
    "DoorMode",
    "Holder",
    "HolderKind",
    "HolidayGroup",
    "ImportResult",
    "ImportRow",
    "LevelGrant",
    "LockoutPolicy",
    "NonexistentLocalTime",
    "PinHasher",
    "Reason",
    "RowError",
    "Schedule",
    "ScheduleInterval",
    "SiteSettings",
    "Snapshot",
    "StaleDeltaError",
    "StaleSnapshotError",
    "TimeInterval",
    "Weekday",
    "apply_delta",
    "apply_snapshot",
    "decide",
    "may_start_scheduled_unlock",
    "parse_holders_csv",
    "resolve_local",
    "start_of_local_day",
]
