"""A visitor pass's QR code shown to a camera opens the access door the camera watches (`pass_door`).

Real parts throughout: the shipped COCO detector finds the person in a real photo (messi5.jpg)
holding a QR code rendered with OpenCV's encoder, OpenCV's QR detector reads it on the person's
crop, access control decides the pass (tokens issued through `access.passes.issue`), and the gate's
lock is an OSDP reader output over a pty (libosdp at both ends).

The pass is issued on the running controller, so the camera's video file is written only then: the
camera starts without it and picks it up on its next reconnect (1 s, then 2 s).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from drivers.osdp.simulator import OUTPUT_LOCK, SimBus, SimReader
from edge.config import ConfigError, parse_config
from edge.daemon import Controller
from rules.access.passes import PassKind, PassOrder, VisitorPass
from tests.controller_helpers import running_controller, site_yaml
from tests.mqtt_helpers import wait_until
from tests.test_access_service import access_yaml, journaled, seed_store, wait_event, wait_ready

PHOTO = Path(__file__).parent / "data" / "plates" / "messi5.jpg"
QR_SIDE = 96  # pixels, plus a 4-pixel quiet zone: a phone screen held to the chest


def person_with_qr(text: str) -> np.ndarray:
    """A real photo of a running player on a grey border, holding a QR code of ``text`` to his chest."""
    scene = np.full((480, 700, 3), 110, np.uint8)
    scene[60:402, 76:624] = cv2.imread(str(PHOTO))
    code = cv2.resize(cv2.QRCodeEncoder.create().encode(text), (QR_SIDE, QR_SIDE), interpolation=cv2.INTER_NEAREST)
    code = cv2.copyMakeBorder(code, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=255)
    y, x = 264 - code.shape[0] // 2, 355 - code.shape[1] // 2
    scene[y : y + code.shape[0], x : x + code.shape[1]] = cv2.cvtColor(code, cv2.COLOR_GRAY2BGR)
    return scene


def put_video(path: Path, image: np.ndarray, away: int = 0) -> None:
    """A 1 s still video at 10 fps, then ``away`` frames of the empty scene, written beside ``path`` and renamed
    into place so the camera never opens half a file. The empty frames flicker (sensor noise), so the
    detector keeps running on them and the person's track ends: coming back, they are a new track."""
    part = path.with_name(f"part-{path.name}")
    writer = cv2.VideoWriter(str(part), cv2.VideoWriter_fourcc(*"mp4v"), 10, (image.shape[1], image.shape[0]))
    for _ in range(10):
        writer.write(image)
    noise = np.random.default_rng(7)
    for _ in range(away):
        writer.write(noise.integers(70, 150, image.shape, dtype=np.uint8))
    writer.release()
    os.replace(part, path)


def camera(camera_id: str, video: Path, pass_door: str | None) -> dict[str, Any]:
    cam: dict[str, Any] = {"id": camera_id, "url": str(video), "loop": True, "detect": {"fps": 5}}
    if pass_door is not None:
        cam["pass_door"] = pass_door
    return cam


@asynccontextmanager
async def site(tmp_path: Path, cameras: list[dict[str, Any]],
               **more: Any) -> AsyncIterator[tuple[Controller, SimReader]]:
    """Access control with the gate on OSDP reader 1, and the cameras (person detection only)."""
    async with SimBus([SimReader(1), SimReader(2)]) as osdp:
        await seed_store(tmp_path / "data")
        vision = {"objects": {"track": ["person"]}, "cameras": cameras, **more}
        text = site_yaml(extra=access_yaml(osdp.port) + yaml.safe_dump({"vision": vision}))
        async with running_controller(tmp_path, text) as controller:
            await wait_ready(controller)
            yield controller, osdp.reader(1)


async def issue(controller: Controller, kind: PassKind, max_uses: int) -> tuple[VisitorPass, str]:
    access = controller.access
    assert access is not None
    order = PassOrder(visitor="Aunt Mei", kind=kind, doors=("gate",), max_uses=max_uses,
                      valid_until=datetime.now(UTC) + timedelta(hours=2))
    return await access.passes.issue(order, apartment="3-201", issued_by="api:alice")


