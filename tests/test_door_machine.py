"""The door state machine in normal operation: grants, REX, forced and held open, relock policy,
extended unlock, remote unlock, schedule windows, lockdown, clock steps, settings validation.

Faults and the boot safe state are in test_door_faults.py; the scheduled unlock from the access
configuration in test_door_schedule.py; random sequences in test_door_properties.py.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from edge.events import EventFactory, Severity
from rules.door import (
    AccessGranted,
    ControllerStarted,
    DoorClosed,
    DoorMachine,
    DoorOpened,
    DoorSettings,
    HeldOpenStage,
    LockdownEnded,
    LockdownStarted,
    LockMode,
    RelayState,
    RemoteUnlock,
    RexAction,
    RexPressed,
    ScheduleWindowEnded,
    ScheduleWindowStarted,
    Tick,
)
from tests.door_helpers import DOOR, Door, at, command, door_settings, only, types

LOCKED, UNLOCKED = RelayState.LOCKED, RelayState.UNLOCKED


# --- taking over from the boot state ------------------------------------------------------------------------


def test_fail_secure_start_commands_locked_without_a_change_event() -> None:
    door = Door(lock_mode=LockMode.FAIL_SECURE, door_open=None)
    out = door.outputs[0]
    assert command(out).state is LOCKED and command(out).reason == "controller_started"
    assert types(out) == []  # the boot state was already locked
    assert door.machine.status.started


def test_fail_safe_start_locks_the_released_maglock() -> None:
    door = Door(lock_mode=LockMode.FAIL_SAFE, door_open=False)
    out = door.outputs[0]
    assert command(out).state is LOCKED
    assert types(out) == ["door.locked", "door.closed"]
    assert only(out, "door.locked").data["reason"] == "controller_started"
    assert only(out, "door.closed").data == {"door": DOOR, "initial": True}


def test_start_is_idempotent() -> None:
    door = Door()
    out = door.step(1, ControllerStarted(door_open=True))
    assert out.commands == () and out.events == ()


def test_door_open_at_start_is_not_forced_but_is_supervised() -> None:
    door = Door(door_open=True)
    opened = only(door.outputs[0], "door.opened")
    assert opened.data["initial"] is True and opened.data["authorised_by"] is None
    assert "door.forced_open" not in types(door.outputs[0])
    assert door.outputs[0].next_deadline == at(20)
    assert only(door.step(20, Tick()), "door.held_open").data["stage"] == "pre_alarm"


def test_unknown_position_becoming_open_is_not_forced() -> None:
    door = Door(door_open=None)
    out = door.step(3, DoorOpened())
    assert types(out) == ["door.opened"]
    assert out.events[0].data["initial"] is True


# --- forced open ---------------------------------------------------------------------------------------------


def test_opening_a_locked_door_is_forced_then_restored_on_close() -> None:
    door = Door()
    out = door.step(10, DoorOpened())
    assert types(out) == ["door.opened", "door.forced_open"]
    forced = only(out, "door.forced_open")
    assert forced.severity is Severity.ALARM and forced.source == DOOR
    assert out.commands == ()
    assert door.machine.status.forced_open
    # A forced door raises no held-open alarm on top: the forced alarm stands until it closes.
    assert out.next_deadline is None
    assert door.step(500, Tick()).events == ()
    out = door.step(600, DoorClosed())
    assert types(out) == ["door.closed", "door.restored"]
    assert only(out, "door.restored").data == {"door": DOOR, "after": "door.forced_open", "open_s": 590.0}
    assert not door.machine.status.forced_open


def test_repeated_position_reports_are_ignored() -> None:
    door = Door()
    door.step(1, DoorOpened())
    assert door.step(2, DoorOpened()).events == ()
    door.step(3, DoorClosed())
    assert door.step(4, DoorClosed()).events == ()


# --- grant, open, close ---------------------------------------------------------------------------------------


def test_grant_unlocks_for_the_strike_time() -> None:
    door = Door()
    out = door.step(1, AccessGranted(holder_id="alice", reader_id="r1"))
    unlock = command(out)
    assert (unlock.state, unlock.reason, unlock.duration_s) == (UNLOCKED, "grant", 5.0)
    unlocked = only(out, "door.unlocked")
    assert unlocked.data == {
        "door": DOOR, "reason": "grant", "until": at(6).isoformat(), "by": "alice", "extended": False
    }
    assert out.next_deadline == at(6)
    assert door.relay is UNLOCKED


def test_grant_then_open_then_close_relocks_on_close() -> None:
    door = Door()
    door.step(1, AccessGranted(holder_id="alice"))
    out = door.step(2, DoorOpened())
    assert types(out) == ["door.opened"]
    assert only(out, "door.opened").data["authorised_by"] == "grant"
    out = door.step(3.5, DoorClosed())
    assert types(out) == ["door.closed", "door.locked"]
    assert only(out, "door.closed").data["open_s"] == 1.5
    assert only(out, "door.locked").data["reason"] == "door_closed"
    assert command(out).state is LOCKED
    assert out.next_deadline is None
    assert door.step(6, Tick()).commands == ()  # the strike timer went with the unlock
    # Following on the rest of the strike time is not a passage: the door is locked again.
    assert "door.forced_open" in types(door.step(4, DoorOpened()))


def test_without_relock_on_close_the_strike_time_runs_out() -> None:
    door = Door(relock_on_close=False)
    door.step(1, AccessGranted())
    door.step(2, DoorOpened())
    out = door.step(3, DoorClosed())
    assert out.commands == () and types(out) == ["door.closed"]
    out = door.step(6, Tick())
    assert command(out).state is LOCKED and only(out, "door.locked").data["reason"] == "unlock_timeout"


def test_strike_timeout_without_opening_relocks() -> None:
    door = Door()
    door.step(0, AccessGranted())
    assert door.step(4.9, Tick()).commands == ()
    out = door.step(5, Tick())
    assert command(out).state is LOCKED
    assert only(out, "door.locked").data["reason"] == "unlock_timeout"
    assert out.next_deadline is None
    assert "door.forced_open" in types(door.step(5.5, DoorOpened()))


def test_opening_after_the_strike_time_without_a_tick_relocks_first_then_is_forced() -> None:
    door = Door()
    door.step(0, AccessGranted())
    out = door.step(5, DoorOpened())  # the strike time ends at 5: exclusive
    assert types(out) == ["door.locked", "door.opened", "door.forced_open"]
    assert command(out).state is LOCKED


def test_a_second_grant_while_unlocked_extends_the_unlock_without_a_second_event() -> None:
    door = Door()
    door.step(0, AccessGranted())
    out = door.step(3, AccessGranted(holder_id="bob"))
    assert command(out).duration_s == 5.0 and command(out).state is UNLOCKED
    assert out.events == ()
    assert out.next_deadline == at(8)
    assert door.step(5, Tick()).commands == ()
    assert command(door.step(8, Tick())).state is LOCKED


def test_relock_at_strike_end_while_open_does_not_make_it_forced() -> None:
    door = Door()
    door.step(0, AccessGranted())
    door.step(1, DoorOpened())
    out = door.step(5, Tick())
    assert types(out) == ["door.locked"]
    assert not door.machine.status.forced_open
    assert door.machine.status.door_open is True


# --- REX -------------------------------------------------------------------------------------------------------


def test_rex_unlocks_and_the_opening_is_not_forced() -> None:
    door = Door(rex_action=RexAction.UNLOCK)
    out = door.step(0, RexPressed())
    assert types(out) == ["door.rex", "door.unlocked"]
    assert only(out, "door.rex").data["action"] == "unlock"
    assert command(out).reason == "rex" and command(out).duration_s == 5.0
    out = door.step(1, DoorOpened())
    assert types(out) == ["door.opened"] and only(out, "door.opened").data["authorised_by"] == "rex"
    assert command(door.step(2, DoorClosed())).state is LOCKED


def test_rex_shunt_only_leaves_the_relay_and_shunts_the_dps() -> None:
    door = Door(rex_action=RexAction.SHUNT)
    out = door.step(0, RexPressed())
    assert types(out) == ["door.rex"] and out.commands == ()
    assert door.machine.status.passage_until == at(5)
    out = door.step(2, DoorOpened())
    assert types(out) == ["door.opened"] and only(out, "door.opened").data["authorised_by"] == "rex"
    out = door.step(3, DoorClosed())
    assert types(out) == ["door.closed"] and out.commands == ()
    # The shunt was used by that passage: opening again without a new REX is forced.
    assert "door.forced_open" in types(door.step(4, DoorOpened()))


def test_rex_shunt_ends_with_the_strike_time() -> None:
    door = Door(rex_action=RexAction.SHUNT)
    door.step(0, RexPressed())
    assert "door.forced_open" in types(door.step(5, DoorOpened()))


def test_opening_after_rex_is_supervised_for_held_open() -> None:
    door = Door(rex_action=RexAction.SHUNT)
    door.step(0, RexPressed())
    out = door.step(1, DoorOpened())
    assert out.next_deadline == at(21)


# --- held open ---------------------------------------------------------------------------------------------------


def test_held_open_pre_alarm_then_alarm_then_restored() -> None:
    door = Door()
    door.step(0, AccessGranted())
    out = door.step(1, DoorOpened())
    assert out.next_deadline == at(5)  # the relock comes first
    out = door.step(5, Tick())
    assert types(out) == ["door.locked"]
    assert out.next_deadline == at(21)  # held-open time counts from the opening at 1
    assert door.step(20.9, Tick()).events == ()
    out = door.step(21, Tick())
    warning = only(out, "door.held_open")
    assert warning.severity is Severity.WARNING
    assert warning.data == {"door": DOOR, "stage": "pre_alarm", "open_s": 20.0, "limit_s": 30.0}
    assert out.next_deadline == at(31)
    assert door.machine.status.held_open is HeldOpenStage.PRE_ALARM
    out = door.step(31, Tick())
    alarm = only(out, "door.held_open")
    assert alarm.severity is Severity.ALARM and alarm.data["stage"] == "alarm"
    assert out.next_deadline is None
    assert door.step(100, Tick()).events == ()  # raised once
    out = door.step(120, DoorClosed())
    assert types(out) == ["door.closed", "door.restored"]
    assert only(out, "door.restored").data["after"] == "door.held_open"


def test_closing_after_only_the_pre_alarm_is_restored_too() -> None:
    door = Door()
    door.step(0, AccessGranted())
    door.step(1, DoorOpened())
    door.step(21, Tick())
    assert types(door.step(22, DoorClosed())) == ["door.closed", "door.restored"]


def test_closing_in_time_raises_nothing() -> None:
    door = Door()
    door.step(0, AccessGranted())
    door.step(1, DoorOpened())
    door.step(5, Tick())
    out = door.step(20.9, DoorClosed())
    assert types(out) == ["door.closed"]
    assert out.next_deadline is None


def test_a_late_tick_raises_both_stages_in_order() -> None:
    door = Door()
    door.step(0, AccessGranted())
    door.step(1, DoorOpened())
    out = door.step(100, Tick())
    assert types(out) == ["door.locked", "door.held_open", "door.held_open"]
    assert [event.data["stage"] for event in out.events[1:]] == ["pre_alarm", "alarm"]


def test_without_a_pre_alarm_the_alarm_comes_alone() -> None:
    door = Door(held_open_pre_alarm_s=0)
    door.step(0, AccessGranted())
    door.step(1, DoorOpened())
    assert door.step(5, Tick()).next_deadline == at(31)
    out = door.step(31, Tick())
    assert [event.data["stage"] for event in out.events] == ["alarm"]


# --- extended unlock (accessibility) -----------------------------------------------------------------------------


def test_extended_grant_gets_the_extended_unlock_and_held_open_times() -> None:
    door = Door()
    out = door.step(0, AccessGranted(holder_id="wheelchair-user", extended=True))
    assert command(out).duration_s == 15.0
    assert out.next_deadline == at(15)
    door.step(10, DoorOpened())  # later than a normal strike would have allowed: still not forced
    assert not door.machine.status.forced_open
    assert door.step(15, Tick()).next_deadline == at(60)  # 10 + 60 - 10
    assert only(door.step(60, Tick()), "door.held_open").data["stage"] == "pre_alarm"
    assert only(door.step(70, Tick()), "door.held_open").data == {
        "door": DOOR,
        "stage": "alarm",
        "open_s": 60.0,
        "limit_s": 60.0,
    }


def test_normal_grant_opening_after_five_seconds_is_forced() -> None:
    door = Door()
    door.step(0, AccessGranted())
    assert "door.forced_open" in types(door.step(10, DoorOpened()))


# --- remote unlock ---------------------------------------------------------------------------------------------


def test_remote_unlock_is_momentary() -> None:
    door = Door()
    out = door.step(0, RemoteUnlock(requested_by="platform:manager-7"))
    assert command(out).reason == "remote" and command(out).duration_s == 5.0
    assert only(out, "door.unlocked").data["by"] == "platform:manager-7"
    assert types(door.step(1, DoorOpened())) == ["door.opened"]
    assert command(door.step(2, DoorClosed())).state is LOCKED


def test_remote_unlock_times_out() -> None:
    door = Door()
    door.step(0, RemoteUnlock(extended=True))
    assert door.step(14, Tick()).commands == ()
    assert command(door.step(15, Tick())).state is LOCKED


# --- scheduled unlock windows ------------------------------------------------------------------------------------


def test_schedule_window_keeps_the_door_unlocked_until_it_ends() -> None:
    door = Door()
    out = door.step(0, ScheduleWindowStarted(ends_at=at(3600)))
    unlock = command(out)
    assert (unlock.state, unlock.reason, unlock.duration_s) == (UNLOCKED, "schedule", None)
    assert only(out, "door.unlocked").data["until"] is None
    assert out.next_deadline == at(3600)
    assert door.machine.status.free_passage
    out = door.step(10, DoorOpened())
    assert only(out, "door.opened").data["authorised_by"] == "schedule"
    assert out.next_deadline == at(3600)  # free passage is not supervised for held open
    assert door.step(100, DoorClosed()).commands == ()  # closing does not end a schedule window
    assert door.step(3599, Tick()).commands == ()
    out = door.step(3600, Tick())
    assert command(out).state is LOCKED and only(out, "door.locked").data["reason"] == "schedule_end"
    assert door.machine.schedule_update_due(at(3600))
    assert out.next_deadline is None  # due now: the caller asks the schedule, not the clock


def test_schedule_end_with_the_door_open_starts_the_held_open_time() -> None:
    door = Door()
    door.step(0, ScheduleWindowStarted(ends_at=at(100)))
    door.step(50, DoorOpened())
    out = door.step(100, Tick())
    assert types(out) == ["door.locked"]
    assert out.next_deadline == at(120)  # counted from the window's end, not from the opening
    assert not door.machine.status.forced_open
    assert door.step(119, Tick()).events == ()
    assert [event.data["stage"] for event in door.step(130, Tick()).events] == ["pre_alarm", "alarm"]


def test_schedule_window_ended_input_locks_and_asks_for_a_recheck() -> None:
    door = Door()
    door.step(0, ScheduleWindowStarted(ends_at=None))
    assert door.outputs[-1].next_deadline is None
    out = door.step(50, ScheduleWindowEnded(recheck_at=at(500)))
    assert command(out).state is LOCKED and only(out, "door.locked").data["reason"] == "schedule_end"
    assert out.next_deadline == at(500)
    assert not door.machine.schedule_update_due(at(499))
    assert door.machine.schedule_update_due(at(500))


def test_schedule_renewed_at_its_end_does_not_blip_the_lock() -> None:
    door = Door()
    door.step(0, ScheduleWindowStarted(ends_at=at(100)))
    out = door.step(100, ScheduleWindowStarted(ends_at=at(200)))
    assert out.commands == () and out.events == ()
    assert out.next_deadline == at(200)


def test_a_stale_schedule_window_does_not_unlock() -> None:
    door = Door()
    out = door.step(100, ScheduleWindowStarted(ends_at=at(100)))
    assert out.commands == ()
    assert not door.machine.status.schedule_open
    assert door.machine.schedule_update_due(at(100))  # so the caller asks the schedule again


def test_grant_inside_a_schedule_window_keeps_free_passage() -> None:
    door = Door()
    door.step(0, ScheduleWindowStarted(ends_at=at(100)))
    out = door.step(10, AccessGranted())
    assert out.commands == ()
    door.step(98, AccessGranted())  # its unlock outlasts the window by 3 s
    out = door.step(100, Tick())
    assert command(out).state is UNLOCKED and command(out).duration_s == 3.0
    assert command(door.step(103, Tick())).state is LOCKED


# --- lockdown ----------------------------------------------------------------------------------------------------


def test_lockdown_locks_at_once_and_cancels_a_running_unlock() -> None:
    door = Door()
    door.step(0, AccessGranted())
    out = door.step(1, LockdownStarted())
    assert command(out).state is LOCKED and only(out, "door.locked").data["reason"] == "lockdown"
    assert door.machine.status.lockdown
    assert out.next_deadline is None


def test_lockdown_suspends_the_schedule_until_it_ends() -> None:
    door = Door()
    door.step(0, LockdownStarted())
    assert door.step(1, ScheduleWindowStarted(ends_at=at(1000))).commands == ()
    out = door.step(2, LockdownEnded())
    assert command(out).state is UNLOCKED and command(out).reason == "schedule"
    assert command(door.step(3, LockdownStarted())).state is LOCKED  # and lockdown mid-window locks again


def test_lockdown_follows_override_grants_and_lets_people_out() -> None:
    door = Door()
    door.step(0, LockdownStarted())
    # decide() grants only lockdown-override holders here; the door carries out what it is given.
    assert command(door.step(1, AccessGranted(holder_id="erin"))).state is UNLOCKED
    assert command(door.step(6, Tick())).state is LOCKED
    assert command(door.step(10, RexPressed())).state is UNLOCKED  # egress is never blocked


def test_lockdown_refuses_remote_unlock_without_override() -> None:
    door = Door()
    door.step(0, LockdownStarted())
    out = door.step(1, RemoteUnlock(requested_by="intercom"))
    assert out.commands == ()
    refused = only(out, "door.unlock_refused")
    assert refused.data["reason"] == "lockdown" and refused.severity is Severity.WARNING
    out = door.step(2, RemoteUnlock(requested_by="security", override_lockdown=True))
    assert command(out).state is UNLOCKED


def test_a_repeated_lockdown_does_not_cancel_an_override_unlock() -> None:
    door = Door()
    door.step(0, LockdownStarted())
    door.step(1, AccessGranted(holder_id="erin"))
    assert door.step(2, LockdownStarted()).commands == ()
    assert door.relay is UNLOCKED


# --- time ----------------------------------------------------------------------------------------------------


def test_a_clock_step_back_does_not_stretch_an_unlock() -> None:
    door = Door()
    door.step(100, AccessGranted())
    out = door.step(50, Tick())  # the wall clock went back 50 s
    assert out.next_deadline == at(55)
    assert door.machine.status.relay_until == at(55)
    assert command(door.step(55, Tick())).state is LOCKED


def test_a_clock_step_back_moves_the_held_open_timer_too() -> None:
    door = Door()
    door.step(0, AccessGranted())
    door.step(1, DoorOpened())
    door.step(5, Tick())
    assert door.step(2, Tick()).next_deadline == at(18)


def test_naive_times_are_rejected() -> None:
    machine = DoorMachine(door_settings())
    with pytest.raises(ValueError, match="timezone-aware"):
        machine.apply(Tick(), datetime(2026, 3, 2, 9))


def test_unknown_inputs_are_rejected() -> None:
    machine = DoorMachine(door_settings())
    with pytest.raises(TypeError, match="not a door input"):
        machine.apply("open sesame", at(0))  # type: ignore[arg-type]


# --- events fit the event contract -----------------------------------------------------------------------------


def test_every_event_makes_a_valid_edge_event() -> None:
    door = Door(door_open=True)
    door.step(1, DoorClosed())
    door.step(2, DoorOpened())
    door.step(3, RexPressed())
    door.step(4, LockdownStarted())
    door.step(5, RemoteUnlock())
    door.step(6, LockdownEnded())
    door.step(7, AccessGranted())
    door.step(100, DoorClosed())
    make = EventFactory(site="s1", controller="c1")
    seen = set()
    for out in door.outputs:
        for event in out.events:
            assert event.source == DOOR and event.data["door"] == DOOR
            made = make(event.type, event.source, dict(event.data), event.severity)
            assert made.model_dump(mode="json")["data"] == dict(event.data)  # plain JSON data
            seen.add(event.type)
    expected = {"door.opened", "door.closed", "door.forced_open", "door.restored", "door.rex", "door.unlock_refused"}
    assert expected <= seen


# --- settings -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"extended_unlock_s": 3}, "extended_unlock_s"),
        ({"extended_held_open_s": 20}, "extended_held_open_s"),
        ({"held_open_pre_alarm_s": 30}, "held_open_pre_alarm_s"),
        ({"strike_s": 0}, "strike_s"),
        ({"lock_mode": "fail_open"}, "lock_mode"),
        ({"rex_action": "wave"}, "rex_action"),
        ({"door_id": "bad id"}, "door_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_inconsistent_settings_are_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        door_settings(**overrides)


def test_settings_defaults_match_the_site_config_default() -> None:
    settings = DoorSettings(door_id="front")
    assert settings.lock_mode is LockMode.FAIL_SECURE  # edge.config.DoorConfig's default
    assert settings.relock_on_close and settings.rex_action is RexAction.UNLOCK


# --- purity: rules imports nothing of edge/drivers/vision but the event model, and reads no clock --------------


def test_the_door_package_does_no_io_and_reads_no_clock() -> None:
    import ast
    from pathlib import Path

    import rules.door

    allowed = ("__future__", "collections.abc", "dataclasses", "datetime", "enum", "typing", "zoneinfo", "pydantic")
    allowed_internal = ("edge.events", "rules.access", "rules.door")
    package = Path(rules.door.__file__).parent
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    assert name in allowed or name.startswith(allowed_internal), f"{path.name} imports {name}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("now", "utcnow", "today", "sleep", "monotonic"), f"{path.name}: .{node.attr}"
