"""Patrol, parking, gate plates and privacy in the running daemon (edge/vision_rules.py).

Real parts throughout: the shipped COCO model, PP-OCR and CenterFace on real frames, a real
controller with its journal and API, real Mosquitto, OSDP readers simulated over a pty.

The car scenes are the real photo tests/data/plates/licenseplate_motion.jpg (a car from behind,
its own plate blurred past reading) with a rendered plate from tests/data/plates pasted over its
plate and a real face (tests/data/plates/messi5.jpg) pasted on its bumper, written as a short
still video that the camera loops: the detector finds the car (and the person), the gate reads
the plate, and every picture that leaves the box must have both made unreadable.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
import yaml

from drivers.osdp.simulator import OUTPUT_LOCK, SimBus, SimReader
from edge.config import ConfigError, parse_config
from edge.daemon import Controller
from edge.journal import StoredEvent
from edge.vision import VisionService
from edge.vision_rules import PlateKeyError, load_plate_key
from tests.access_helpers import FACILITY
from tests.controller_helpers import base_url, bearer, login, running_controller, site_yaml
from tests.mosquitto import Mosquitto
from tests.mqtt_helpers import BASE, CONTROLLER, SITE, Collector, TopicTree, retained, running_uplink, site_config
from tests.test_access_service import access_yaml, seed_store, wait_ready
from vision.plates import PlateReader
from vision.privacy import FaceDetector

DATA = Path(__file__).parent / "data"
PLATES = DATA / "plates"
VTEST = DATA / "vtest-80.mp4"
SCENE = (800, 600)  # the 600x482 photo on a grey border: the detector is surer of a car not cut by the frame
PHOTO_AT = (100, 59)
CAR_BOX = (100.0, 59.0, 700.0, 541.0)
PLATE_AT = (318, 289)  # over the car's own (blurred) plate
FACE_AT = (560, 389)  # on the bumper


def car_scene(plate: str) -> np.ndarray:
    car = np.full((SCENE[1], SCENE[0], 3), 110, np.uint8)
    photo = cv2.imread(str(PLATES / "licenseplate_motion.jpg"))
    x, y = PHOTO_AT
    car[y : y + photo.shape[0], x : x + photo.shape[1]] = photo
    image = cv2.imread(str(PLATES / plate))
    face = cv2.imread(str(PLATES / "messi5.jpg"))[60:170, 195:290]  # the player's head and shirt
    width = 150
    height = round(width * image.shape[0] / image.shape[1])
    x, y = PLATE_AT
    car[y : y + height, x : x + width] = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    x, y = FACE_AT
    car[y : y + face.shape[0], x : x + face.shape[1]] = face
    return car


def still_video(path: Path, image: np.ndarray, frames: int = 10) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (image.shape[1], image.shape[0]))
    for _ in range(frames):
        writer.write(image)
    writer.release()
    return path


def car_camera(camera_id: str, video: Path, **extra: Any) -> dict[str, Any]:
    return {
        "id": camera_id,
        "url": str(video),
        "loop": True,
        "detect": {"fps": 5},
        "zones": [{"id": "lane", "points": [[0, 360], [800, 360], [800, 600], [0, 600]], "inertia": 1}],
        **extra,
    }


CAR_OBJECTS = {"track": ["car", "truck", "person"], "filters": {"car": {"min_score": 0.3}}}


async def wait_event(controller: Controller, type: str, where: Callable[[dict[str, Any]], bool] | None = None,
                     within: float = 30.0) -> StoredEvent:
    deadline = time.monotonic() + within
    while True:
        for stored in await controller.journal.query(types=[type], after_seq=0, limit=1000):
            if where is None or where(stored.event.data):
                return stored
        assert time.monotonic() < deadline, f"no {type} journaled within {within}s"
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def plate_reader() -> PlateReader:
    return PlateReader()


@pytest.fixture(scope="module")
def faces() -> FaceDetector:
    return FaceDetector()


def assert_private(image: np.ndarray, plate_reader: PlateReader, faces: FaceDetector, plate: str) -> None:
    """Nothing in the picture identifies anyone: no face found, the plate unreadable. (The caption drawn
    on a snapshot, e.g. "car 0.46", may itself read as a Latin plate: only the real one must not.)"""
    assert faces.detect(image) == []
    x, y = PLATE_AT
    assert plate_reader.read(image, (x - 20, y - 20, x + 170, y + 70)) is None
    for region in (CAR_BOX, None):
        reading = plate_reader.read(image, region)
        assert reading is None or reading.text != plate


def assert_identifiable(image: np.ndarray, plate_reader: PlateReader, faces: FaceDetector, plate: str) -> None:
    """The raw frame (which stays on the box): the scene really has a readable plate and a face."""
    assert len(faces.detect(image)) == 1
    reading = plate_reader.read(image, CAR_BOX)
    assert reading is not None and reading.text == plate


# ---- configuration and the key -----------------------------------------------------------------


def test_patrol_and_parking_are_checked_against_cameras_readers_and_doors() -> None:
    text = """\