def unlocks(gate: SimReader) -> int:
    return sum(1 for _, no, on in gate.output_log if no == OUTPUT_LOCK and on)


async def assert_never_journaled(controller: Controller, *secrets_: str) -> None:
    every = repr([(e.event.source, e.event.data) for e in await controller.journal.query(after_seq=0, limit=5000)])
    for secret in secrets_:
        assert secret not in every


# ---- configuration ----------------------------------------------------------------------------------


def test_pass_door_must_be_a_door_of_the_site() -> None:
    text = """\
site: {id: s1}
controller: {id: c1}
doors:
  - {id: gate}
vision:
  cameras:
    - {id: gate-cam, url: rtsp://127.0.0.1/gate, pass_door: back}
    - {id: yard, url: rtsp://127.0.0.1/yard}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert len(caught.value.issues) == 1
    issue = str(caught.value.issues[0])
    assert "no door 'back' in doors" in issue and "cameras" in issue and "pass_door" in issue, issue
    config = parse_config(text.replace("pass_door: back", "pass_door: gate"))
    assert config.vision is not None
    assert [c.pass_door for c in config.vision.cameras] == ["gate", None]
    with pytest.raises(ConfigError):  # not an id: refused by the schema before any wiring check
        parse_config(text.replace("pass_door: back", "pass_door: 'Gate; rm -rf'"))


# ---- passes shown to cameras -----------------------------------------------------------------------


async def test_a_qr_pass_shown_to_the_camera_opens_its_door_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    video = tmp_path / "gate.mp4"
    async with site(tmp_path, [camera("gate-cam", video, "gate")]) as (controller, gate):
        visitor_pass, token = await issue(controller, PassKind.QR, max_uses=5)
        await asyncio.to_thread(put_video, video, person_with_qr(token), 20)  # 1 s in view, 2 s away, again

        granted = await wait_event(controller, "access.granted", lambda d: d["reader"] == "camera:gate-cam",
                                   within=40.0)
        data = granted.event.data
        assert data["reason"] == "visitor_pass" and data["door"] == "gate"
        assert data["pass"] == visitor_pass.id and data["apartment"] == "3-201" and data["issued_by"] == "api:alice"
        assert data["uses"] == 1
        await wait_until(lambda: unlocks(gate) == 1, 5, "the gate's strike")

        # The visitor keeps holding the code up, walks off and comes back (a new track): the code is
        # read again and again, yet presented once; the pass has uses left, so only the once-per-token
        # rules (per track, and per camera for a while) keep the door from opening again.
        vision = controller.vision
        tracks: set[int] = set()
        for _ in range(300):  # 6 s of the loop: two more returns
            view = vision.views["gate-cam"].frame
            tracks |= {o.track_id for o in view.objects if o.label == "person"} if view is not None else set()
            await asyncio.sleep(0.02)
        assert len(tracks) >= 2, tracks
        assert unlocks(gate) == 1
        assert len(await journaled(controller, "access.granted")) == 1
        assert not await journaled(controller, "access.denied")

        scans = await journaled(controller, "vision.qr_scanned")
        assert len(scans) == 1 and scans[0].seq < granted.seq
        scan = scans[0].event
        assert scan.source == "gate-cam"
        assert scan.data["camera"] == "gate-cam" and isinstance(scan.data["track_id"], int)
        assert scan.data["length"] == len(token)
        assert scan.data["sha256"] == hashlib.sha256(token.encode()).hexdigest()[:16]
        assert set(scan.data) == {"camera", "track_id", "length", "sha256"}

        access = controller.access
        assert access is not None
        assert access.passes.get(visitor_pass.id, None).uses == 1
        await assert_never_journaled(controller, token)
        assert token not in caplog.text


async def test_used_up_unknown_and_pin_codes_do_not_open_and_plain_cameras_ignore_passes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    videos = {name: tmp_path / f"{name}.mp4" for name in ("used", "unknown", "pin", "lobby")}
    cameras = [camera("used-cam", videos["used"], "gate"), camera("unknown-cam", videos["unknown"], "gate"),
               camera("pin-cam", videos["pin"], "gate"), camera("lobby-cam", videos["lobby"], None)]
    async with site(tmp_path, cameras) as (controller, gate):
        access = controller.access
        assert access is not None
        used_pass, used_token = await issue(controller, PassKind.QR, max_uses=1)
        assert await access.use_pass("gate", used_token, via="intercom:test")  # its one use, spent at a panel
        await wait_until(lambda: unlocks(gate) == 1 and not gate.outputs[OUTPUT_LOCK].on, 5, "the strike again shut")
        unknown_token = secrets.token_urlsafe(24)  # the format of a real token, issued by nobody
        pin_pass, pin = await issue(controller, PassKind.PIN, max_uses=1)  # a PIN is typed, not shown
        live_pass, live_token = await issue(controller, PassKind.QR, max_uses=1)  # shown where nobody reads passes
        for name, text in (("used", used_token), ("unknown", unknown_token), ("pin", pin), ("lobby", live_token)):
            await asyncio.to_thread(put_video, videos[name], person_with_qr(text))

        used = await wait_event(controller, "access.denied", lambda d: d["reader"] == "camera:used-cam", within=40.0)
        assert used.event.data["reason"] == "used_up" and used.event.data["pass"] == used_pass.id
        unknown = await wait_event(controller, "access.denied", lambda d: d["reader"] == "camera:unknown-cam",
                                   within=20.0)
        assert unknown.event.data["reason"] == "unknown_pass" and unknown.event.data["door"] == "gate"

        vision = controller.vision
        for name in ("pin-cam", "lobby-cam"):  # both cameras do see the person holding the code
            await wait_until(lambda n=name: vision.views[n].frame is not None and any(  # type: ignore[misc]
                o.label == "person" for o in vision.views[n].frame.objects), 20, f"a person at {name}")
        await asyncio.sleep(3)  # several reads of each camera's people

        assert unlocks(gate) == 1  # only the panel's use before the cameras started
        readers = {e.event.data["reader"] for e in await journaled(controller, "access.denied")}
        assert readers == {"camera:used-cam", "camera:unknown-cam"}
        granted = await journaled(controller, "access.granted")
        assert [e.event.data["reader"] for e in granted] == ["intercom:test"]
        scanned = sorted(e.event.data["camera"] for e in await journaled(controller, "vision.qr_scanned"))
        assert scanned == ["unknown-cam", "used-cam"]
        assert access.passes.get(pin_pass.id, None).uses == 0
        assert access.passes.get(live_pass.id, None).uses == 0
        await assert_never_journaled(controller, used_token, unknown_token, live_token)
        for secret in (used_token, unknown_token, live_token):
            assert secret not in caplog.text


async def test_a_guard_badge_at_a_pass_camera_goes_to_patrol_not_to_the_door(tmp_path: Path) -> None:
    badge = "linli-guard-alice-0001-badge"  # shaped like a pass token, but it is a guard's badge
    video = tmp_path / "gate.mp4"
    put_video(video, person_with_qr(badge))
    cam = camera("gate-cam", video, "gate")
    cam["zones"] = [{"id": "post", "points": [[250, 350], [400, 350], [400, 480], [250, 480]], "inertia": 1}]
    start = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%H:%M")
    patrol = {"guards": [{"id": "alice", "badge": badge}],
              "routes": [{"id": "rounds", "starts": [start], "require_badge": True, "checkpoints": [
                  {"id": "post", "camera": "gate-cam", "zone": "post", "due_min": 60}]}]}
    async with site(tmp_path, [cam], patrol=patrol) as (controller, gate):
        reached = await wait_event(controller, "patrol.checkpoint_reached", within=40.0)
        assert reached.event.data["guard"] == "alice" and reached.event.data["via"] == "camera"
        await asyncio.sleep(2)  # more reads of the same badge
        assert not await journaled(controller, "vision.qr_scanned")
        assert not await journaled(controller, "access.denied")  # no failed pass attempt towards a lockout
        assert unlocks(gate) == 0
