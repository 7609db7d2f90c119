"""What a door step produces: relay commands for the driver, events, and when to call again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rules.access.decide import AccessEvent
from rules.door.inputs import FaultKind
from rules.door.settings import LockMode, RelayState, safe_relay_state


class DoorEventType(StrEnum):
    UNLOCKED = "door.unlocked"
    LOCKED = "door.locked"
    OPENED = "door.opened"
    CLOSED = "door.closed"
    REX = "door.rex"
    FORCED_OPEN = "door.forced_open"
    HELD_OPEN = "door.held_open"  # data.stage: "pre_alarm" (warning) then "alarm"
    RESTORED = "door.restored"  # closed after forced_open or held_open
    SAFE_STATE = "door.safe_state"
    SAFE_STATE_CLEARED = "door.safe_state_cleared"
    UNLOCK_REFUSED = "door.unlock_refused"  # a grant or remote unlock the door could not carry out


class HeldOpenStage(StrEnum):
    NONE = "none"
    PRE_ALARM = "pre_alarm"
    ALARM = "alarm"


@dataclass(frozen=True, slots=True)
class RelayCommand:
    """Set the lock relay. ``duration_s`` (momentary unlocks only): relock after this long.

    Hand the duration to hardware that times pulses itself (an OSDP output timer), so the door
    relocks even if the controller dies before its own relock command.
    """

    door_id: str
    state: RelayState
    reason: str
    duration_s: float | None = None


def boot_relay_command(door_id: str, lock_mode: LockMode) -> RelayCommand:
    """What the driver sets the relay to at boot and after a crash, before the controller takes over."""
    return RelayCommand(door_id, safe_relay_state(lock_mode), "boot")


@dataclass(frozen=True, slots=True)
class DoorOutput:
    commands: tuple[RelayCommand, ...]
    events: tuple[AccessEvent, ...]
    next_deadline: datetime | None  # apply(Tick(), now) at or after this; None: nothing pending


@dataclass(frozen=True, slots=True)
class DoorStatus:
    """A read-only view of the door, for the API, Home Assistant and tests."""

    door_id: str
    started: bool
    relay: RelayState  # as last commanded
    relay_until: datetime | None  # end of a momentary unlock; None: until further notice
    door_open: bool | None  # None: the DPS has not reported yet
    free_passage: bool  # unlocked until further notice (schedule, or a fail-safe door's safe state)
    passage_until: datetime | None  # an opening before this is authorised (grant, REX, remote unlock)
    lockdown: bool
    schedule_open: bool
    faults: tuple[tuple[FaultKind, str], ...]  # (kind, source), sorted
    forced_open: bool  # the current opening was forced
    held_open: HeldOpenStage