site: {id: s1}
controller: {id: c1}
doors:
  - {id: gate, remote_unlock: [api]}
vision:
  cameras:
    - id: yard
      url: rtsp://127.0.0.1/yard
      zones: [{id: lane, points: [[0, 0], [10, 0], [10, 10]]}]
  patrol:
    guards: [{id: alice}]
    routes:
      - id: night
        starts: ["22:00"]
        checkpoints:
          - {id: a, camera: nowhere, zone: lane, due_min: 10}
          - {id: b, camera: yard, zone: roof, due_min: 20}
          - {id: c, readers: [ghost-r], due_min: 30}
  parking:
    lots: [{id: north, camera: attic, spaces: [{id: s1, polygon: [[0, 0], [5, 0], [5, 5]]}]}]
    restricted: [{id: fl, kind: fire_lane, camera: yard, zone: kerb, max_dwell_s: 60}]
    gates:
      - {id: in, camera: yard, direction: entry, door: gate}
      - {id: out, camera: yard, direction: exit, door: back}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    messages = "\n".join(str(issue) for issue in caught.value.issues)
    for expected in ("no camera 'nowhere'", "camera 'yard' has no zone 'roof'", "no OSDP reader 'ghost-r'",
                     "no camera 'attic'", "camera 'yard' has no zone 'kerb'",
                     "door 'gate' does not list vision in its remote_unlock", "no door 'back' in doors"):
        assert expected in messages, messages
    assert len(caught.value.issues) == 7
    fixed = (text.replace("[api]", "[api, vision]").replace("nowhere", "yard").replace("roof", "lane")
             .replace("readers: [ghost-r]", "camera: yard, zone: lane").replace("attic", "yard")
             .replace("kerb", "lane").replace(", door: back", ""))
    config = parse_config(fixed)
    assert config.vision is not None and config.vision.patrol is not None and config.vision.parking is not None
    assert config.vision.publish_snapshots is False  # nothing leaves the box unless asked


def test_plate_key_is_created_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "data" / "plate.key"
    key = load_plate_key(path)
    assert len(key) == 32 and (path.stat().st_mode & 0o777) == 0o600
    assert load_plate_key(path) == key  # kept: hashes stay comparable across restarts
    os.chmod(path, 0o644)
    with pytest.raises(PlateKeyError, match="chmod 600"):
        load_plate_key(path)
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(PlateKeyError, match="too short"):
        load_plate_key(path)


async def test_publish_image_refuses_bad_keys_and_sizes(tmp_path: Path) -> None:
    async with running_uplink(site_config(tmp_path, "mqtt://127.0.0.1:9"), start=False) as (_controller, uplink):
        for key in ("", "a/b", "#", "+", "../x"):
            with pytest.raises(ValueError, match="topic level"):
                uplink.publish_image(key, b"\xff\xd8")
        with pytest.raises(ValueError, match="bytes"):
            uplink.publish_image("cam", b"")
        with pytest.raises(ValueError, match="bytes"):
            uplink.publish_image("cam", b"\0" * (2 * 1024 * 1024 + 1))
        uplink.publish_image("cam", b"old")
        uplink.publish_image("cam", b"new")  # latest only, like state
        assert uplink._pending_images == {"cam": base64.b64encode(b"new")}


# ---- parking over MQTT: occupancy, violations, retained counts, HA, blurred snapshots ---------------


