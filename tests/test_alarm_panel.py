"""The alarm panel's state machine under a fake clock (rules.alarm: no I/O, no asyncio).

A small compound: partition `fence` (the manager's perimeter: beams in a cross-zone pair, a gate
contact on entry/exit, a fire zone, a panic button) and partition `home-12` (apartment 12: front
door entry/exit, hall motion follower, living-room motion instant, a tamper zone). Sirens: a Modbus
coil for both, a Zigbee siren for home-12 only.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from rules.access import PinHasher
from rules.alarm import STATES, AlarmSection, Output, Panel, SirenRequest
from rules.alarm.config import ZoneConfig

HASHER = PinHasher(b"alarm-test-key-0123456789")
T0 = 1_800_000_000.0
MANAGER, RESIDENT, DURESS, GUEST = "1357", "2468", "9999", "4444"


def zigbee(device: str) -> dict[str, str]:
    return {"device": device, "point": "zone"}


def section(**changes: Any) -> AlarmSection:
    doc: dict[str, Any] = {
        "partitions": [
            {"id": "fence", "entry_delay_s": 20, "exit_delay_s": 30, "siren_s": 120},
            {"id": "home-12", "apartment": "12", "entry_delay_s": 15, "exit_delay_s": 10, "siren_s": 60},
        ],
        "zones": [
            {"id": "beam-a", "type": "perimeter", "partition": "fence", "source": {"device": "io-1", "point": "di0"}},
            {"id": "beam-b", "type": "perimeter", "partition": "fence", "source": {"device": "io-1", "point": "di1"}},
            {"id": "gate", "type": "entry_exit", "partition": "fence", "source": {"device": "io-1", "point": "di2"}},
            {"id": "plant-smoke", "type": "fire", "partition": "fence", "source": {"device": "io-1", "point": "di3"}},
            {"id": "guard-panic", "type": "panic", "partition": "fence", "silent": True,
             "source": {"device": "io-1", "point": "di4"}},
            {"id": "front-door", "type": "entry_exit", "partition": "home-12", "source": zigbee("zb-door")},
            {"id": "hall", "type": "follower", "partition": "home-12", "source": zigbee("zb-hall")},
            {"id": "living", "type": "instant", "partition": "home-12", "source": zigbee("zb-living")},
            {"id": "window", "type": "perimeter", "partition": "home-12", "modes": ["away", "night"],
             "source": {"device": "zb-window", "point": "zone"}},
            {"id": "box", "type": "tamper", "partition": "home-12", "source": {"device": "io-2", "point": "di0"}},
        ],
        "sirens": [
            {"id": "yard", "output": {"device": "io-1", "point": "do0"}},
            {"id": "flat-siren", "zigbee": "zb-siren", "partitions": ["home-12"]},
        ],
        "codes": [
            {"user": "manager", "code_hash": HASHER.pin_only(MANAGER), "partitions": ["fence", "home-12"]},
            {"user": "resident", "code_hash": HASHER.pin_only(RESIDENT), "partitions": ["home-12"]},
            {"user": "resident", "code_hash": HASHER.pin_only(DURESS), "partitions": ["home-12"], "duress": True},
            {"user": "guest", "code_hash": HASHER.pin_only(GUEST), "partitions": ["home-12"], "actions": ["arm"]},
        ],
        "cross_zones": [{"id": "fence-beams", "zones": ["beam-a", "beam-b"], "window_s": 10}],
        "max_code_attempts": 3,
        "lockout_s": 60,
    }
    doc.update(changes)
    return AlarmSection.model_validate(doc)


def panel(**changes: Any) -> Panel:
    return Panel(section(**changes), HASHER.lookup_key)


def types(out: Output) -> list[str]:
    return [e.type for e in out.events]


def event(out: Output, type: str) -> dict[str, Any]:
    found = [e.data for e in out.events if e.type == type]
    assert found, f"no {type} in {types(out)}"
    return found[0]


def armed(p: Panel, partition: str, mode: str = "away", code: str = MANAGER, at: float = T0) -> float:
    """Arm and let the exit delay run out; returns the time it is armed at."""
    result = p.arm(partition, mode, code, at)
    assert result.ok, result.reason
    end = at + p.partitions[partition].exit_delay_s
    out = p.tick(end)
    assert p.partitions[partition].state == f"armed_{mode}", types(out)
    return end


def sirens(out: Output) -> dict[str, bool]:
    return {r.siren: r.on for r in out.sirens}


# ---- arming ----------------------------------------------------------------------------------------


def test_exit_delay_then_armed_with_events_carrying_partition_and_apartment() -> None:
    p = panel()
    result = p.arm("home-12", "away", RESIDENT, T0, origin="api:resident")
    assert result.ok and result.user == "resident"
    assert p.partitions["home-12"].state == "arming"
    arming = event(result.output, "alarm.arming")
    assert arming["partition"] == "home-12" and arming["apartment"] == "12" and arming["exit_delay_s"] == 10
    assert p.next_deadline() == T0 + 10
    assert p.tick(T0 + 9.9).events == []
    out = p.tick(T0 + 10)
    assert types(out) == ["alarm.armed"] and out.changed
    assert p.partitions["home-12"].state == "armed_away"
    assert p.next_deadline() is None


def test_no_exit_delay_arms_at_once() -> None:
    p = panel(partitions=[{"id": "fence", "exit_delay_s": 0}, {"id": "home-12", "apartment": "12"}])
    result = p.arm("fence", "night", MANAGER, T0)
    assert types(result.output) == ["alarm.armed"] and p.partitions["fence"].state == "armed_night"


def test_arming_refused_with_a_reason_while_a_zone_is_open() -> None:
    p = panel()
    p.input_changed("zb-living", "zone", "active", T0)
    result = p.arm("home-12", "away", RESIDENT, T0)
    assert not result.ok and result.reason == "zones_open" and result.detail == {"zones": ["living"]}
    assert p.partitions["home-12"].state == "disarmed"
    assert event(result.output, "alarm.request_refused")["reason"] == "zones_open"
    # In home mode interior motion is not watched: the open living room does not stop it.
    assert p.arm("home-12", "home", RESIDENT, T0).ok


def test_forced_arming_bypasses_open_zones_with_a_warning_until_disarmed() -> None:
    p = panel()
    p.input_changed("zb-window", "zone", "active", T0)
    result = p.arm("home-12", "away", RESIDENT, T0, force=True)
    assert result.ok
    bypassed = event(result.output, "zone.bypassed")
    assert bypassed["zone"] == "window" and bypassed["automatic"] is True
    assert [e.severity for e in result.output.events if e.type == "zone.bypassed"] == ["warning"]
    assert event(result.output, "alarm.arming")["bypassed"] == ["window"]
    armed_at = T0 + 10
    p.tick(armed_at)
    # The bypassed window opening and closing again raises no alarm ...
    p.input_changed("zb-window", "zone", "normal", armed_at + 1)
    out = p.input_changed("zb-window", "zone", "active", armed_at + 2)
    assert "alarm.triggered" not in types(out) and p.partitions["home-12"].state == "armed_away"
    # ... and the bypass ends with the arming.
    disarmed = p.disarm("home-12", RESIDENT, armed_at + 3)
    assert event(disarmed.output, "alarm.disarmed")["unbypassed"] == ["window"]
    assert not p.zones["window"].bypassed


def test_a_fire_zone_cannot_be_bypassed_even_by_force() -> None:
    p = panel()
    p.input_changed("io-1", "di3", "fault", T0)
    result = p.arm("fence", "away", MANAGER, T0, force=True)
    assert not result.ok and result.reason == "not_bypassable"
    assert not p.bypass("fence", "plant-smoke", MANAGER, T0).ok


def test_a_siren_device_going_offline_is_a_trouble_of_the_partitions_it_sounds_for() -> None:
    p = panel()
    out = p.device_trouble("zb-siren", "offline", True, T0)
    assert [(e.data["partition"], e.data["zones"]) for e in out.events] == [("home-12", [])]
    assert p.arm("home-12", "away", RESIDENT, T0).ok  # not a zone device: arming is not refused
    out = p.device_trouble("io-1", "offline", True, T0)  # zones of the fence and the shared siren
    assert sorted(e.data["partition"] for e in out.events) == ["fence", "home-12"]


def test_trouble_refuses_arming_unless_forced_and_trouble_during_arming_is_reported() -> None:
    p = panel()
    out = p.device_trouble("zb-hall", "offline", True, T0)
    trouble = event(out, "alarm.trouble")
    assert trouble["partition"] == "home-12" and trouble["zones"] == ["hall"] and trouble["active"] is True
    refused = p.arm("home-12", "away", RESIDENT, T0)
    assert refused.reason == "trouble" and refused.detail["troubles"] == [{"device": "zb-hall", "kind": "offline"}]
    forced = p.arm("home-12", "away", RESIDENT, T0, force=True)
    assert forced.ok and event(forced.output, "alarm.arming")["troubles"]
    # A trouble that starts during the exit delay is reported and the arming goes on.
    during = p.device_trouble("zb-living", "battery", True, T0 + 5)
    assert event(during, "alarm.trouble")["kind"] == "battery"
    assert p.partitions["home-12"].state == "arming"
    p.tick(T0 + 10)
    assert p.partitions["home-12"].state == "armed_away"
    # Repeated reports do not repeat the event; the restore does.
    assert p.device_trouble("zb-living", "battery", True, T0 + 11).events == []
    assert event(p.device_trouble("zb-living", "battery", False, T0 + 12), "alarm.trouble")["active"] is False


# ---- delays ------------------------------------------------------------------------------------------


def test_entry_delay_then_alarm_with_sirens_for_the_siren_time_then_back_to_armed() -> None:
    p = panel()
    at = armed(p, "home-12")
    out = p.input_changed("zb-door", "zone", "active", at + 1)
    assert types(out) == ["zone.opened", "alarm.pending"]
    assert event(out, "alarm.pending")["entry_delay_s"] == 15
    assert p.partitions["home-12"].state == "pending" and out.sirens == []
    out = p.tick(at + 16)
    assert p.partitions["home-12"].state == "triggered"
    triggered = event(out, "alarm.triggered")
    assert triggered["zones"] == ["front-door"] and triggered["apartment"] == "12"
    assert sirens(out) == {"yard": True, "flat-siren": True}
    assert {r.duration_s for r in out.sirens} == {60}
    out = p.tick(at + 16 + 60)
    assert sirens(out) == {"yard": False, "flat-siren": False}
    assert event(out, "alarm.restored")["state"] == "armed_away"
    assert p.partitions["home-12"].state == "armed_away"
    # Alarm memory stays until the next arming.
    assert [m["zone"] for m in p.partition_status("home-12")["alarm_memory"]] == ["front-door"]
    disarmed = p.disarm("home-12", RESIDENT, at + 100)
    assert [m["zone"] for m in event(disarmed.output, "alarm.disarmed")["alarm_memory"]] == ["front-door"]
    p.input_changed("zb-door", "zone", "normal", at + 150)
    assert p.arm("home-12", "away", RESIDENT, at + 200).ok
    assert p.partition_status("home-12")["alarm_memory"] == []


def test_disarm_during_entry_delay_prevents_the_alarm() -> None:
    p = panel()
    at = armed(p, "home-12")
    p.input_changed("zb-door", "zone", "active", at + 1)
    result = p.disarm("home-12", RESIDENT, at + 5)
    assert result.ok and event(result.output, "alarm.disarmed")["was"] == "pending"
    assert p.tick(at + 100).events == [] and p.partitions["home-12"].state == "disarmed"


def test_zone_restoring_during_entry_delay_does_not_cancel_it() -> None:
    p = panel()
    at = armed(p, "home-12")
    p.input_changed("zb-door", "zone", "active", at + 1)
    out = p.input_changed("zb-door", "zone", "normal", at + 2)
    assert types(out) == ["zone.closed"] and p.partitions["home-12"].state == "pending"
    assert "alarm.triggered" in types(p.tick(at + 16))


def test_follower_waits_during_entry_delay_but_trips_alone() -> None:
    p = panel()
    at = armed(p, "home-12")
    p.input_changed("zb-door", "zone", "active", at + 1)
    out = p.input_changed("zb-hall", "zone", "active", at + 2)
    assert p.partitions["home-12"].state == "pending" and "alarm.triggered" not in types(out)
    p.disarm("home-12", RESIDENT, at + 3)
    p.input_changed("zb-hall", "zone", "normal", at + 4)
    p.input_changed("zb-door", "zone", "normal", at + 4)
    at = armed(p, "home-12", at=at + 5)
    out = p.input_changed("zb-hall", "zone", "active", at + 1)
    assert event(out, "alarm.triggered")["zones"] == ["hall"]


def test_instant_zone_during_exit_delay_is_an_alarm_but_the_exit_route_is_not() -> None:
    p = panel()
    p.arm("home-12", "away", RESIDENT, T0)
    out = p.input_changed("zb-door", "zone", "active", T0 + 1)
    out2 = p.input_changed("zb-hall", "zone", "active", T0 + 2)
    assert "alarm.triggered" not in types(out) + types(out2) and p.partitions["home-12"].state == "arming"
    p.input_changed("zb-door", "zone", "normal", T0 + 3)
    p.input_changed("zb-hall", "zone", "normal", T0 + 3)
    out = p.input_changed("zb-living", "zone", "active", T0 + 4)
    assert event(out, "alarm.triggered")["zones"] == ["living"]
    assert p.partitions["home-12"].return_to == "armed_away"


def test_exit_route_still_open_when_the_exit_delay_ends_starts_the_entry_delay() -> None:
    p = panel()
    p.arm("home-12", "away", RESIDENT, T0)
    p.input_changed("zb-door", "zone", "active", T0 + 2)
    out = p.tick(T0 + 10)
    assert types(out) == ["alarm.armed", "alarm.pending"] and p.partitions["home-12"].state == "pending"


def test_mode_enablement_home_mode_ignores_interior_and_unlisted_zones() -> None:
    p = panel()
    at = armed(p, "home-12", "home")
    assert "alarm.triggered" not in types(p.input_changed("zb-living", "zone", "active", at + 1))
    assert "alarm.triggered" not in types(p.input_changed("zb-window", "zone", "active", at + 2))  # away/night only
    assert "alarm.pending" in types(p.input_changed("zb-door", "zone", "active", at + 3))


# ---- 24h zones, tamper, sirens ------------------------------------------------------------------


def test_fire_alarms_while_disarmed_and_returns_to_disarmed() -> None:
    p = panel()
    out = p.input_changed("io-1", "di3", "active", T0)
    triggered = next(e for e in out.events if e.type == "alarm.triggered")
    assert triggered.data["kind"] == "fire" and triggered.severity == "critical"
    assert sirens(out) == {"yard": True}  # the flat's siren sounds for home-12 only
    out = p.tick(T0 + 120)
    assert p.partitions["fence"].state == "disarmed" and sirens(out) == {"yard": False}


def test_silent_panic_raises_the_alarm_without_sirens() -> None:
    p = panel()
    out = p.input_changed("io-1", "di4", "active", T0)
    assert event(out, "alarm.triggered")["silent"] is True and out.sirens == []
    assert p.partitions["fence"].state == "triggered"


def test_tamper_is_trouble_when_disarmed_and_alarm_when_armed() -> None:
    p = panel()
    out = p.input_changed("zb-living", "zone", "tamper", T0)
    assert types(out) == ["zone.tamper", "alarm.trouble"]
    out = p.input_changed("zb-living", "zone", "normal", T0 + 1)
    assert event(out, "alarm.trouble")["active"] is False
    at = armed(p, "home-12", at=T0 + 2)
    out = p.input_changed("io-2", "di0", "active", at + 1)  # the tamper zone
    assert event(out, "alarm.triggered")["kind"] == "tamper"
    p.disarm("home-12", RESIDENT, at + 2)
    p.input_changed("io-2", "di0", "normal", at + 2)
    at = armed(p, "home-12", "home", at=at + 3)
    out = p.device_trouble("zb-door", "tamper", True, at + 1)  # the contact's enclosure
    assert types(out) == ["alarm.trouble", "alarm.triggered"]


def test_a_shared_siren_stays_on_while_any_of_its_partitions_is_in_alarm() -> None:
    p = panel()
    at = armed(p, "fence")
    armed(p, "home-12", at=at)
    out = p.input_changed("zb-living", "zone", "active", at + 10)  # home-12: siren 60 s
    assert sirens(out) == {"yard": True, "flat-siren": True}
    out = p.input_changed("io-1", "di2", "active", at + 20)  # fence: entry delay 20 s
    out = p.tick(at + 40)  # fence triggered: the yard siren is already on
    assert out.sirens == [] and p.partitions["fence"].state == "triggered"
    out = p.tick(at + 70)  # home-12's siren time is over; the fence's is not
    assert sirens(out) == {"flat-siren": False}
    out = p.tick(at + 160)
    assert sirens(out) == {"yard": False}


def test_disarm_in_alarm_stops_the_sirens() -> None:
    p = panel()
    at = armed(p, "home-12")
    p.input_changed("zb-living", "zone", "active", at + 1)
    out = p.disarm("home-12", RESIDENT, at + 2).output
    assert sirens(out) == {"yard": False, "flat-siren": False}
    assert event(out, "alarm.disarmed")["was"] == "triggered"


# ---- cross-zone -------------------------------------------------------------------------------


def test_cross_zone_needs_two_zones_within_the_window() -> None:
    p = panel()
    at = armed(p, "fence")
    out = p.input_changed("io-1", "di0", "active", at + 1)
    assert "alarm.unconfirmed" in types(out) and p.partitions["fence"].state == "armed_away"
    p.input_changed("io-1", "di0", "normal", at + 2)
    # The same zone again is no confirmation.
    assert "alarm.triggered" not in types(p.input_changed("io-1", "di0", "active", at + 3))
    out = p.input_changed("io-1", "di1", "active", at + 8)
    assert event(out, "alarm.triggered")["zones"] == ["beam-a", "beam-b"]
    assert event(out, "alarm.triggered")["cross_zone"] == "fence-beams"


def test_cross_zone_window_expires() -> None:
    p = panel()
    at = armed(p, "fence")
    p.input_changed("io-1", "di0", "active", at + 1)
    p.tick(at + 12)
    out = p.input_changed("io-1", "di1", "active", at + 12)
    assert "alarm.triggered" not in types(out) and "alarm.unconfirmed" in types(out)


# ---- codes --------------------------------------------------------------------------------------


def test_wrong_codes_lock_the_keypad_out_and_the_right_code_waits() -> None:
    p = panel()
    at = armed(p, "home-12")
    for attempt in (1, 2):
        result = p.disarm("home-12", "0000", at + attempt)
        assert result.reason == "wrong_code" and event(result.output, "alarm.code_rejected")["attempts"] == attempt
    result = p.disarm("home-12", "1111", at + 3)
    assert "alarm.code_lockout" in types(result.output)
    result = p.disarm("home-12", RESIDENT, at + 4)  # right code, but locked out
    assert result.reason == "locked_out" and p.partitions["home-12"].state == "armed_away"
    assert p.disarm("home-12", RESIDENT, at + 3 + 60).ok


def test_codes_are_checked_per_partition_and_action() -> None:
    p = panel()
    assert p.arm("fence", "away", RESIDENT, T0).reason == "not_permitted"
    assert p.arm("home-12", "away", GUEST, T0).ok
    assert p.disarm("home-12", GUEST, T0 + 1).reason == "not_permitted"
    assert p.partitions["home-12"].failures == 0  # a valid code is no guess
    for bad in ("", "12", "abcd", "123456789", "\uff11\uff12\uff13\uff14"):
        assert panel().disarm("home-12", bad, T0 + 2).reason == "wrong_code"


def test_duress_code_disarms_visibly_and_raises_a_silent_duress_event() -> None:
    p = panel()
    at = armed(p, "home-12")
    p.input_changed("zb-door", "zone", "active", at + 1)
    result = p.disarm("home-12", DURESS, at + 5)
    assert result.ok and p.partitions["home-12"].state == "disarmed"
    assert types(result.output) == ["alarm.disarmed", "alarm.duress"]
    duress = next(e for e in result.output.events if e.type == "alarm.duress")
    assert duress.severity == "critical" and duress.data["user"] == "resident"
    assert "duress" not in json.dumps(event(result.output, "alarm.disarmed"))
    assert result.output.sirens == []


def test_manual_bypass() -> None:
    p = panel()
    result = p.bypass("home-12", "living", RESIDENT, T0)
    assert result.ok and event(result.output, "zone.bypassed")["automatic"] is False
    p.input_changed("zb-living", "zone", "active", T0 + 1)
    assert p.arm("home-12", "away", RESIDENT, T0 + 2).ok  # the open zone is bypassed
    assert p.bypass("home-12", "beam-a", MANAGER, T0).reason == "unknown_zone"  # not this partition's


# ---- persistence ---------------------------------------------------------------------------------


def roundtrip(p: Panel, now: float) -> tuple[Panel, Output]:
    state = json.loads(json.dumps(p.to_state()))
    fresh = panel()
    return fresh, fresh.restore(state, now)


def test_restart_while_armed_comes_back_armed_without_sirens() -> None:
    p = panel()
    at = armed(p, "home-12")
    p.input_changed("zb-living", "zone", "active", at + 1)  # open at restart: no second alarm
    p.disarm("home-12", RESIDENT, at + 2)
    at = armed(p, "fence", at=at + 3)
    fresh, out = roundtrip(p, at + 5)
    assert fresh.partitions["fence"].state == "armed_away" and out.sirens == []
    assert fresh.zones["living"].state == "active"
    assert fresh.input_changed("zb-living", "zone", "active", at + 6).events == []


def test_restart_in_alarm_resumes_the_sirens_for_the_time_left_only() -> None:
    p = panel()
    at = armed(p, "home-12")
    p.input_changed("zb-living", "zone", "active", at + 1)
    fresh, out = roundtrip(p, at + 21)
    assert fresh.partitions["home-12"].state == "triggered"
    assert out.sirens == [SirenRequest("yard", True, 40.0), SirenRequest("flat-siren", True, 40.0)]
    assert sirens(fresh.tick(at + 61)) == {"yard": False, "flat-siren": False}
    # Down past the siren time: back armed, no siren at all.
    fresh, out = roundtrip(p, at + 200)
    assert fresh.partitions["home-12"].state == "armed_away" and out.sirens == []
    assert types(out) == ["alarm.restored"]


def test_restore_ignores_unknown_partitions_states_and_versions() -> None:
    p = panel()
    bad = {"version": 1, "partitions": {"gone": {"state": "armed_away"}, "fence": {"state": "exploded"},
                                         "home-12": {"state": "armed_away", "mode": None}},
           "zones": {"living": {"state": "weird"}}}
    out = p.restore(bad, T0)
    assert p.partitions["fence"].state == "disarmed" and p.partitions["home-12"].state == "disarmed"
    assert out.sirens == [] and p.zones["living"].state == "normal"
    assert p.restore({"version": 99}, T0).events == []


# ---- config ------------------------------------------------------------------------------------------


def test_config_cross_checks_name_the_field() -> None:
    s = section(
        zones=[
            {"id": "a", "partition": "nowhere", "source": {"device": "io-1", "point": "di0"}},
            {"id": "b", "partition": "fence", "source": {"device": "io-1", "point": "di0"}},
        ],
        cross_zones=[{"id": "g", "zones": ["a", "zz"]}],
        codes=[{"user": "x", "code_hash": HASHER.pin_only("1234"), "partitions": ["fence"]},
               {"user": "y", "code_hash": HASHER.pin_only("1234"), "partitions": ["attic"]}],
    )
    problems = dict(s.problems())
    assert problems[("zones", 0, "partition")] == "no partition 'nowhere' in alarm.partitions"
    assert "already zone 'a'" in problems[("zones", 1, "source")]
    assert problems[("cross_zones", 0, "zones", 1)] == "no zone 'zz' in alarm.zones"
    assert problems[("codes", 1, "code_hash")] == "the same code is given twice"
    assert ("codes", 1, "partitions", 0) in problems
    assert not section().problems()


@pytest.mark.parametrize("bad", [
    {"sirens": [{"id": "s"}]},
    {"sirens": [{"id": "s", "zigbee": "z", "output": {"device": "d", "point": "do0"}}]},
    {"codes": [{"user": "u", "code_hash": "1234", "partitions": ["fence"]}]},
    {"zones": [{"id": "f", "type": "fire", "partition": "fence", "modes": ["away"],
                "source": {"device": "d", "point": "di0"}}]},
    {"zones": [{"id": "f", "type": "laser", "partition": "fence", "source": {"device": "d", "point": "di0"}}]},
    {"partitions": [{"id": "p", "surprise": 1}]},
])
def test_config_rejects_bad_sections(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        section(**bad)


def test_zone_defaults() -> None:
    zone = ZoneConfig.model_validate({"id": "z", "partition": "p", "source": {"device": "d", "point": "di0"}})
    assert zone.type == "instant" and zone.ha_device_class == "motion"
    assert zone.enabled_in("away") and not zone.enabled_in("home")


# ---- properties ---------------------------------------------------------------------------------------

ZONE_INPUTS = [(z.source.device, z.source.point) for z in section().zones]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("input"), st.sampled_from(ZONE_INPUTS),
                  st.sampled_from(["normal", "active", "tamper", "fault"])),
        st.tuples(st.just("arm"), st.sampled_from(["fence", "home-12"]),
                  st.sampled_from(["away", "home", "night", "vacation"]), st.sampled_from([MANAGER, "0000"]),
                  st.booleans()),
        st.tuples(st.just("disarm"), st.sampled_from(["fence", "home-12"]), st.sampled_from([MANAGER, DURESS, "0"])),
        st.tuples(st.just("trouble"), st.sampled_from(["io-1", "zb-door", "zb-siren"]),
                  st.sampled_from(["offline", "battery", "tamper"]), st.booleans()),
        st.tuples(st.just("wait"), st.floats(0, 200)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_any_sequence_keeps_the_panel_consistent(seq: list[tuple[Any, ...]]) -> None:
    """Whatever happens: states stay HA's, sirens sound exactly while an audible alarm runs, the
    persisted state restores to the same panel, and every event carries its partition."""
    p = panel()
    now = T0
    on: set[str] = set()
    for step in seq:
        kind = step[0]
        if kind == "input":
            out = p.input_changed(step[1][0], step[1][1], step[2], now)
        elif kind == "arm":
            out = p.arm(step[1], step[2], step[3], now, force=step[4]).output
        elif kind == "disarm":
            out = p.disarm(step[1], step[2], now).output
        elif kind == "trouble":
            out = p.device_trouble(step[1], step[2], step[3], now)
        else:
            now += step[1]
            out = p.tick(now)
        for r in out.sirens:
            assert (r.siren in on) != r.on, "a siren request must change something"
            (on.add if r.on else on.discard)(r.siren)
        for e in out.events:
            assert e.data["partition"] in p.partitions
        for part in p.partitions.values():
            assert part.state in STATES and part.state != "disarming"
            if part.state in ("arming", "pending", "triggered"):
                assert part.deadline is not None
        audible = {s.id for s in p.config.sirens for part in p.partitions.values()
                   if part.state == "triggered" and part.audible and s.sounds_for(part.id)}
        assert on == audible
    fresh = panel()
    fresh.restore(json.loads(json.dumps(p.to_state())), now)
    assert fresh.to_state() == p.to_state()
