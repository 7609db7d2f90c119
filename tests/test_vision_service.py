"""The vision service in a real controller: a `vision:` section on a file source, events in the journal,
scene updates for the rules, the API's live JPEG and detections."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import yaml

from edge.config import parse_config
from edge.daemon import Controller
from edge.journal import StoredEvent
from edge.vision import VisionService, demo_section
from rules.scene import SceneUpdate
from tests.controller_helpers import base_url, bearer, login, running_controller, site_yaml
from tests.mosquitto import Mosquitto
from tests.mqtt_helpers import BASE, CONTROLLER, SITE, Collector, TopicTree, running_uplink, site_config

DATA = Path(__file__).parent / "data"
VTEST = DATA / "vtest-80.mp4"

# vtest: people walk along a pavement; the right edge of the frame is a zone, inertia 2 frames.
VISION = f"""\
vision:
  model: {{threads: 2}}
  objects: {{track: [person]}}
  cameras:
    - id: lobby
      name: Lobby
      url: {VTEST}
      realtime: false
      detect: {{fps: 10}}
      zones:
        - {{id: right, points: [[600, 0], [768, 0], [768, 576], [600, 576]], inertia: 2}}
"""


async def wait_event(controller: Controller, type: str, where: Callable[[dict[str, Any]], bool] | None = None,
                     within: float = 60.0) -> StoredEvent:
    deadline = time.monotonic() + within
    while True:
        for stored in await controller.journal.query(types=[type], after_seq=0, limit=1000):
            if where is None or where(stored.event.data):
                return stored
        assert time.monotonic() < deadline, f"no {type} journaled within {within}s"
        await asyncio.sleep(0.05)


async def test_vision_events_snapshots_and_api(tmp_path: Path) -> None:
    scenes: list[SceneUpdate] = []
    async with running_controller(tmp_path, site_yaml(extra=VISION)) as controller:
        online = await wait_event(controller, "camera.online")
        assert online.event.source == "lobby" and online.event.data["frame_size"] == [768, 576]
        assert controller.vision is not None
        controller.vision.scene_listeners.append(scenes.append)

        entered = await wait_event(controller, "vision.object_entered")
        data = entered.event.data
        assert data["camera"] == "lobby" and data["zone"] == "right" and data["label"] == "person"
        assert isinstance(data["track_id"], int) and len(data["box"]) == 4
        # The snapshot: the event frame with the box drawn, in data_dir/snapshots/<camera>/.
        snapshot = controller.config.data_dir / "snapshots" / "lobby" / data["snapshot"]
        image = cv2.imread(str(snapshot))
        assert image is not None and image.shape == (576, 768, 3)

        async with aiohttp.ClientSession() as session:
            url = base_url(controller)
            token = await login(session, url, "installer")
            async with session.get(f"{url}/api/vision/cameras/lobby/latest.jpg", headers=bearer(token)) as r:
                assert r.status == 200 and r.content_type == "image/jpeg"
                body = await r.read()
            frame = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert frame.shape == (576, 768, 3)
            async with session.get(f"{url}/api/vision/cameras", headers=bearer(token)) as r:
                assert r.status == 200
                cameras = (await r.json())["cameras"]
            assert [c["camera"] for c in cameras] == ["lobby"]
            assert cameras[0]["stats"]["detector_runs"] >= 1 and set(cameras[0]["zones"]) == {"right"}
            async with session.get(f"{url}/api/vision/cameras/nope", headers=bearer(token)) as r:
                assert r.status == 404
            resident = await login(session, url, "resident")
            async with session.get(f"{url}/api/vision/cameras/lobby/latest.jpg", headers=bearer(resident)) as r:
                assert r.status == 403  # camera pictures are for staff only
            async with session.get(f"{url}/api/vision/cameras/lobby/latest.jpg") as r:
                assert r.status == 401

        # For the rules' services: a snapshot of a track in view, the latest frame for plate reading.
        in_view = controller.vision.views["lobby"].frame.objects[0].track_id
        name = await controller.vision.snapshot("lobby", in_view)
        assert name is not None and (snapshot.parent / name).is_file()
        assert await controller.vision.snapshot("lobby", 10**6) is None
        at, latest = controller.vision.latest_frame("lobby")
        assert latest.shape == (576, 768, 3) and at > 0

        # The clip ends: the camera goes offline, and the people in the zone leave it.
        offline = await wait_event(controller, "camera.offline")
        assert offline.event.data["reason"] == "end of file" and offline.event.severity == "warning"
        left = await wait_event(controller, "vision.object_left",
                                lambda d: d["track_id"] == data["track_id"] and d["zone"] == "right")
        assert left.seq > entered.seq
        device = controller.devices.get("lobby")
        assert device is not None and device.kind == "camera"
    assert scenes, "no SceneUpdate reached the listener"
    update = scenes[-1]
    assert update.camera == "lobby" and update.frame_size == (768, 576)
    assert all(o.label == "person" and len(o.box) == 4 for u in scenes for o in u.objects)
    assert any(o.zones == frozenset({"right"}) for u in scenes for o in u.objects)


async def test_api_without_vision_says_so(tmp_path: Path) -> None:
    async with running_controller(tmp_path) as controller, aiohttp.ClientSession() as session:
        url = base_url(controller)
        token = await login(session, url, "admin")
        async with session.get(f"{url}/api/vision/cameras", headers=bearer(token)) as r:
            assert r.status == 503


async def test_unreachable_camera_is_offline_and_the_daemon_keeps_running(tmp_path: Path) -> None:
    text = site_yaml(extra=VISION.replace(str(VTEST), "rtsp://127.0.0.1:9/stream"))
    async with running_controller(tmp_path, text) as controller:
        offline = await wait_event(controller, "camera.offline", within=30)
        assert offline.event.data["url"] == "rtsp://127.0.0.1:9/stream"
        assert controller.health()["tasks"]["vision"]["running"]
        assert controller.vision.status("lobby")["online"] is False


async def test_home_assistant_zone_sensors_over_mqtt(mosquitto: Mosquitto, tmp_path: Path) -> None:
    vision = yaml.safe_load(VISION)["vision"]
    config = site_config(tmp_path, mosquitto.url, vision=vision)
    tree = TopicTree()
    async with (
        Collector(mosquitto.port, ["homeassistant/#", f"{BASE}/state/#"]) as seen,
        running_uplink(config) as (controller, _uplink),
    ):
        service = VisionService(controller)
        controller.vision = service
        task = asyncio.create_task(service.run())
        try:
            topic = f"homeassistant/binary_sensor/linli_{SITE}_{CONTROLLER}/vision_lobby_right_person/config"
            await seen.wait_for(lambda _: bool(seen.on(topic)), limit_s=30, what="the zone's person sensor")
            payload = seen.on(topic)[-1]
            assert tree.check(topic, payload.payload) == "ha_discovery_binary_sensor"
            sensor = payload.json()
            assert sensor["state_topic"] == f"{BASE}/state/lobby" and sensor["device_class"] == "occupancy"
            assert seen.matching(r"/vision_lobby_right_vehicle/config$")

            def occupied(m: Any) -> bool:
                return m.topic == f"{BASE}/state/lobby" and m.json()["zones"]["right"]["person"] > 0

            await seen.wait_for(lambda msgs: any(occupied(m) for m in msgs), limit_s=60,
                                what="a person in the zone, in the camera's state")
            state = next(m for m in seen.messages if occupied(m))
            assert tree.check(state.topic, state.payload) == "device_state"
            assert state.json()["online"] is True
            assert "value_json.zones['right'].person" in sensor["value_template"]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_reload_restarts_vision_on_a_changed_section(tmp_path: Path) -> None:
    async with running_controller(tmp_path, site_yaml(extra=VISION)) as controller:
        await wait_event(controller, "camera.online")
        old = controller.vision
        await controller.reload_config(site_yaml(extra=VISION.replace("id: right", "id: kerb")))
        deadline = time.monotonic() + 10
        while controller.vision is old or controller.vision is None or not controller.vision.pipelines:
            assert time.monotonic() < deadline, "vision did not restart"
            await asyncio.sleep(0.05)
        assert [z.id for z in controller.vision.cameras[0].zones] == ["kerb"]
        assert old._closing.is_set()  # the old service stopped its readers
        same = controller.vision
        await controller.reload_config(site_yaml(extra=VISION.replace("id: right", "id: kerb")))
        assert controller.vision is same  # nothing changed: nothing restarted


def test_demo_section_is_a_valid_site_file_section() -> None:
    config = parse_config("site: {id: demo}\ncontroller: {id: gate-1}\n" + demo_section())
    assert config.vision is not None and config.vision.cameras[0].loop
    assert Path(config.vision.cameras[0].url).is_file()
    with_patrol = parse_config("site: {id: demo}\ncontroller: {id: gate-1}\n" + demo_section(patrol_start="07:45"))
    assert with_patrol.vision is not None and with_patrol.vision.patrol is not None
    assert with_patrol.vision.patrol.routes[0].checkpoints[0].zone == "entrance"
