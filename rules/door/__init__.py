"""The door as a pure state machine: lock relay, door position (DPS), request-to-exit (REX).

:class:`DoorMachine` takes typed inputs with the time (``apply(input, now)``) and returns relay
commands for the driver, events (:class:`rules.access.AccessEvent` data) and the next deadline at
which it must be ticked. :func:`boot_relay_command` / :func:`safe_relay_state` give what the relay
must be at boot and after a crash, from the lock mode alone. :func:`schedule_window_input` turns
the access configuration's scheduled unlock (with first-person-in) into the door's schedule input.

No I/O and no clock reads; see :mod:`rules.door.machine` for the behaviour and the relock policy.
"""

from rules.door.inputs import (
    AccessGranted,
    ControllerStarted,
    DoorClosed,
    DoorInput,
    DoorOpened,
    FaultCleared,
    FaultKind,
    FaultRaised,
    LockdownEnded,
    LockdownStarted,
    RemoteUnlock,
    RexPressed,
    ScheduleWindowEnded,
    ScheduleWindowStarted,
    Tick,
)
from rules.door.machine import DoorMachine
from rules.door.outputs import (
    DoorEventType,
    DoorOutput,
    DoorStatus,
    HeldOpenStage,
    RelayCommand,
    boot_relay_command,
)
from rules.door.schedule import DEFAULT_HORIZON, schedule_window_input
from rules.door.settings import DoorSettings, LockMode, RelayState, RexAction, lock_powered, safe_relay_state

__all__ = [
    "DEFAULT_HORIZON",
    "AccessGranted",
    "ControllerStarted",
    "DoorClosed",
    "DoorEventType",
    "DoorInput",
    "DoorMachine",
    "DoorOpened",
    "DoorOutput",
    "DoorSettings",
    "DoorStatus",
    "FaultCleared",
    "FaultKind",
    "FaultRaised",
    "HeldOpenStage",
    "LockMode",
    "LockdownEnded",
    "LockdownStarted",
    "RelayCommand",
    "RelayState",
    "RemoteUnlock",
    "RexAction",
    "RexPressed",
    "ScheduleWindowEnded",
    "ScheduleWindowStarted",
    "Tick",
    "boot_relay_command",
    "lock_powered",
    "safe_relay_state",
    "schedule_window_input",
]