def parking_section(video: Path, publish: bool) -> dict[str, Any]:
    return {
        "objects": CAR_OBJECTS,
        "publish_snapshots": publish,
        "cameras": [car_camera("yard", video, name="Yard")],
        "parking": {
            "lots": [{"id": "north", "name": "North lot", "camera": "yard", "occupy_s": 0.5, "spaces": [
                {"id": "n1", "polygon": [[250, 460], [550, 460], [550, 600], [250, 600]]},
                {"id": "n2", "polygon": [[0, 0], [100, 0], [100, 100], [0, 100]]},
            ]}],
            "restricted": [{"id": "fl-1", "kind": "fire_lane", "camera": "yard", "zone": "lane", "max_dwell_s": 1}],
        },
    }


@asynccontextmanager
async def vision_with_uplink(mosquitto: Mosquitto, tmp_path: Path,
                             section: dict[str, Any]) -> AsyncIterator[tuple[Controller, VisionService]]:
    config = site_config(tmp_path, mosquitto.url, vision=section)
    async with running_uplink(config) as (controller, _uplink):
        service = VisionService(controller)
        controller.vision = service
        task = asyncio.create_task(service.run())
        try:
            yield controller, service
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_parking_events_counts_and_blurred_snapshots_over_mqtt(
    mosquitto: Mosquitto, tmp_path: Path, plate_reader: PlateReader, faces: FaceDetector
) -> None:
    video = still_video(tmp_path / "yard.mp4", car_scene("cn_blue_jingA12345.png"))
    tree = TopicTree()
    lot_topic = f"{BASE}/state/parking.north"
    image_topic = f"{BASE}/image/yard"
    node = f"linli_{SITE}_{CONTROLLER}"
    async with (
        Collector(mosquitto.port, ["homeassistant/#", f"{BASE}/state/#", f"{BASE}/image/#"]) as seen,
        vision_with_uplink(mosquitto, tmp_path, parking_section(video, publish=True)) as (controller, service),
    ):
        occupied = await wait_event(controller, "parking.space_occupied")
        assert occupied.event.data["lot"] == "north" and occupied.event.data["space"] == "n1"
        assert occupied.event.data["counts"] == {"free": 0, "occupied": 1, "unknown": 1, "total": 2}

        violation = await wait_event(controller, "parking.violation")
        data = violation.event.data
        assert violation.event.source == "fl-1" and violation.event.severity == "alarm"  # a fire lane
        assert data["kind"] == "fire_lane" and data["label"] == "car" and data["dwell_s"] >= 1
        # The violation's snapshot: on the box, and even so with the face and the plate blurred.
        snapshot = cv2.imread(str(controller.config.data_dir / "snapshots" / "yard" / data["snapshot"]))
        assert snapshot is not None and snapshot.shape == (600, 800, 3)
        assert_private(snapshot, plate_reader, faces, "京A12345")
        latest = service.latest_frame("yard")
        assert latest is not None
        assert_identifiable(latest[1], plate_reader, faces, "京A12345")  # the raw frame is not touched

        # Retained per-lot counts, valid against the schema; HA's free-spaces sensor reads them.
        await seen.wait_for(lambda _: any(m.json()["occupied"] == 1 for m in seen.on(lot_topic)), 20, "lot counts")
        state = next(m for m in seen.on(lot_topic) if m.json()["occupied"] == 1)
        assert tree.check(state.topic, state.payload) == "parking_lot_state"
        assert state.json() == {"lot": "north", "free": 0, "occupied": 1, "unknown": 1, "total": 2,
                                "spaces": {"n1": True, "n2": None}}
        sensor_topic = f"homeassistant/sensor/{node}/vision_lot_north_free/config"
        image_config = f"homeassistant/image/{node}/vision_yard_snapshot/config"
        await seen.wait_for(lambda _: bool(seen.on(sensor_topic) and seen.on(image_config)), 20, "discovery")
        sensor = seen.on(sensor_topic)[-1]
        assert tree.check(sensor.topic, sensor.payload) == "ha_discovery_sensor"
        assert sensor.json()["state_topic"] == lot_topic and sensor.json()["value_template"] == "{{ value_json.free }}"
        entity = seen.on(image_config)[-1]
        assert tree.check(entity.topic, entity.payload) == "ha_discovery_image"
        assert entity.json()["image_topic"] == image_topic and entity.json()["content_type"] == "image/jpeg"

        # The image entity's picture: a base64 JPEG, retained, blurred.
        assert entity.json()["image_encoding"] == "b64"
        await seen.wait_for(lambda _: bool(seen.on(image_topic)), 30, "a snapshot on the image topic")
        message = seen.on(image_topic)[-1]
        assert tree.check(message.topic, message.payload) == "image" and message.qos == 1
        jpeg = base64.b64decode(message.payload, validate=True)
        assert jpeg[:2] == b"\xff\xd8"
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape == (600, 800, 3)
        assert_private(picture, plate_reader, faces, "京A12345")
        # Both are retained: what a subscriber (HA after a restart) gets first.
        kept = await retained(mosquitto.port, lot_topic)
        assert kept is not None and kept.retain and kept.json()["total"] == 2
        kept = await retained(mosquitto.port, image_topic)
        assert kept is not None and kept.retain and base64.b64decode(kept.payload)[:2] == b"\xff\xd8"
        # No raw frame and no plate text anywhere on the broker.
        assert all(b"\xe4\xba\xac" not in m.payload for m in seen.messages)  # 京 in UTF-8


