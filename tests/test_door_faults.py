"""Doors are safe: the boot / crash state from the lock mode alone, and every fault input driving the
door to its lock mode's safe state with a ``door.safe_state`` event, for both lock modes."""

from __future__ import annotations

import pytest

from edge.events import Severity
from rules.door import (
    AccessGranted,
    ControllerStarted,
    DoorClosed,
    DoorMachine,
    DoorOpened,
    FaultCleared,
    FaultKind,
    FaultRaised,
    LockMode,
    RelayCommand,
    RelayState,
    RemoteUnlock,
    RexAction,
    RexPressed,
    ScheduleWindowStarted,
    Tick,
    boot_relay_command,
    lock_powered,
    safe_relay_state,
)
from tests.door_helpers import DOOR, Door, at, command, door_settings, only, safe_for, types

LOCKED, UNLOCKED = RelayState.LOCKED, RelayState.UNLOCKED
BOTH_MODES = pytest.mark.parametrize("mode", list(LockMode))
ALL_FAULTS = pytest.mark.parametrize("kind", list(FaultKind))


# --- boot and crash -----------------------------------------------------------------------------------------


def test_the_safe_state_comes_from_the_lock_mode_alone() -> None:
    assert safe_relay_state(LockMode.FAIL_SAFE) is UNLOCKED  # a maglock lets people out
    assert safe_relay_state(LockMode.FAIL_SECURE) is LOCKED  # a strike keeps the door shut


@BOTH_MODES
def test_boot_command_is_the_safe_state(mode: LockMode) -> None:
    boot = boot_relay_command("front", mode)
    assert (boot.door_id, boot.state, boot.reason, boot.duration_s) == ("front", safe_for(mode), "boot", None)


@BOTH_MODES
def test_the_safe_state_is_the_unpowered_lock(mode: LockMode) -> None:
    # So a power cut, a crash or a dead bus all end in the safe state without any software.
    assert not lock_powered(mode, safe_for(mode))
    other = LOCKED if safe_for(mode) is UNLOCKED else UNLOCKED
    assert lock_powered(mode, other)


@BOTH_MODES
def test_a_new_machine_believes_the_boot_state_and_does_nothing_until_started(mode: LockMode) -> None:
    machine = DoorMachine(door_settings(lock_mode=mode))
    assert machine.status.relay is safe_for(mode) and not machine.status.started
    out = machine.apply(AccessGranted(holder_id="alice"), at(0))
    assert out.commands == ()
    refused = only(out, "door.unlock_refused")
    assert refused.data["faults"] == ["not_started"] and refused.data["relay"] == safe_for(mode).value
    assert machine.apply(Tick(), at(1)).commands == ()


# --- every fault, both lock modes -------------------------------------------------------------------------------


@BOTH_MODES
@ALL_FAULTS
def test_fault_during_an_unlock_goes_to_the_safe_state(mode: LockMode, kind: FaultKind) -> None:
    door = Door(lock_mode=mode)
    door.step(1, AccessGranted())
    assert door.relay is UNLOCKED
    out = door.step(2, FaultRaised(kind, source="bus-a", detail="no reply for 8 s"))
    assert door.relay is safe_for(mode)
    assert command(out).state is safe_for(mode) and command(out).reason == "safe_state"
    assert command(out).duration_s is None
    event = only(out, "door.safe_state")
    assert event.data == {
        "door": DOOR,
        "reason": kind.value,
        "fault_source": "bus-a",
        "detail": "no reply for 8 s",
        "lock_mode": mode.value,
        "relay": safe_for(mode).value,
    }
    assert door.machine.status.faults == ((kind, "bus-a"),)
    # The momentary unlock's timer went with it: nothing is due.
    assert out.next_deadline is None


@BOTH_MODES
@ALL_FAULTS
def test_fault_while_idle_reasserts_the_safe_state(mode: LockMode, kind: FaultKind) -> None:
    door = Door(lock_mode=mode)
    out = door.step(1, FaultRaised(kind))
    # Commanded even where the relay is believed there already (fail-secure: locked).
    assert command(out).state is safe_for(mode)
    assert door.relay is safe_for(mode)
    assert ("door.unlocked" in types(out)) is (mode is LockMode.FAIL_SAFE)


@BOTH_MODES
@ALL_FAULTS
def test_nothing_unlocks_out_of_the_safe_state_while_faulted(mode: LockMode, kind: FaultKind) -> None:
    door = Door(lock_mode=mode)
    door.step(1, FaultRaised(kind))
    for seconds, event in [
        (2, AccessGranted(holder_id="alice")),
        (3, RemoteUnlock(requested_by="platform", override_lockdown=True)),
        (4, RexPressed()),
        (5, ScheduleWindowStarted(ends_at=at(1000))),
        (6, Tick()),
    ]:
        out = door.step(seconds, event)
        assert out.commands == (), event
        assert door.relay is safe_for(mode)
    assert types(door.outputs[-5]) == ["door.unlock_refused"]
    assert door.outputs[-5].events[0].data["faults"] == [kind.value]


@BOTH_MODES
@ALL_FAULTS
def test_clearing_the_fault_returns_to_normal_without_reviving_old_unlocks(mode: LockMode, kind: FaultKind) -> None:
    door = Door(lock_mode=mode)
    door.step(0, AccessGranted())
    door.step(1, FaultRaised(kind))
    out = door.step(2, FaultCleared(kind))
    cleared = only(out, "door.safe_state_cleared")
    assert cleared.data["reason"] == kind.value and cleared.severity is Severity.INFO
    # Commanded whatever the machine believes: the relay may have reset while the bus was away.
    assert command(out).state is LOCKED and command(out).reason == "fault_cleared"
    assert door.relay is LOCKED
    assert door.step(5, Tick()).commands == ()  # the grant from before the fault stays cancelled
    assert door.machine.status.faults == ()


