"""A door harness for the rules/door tests: a machine plus the relay as the driver would hold it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rules.access import AccessEvent
from rules.door import (
    ControllerStarted,
    DoorInput,
    DoorMachine,
    DoorOutput,
    DoorSettings,
    LockMode,
    RelayCommand,
    RelayState,
    boot_relay_command,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DOOR = "door-1"
# Round numbers that make the deadlines easy to read: strike 5 s, extended 15 s, held open 30 s
# (pre-alarm 10 s before, so at 20 s), extended held open 60 s (pre-alarm at 50 s).
TIMES: dict[str, Any] = {
    "strike_s": 5,
    "extended_unlock_s": 15,
    "held_open_s": 30,
    "extended_held_open_s": 60,
    "held_open_pre_alarm_s": 10,
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def door_settings(**overrides: Any) -> DoorSettings:
    return DoorSettings(**{"door_id": DOOR, **TIMES, **overrides})


class Door:
    """Applies inputs at ``T0 + seconds`` and carries out the commands on ``relay``, like a driver."""

    def __init__(self, *, start: bool = True, door_open: bool | None = False, **overrides: Any) -> None:
        self.settings = door_settings(**overrides)
        self.machine = DoorMachine(self.settings)
        self.relay = boot_relay_command(DOOR, self.settings.lock_mode).state
        self.outputs: list[DoorOutput] = []
        if start:
            self.step(0, ControllerStarted(door_open=door_open))

    def step(self, seconds: float, event: DoorInput) -> DoorOutput:
        out = self.machine.apply(event, at(seconds))
        for command in out.commands:
            assert command.door_id == DOOR
            self.relay = command.state
        self.outputs.append(out)
        return out


def types(out: DoorOutput) -> list[str]:
    return [event.type for event in out.events]


def only(out: DoorOutput, event_type: str) -> AccessEvent:
    found = [event for event in out.events if event.type == event_type]
    assert len(found) == 1, f"expected one {event_type}, got {types(out)}"
    return found[0]


def command(out: DoorOutput) -> RelayCommand:
    assert len(out.commands) == 1, f"expected one command, got {out.commands}"
    return out.commands[0]


def safe_for(mode: LockMode) -> RelayState:
    return RelayState.UNLOCKED if mode is LockMode.FAIL_SAFE else RelayState.LOCKED
