"""Call routing (rules.intercom) as pure logic with a fake clock: stages, answers, refusals, DND."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from edge.intercom_config import IntercomSection
from rules.intercom import (
    AppAnswer,
    AppHangUp,
    AppUnlock,
    CallCancelled,
    CallRequested,
    CallRouter,
    DeviceDown,
    DeviceUp,
    DndWindow,
    Output,
    PanelState,
    PanelUnlock,
    Ring,
    RoutingSettings,
    ShowState,
    Stage,
    StopRing,
    Tick,
    UnitAnswer,
    UnitDnd,
    UnitHangUp,
    UnitUnlock,
    UnlockDoor,
)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday, 20:00 in Shanghai


def settings(**over: object) -> RoutingSettings:
    base: dict[str, object] = {
        "apartments": {"1203": ("u1203a", "u1203b"), "1204": ("u1204",)},
        "guard_units": ("guard",),
        "directories": {"gate": {1: "1203"}},
        "unit_ring_s": 20,
        "app_ring_s": 30,
        "guard_ring_s": 30,
        "talk_s": 60,
        "unlock_grace_s": 10,
    }
    base.update(over)
    return RoutingSettings(**base)  # type: ignore[arg-type]


class Clock:
    def __init__(self, router: CallRouter) -> None:
        self.router = router
        self.now = T0

    def __call__(self, inp: object, after_s: float = 0.0) -> Output:
        self.now += timedelta(seconds=after_s)
        return self.router.apply(inp, self.now)  # type: ignore[arg-type]

    def until_deadline(self, out: Output) -> Output:
        assert out.next_deadline is not None
        self.now = out.next_deadline
        return self.router.apply(Tick(), self.now)


def make(**over: object) -> tuple[CallRouter, Clock]:
    router = CallRouter(settings(**over))
    for device in ("gate", "side", "u1203a", "u1203b", "u1204", "guard"):
        router.apply(DeviceUp(device), T0)
    return router, Clock(router)


def types(out: Output) -> list[str]:
    return [e.type for e in out.events]


def event(out: Output, type: str) -> dict[str, object]:
    found = [e for e in out.events if e.type == type]
    assert found, f"no {type} in {types(out)}"
    return dict(found[-1].data)


def start(clock: Clock, apartment: str = "1203", panel: str = "gate") -> tuple[Output, int, str]:
    out = clock(CallRequested(panel, apartment))
    ring = next(a for a in out.actions if isinstance(a, Ring))
    assert out.call_id is not None
    return out, ring.call_no, out.call_id


def test_call_rings_the_apartment_units_and_answer_starts_the_talk() -> None:
    router, clock = make()
    out, no, call_id = start(clock)
    assert ShowState("gate", no, PanelState.RINGING) in out.actions
    assert Ring(("u1203a", "u1203b"), no, "gate") in out.actions
    ringing = event(out, "intercom.ringing")
    assert ringing["stage"] == "units" and ringing["apartment"] == "1203" and ringing["call_id"] == call_id

    out = clock(UnitAnswer("u1203b", no), 3)
    assert event(out, "intercom.answered")["by"] == "u1203b"
    assert StopRing(("u1203a",), no, PanelState.ANSWERED) in out.actions  # the other unit stops
    assert ShowState("gate", no, PanelState.ANSWERED) in out.actions
    assert router.active["gate"].stage is Stage.TALK

    out = clock(UnitUnlock("u1203b", no), 2)
    assert UnlockDoor("gate", call_id, "1203", "u1203b", "indoor_unit") in out.actions
    assert event(out, "intercom.unlock")["call_id"] == call_id

    out = clock(UnitHangUp("u1203b", no), 5)
    ended = event(out, "intercom.ended")
    assert ended["reason"] == "hung_up" and ended["by"] == "u1203b"
    assert ShowState("gate", no, PanelState.ENDED) in out.actions
    assert "gate" not in router.active


def test_directory_button_calls_its_apartment_and_unknown_entry_is_refused() -> None:
    _, clock = make()
    out = clock(CallRequested("gate", entry=1))
    assert event(out, "intercom.ringing")["apartment"] == "1203"
    out = clock(CallRequested("side", entry=9))
    assert event(out, "intercom.ended")["reason"] == "unknown_apartment"
    assert not [a for a in out.actions if isinstance(a, Ring)]


def test_hang_up_while_ringing_is_a_rejection() -> None:
    _, clock = make()
    _, no, _ = start(clock)
    out = clock(UnitHangUp("u1203a", no), 1)
    assert event(out, "intercom.ended")["reason"] == "rejected"
    assert StopRing(("u1203b",), no, PanelState.REJECTED) in out.actions
    assert ShowState("gate", no, PanelState.REJECTED) in out.actions


def test_one_call_per_panel_and_per_apartment_else_busy() -> None:
    router, clock = make()
    _, no, call_id = start(clock)
    out = clock(CallRequested("gate", "1204"))
    assert event(out, "intercom.ended")["reason"] == "busy" and out.refused == "busy"
    busy = next(a for a in out.actions if isinstance(a, ShowState))
    assert busy.state is PanelState.BUSY and busy.call_no != no
    out = clock(CallRequested("side", "1203"))  # the apartment is already being called
    assert out.refused == "busy"
    assert router.active["gate"].id == call_id  # the running call is untouched


def test_no_answer_goes_to_the_app_then_the_guard_then_times_out() -> None:
    _, clock = make()
    out, no, call_id = start(clock)
    out = clock.until_deadline(out)
    assert clock.now == T0 + timedelta(seconds=20)
    assert event(out, "intercom.missed") == {
        "call_id": call_id, "call_no": no, "panel": "gate", "apartment": "1203", "stage": "units", "reason": "no_answer"
    }
    assert StopRing(("u1203a", "u1203b"), no, PanelState.TIMED_OUT) in out.actions
    app = event(out, "intercom.call")
    assert app["stage"] == "app" and app["answer_within_s"] == 30

    out = clock.until_deadline(out)
    assert event(out, "intercom.missed")["stage"] == "app"
    assert Ring(("guard",), no, "gate") in out.actions
    assert event(out, "intercom.ringing")["stage"] == "guard"

    out = clock.until_deadline(out)
    assert clock.now == T0 + timedelta(seconds=80)
    assert event(out, "intercom.ended")["reason"] == "no_answer"
    assert ShowState("gate", no, PanelState.TIMED_OUT) in out.actions
    assert StopRing(("guard",), no, PanelState.TIMED_OUT) in out.actions
    assert out.next_deadline is None


def test_app_answers_and_unlocks_and_the_guard_may_unlock_once_reached() -> None:
    _, clock = make()
    out, _no, call_id = start(clock)
    out = clock.until_deadline(out)
    refused = clock(AppAnswer(call_id, "1204", "bob"))
    assert refused.refused == "wrong_apartment" and not refused.events
    out = clock(AppAnswer(call_id, "1203", "alice"), 1)
    assert event(out, "intercom.answered")["by"] == "app:alice"
    out = clock(AppUnlock(call_id, "1203", "alice", "cmd-1"), 1)
    assert UnlockDoor("gate", call_id, "1203", "app:alice", "app") in out.actions
    out = clock(AppHangUp(call_id, "1203", "alice"), 1)
    assert event(out, "intercom.ended")["reason"] == "hung_up"

    # A second call reaches the guard, who answers and unlocks.
    out, no2, _call2 = start(clock, "1204")
    out = clock.until_deadline(out)
    out = clock.until_deadline(out)
    out = clock(UnitAnswer("guard", no2), 1)
    assert event(out, "intercom.answered")["origin"] == "guard"
    out = clock(UnitUnlock("guard", no2), 1)
    assert next(a for a in out.actions if isinstance(a, UnlockDoor)).origin == "guard"


def test_app_rejects_the_call() -> None:
    _, clock = make()
    out, no, call_id = start(clock)
    clock.until_deadline(out)
    out = clock(AppHangUp(call_id, "1203", "alice"), 1)
    assert event(out, "intercom.ended")["reason"] == "rejected"
    assert ShowState("gate", no, PanelState.REJECTED) in out.actions


def test_talk_timeout_ends_the_call_and_tells_the_unit() -> None:
    _, clock = make()
    _, no, _ = start(clock)
    out = clock(UnitAnswer("u1203a", no), 1)
    out = clock.until_deadline(out)
    assert event(out, "intercom.ended")["reason"] == "talk_timeout"
    assert StopRing(("u1203a",), no, PanelState.ENDED) in out.actions
    assert ShowState("gate", no, PanelState.ENDED) in out.actions


def test_visitor_cancels_at_the_panel() -> None:
    _, clock = make()
    _, no, _ = start(clock)
    out = clock(CallCancelled("gate"), 2)
    assert event(out, "intercom.ended")["reason"] == "visitor_cancelled"
    assert StopRing(("u1203a", "u1203b"), no, PanelState.ENDED) in out.actions


def refusal(out: Output) -> str:
    assert not [a for a in out.actions if isinstance(a, UnlockDoor)], "a refused unlock opened the door"
    data = event(out, "intercom.unlock_refused")
    assert out.refused == data["reason"]
    return str(data["reason"])


def test_unlock_from_another_apartment_is_refused_and_audited() -> None:
    _, clock = make()
    _, no, call_id = start(clock)
    assert refusal(clock(UnitUnlock("u1204", no), 1)) == "wrong_apartment"
    assert refusal(clock(AppUnlock(call_id, "1204", "mallory", "x1"), 1)) == "wrong_apartment"
    assert refusal(clock(UnitUnlock("guard", no), 1)) == "wrong_apartment"  # the guard was never rung
    assert refusal(clock(UnitUnlock("u1203a", 999), 1)) == "no_call"
    assert refusal(clock(AppUnlock("call-404", "1203", "alice", "x2"), 1)) == "no_call"


def test_unlock_within_grace_then_refused_after_it() -> None:
    _, clock = make()
    _, no, _call_id = start(clock)
    clock(UnitAnswer("u1203a", no), 1)
    clock(UnitHangUp("u1203a", no), 5)
    out = clock(UnitUnlock("u1203a", no), 9.9)  # inside the 10 s grace
    assert [a for a in out.actions if isinstance(a, UnlockDoor)]
    _, no2, call2 = start(clock)
    clock(UnitHangUp("u1203a", no2), 1)
    assert refusal(clock(AppUnlock(call2, "1203", "alice", "late"), 10.5)) == "grace_expired"
    assert refusal(clock(UnitUnlock("u1203b", no2), 1)) == "grace_expired"


def test_replayed_or_repeated_unlock_is_refused() -> None:
    _, clock = make()
    _, no, call_id = start(clock)
    out = clock(AppUnlock(call_id, "1203", "alice", "cmd-7"), 1)
    assert [a for a in out.actions if isinstance(a, UnlockDoor)]
    assert refusal(clock(AppUnlock(call_id, "1203", "alice", "cmd-7"), 1)) == "replayed"
    assert refusal(clock(UnitUnlock("u1203a", no), 1)) == "already_unlocked"


def test_dnd_schedule_in_the_site_time_zone_skips_units_and_app() -> None:
    # 20:00-07:00 Shanghai on Wednesdays; T0 is Wednesday 20:00 there.
    window = DndWindow(frozenset({2}), time(20, 0), time(7, 0))
    router, clock = make(dnd={"1203": (window,)}, timezone="Asia/Shanghai")
    out = clock(CallRequested("gate", "1203"))
    missed = [e.data for e in out.events if e.type == "intercom.missed"]
    assert [(m["stage"], m["reason"]) for m in missed] == [("units", "dnd"), ("app", "dnd")]
    assert event(out, "intercom.ringing")["stage"] == "guard"
    assert not [a for a in out.actions if isinstance(a, Ring) and "u1203a" in a.units]
    # Thursday 06:59 local is still inside Wednesday's window; 07:00 is not.
    assert router.dnd_active("1203", datetime(2026, 11, 25, 22, 59, tzinfo=UTC))
    assert not router.dnd_active("1203", datetime(2026, 11, 25, 23, 0, tzinfo=UTC))
    assert not router.dnd_active("1203", T0 - timedelta(minutes=1))  # 19:59 Wednesday
    assert not router.dnd_active("1204", T0)


def test_dnd_switch_on_a_unit() -> None:
    _, clock = make()
    clock(UnitDnd("u1204", True))
    out = clock(CallRequested("gate", "1204"))
    assert event(out, "intercom.ringing")["stage"] == "guard"
    clock(CallCancelled("gate"))
    clock(UnitDnd("u1204", False))
    out = clock(CallRequested("gate", "1204"))
    assert event(out, "intercom.ringing")["stage"] == "units"


def test_offline_units_are_skipped_and_a_panel_going_offline_ends_its_call() -> None:
    router, clock = make()
    clock(DeviceDown("u1204"))
    out = clock(CallRequested("gate", "1204"))
    assert event(out, "intercom.missed")["reason"] == "offline"
    assert event(out, "intercom.call")["stage"] == "app"
    out = clock(DeviceDown("gate"), 1)
    ended = event(out, "intercom.ended")
    assert ended["reason"] == "panel_offline"
    assert not [a for a in out.actions if isinstance(a, ShowState)]  # nobody to show it to
    assert router.active == {}


def test_the_ringing_units_going_offline_moves_on_and_the_talking_unit_ends_the_call() -> None:
    _, clock = make()
    _, no, _ = start(clock, "1204")
    out = clock(DeviceDown("u1204"), 1)
    assert event(out, "intercom.missed")["reason"] == "offline"
    assert event(out, "intercom.call")["stage"] == "app"
    clock(CallCancelled("gate"))
    _, no, _ = start(clock, "1203")
    clock(UnitAnswer("u1203a", no), 1)
    out = clock(DeviceDown("u1203a"), 1)
    assert event(out, "intercom.ended")["reason"] == "unit_offline"


def test_answer_from_a_unit_not_ringing_is_ignored() -> None:
    router, clock = make()
    _, no, _ = start(clock)
    out = clock(UnitAnswer("u1204", no), 1)
    assert out.refused == "not_ringing" and not out.events
    assert router.active["gate"].stage is Stage.UNITS


def test_config_section_validates_and_builds_routing() -> None:
    section = IntercomSection.model_validate(
        {
            "buses": [
                {
                    "port": "/dev/ttyUSB1",
                    "panels": [{"id": "gate", "address": 1, "door": "gate", "directory": {1: "1203"}}],
                    "indoor_units": [
                        {"id": "u1", "address": 10, "apartment": "1203"},
                        {"id": "g", "address": 20, "guard": True},
                    ],
                }
            ],
            "dnd": {"1203": [{"days": ["mon"], "start": "22:00", "end": "07:00"}]},
        }
    )
    routing = section.routing("Asia/Shanghai")
    assert routing.apartments == {"1203": ("u1",)} and routing.guard_units == ("g",)
    assert routing.dnd["1203"][0] == DndWindow(frozenset({0}), time(22), time(7))
    bad = [
        {"buses": [{"port": "COM3"}]},
        {"buses": [{"port": "/dev/x", "panels": [{"id": "a", "address": 1}, {"id": "b", "address": 1}]}]},
        {"buses": [{"port": "/dev/x", "indoor_units": [{"id": "u", "address": 2}]}]},
        {"buses": [{"port": "/dev/x", "panels": [{"id": "a", "address": 1, "directory": {1: "999"}}]}]},
        {"buses": [{"port": "/dev/x", "panels": [{"id": "a", "address": 1, "colour": "red"}]}]},
        {"dnd": {"1203": [{"start": "25:00", "end": "07:00"}]}},
    ]
    for doc in bad:
        with pytest.raises(ValidationError):
            IntercomSection.model_validate(doc)


def test_panel_unlock_from_a_trusted_control_only_during_the_call_or_its_grace() -> None:
    _, clock = make()
    assert refusal(clock(PanelUnlock("gate", "button"))) == "no_call"
    _, _no, call_id = start(clock)
    out = clock(PanelUnlock("gate", "button"), 1)
    assert UnlockDoor("gate", call_id, "1203", "home_assistant:button", "home_assistant") in out.actions
    assert refusal(clock(PanelUnlock("gate", "button"), 1)) == "already_unlocked"
    clock(CallCancelled("gate"))
    start(clock)
    clock(CallCancelled("gate"), 1)
    assert refusal(clock(PanelUnlock("gate", "button"), 11)) == "grace_expired"
