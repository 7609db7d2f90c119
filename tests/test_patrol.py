"""Guard tours from constructed tracks and card events under a fake clock (rules/patrol)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge.events import Severity
from rules.patrol import CheckpointState, PatrolConfig, PatrolEngine, PatrolEvent, starts_after
from rules.scene import SceneUpdate, TrackedObject
from vision.badges import BadgeReader

SHANGHAI = ZoneInfo("Asia/Shanghai")

CONFIG = {
    "guards": [
        {"id": "guard-1", "name": "Wang", "badge": "LINLI-GUARD-0001"},
        {"id": "guard-2", "name": "Li", "badge": "LINLI-GUARD-0002"},
    ],
    "routes": [
        {
            "id": "night",
            "starts": ["23:40"],
            "late_min": 30,
            "checkpoints": [
                {"id": "gate", "camera": "gate-cam", "zone": "gate_area", "readers": ["gate-in"], "due_min": 10},
                {"id": "garage", "camera": "garage-cam", "zone": "ramp", "due_min": 30},
                {"id": "back", "readers": ["back-door"], "due_min": 45},
            ],
        }
    ],
}


def local(day: int, hh: int, mm: int, ss: int = 0, zone: ZoneInfo = SHANGHAI) -> float:
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=zone).timestamp()


def person(track_id: int, *zones: str, label: str = "person") -> TrackedObject:
    return TrackedObject(track_id, label, (100.0, 100.0, 150.0, 300.0), 0.9, frozenset(zones), False)


def scene(camera: str, at: float, *objects: TrackedObject) -> SceneUpdate:
    return SceneUpdate(camera, at, (1280, 720), tuple(objects))


def types(events: list[PatrolEvent]) -> list[str]:
    return [e.type for e in events]


def only(events: list[PatrolEvent], event_type: str) -> PatrolEvent:
    found = [e for e in events if e.type == event_type]
    assert len(found) == 1, types(events)
    return found[0]


def engine(config: dict | None = None, start_at: float | None = None, timezone: str = "Asia/Shanghai") -> PatrolEngine:
    eng = PatrolEngine(PatrolConfig.model_validate(config or CONFIG), timezone)
    assert eng.tick(local(24, 23, 0) if start_at is None else start_at) == []
    return eng


def test_tour_across_midnight_reached_missed_late_and_completed() -> None:
    eng = engine()
    assert eng.tick(local(24, 23, 39, 59)) == []
    started = only(eng.tick(local(24, 23, 40)), "patrol.tour_started")
    assert started.source == "night"
    assert started.data["started_at"] == "2026-11-24T15:40:00Z"
    # The garage checkpoint is due 30 minutes later: 00:10 local on the next day.
    assert [c["due_at"] for c in started.data["checkpoints"]] == [
        "2026-11-24T15:50:00Z", "2026-11-24T16:10:00Z", "2026-11-24T16:25:00Z"]

    # A car in the zone and a person in another zone confirm nothing.
    car = person(2, "gate_area", label="car")
    assert eng.on_scene(scene("gate-cam", local(24, 23, 44), person(1, "street"), car)) == []
    events = eng.on_scene(scene("gate-cam", local(24, 23, 45), person(3, "gate_area")))
    reached = only(events, "patrol.checkpoint_reached")
    assert reached.data["checkpoint"] == "gate"
    assert (reached.data["late"], reached.data["lateness_s"], reached.data["out_of_order"]) == (False, 0, False)
    assert (reached.data["via"], reached.data["camera"], reached.data["zone"], reached.data["track_id"]) == (
        "camera", "gate-cam", "gate_area", 3)
    # The same person staying in the zone does not confirm it twice.
    assert eng.on_scene(scene("gate-cam", local(24, 23, 46), person(3, "gate_area"))) == []

    assert eng.tick(local(25, 0, 9, 59)) == []
    missed = only(eng.tick(local(25, 0, 10, 2)), "patrol.checkpoint_missed")
    assert missed.data["checkpoint"] == "garage"
    assert missed.data["due_at"] == "2026-11-24T16:10:00Z"
    assert missed.data["overdue_s"] == 2.0
    assert missed.severity is Severity.WARNING
    assert eng.tick(local(25, 0, 12)) == []  # a miss is reported once

    late = only(eng.on_scene(scene("garage-cam", local(25, 0, 20), person(7, "ramp"))), "patrol.checkpoint_reached")
    assert (late.data["checkpoint"], late.data["late"], late.data["lateness_s"]) == ("garage", True, 600.0)

    events = eng.on_access("access.granted", {"reader": "back-door", "holder": "guard-2"}, local(25, 0, 30))
    # No tick since 00:25: the miss is noticed (5 minutes overdue) before the late tap is taken.
    assert types(events) == ["patrol.checkpoint_missed", "patrol.checkpoint_reached", "patrol.tour_completed"]
    missed_back, back, completed = events
    assert missed_back.data["overdue_s"] == 300.0
    assert (back.data["checkpoint"], back.data["via"], back.data["reader"], back.data["guard"]) == (
        "back", "card", "back-door", "guard-2")
    assert back.data["lateness_s"] == 300.0  # due 00:25, tapped 00:30
    assert completed.data["complete"] is True
    assert (completed.data["reached"], completed.data["missed"], completed.data["late"]) == (3, 0, 2)

    [log] = eng.tour_log()
    assert log["tour"] == "night@2026-11-24T15:40:00Z"
    assert [c["state"] for c in log["checkpoints"]] == ["reached", "reached", "reached"]
    assert log["checkpoints"][1]["reached_at"] == "2026-11-24T16:20:00Z"
    assert log["finished_at"] == "2026-11-24T16:30:00Z"


def test_unwalked_tour_misses_every_checkpoint_and_closes_incomplete() -> None:
    eng = engine()
    events = []
    for minute in range(40, 60 + 60):  # 23:40 .. 01:39, once a minute
        events += eng.tick(local(24, 23, 0) + minute * 60)
    assert types(events) == ["patrol.tour_started"] + ["patrol.checkpoint_missed"] * 3 + ["patrol.tour_completed"]
    completed = events[-1]
    assert completed.data["complete"] is False
    assert completed.data["missed"] == 3
    assert completed.data["finished_at"] == "2026-11-24T16:55:00Z"  # last due 00:25 + 30 min late allowance
    assert completed.severity is Severity.WARNING
    # Too late for the log: a card tap after the tour closed changes nothing.
    assert eng.on_access("access.granted", {"reader": "back-door", "holder": "guard-1"}, local(25, 1, 0)) == []
    assert [c["state"] for c in eng.tour_log()[0]["checkpoints"]] == ["missed"] * 3


def test_next_night_starts_a_new_tour() -> None:
    eng = engine()
    events = [e for minute in range(0, 26 * 60, 5) for e in eng.tick(local(24, 23, 0) + minute * 60)]
    assert types(events).count("patrol.tour_started") == 2
    assert [t["tour"] for t in eng.tour_log()] == ["night@2026-11-25T15:40:00Z", "night@2026-11-24T15:40:00Z"]


def test_cards_only_count_for_guards_and_granted_access() -> None:
    eng = engine()
    eng.tick(local(24, 23, 40))
    at = local(24, 23, 41)
    assert eng.on_access("access.granted", {"reader": "gate-in", "holder": "resident-7"}, at) == []
    assert eng.on_access("access.denied", {"reader": "gate-in", "holder": "guard-1"}, at) == []
    assert eng.on_access("access.granted", {"reader": "lobby", "holder": "guard-1"}, at) == []
    assert eng.on_access("access.granted", {"reader": None, "holder": "guard-1"}, at) == []
    assert eng.on_access("access.granted", {}, at) == []
    assert eng.on_access("access.granted", {"reader": "gate-in", "holder": ["guard-1"]}, at) == []  # hostile
    assert eng.on_badge("gate-cam", 1, None, at) == []  # type: ignore[arg-type]
    events = eng.on_access("access.granted", {"reader": "gate-in", "holder": "guard-1"}, at)
    reached = only(events, "patrol.checkpoint_reached")
    assert (reached.data["checkpoint"], reached.data["guard"]) == ("gate", "guard-1")


def badge_config(**route: object) -> dict:
    config = {**CONFIG, "routes": [{**CONFIG["routes"][0], **route}]}
    return config


def test_badge_required_only_a_badged_guard_confirms() -> None:
    eng = engine(badge_config(require_badge=True, guards=["guard-1"]))
    eng.tick(local(24, 23, 40))
    at = local(24, 23, 42)
    assert eng.on_scene(scene("gate-cam", at, person(1, "gate_area"))) == []
    assert eng.on_badge("gate-cam", 1, "SOMEONE-ELSE", at) == []
    assert eng.on_scene(scene("gate-cam", at + 1, person(1, "gate_area"))) == []
    eng.on_badge("gate-cam", 1, "LINLI-GUARD-0002", at + 2)  # a guard, but not one of this route's
    assert eng.on_scene(scene("gate-cam", at + 3, person(1, "gate_area"))) == []
    eng.on_badge("gate-cam", 2, " LINLI-GUARD-0001\n", at + 4)
    reached = only(eng.on_scene(scene("gate-cam", at + 5, person(1, "gate_area"), person(2, "gate_area"))),
                   "patrol.checkpoint_reached")
    assert (reached.data["guard"], reached.data["track_id"]) == ("guard-1", 2)


def test_badge_is_forgotten_when_its_track_leaves_the_camera() -> None:
    eng = engine(badge_config(require_badge=True))
    eng.tick(local(24, 23, 40))
    at = local(24, 23, 42)
    eng.on_badge("gate-cam", 5, "LINLI-GUARD-0001", at)
    assert eng.on_scene(scene("gate-cam", at + 1)) == []  # track 5 is gone
    assert eng.on_scene(scene("gate-cam", at + 2, person(5, "gate_area"))) == []  # a re-used id is a stranger


def test_window_not_open_yet_and_dwell() -> None:
    config = {
        "routes": [{"id": "day", "starts": ["08:00"], "checkpoints": [
            {"id": "pool", "camera": "pool-cam", "zone": "deck", "opens_min": 20, "due_min": 40, "dwell_s": 10}]}],
    }
    eng = engine(config, start_at=local(24, 7, 0))
    eng.tick(local(24, 8, 0))
    assert eng.on_scene(scene("pool-cam", local(24, 8, 10), person(1, "deck"))) == []  # window opens at 08:20
    assert eng.on_scene(scene("pool-cam", local(24, 8, 21), person(2, "deck"))) == []  # just arrived
    assert eng.on_scene(scene("pool-cam", local(24, 8, 21, 5), person(2))) == []  # left the zone: timer resets
    assert eng.on_scene(scene("pool-cam", local(24, 8, 21, 8), person(2, "deck"))) == []
    assert eng.on_scene(scene("pool-cam", local(24, 8, 21, 17), person(2, "deck"))) == []
    events = eng.on_scene(scene("pool-cam", local(24, 8, 21, 18), person(2, "deck")))
    assert types(events) == ["patrol.checkpoint_reached", "patrol.tour_completed"]


def test_out_of_order_is_flagged() -> None:
    eng = engine()
    eng.tick(local(24, 23, 40))
    reached = only(eng.on_access("access.granted", {"reader": "back-door", "holder": "guard-1"}, local(24, 23, 43)),
                   "patrol.checkpoint_reached")
    assert (reached.data["checkpoint"], reached.data["out_of_order"]) == ("back", True)


def test_restart_joins_running_tour_without_false_misses() -> None:
    eng = PatrolEngine(PatrolConfig.model_validate(CONFIG), "Asia/Shanghai")
    events = eng.tick(local(24, 23, 55))  # came up 15 minutes into the tour; "gate" was due at 23:50
    started = only(events, "patrol.tour_started")
    assert started.data["joined"] is True
    assert "patrol.checkpoint_missed" not in types(events)
    [tour] = eng.open_tours()
    pending = CheckpointState.PENDING
    assert [c.state for c in tour.checkpoints] == [CheckpointState.UNKNOWN, pending, pending]
    assert types(eng.tick(local(25, 0, 10))) == ["patrol.checkpoint_missed"]


def test_restart_after_a_tour_closed_does_not_revive_it() -> None:
    eng = PatrolEngine(PatrolConfig.model_validate(CONFIG), "Asia/Shanghai")
    assert eng.tick(local(25, 1, 0)) == []
    assert eng.tour_log() == []


def test_weekdays_and_dst_gap() -> None:
    checkpoints = [{"id": "c", "readers": ["x"], "due_min": 5}]
    config = {"routes": [{"id": "r", "starts": ["02:30"], "days": ["sun"], "checkpoints": checkpoints}]}
    route = PatrolConfig.model_validate(config).routes[0]
    berlin = ZoneInfo("Europe/Berlin")
    after = datetime(2026, 3, 25, tzinfo=UTC).timestamp()  # a Wednesday
    start = starts_after(route, berlin, after)
    # Sunday 2026-03-29 02:30 does not exist in Berlin (02:00 -> 03:00): the tour starts at 03:30 CEST.
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert datetime.fromtimestamp(starts_after(route, berlin, start), UTC) == datetime(2026, 4, 5, 0, 30, tzinfo=UTC)


def test_two_routes_share_a_checkpoint_camera() -> None:
    config = {
        "routes": [
            {"id": "a", "starts": ["22:00"], "checkpoints": [{"id": "g", "camera": "c", "zone": "z", "due_min": 30}]},
            {"id": "b", "starts": ["22:10"], "checkpoints": [{"id": "g", "camera": "c", "zone": "z", "due_min": 30}]},
        ]
    }
    eng = engine(config, start_at=local(24, 21, 0))
    eng.tick(local(24, 22, 10))
    events = eng.on_scene(scene("c", local(24, 22, 15), person(1, "z")))
    assert sorted((e.type, e.source) for e in events) == [
        ("patrol.checkpoint_reached", "a"), ("patrol.checkpoint_reached", "b"),
        ("patrol.tour_completed", "a"), ("patrol.tour_completed", "b")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"starts": ["25:00"]}, "is not HH:MM"),
        ({"starts": ["22:00", "22:00"]}, "must not repeat"),
        ({"starts": []}, "at least 1"),
        ({"guards": ["nobody"]}, "unknown guards"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
        ({"checkpoints": [{"id": "x", "readers": ["r"], "opens_min": 10, "due_min": 5}]}, "due_min must be after"),
        ({"checkpoints": [{"id": "x", "camera": "c", "due_min": 5}]}, "camera and zone go together"),
        ({"checkpoints": [{"id": "x", "due_min": 5}]}, "needs a camera zone or readers"),
        ({"checkpoints": [{"id": "x", "readers": ["r"], "due_min": 5}] * 2}, "checkpoint ids must not repeat"),
        ({"days": []}, "days must not be empty"),
    ],
)
def test_broken_config_is_refused(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PatrolConfig.model_validate(badge_config(**change))


def test_guards_must_be_unique() -> None:
    with pytest.raises(ValidationError, match="share a badge"):
        PatrolConfig.model_validate({"guards": [{"id": "a", "badge": "BADGE-1"}, {"id": "b", "badge": "BADGE-1"}]})
    with pytest.raises(ValidationError, match="requires a badge"):
        routes = [{**CONFIG["routes"][0], "require_badge": True}]
        PatrolConfig.model_validate({"guards": [{"id": "a"}], "routes": routes})


# --- QR badges read on a person's crop (vision/badges.py) feeding the engine ---


def qr_image(text: str, module_px: int) -> np.ndarray:
    code = cv2.QRCodeEncoder.create().encode(text)
    code = cv2.copyMakeBorder(code, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=255)  # the quiet zone
    big = cv2.resize(code, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)


def frame_with_guard(badge: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A 1280x720 frame: a dark figure at (600, 200)-(760, 620) wearing the badge on the chest."""
    frame = np.full((720, 1280, 3), (90, 110, 100), np.uint8)
    cv2.rectangle(frame, (600, 200), (760, 620), (40, 40, 60), -1)
    cv2.circle(frame, (680, 170), 40, (150, 170, 200), -1)
    h, w = badge.shape[:2]
    frame[300 : 300 + h, 680 - w // 2 : 680 - w // 2 + w] = badge
    return frame, (580.0, 120.0, 780.0, 630.0)


def test_badge_read_on_person_crop_confirms_checkpoint() -> None:
    reader = BadgeReader()
    frame, person_box = frame_with_guard(qr_image("LINLI-GUARD-0001", 3))
    text = reader.read(frame, person_box)
    assert text == "LINLI-GUARD-0001"

    eng = engine(badge_config(require_badge=True))
    eng.tick(local(24, 23, 40))
    at = local(24, 23, 42)
    eng.on_badge("gate-cam", 9, text, at)
    events = eng.on_scene(scene("gate-cam", at, person(9, "gate_area")))
    assert only(events, "patrol.checkpoint_reached").data["guard"] == "guard-1"


def test_small_badge_is_read_after_upscaling() -> None:
    badge = qr_image("LINLI-GUARD-0002", 2)
    small_crop = np.full((160, 100, 3), 60, np.uint8)
    small_crop[40 : 40 + badge.shape[0], 10 : 10 + badge.shape[1]] = badge
    assert BadgeReader().read(small_crop) == "LINLI-GUARD-0002"


def test_no_badge_garbage_and_bad_input() -> None:
    reader = BadgeReader()
    frame, person_box = frame_with_guard(np.full((60, 60, 3), 255, np.uint8))  # a blank name tag
    assert reader.read(frame, person_box) is None
    rng = np.random.default_rng(5)
    assert reader.read(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)) is None
    assert reader.read(frame, (0, 0, 10, 10)) is None
    assert reader.read(frame, (float("nan"), 0, 100, 100)) is None
    assert reader.read(frame, (5000, 5000, 6000, 6000)) is None
    with pytest.raises(ValueError, match="uint8"):
        reader.read(frame.astype(np.float64))
    # A QR code that carries control characters is not a badge.
    assert reader.read(qr_image("GUARD\x07\x1bBELL", 4)) is None
