"""Parking policy from recorded tracks under a fake clock (rules/parking)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from edge.events import Severity
from rules.parking import OpenBarrier, ParkingConfig, ParkingEngine, ParkingEvent, plate_key
from rules.scene import SceneUpdate, TrackedObject

KEY = b"site-secret-key-0123456789abcdef"
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC).timestamp()

CONFIG = {
    "lots": [{
        "id": "north",
        "camera": "lot-cam",
        "occupy_s": 5,
        "free_s": 15,
        "spaces": [
            {"id": "s1", "polygon": [[100, 400], [300, 400], [300, 600], [100, 600]]},
            {"id": "s2", "polygon": [[300, 400], [500, 400], [500, 600], [300, 600]]},
        ],
    }],
    "restricted": [
        {"id": "lane-a", "kind": "fire_lane", "camera": "lot-cam", "zone": "lane", "max_dwell_s": 60},
        {"id": "kerb", "kind": "no_parking", "camera": "street-cam", "zone": "kerb", "max_dwell_s": 300},
    ],
    "gates": [
        {"id": "east-in", "camera": "gate-cam", "direction": "entry", "door": "barrier-east"},
        {"id": "east-out", "camera": "gate-cam", "direction": "exit", "door": "barrier-east"},
        {"id": "west-in", "camera": "west-cam", "direction": "entry", "door": "barrier-west"},
    ],
    "plates": [
        {"plate": "京A·12345", "kind": "resident", "holder": "apt-1-101"},
        {"plate": "ABC 1234", "kind": "staff", "holder": "staff-7", "gates": ["east-in", "east-out"]},
        {"plate": "沪C34567", "kind": "visitor", "holder": "apt-2-202",
         "valid_from": "2026-11-24T07:00:00Z", "valid_until": "2026-11-24T10:00:00Z"},
    ],
    "visitor_max_min": 240,
    "repeat_s": 60,
}


def vehicle(track_id: int, box: tuple[float, float, float, float], *zones: str, label: str = "car") -> TrackedObject:
    return TrackedObject(track_id, label, box, 0.8, frozenset(zones), False)


def scene(camera: str, at: float, *objects: TrackedObject) -> SceneUpdate:
    return SceneUpdate(camera, at, (1280, 720), tuple(objects))


def engine(**changes: object) -> ParkingEngine:
    return ParkingEngine(ParkingConfig.model_validate({**CONFIG, **changes}), KEY)


def play(eng: ParkingEngine, camera: str, track: list[tuple[float, tuple[TrackedObject, ...]]]) -> list[ParkingEvent]:
    """Feed a recorded track (time offset from T0, objects seen) to the engine."""
    return [event for offset, objects in track for event in eng.on_scene(scene(camera, T0 + offset, *objects))]


def violations(events: list[ParkingEvent]) -> list[ParkingEvent]:
    return [e for e in events if e.type.startswith("parking.violation")]


def fullwidth(text: str) -> str:
    """ASCII letters, digits and '-' as their full-width forms, as some OCR and input methods give them."""
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


IN_S1 = (150.0, 450.0, 260.0, 580.0)  # bottom centre (205, 580) lies in s1
ACROSS = (250.0, 420.0, 420.0, 590.0)  # covers parts of both, bottom centre (335, 590) lies in s2


def test_occupancy_with_flicker_and_hysteresis() -> None:
    eng = engine()
    car = vehicle(7, IN_S1)
    # 0-4 s: the car; 5-6 s: the detector loses it (flicker); 7-30 s: back; then gone from 31 s.
    track = [(t, (car,)) for t in range(0, 5)] + [(t, ()) for t in (5, 6)] + [(t, (car,)) for t in range(7, 31)]
    events = play(eng, "lot-cam", track)
    assert [(e.type, e.data["space"]) for e in events] == [
        ("parking.space_occupied", "s1"),  # 5 s without a break: 7 s + 5 s = 12 s
        ("parking.space_freed", "s2"),  # empty for 15 s
    ]
    occupied, freed = events
    assert occupied.data["since"] == "2026-11-24T08:00:07Z"
    assert (occupied.data["initial"], occupied.data["track_id"], occupied.source) == (True, 7, "north")
    assert occupied.data["counts"] == {"free": 0, "occupied": 1, "unknown": 1, "total": 2}
    assert freed.data["counts"] == {"free": 1, "occupied": 1, "unknown": 0, "total": 2}

    later = play(eng, "lot-cam", [(t, ()) for t in range(31, 60)] + [(t, ()) for t in range(60, 80)])
    assert [(e.type, e.data["space"], e.data["initial"]) for e in later] == [("parking.space_freed", "s1", False)]
    assert later[0].data["since"] == "2026-11-24T08:00:31Z"
    assert eng.lot_counts("north") == {"free": 2, "occupied": 0, "unknown": 0, "total": 2}


def test_flicker_never_toggles_a_space() -> None:
    eng = engine()
    car = vehicle(1, IN_S1)
    play(eng, "lot-cam", [(t, (car,)) for t in range(0, 20)])
    assert eng.spaces("north")["s1"] is True
    # Every third frame misses the car for five minutes: never 15 s free in a row.
    flicker = [(t, () if t % 3 == 0 else (car,)) for t in range(20, 320)]
    assert [e.type for e in play(eng, "lot-cam", flicker)] == []


def test_only_vehicles_on_the_lots_camera_and_bottom_centre_decides() -> None:
    eng = engine()
    events = play(eng, "lot-cam", [(t, (vehicle(1, IN_S1, label="person"), vehicle(2, ACROSS))) for t in range(0, 20)])
    events += play(eng, "other-cam", [(t, (vehicle(3, IN_S1),)) for t in range(20, 40)])
    assert eng.spaces("north") == {"s1": False, "s2": True}
    assert sorted((e.type, e.data["space"]) for e in events) == [
        ("parking.space_freed", "s1"), ("parking.space_occupied", "s2")]


def test_overlap_method() -> None:
    lot = {**CONFIG["lots"][0], "method": "overlap", "min_overlap": 0.4, "occupy_s": 0}
    eng = engine(lots=[lot])
    half = (100.0, 400.0, 200.0, 600.0)  # covers half of s1
    sliver = (450.0, 400.0, 500.0, 600.0)  # covers a quarter of s2
    play(eng, "lot-cam", [(0, (vehicle(1, half), vehicle(2, sliver)))])
    assert eng.spaces("north") == {"s1": True, "s2": None}


def test_fire_lane_violation_after_dwell_survives_flicker_then_ends() -> None:
    eng = engine()
    car = vehicle(42, (600.0, 300.0, 800.0, 450.0), "lane")
    passing = vehicle(43, (600.0, 300.0, 800.0, 450.0), "lane")
    walker = vehicle(44, (600.0, 300.0, 650.0, 450.0), "lane", label="person")
    track = [(t, (car, walker) + ((passing,) if t < 10 else ())) for t in range(0, 30)]
    track += [(t, ()) for t in (30, 31, 32)]  # lost for 3 s: shorter than the tracker's flicker allowance
    track += [(t, (car,)) for t in range(33, 61)]
    [violation] = violations(play(eng, "lot-cam", track))
    assert violation.type == "parking.violation"
    assert violation.source == "lane-a"
    assert violation.severity is Severity.ALARM
    assert (violation.data["track_id"], violation.data["label"], violation.data["dwell_s"]) == (42, "car", 60.0)
    assert (violation.data["kind"], violation.data["camera"], violation.data["since"]) == (
        "fire_lane", "lot-cam", "2026-11-24T08:00:00Z")
    assert violation.data["box"] == [600.0, 300.0, 800.0, 450.0]

    assert violations(play(eng, "lot-cam", [(t, (car,)) for t in range(61, 120)])) == []  # reported once
    ended = violations(play(eng, "lot-cam", [(t, ()) for t in range(120, 130)]))
    assert [(e.type, e.data["dwell_s"]) for e in ended] == [("parking.violation_ended", 119.0)]


def test_no_parking_zone_uses_its_own_camera_and_limit() -> None:
    eng = engine()
    van = vehicle(5, (0.0, 0.0, 10.0, 10.0), "kerb", label="truck")
    assert violations(play(eng, "lot-cam", [(t, (van,)) for t in range(0, 400, 10)])) == []
    events = play(eng, "street-cam", [(t, (van,)) for t in range(0, 301, 2)])
    assert [(e.type, e.severity, e.data["dwell_s"]) for e in events] == [("parking.violation", Severity.WARNING, 300.0)]


def test_listed_plate_opens_barrier_and_matches_exit() -> None:
    eng = engine()
    outcome = eng.on_plate("east-in", "京a 12345", T0)
    [entered] = outcome.events
    assert entered.type == "parking.vehicle_entered"
    assert (entered.data["plate"], entered.data["listed"], entered.data["holder"], entered.data["barrier"]) == (
        "京A12345", True, "apt-1-101", "open")
    assert outcome.actions == [OpenBarrier("east-in", "barrier-east", "京A12345", "apt-1-101")]
    # The camera keeps reading it while the barrier lifts: one pass.
    assert eng.on_plate("east-in", "京A·12345", T0 + 3).events == []

    outcome = eng.on_plate("east-out", "京A12345", T0 + 3600)
    [exited] = outcome.events
    assert (exited.type, exited.data["matched"], exited.data["duration_s"]) == ("parking.vehicle_exited", True, 3600)
    assert exited.data["entered_at"] == "2026-11-24T08:00:00Z"
    assert outcome.actions == [OpenBarrier("east-out", "barrier-east", "京A12345", "apt-1-101")]


def test_unlisted_plate_is_hashed_and_never_in_clear() -> None:
    eng = engine()
    outcome = eng.on_plate("east-in", "粤B·D12345", T0, confidence=0.93)
    assert outcome.actions == []
    [entered] = outcome.events
    assert entered.data["listed"] is False
    assert entered.data["barrier"] == "closed"
    assert entered.data["plate_hash"] == eng.plate_hash("粤BD12345")
    assert len(entered.data["plate_hash"]) == 64
    assert "plate" not in entered.data
    exited = eng.on_plate("east-out", "粤BD12345", T0 + 7200).events[0]
    assert (exited.data["matched"], exited.data["duration_s"]) == (True, 7200)
    everything = json.dumps([entered.data, exited.data, eng.inside()], ensure_ascii=False)
    assert "D12345" not in everything and "粤B" not in everything

    # The hash is keyed: another site (key) cannot match it, the same site always does.
    other = ParkingEngine(ParkingConfig.model_validate(CONFIG), b"another-site-key-0000000000000000")
    assert other.plate_hash("粤BD12345") != eng.plate_hash("粤BD12345")
    assert eng.plate_hash("粤b d12345") == eng.plate_hash(fullwidth("粤B·D12345"))


def test_exit_without_entry_and_reentry() -> None:
    eng = engine()
    exited = eng.on_plate("east-out", "KLM 5079", T0).events[0]
    assert exited.data["matched"] is False and "duration_s" not in exited.data
    first = eng.on_plate("east-in", "KLM 5079", T0 + 100).events[0]
    again = eng.on_plate("west-in", "KLM 5079", T0 + 1000).events[0]  # its exit was never read
    assert (first.data["reentry"], again.data["reentry"]) == (False, True)
    assert len(eng.inside()) == 1


def test_plate_gates_and_validity() -> None:
    eng = engine()
    staff_west = eng.on_plate("west-in", "ABC1234", T0)
    assert staff_west.actions == [] and staff_west.events[0].data["listed"] is True
    assert staff_west.events[0].data["barrier"] == "closed"  # listed, but not for this gate

    visitor = eng.on_plate("east-in", "沪C·34567", T0)  # 08:00, inside its 07:00-10:00 pass
    assert [a.door for a in visitor.actions] == ["barrier-east"]
    late_visitor = eng.on_plate("west-in", "沪C34567", T0 + 3 * 3600)  # 11:00: the pass expired
    assert late_visitor.actions == []
    assert "plate" not in late_visitor.events[0].data and late_visitor.events[0].data["listed"] is False
    # Listed at entry, unlisted at exit: still matched.
    exited = eng.on_plate("east-out", "沪C34567", T0 + 4 * 3600).events[0]
    assert exited.data["matched"] is True


def test_unknown_gate_or_empty_plate_is_ignored() -> None:
    eng = engine()
    assert eng.on_plate("nowhere", "京A12345", T0).events == []
    assert eng.on_plate("east-in", " · ", T0).events == []
    assert eng.on_plate("east-in", None, T0).events == []  # type: ignore[arg-type]


def test_visitor_overstay_once_and_never_for_residents() -> None:
    eng = engine()
    eng.on_plate("east-in", "粤BD12345", T0)
    eng.on_plate("east-in", "京A12345", T0)
    eng.on_plate("east-in", "沪C34567", T0)
    assert eng.tick(T0 + 239 * 60) == []
    events = eng.tick(T0 + 240 * 60)
    assert sorted(e.data["kind"] for e in events) == ["unlisted", "visitor"]
    assert all(e.type == "parking.overstay" and e.data["duration_s"] == 14400 for e in events)
    assert eng.tick(T0 + 300 * 60) == []
    assert engine(visitor_max_min=None).tick(T0 + 10**6) == []


def test_plate_key() -> None:
    assert plate_key("京A·12345") == plate_key("京a 12345") == plate_key(fullwidth("京A-12345")) == "京A12345"
    assert plate_key("abc-1234") == "ABC1234"


def test_short_site_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        ParkingEngine(ParkingConfig.model_validate(CONFIG), b"short")


def lot_with(spaces: list) -> dict:
    return {"lots": [{**CONFIG["lots"][0], "spaces": spaces}]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lot_with([{"id": "x", "polygon": [[0, 0], [10, 10], [20, 20]]}]), "no area"),
        (lot_with([{"id": "x", "polygon": [[0, 0], [10, 10]]}]), "at least 3"),
        (lot_with(CONFIG["lots"][0]["spaces"] * 2), "space ids must not repeat"),
        ({"gates": CONFIG["gates"] * 2}, "gate ids must not repeat"),
        ({"plates": [{"plate": "京A12345"}, {"plate": "京A·12345"}]}, "plate ids must not repeat"),
        ({"plates": [{"plate": "ABC1234", "gates": ["north-gate"]}]}, "unknown gates"),
        ({"plates": [{"plate": "<script>"}]}, "is not a licence plate"),
        ({"plates": [{"plate": "A"}]}, "is not a licence plate"),
        ({"restricted": [{"id": "x", "kind": "bus_stop", "camera": "c", "zone": "z", "max_dwell_s": 5}]}, "kind"),
        ({"restricted": [{"id": "x", "kind": "fire_lane", "camera": "c", "zone": "z", "max_dwell_s": 0}]},
         "greater than 0"),
        ({"gates": [{"id": "g", "camera": "c", "direction": "sideways"}]}, "direction"),
        ({"lotz": []}, "Extra inputs are not permitted"),
    ],
)
def test_broken_config_is_refused(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ParkingConfig.model_validate({**CONFIG, **change})


def test_sparse_scenes_settle_on_the_clock() -> None:
    """The pipeline sends scenes only when the detector runs: after the car drives off and the
    scene goes still, the clock must free the space."""
    eng = engine()
    car = vehicle(3, IN_S1)
    play(eng, "lot-cam", [(0, (car,)), (10, (car,))])  # motion gating: a re-check every 10 s
    assert eng.spaces("north")["s1"] is True
    play(eng, "lot-cam", [(20, ())])  # the car has gone; no scene comes after this one
    assert eng.tick(T0 + 34) == []  # 14 s: not yet
    events = eng.tick(T0 + 35)
    assert [(e.type, e.data["space"]) for e in events] == [("parking.space_freed", "s1")]
    assert eng.tick(T0 + 100) == []