async def test_no_image_entity_unless_opted_in(mosquitto: Mosquitto, tmp_path: Path) -> None:
    video = still_video(tmp_path / "yard.mp4", car_scene("cn_blue_jingA12345.png"))
    node = f"linli_{SITE}_{CONTROLLER}"
    async with (
        Collector(mosquitto.port, ["homeassistant/#", f"{BASE}/#"]) as seen,
        vision_with_uplink(mosquitto, tmp_path, parking_section(video, publish=False)) as (controller, _s),
    ):
        await wait_event(controller, "parking.violation")
        entered = await wait_event(controller, "vision.object_entered")
        assert entered.event.data["snapshot"]  # snapshots are still taken, and stay on the box
        sensor_topic = f"homeassistant/sensor/{node}/vision_lot_north_free/config"
        await seen.wait_for(lambda _: bool(seen.on(sensor_topic)), 20, "the lot sensor")
        await asyncio.sleep(1.0)  # time for a wrongly published image to arrive
        assert not seen.matching(r"/image/")
        assert not seen.matching(r"^homeassistant/image/")


# ---- access: patrol by camera and by card, plates that open the barrier ----------------------------


@asynccontextmanager
async def access_and_vision(tmp_path: Path, vision: dict[str, Any],
                            gate_unlock: str = "") -> AsyncIterator[tuple[Controller, SimBus]]:
    async with SimBus([SimReader(1), SimReader(2)]) as bus:
        await seed_store(tmp_path / "data")
        doors = access_yaml(bus.port)
        if gate_unlock:
            anchor = "    extended_unlock_s: 1\n"
            doors = doors.replace(anchor, f"{anchor}    remote_unlock: [{gate_unlock}]\n", 1)
        text = site_yaml(extra=doors + yaml.safe_dump({"vision": vision}, allow_unicode=True))
        async with running_controller(tmp_path, text) as controller:
            await wait_ready(controller)
            yield controller, bus