@ALL_FAULTS
def test_severity_says_how_urgent_the_safe_state_is(kind: FaultKind) -> None:
    fail_safe = only(Door(lock_mode=LockMode.FAIL_SAFE).step(1, FaultRaised(kind)), "door.safe_state")
    fail_secure = only(Door(lock_mode=LockMode.FAIL_SECURE).step(1, FaultRaised(kind)), "door.safe_state")
    # A door released by a failure leaves the building open: someone must look. A shutdown is deliberate.
    assert fail_safe.severity is (Severity.WARNING if kind is FaultKind.SHUTTING_DOWN else Severity.ALARM)
    assert fail_secure.severity is Severity.WARNING


# --- several faults ---------------------------------------------------------------------------------------------


@BOTH_MODES
def test_a_repeated_fault_reports_once(mode: LockMode) -> None:
    door = Door(lock_mode=mode)
    door.step(1, FaultRaised(FaultKind.BUS_LOST, "rs485-1"))
    out = door.step(2, FaultRaised(FaultKind.BUS_LOST, "rs485-1", detail="still gone"))
    assert out.commands == () and out.events == ()


@BOTH_MODES
def test_the_door_leaves_the_safe_state_only_when_every_fault_is_cleared(mode: LockMode) -> None:
    door = Door(lock_mode=mode)
    door.step(1, FaultRaised(FaultKind.READER_OFFLINE, "reader-in"))
    out = door.step(2, FaultRaised(FaultKind.READER_OFFLINE, "reader-out"))
    assert types(out) == ["door.safe_state"] and command(out).state is safe_for(mode)
    out = door.step(3, FaultCleared(FaultKind.READER_OFFLINE, "reader-in"))
    assert out.commands == () and out.events == ()
    assert door.relay is safe_for(mode)
    assert types(door.step(4, AccessGranted())) == ["door.unlock_refused"]
    out = door.step(5, FaultCleared(FaultKind.READER_OFFLINE, "reader-out"))
    assert "door.safe_state_cleared" in types(out) and door.relay is LOCKED


def test_clearing_a_fault_that_was_never_raised_does_nothing() -> None:
    door = Door()
    out = door.step(1, FaultCleared(FaultKind.BUS_LOST, "rs485-9"))
    assert out.commands == () and out.events == ()


@BOTH_MODES
def test_a_fault_before_start_holds_the_door_in_the_safe_state_through_start(mode: LockMode) -> None:
    door = Door(lock_mode=mode, start=False)
    out = door.step(0, FaultRaised(FaultKind.CONFIG_INVALID, detail="site.yaml:12: doors[0].strike_s"))
    assert only(out, "door.safe_state").data["reason"] == "config_invalid"
    out = door.step(1, ControllerStarted(door_open=False))
    assert command(out).state is safe_for(mode)
    assert door.relay is safe_for(mode)
    out = door.step(2, FaultCleared(FaultKind.CONFIG_INVALID))
    assert command(out).state is LOCKED


def test_shutdown_as_the_last_input_leaves_the_relay_safe() -> None:
    door = Door(lock_mode=LockMode.FAIL_SAFE)
    door.step(0, AccessGranted())
    out = door.step(1, FaultRaised(FaultKind.SHUTTING_DOWN))
    assert command(out).state is UNLOCKED
    assert command(out) == RelayCommand(DOOR, UNLOCKED, "safe_state", None)


# --- supervision in the safe state -------------------------------------------------------------------------------


def test_fail_secure_in_a_fault_still_reports_a_forced_door() -> None:
    door = Door(lock_mode=LockMode.FAIL_SECURE)
    door.step(0, FaultRaised(FaultKind.READER_OFFLINE))
    assert "door.forced_open" in types(door.step(1, DoorOpened()))


def test_fail_secure_in_a_fault_rex_still_shunts_for_mechanical_egress() -> None:
    door = Door(lock_mode=LockMode.FAIL_SECURE, rex_action=RexAction.UNLOCK)
    door.step(0, FaultRaised(FaultKind.BUS_LOST))
    out = door.step(1, RexPressed())
    assert out.commands == ()  # the relay stays in the safe state
    out = door.step(2, DoorOpened())
    assert types(out) == ["door.opened"]


def test_fail_safe_in_a_fault_is_free_passage_then_supervised_once_cleared() -> None:
    door = Door(lock_mode=LockMode.FAIL_SAFE)
    door.step(0, FaultRaised(FaultKind.BUS_LOST))
    out = door.step(10, DoorOpened())
    assert only(out, "door.opened").data["authorised_by"] == "safe_state"
    assert out.next_deadline is None  # a released maglock is not held-open supervised
    out = door.step(100, FaultCleared(FaultKind.BUS_LOST))
    assert door.relay is LOCKED
    assert out.next_deadline == at(120)  # held-open time counts from leaving the safe state
    assert "door.restored" in types(door.step(200, DoorClosed()))


def test_a_fault_cancels_the_passage_window_of_an_earlier_grant() -> None:
    door = Door(lock_mode=LockMode.FAIL_SECURE)
    door.step(0, AccessGranted())
    door.step(1, FaultRaised(FaultKind.BUS_LOST))
    assert door.machine.status.passage_until is None
    assert "door.forced_open" in types(door.step(2, DoorOpened()))
