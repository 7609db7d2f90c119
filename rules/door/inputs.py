"""What can happen to a door: the typed inputs of :meth:`rules.door.DoorMachine.apply`.

Each is plain frozen data; the time of the input is the ``now`` passed beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class ControllerStarted:
    """The controller takes the door over from the boot safe state the driver set.

    ``door_open`` is the DPS reading at start, if the driver has one (unknown otherwise).
    """

    door_open: bool | None = None


@dataclass(frozen=True, slots=True)
class AccessGranted:
    """``decide()`` granted someone at this door (under lockdown it grants only override holders)."""

    holder_id: str | None = None
    reader_id: str | None = None
    extended: bool = False  # the holder needs the extended unlock and held-open times


@dataclass(frozen=True, slots=True)
class RexPressed:
    """The request-to-exit button (or PIR) fired."""


@dataclass(frozen=True, slots=True)
class DoorOpened:
    """The door position sensor reports open."""


@dataclass(frozen=True, slots=True)
class DoorClosed:
    """The door position sensor reports closed."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Nothing happened but time: call at (or after) ``DoorOutput.next_deadline``."""


@dataclass(frozen=True, slots=True)
class ScheduleWindowStarted:
    """Scheduled free passage is in force now, until ``ends_at`` unless renewed before.

    The door locks by itself at ``ends_at`` (fail closed: a caller that forgets the schedule never
    leaves a door open); ``None`` means until a :class:`ScheduleWindowEnded` comes.
    """

    ends_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ScheduleWindowEnded:
    """No scheduled free passage now; the caller should evaluate the schedule again at ``recheck_at``."""

    recheck_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LockdownStarted:
    """Lockdown: the door locks now and stays locked for everything but override grants and egress (REX)."""


@dataclass(frozen=True, slots=True)
class LockdownEnded:
    pass


@dataclass(frozen=True, slots=True)
class RemoteUnlock:
    """A momentary unlock asked for remotely (platform, intercom answer, web UI)."""

    requested_by: str | None = None
    extended: bool = False
    override_lockdown: bool = False  # the requester is allowed to open doors in lockdown


class FaultKind(StrEnum):
    BUS_LOST = "bus_lost"  # the lock relay's bus (RS-485 to the reader or I/O module) is gone
    READER_OFFLINE = "reader_offline"
    IO_MODULE_OFFLINE = "io_module_offline"  # the Modbus I/O module with the door's relay or sensors
    CONFIG_INVALID = "config_invalid"
    SHUTTING_DOWN = "shutting_down"


@dataclass(frozen=True, slots=True)
class FaultRaised:
    """Something the door depends on failed: the door goes to its lock mode's safe state.

    ``source`` tells apart faults of one kind (two readers on one door): the door leaves the safe
    state only once every raised (kind, source) has been cleared.
    """

    kind: FaultKind
    source: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FaultCleared:
    kind: FaultKind
    source: str = ""


DoorInput = (
    ControllerStarted
    | AccessGranted
    | RexPressed
    | DoorOpened
    | DoorClosed
    | Tick
    | ScheduleWindowStarted
    | ScheduleWindowEnded
    | LockdownStarted
    | LockdownEnded
    | RemoteUnlock
    | FaultRaised
    | FaultCleared
)