async def test_patrol_by_camera_zone_and_by_card_with_the_tour_log(tmp_path: Path) -> None:
    start = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%H:%M")  # a tour that began a minute ago
    vision = {
        "objects": {"track": ["person"]},
        "cameras": [{"id": "lobby", "url": str(VTEST), "realtime": False, "detect": {"fps": 10},
                     "zones": [{"id": "right", "points": [[600, 0], [768, 0], [768, 576], [600, 576]], "inertia": 2}]}],
        "patrol": {
            "guards": [{"id": "alice", "name": "Alice"}],
            "routes": [{"id": "night", "starts": [start], "checkpoints": [
                {"id": "pavement", "camera": "lobby", "zone": "right", "due_min": 60},
                {"id": "gate", "readers": ["gate-r"], "due_min": 60},
            ]}],
        },
    }
    async with access_and_vision(tmp_path, vision) as (controller, bus):
        gate = bus.reader(1)
        gate.present_card(1008, FACILITY)  # hank: staff, let in, but not a guard
        await wait_event(controller, "access.granted", lambda d: d["holder"] == "hank", within=5)
        gate.present_card(1001, FACILITY)  # alice, a guard
        by_card = await wait_event(controller, "patrol.checkpoint_reached", lambda d: d["checkpoint"] == "gate")
        assert by_card.event.data["guard"] == "alice" and by_card.event.data["via"] == "card"
        assert by_card.event.data["reader"] == "gate-r" and by_card.event.data["late"] is False
        by_camera = await wait_event(controller, "patrol.checkpoint_reached", lambda d: d["checkpoint"] == "pavement")
        assert by_camera.event.data["via"] == "camera" and by_camera.event.data["zone"] == "right"
        assert by_camera.event.data["camera"] == "lobby" and by_camera.event.data["guard"] is None
        done = await wait_event(controller, "patrol.tour_completed")
        assert done.event.data["complete"] is True and done.event.data["reached"] == 2
        reached = await controller.journal.query(types=["patrol.checkpoint_reached"], after_seq=0, limit=100)
        assert len(reached) == 2  # hank's card confirmed nothing
        assert (await wait_event(controller, "patrol.tour_started")).event.data["joined"] is True

        async with aiohttp.ClientSession() as session:
            url = base_url(controller)
            token = await login(session, url, "manager")
            async with session.get(f"{url}/api/vision/patrol/tours", headers=bearer(token)) as r:
                assert r.status == 200
                tours = (await r.json())["tours"]
            assert len(tours) == 1 and tours[0]["route"] == "night" and tours[0]["reached"] == 2
            states = {c["checkpoint"]: (c["state"], c["guard"], c["via"]["via"]) for c in tours[0]["checkpoints"]}
            assert states == {"pavement": ("reached", None, "camera"), "gate": ("reached", "alice", "card")}
            async with session.get(f"{url}/api/vision/patrol/tours?route=day", headers=bearer(token)) as r:
                assert r.status == 200 and (await r.json())["tours"] == []
            for bad in ("limit=0", "limit=x", "limit=201", "route=../etc"):
                async with session.get(f"{url}/api/vision/patrol/tours?{bad}", headers=bearer(token)) as r:
                    assert r.status == 400, bad
            async with session.get(f"{url}/api/vision/parking/lots", headers=bearer(token)) as r:
                assert r.status == 404  # no parking here
            resident = await login(session, url, "resident")
            async with session.get(f"{url}/api/vision/patrol/tours", headers=bearer(resident)) as r:
                assert r.status == 403
            async with session.get(f"{url}/api/vision/patrol/tours") as r:
                assert r.status == 401


async def test_listed_plate_opens_the_barrier_and_unlisted_plates_stay_hashed(tmp_path: Path) -> None:
    listed = still_video(tmp_path / "in.mp4", car_scene("cn_blue_jingA12345.png"))
    unlisted = still_video(tmp_path / "out.mp4", car_scene("cn_yellow_huC34567.png"))
    vision = {
        "objects": CAR_OBJECTS,
        "cameras": [car_camera("gate-in", listed), car_camera("gate-out", unlisted)],
        "parking": {
            "lots": [{"id": "visitors", "camera": "gate-in", "occupy_s": 0, "spaces": [
                {"id": "v1", "polygon": [[250, 460], [550, 460], [550, 600], [250, 600]]}]}],
            "gates": [{"id": "main-in", "camera": "gate-in", "direction": "entry", "door": "gate"},
                      {"id": "main-out", "camera": "gate-out", "direction": "exit", "door": "gate"}],
            "plates": [{"plate": "京A·12345", "kind": "resident", "holder": "alice"}],
        },
    }
    async with access_and_vision(tmp_path, vision, gate_unlock="vision") as (controller, bus):
        entered = await wait_event(controller, "parking.vehicle_entered")
        data = entered.event.data
        assert data["gate"] == "main-in" and data["plate"] == "京A12345" and data["listed"] is True
        assert data["barrier"] == "open" and data["holder"] == "alice" and data["confidence"] >= 0.8
        unlock = await wait_event(controller, "access.remote_unlock", within=10)
        assert unlock.event.data["door"] == "gate" and unlock.event.data["origin"] == "vision"
        actor = unlock.event.data["actor"]
        assert actor.startswith("plate:") and len(actor) == len("plate:") + 16 and "12345" not in actor
        await bus.reader(1).wait_output(OUTPUT_LOCK, True, within=5)  # the barrier's relay really moved

        exited = await wait_event(controller, "parking.vehicle_exited")
        out = exited.event.data
        assert out["gate"] == "main-out" and out["listed"] is False and out["barrier"] == "closed"
        assert "plate" not in out and len(out["plate_hash"]) == 64 and out["matched"] is False
        # The unlisted number exists nowhere: not in any event, not in the journal's JSON.
        everything = await controller.journal.query(after_seq=0, limit=10_000)
        dumped = json.dumps([s.event.data for s in everything], ensure_ascii=False)
        assert "沪C34567" not in dumped and "C34567" not in dumped
        unlocks = await controller.journal.query(types=["access.remote_unlock"], after_seq=0, limit=100)
        assert len(unlocks) == 1  # one pass, however many frames show the car

        async with aiohttp.ClientSession() as session:
            url = base_url(controller)
            token = await login(session, url, "installer")
            async with session.get(f"{url}/api/vision/parking/lots", headers=bearer(token)) as r:
                assert r.status == 200
                lots = (await r.json())["lots"]
            assert lots[0]["lot"] == "visitors" and lots[0]["total"] == 1
            resident = await login(session, url, "resident")
            async with session.get(f"{url}/api/vision/parking/lots", headers=bearer(resident)) as r:
                assert r.status == 403
    assert (tmp_path / "data" / "plate.key").stat().st_mode & 0o777 == 0o600


def badge_scene(text: str) -> np.ndarray:
    """A real photo of a running player (messi5.jpg) on a grey border, a QR badge on his chest."""
    scene = np.full((480, 700, 3), 110, np.uint8)
    scene[60:402, 76:624] = cv2.imread(str(PLATES / "messi5.jpg"))
    code = cv2.resize(cv2.QRCodeEncoder.create().encode(text), (80, 80), interpolation=cv2.INTER_NEAREST)
    code = cv2.copyMakeBorder(code, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=255)
    scene[220:308, 311:399] = cv2.cvtColor(code, cv2.COLOR_GRAY2BGR)
    return scene


async def test_badge_checkpoint_is_confirmed_by_the_guard_wearing_it(tmp_path: Path) -> None:
    video = still_video(tmp_path / "post.mp4", badge_scene("linli-guard:alice"))
    start = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%H:%M")
    vision = {
        "objects": {"track": ["person"]},
        "cameras": [{"id": "yard", "url": str(video), "loop": True, "detect": {"fps": 5},
                     "zones": [{"id": "post", "points": [[250, 350], [400, 350], [400, 480], [250, 480]],
                                "inertia": 1}]}],
        "patrol": {
            "guards": [{"id": "alice", "badge": "linli-guard:alice"}, {"id": "bob", "badge": "linli-guard:bob"}],
            "routes": [{"id": "rounds", "starts": [start], "require_badge": True, "checkpoints": [
                {"id": "post", "camera": "yard", "zone": "post", "due_min": 60}]}],
        },
    }
    text = site_yaml(extra=yaml.safe_dump({"vision": vision}))
    async with running_controller(tmp_path, text) as controller:
        reached = await wait_event(controller, "patrol.checkpoint_reached")
        data = reached.event.data
        assert data["checkpoint"] == "post" and data["guard"] == "alice" and data["via"] == "camera"
        done = await wait_event(controller, "patrol.tour_completed")
        assert done.event.data["complete"] is True


async def test_unsafe_plate_key_stops_vision_with_a_clear_error_and_the_daemon_runs_on(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "plate.key").write_bytes(b"k" * 32)
    os.chmod(data / "plate.key", 0o644)  # readable by others: every unlisted plate's hash could be brute-forced
    vision = {"cameras": [{"id": "yard", "url": "rtsp://127.0.0.1:9/yard"}],
              "parking": {"plates": [{"plate": "ABC 1234"}]}}
    async with running_controller(tmp_path, site_yaml(extra=yaml.safe_dump({"vision": vision}))) as controller:
        deadline = time.monotonic() + 20
        while "chmod 600" not in str(controller.health()["tasks"]["vision"]["last_error"]):
            assert time.monotonic() < deadline, controller.health()["tasks"]
            await asyncio.sleep(0.05)
        assert controller.health()["tasks"]["vision"]["last_error"].count("k" * 8) == 0  # the key is never shown
        async with aiohttp.ClientSession() as session:
            url = base_url(controller)
            async with session.get(f"{url}/api/health") as r:
                assert r.status == 200
