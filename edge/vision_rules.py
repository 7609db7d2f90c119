"""Patrol, parking, plates, badges and privacy wired to the running vision service.

The rules are pure engines (rules/patrol, rules/parking); this module feeds them and acts on what
they return:

- every `SceneUpdate` (a scene listener of edge/vision.py) goes to both engines; a 1 s tick loop
  drives tour starts, misses, space hysteresis and overstays between scenes; `access.granted`
  events from the bus confirm card checkpoints;
- returned events are emitted on the bus; a `parking.violation` gets a snapshot of the frame with
  the vehicle's box, faces and plates blurred before the file is written;
- at gate cameras, vehicles are read for plates (PP-OCR, in this module's own executor thread,
  never on the loop); a listed plate's `OpenBarrier` becomes `access.remote_unlock(origin="vision")`
  where the door lists `vision` in its `remote_unlock`; unlisted plates exist only as HMAC hashes
  with the site key `data_dir/plate.key` (32 random bytes, mode 0600, created on first start);
- at camera checkpoints of routes whose guards carry QR badges, people in the zone are read for a
  badge (vision/badges.py) and the engine is told which guard the track is;
- at cameras with a `pass_door`, people are read for QR codes the same way: one that looks like a
  visitor pass token goes to `access.use_pass(door, token, via="camera:<id>")` once per track and
  token (access decides, rate-limits per camera, journals); only its length and a SHA-256 prefix
  are ever journaled (`vision.qr_scanned`), never the token;
- per-lot counts are retained on `state/parking.<lot>` (a Home Assistant `sensor` of free spaces
  per lot); with `vision.publish_snapshots` each camera's latest event snapshot, blurred, goes to
  `image/<camera>` for its HA `image` entity. Raw frames never leave the box.

One worker thread does all the image work (plates, badges, faces): on a 2-core box the detector's
threads already take the rest, and OpenCV's DNN net (faces) must not run on two threads at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge.events import Event
from edge.secret_key import load_or_create_key
from rules.access.passes import TOKEN_RE as PASS_TOKEN
from rules.parking import OpenBarrier, ParkingEngine, ParkingEvent
from rules.patrol import PatrolEngine, PatrolEvent
from rules.scene import SceneUpdate, TrackedObject
from vision.badges import BadgeReader
from vision.config import VEHICLES
from vision.plates import PlateReader, PlateReading
from vision.privacy import FaceDetector, blur_regions
from vision.snapshots import annotate, encode_jpeg

if TYPE_CHECKING:
    from edge.daemon import Controller
    from edge.homeassistant import Entity
    from edge.vision import VisionService
    from vision.pipeline import ObjectView

log = logging.getLogger(__name__)

PLATE_RETRY_S = 0.5  # a vehicle whose plate was not read is tried again this often
BADGE_RETRY_S = 1.0
MAX_READS = 3  # vehicles (or people) read per frame and camera, biggest first: bounds a busy frame's cost
TEXT_UPSCALE_BELOW = 480  # crops smaller than this (longer side) are enlarged before text detection
TICK_S = 1.0
# One person is often several overlapping person tracks, each reading the same code: a token presented at a
# camera is not presented there again for this long, whichever track reads it.
PASS_HOLD_S = 30.0
Box = tuple[float, float, float, float]


class PlateKeyError(Exception):
    """The plate key file is unsafe or damaged; the message says what to do."""


def load_plate_key(path: Path) -> bytes:
    """Read the site key plates are hashed with, creating it (0600) on first start. Never logged:
    with it, a hash can be checked against guessed plates, so it stays on the box."""
    return load_or_create_key(path, "plate key", PlateKeyError)


@dataclass(frozen=True)
class Shot:
    """An event frame to publish: the image (BGR, never written to), its box and caption."""

    image: np.ndarray
    box: Box
    caption: str
    vehicles: tuple[Box, ...]


class VisionRules:
    """Built by VisionService when its section has patrol, parking, publish_snapshots or a pass camera."""

    def __init__(self, controller: Controller, service: VisionService) -> None:
        self.controller = controller
        self.service = service
        section = service.config
        site = controller.config
        self.patrol = (PatrolEngine(section.patrol, site.site.timezone)
                       if section.patrol is not None and section.patrol.routes else None)
        self.parking = (ParkingEngine(section.parking, load_plate_key(site.data_dir / "plate.key"))
                        if section.parking is not None else None)
        self.publish_snapshots = section.publish_snapshots
        cameras = {c.id for c in service.cameras}
        parking = section.parking
        self._gates: dict[str, list[str]] = {}  # camera -> gate ids
        for gate in parking.gates if parking is not None else ():
            if gate.camera in cameras:
                self._gates.setdefault(gate.camera, []).append(gate.id)
        self._lots = list(parking.lots) if parking is not None else []
        # Badge checkpoints: camera -> zones, only where some guard has a badge to read.
        self._badge_zones: dict[str, set[str]] = {}
        if section.patrol is not None and any(g.badge for g in section.patrol.guards):
            for route in section.patrol.routes:
                for checkpoint in route.checkpoints:
                    if checkpoint.camera is not None and checkpoint.zone is not None:
                        self._badge_zones.setdefault(checkpoint.camera, set()).add(checkpoint.zone)
        guards = section.patrol.guards if section.patrol is not None else []
        self._guard_badges: set[str] = {g.badge for g in guards if g.badge}  # never presented as passes
        # Pass cameras: camera -> the access door a visitor's QR pass shown to it is presented at.
        self._pass_doors = {c.id: c.pass_door for c in service.cameras if c.pass_door is not None}
        self.redacts = self.publish_snapshots or bool(parking and parking.restricted)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vision-rules")
        self._plates: PlateReader | None = None
        self._faces: FaceDetector | None = None
        self._badges: BadgeReader | None = None
        self._busy: set[tuple[str, str]] = set()  # (what, camera) with a job in flight
        self._tried: dict[tuple[str, str, int], float] = {}  # (what, camera, track) -> last try
        self._done: set[tuple[str, str, int]] = set()  # tracks read (plate found, badge found)
        self._seen: dict[tuple[str, int], set[str]] = {}  # (camera, track) -> QR texts acted on (badges, token hashes)
        self._presented: dict[tuple[str, str], float] = {}  # (camera, token hash) -> when presented at its door
        self._lot_state: dict[str, dict[str, Any]] = {}
        self._shots: dict[str, Shot] = {}  # camera -> the latest snapshot waiting to be published
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle ----------------------------------------------------------------------------

    async def load_models(self) -> None:
        """Load the OCR and face models (a missing or corrupt file raises here, at start)."""
        loop = asyncio.get_running_loop()
        if self._gates or self.redacts:
            self._plates = await loop.run_in_executor(self._executor, PlateReader)
        if self.redacts:
            self._faces = await loop.run_in_executor(self._executor, FaceDetector)
        if self._badge_zones or self._pass_doors:
            self._badges = await loop.run_in_executor(self._executor, BadgeReader)

    async def run(self) -> None:
        """The tick loop and the access.granted feed; returns only when cancelled."""
        await self._publish_lots()
        access = None
        if self.patrol is not None:
            access = self.controller.bus.subscribe("vision-patrol", maxsize=256,
                                                   accept=lambda e: e.type == "access.granted")
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._tick_loop())
                if access is not None:
                    tasks.create_task(self._access_loop(access))
        finally:
            if access is not None:
                access.close()
            self.close()

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _tick_loop(self) -> None:
        while True:
            now = time.time()
            await self._emit(self.patrol.tick(now) if self.patrol is not None else [])
            await self._emit(self.parking.tick(now) if self.parking is not None else [])
            await self._publish_lots()
            await asyncio.sleep(TICK_S)

    async def _access_loop(self, access: Any) -> None:
        assert self.patrol is not None
        async for stored in access:
            event: Event = stored.event
            await self._emit(self.patrol.on_access(event.type, event.data, event.time.timestamp()))

    # ---- scenes ------------------------------------------------------------------------------

    async def on_scene(self, update: SceneUpdate) -> None:
        """A scene listener: runs on the loop, right after the frame was processed."""
        if self.patrol is not None:
            await self._emit(self.patrol.on_scene(update))
        if self.parking is not None:
            await self._emit(self.parking.on_scene(update))
            await self._publish_lots()
        if update.camera in self._gates and self._plates is not None:
            vehicles = [o for o in update.objects if o.label in VEHICLES]
            self._start("plate", update, vehicles, PLATE_RETRY_S, self._read_plates)
        zones = self._badge_zones.get(update.camera, set())
        door = self._pass_doors.get(update.camera)
        if (zones or door is not None) and self._badges is not None:
            # A pass camera reads everyone in view; a badge checkpoint only the people in its zones.
            people = [o for o in update.objects if o.label == "person" and (door is not None or o.zones & zones)]
            self._start("qr", update, people, BADGE_RETRY_S, self._read_qr_codes)

    def _start(self, what: str, update: SceneUpdate, objects: list[TrackedObject], retry_s: float,
               job: Any) -> None:
        """Start a reading job for the objects of this frame not read yet (one job per camera at a time)."""
        camera = update.camera
        self._forget(what, camera, {o.track_id for o in update.objects})
        if (what, camera) in self._busy:
            return
        due = [o for o in objects if (what, camera, o.track_id) not in self._done
               and update.at - self._tried.get((what, camera, o.track_id), 0.0) >= retry_s]
        if not due:
            return
        frame = self.service.latest_frame(camera)
        if frame is None:
            return
        due.sort(key=lambda o: (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]), reverse=True)
        due = due[:MAX_READS]
        for o in due:
            self._tried[(what, camera, o.track_id)] = update.at
        self._busy.add((what, camera))
        self._spawn(job(camera, update.at, frame[1], due), (what, camera))

    def _forget(self, what: str, camera: str, present: set[int]) -> None:
        """Tracks gone from the camera: their read state goes too (track ids are not reused)."""
        for key in [k for k in self._tried if k[0] == what and k[1] == camera and k[2] not in present]:
            del self._tried[key]
            self._done.discard(key)
            self._seen.pop((camera, key[2]), None)

    def _spawn(self, coro: Any, busy: tuple[str, str] | None = None) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if busy is not None:
                self._busy.discard(busy)
            if not t.cancelled() and t.exception() is not None:
                log.error("vision rules job failed", exc_info=t.exception())

        task.add_done_callback(done)

    # ---- gates: plates -----------------------------------------------------------------------

    async def _read_plates(self, camera: str, at: float, image: np.ndarray,
                           vehicles: list[TrackedObject]) -> None:
        loop = asyncio.get_running_loop()
        reader = self._plates
        assert reader is not None and self.parking is not None
        for vehicle in vehicles:
            reading = await loop.run_in_executor(self._executor, reader.read, image, vehicle.box)
            if reading is None:
                continue
            self._done.add(("plate", camera, vehicle.track_id))
            await self.on_plate(camera, reading, at)

    async def on_plate(self, camera: str, reading: PlateReading, at: float) -> None:
        """A plate read at a gate camera: every gate of that camera gets it (entry and exit lanes)."""
        assert self.parking is not None
        for gate in self._gates.get(camera, ()):
            outcome = self.parking.on_plate(gate, reading.text, at, reading.confidence)
            await self._emit(outcome.events)
            for action in outcome.actions:
                await self._open_barrier(action)

    async def _open_barrier(self, action: OpenBarrier) -> None:
        from edge.door_control import RemoteUnlockRefused

        assert self.parking is not None
        access = self.controller.access
        actor = f"plate:{self.parking.plate_hash(action.plate)[:16]}"
        if access is None:
            log.warning("gate %s: listed plate, but access control is not running; barrier %s stays shut",
                        action.gate, action.door)
            return
        try:
            await access.remote_unlock(action.door, origin="vision", actor=actor)
        except RemoteUnlockRefused as exc:  # journaled by access where it is a policy refusal
            log.warning("gate %s: barrier %s not opened: %s", action.gate, action.door, exc)

    # ---- QR codes on people: patrol badges, visitor passes -------------------------------------------

    async def _read_qr_codes(self, camera: str, at: float, image: np.ndarray, people: list[TrackedObject]) -> None:
        loop = asyncio.get_running_loop()
        reader = self._badges
        assert reader is not None
        zones = self._badge_zones.get(camera, set())
        door = self._pass_doors.get(camera)
        for person in people:
            text = await loop.run_in_executor(self._executor, reader.read, image, person.box)
            if text is None:
                continue
            seen = self._seen.setdefault((camera, person.track_id), set())
            if door is not None and text not in self._guard_badges and PASS_TOKEN.fullmatch(text):
                digest = hashlib.sha256(text.encode("ascii")).hexdigest()
                if digest not in seen:  # a pass held up for a while is presented once, not every second
                    seen.add(digest)
                    await self._present_pass(camera, door, person.track_id, text, digest, at)
            elif self.patrol is not None and person.zones & zones and text not in seen:
                seen.add(text)
                if door is None:  # nothing else to look for on this track
                    self._done.add(("qr", camera, person.track_id))
                await self._emit(self.patrol.on_badge(camera, person.track_id, text, at))

    async def _present_pass(self, camera: str, door: str, track_id: int, token: str, digest: str, at: float) -> None:
        """A visitor pass token shown to a pass camera: access control decides, counts the attempt
        towards this camera's lockout and journals the decision before the door moves."""
        for key in [k for k, t in self._presented.items() if at - t >= PASS_HOLD_S]:
            del self._presented[key]
        if (camera, digest) in self._presented:
            return
        self._presented[(camera, digest)] = at
        await self.controller.bus.emit("vision.qr_scanned", camera, {
            "camera": camera, "track_id": track_id, "length": len(token), "sha256": digest[:16]})
        access = self.controller.access
        if access is None:
            log.warning("camera %s: a visitor pass was shown, but access control is not running; door %s "
                        "stays shut", camera, door)
            return
        await access.use_pass(door, token, via=f"camera:{camera}")

    # ---- events, snapshots, privacy ------------------------------------------------------------

    async def _emit(self, events: Iterable[PatrolEvent | ParkingEvent]) -> None:
        for event in events:
            data = dict(event.data)
            if event.type == "parking.violation":
                camera, track_id = str(data["camera"]), int(data["track_id"])
                data["snapshot"] = await self.service.snapshot(camera, track_id, redact=self.redact)
                view = self.service.views[camera].frame
                shown = next((o for o in view.objects if o.track_id == track_id), None) if view else None
                if view is not None and shown is not None:
                    self.share(camera, view.frame.image, shown.box, f"{event.type} {shown.label}", view.objects)
            await self.controller.bus.emit(event.type, event.source, data, event.severity)

    async def redact(self, image: np.ndarray, objects: Sequence[ObjectView | TrackedObject]) -> np.ndarray:
        """A copy of the frame with faces and plates blurred (in the worker thread)."""
        vehicles = tuple(o.box for o in objects if o.label in VEHICLES)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.blur, image, vehicles)

    def blur(self, image: np.ndarray, vehicles: Sequence[Box] = ()) -> np.ndarray:
        """Blocking: faces (CenterFace) and every text line (PP-OCR's detector, on the whole frame and
        enlarged on each vehicle) made unreadable. A text line is blurred whether or not it reads as a
        valid plate: a plate read wrongly is still a plate."""
        boxes: list[Box] = []
        if self._faces is not None:
            boxes += [face[:4] for face in self._faces.detect(image)]
        if self._plates is not None:
            height, width = image.shape[:2]
            for region in ((0.0, 0.0, float(width), float(height)), *vehicles[:MAX_READS]):
                boxes += self._text_lines(image, region)
        return blur_regions(image, boxes, padding=0.15)

    def _text_lines(self, image: np.ndarray, region: Box) -> list[Box]:
        assert self._plates is not None
        x1, y1 = max(0, int(region[0])), max(0, int(region[1]))
        x2, y2 = min(image.shape[1], int(region[2])), min(image.shape[0], int(region[3]))
        if x2 - x1 < 16 or y2 - y1 < 16:
            return []
        crop = image[y1:y2, x1:x2]
        scale = max(1.0, TEXT_UPSCALE_BELOW / max(crop.shape[:2]))
        if scale > 1:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        return [(x1 + a / scale, y1 + b / scale, x1 + c / scale, y1 + d / scale)
                for a, b, c, d in self._plates.find_text(crop)]

    def share(self, camera: str, image: np.ndarray, box: Box, caption: str,
              objects: Sequence[ObjectView]) -> None:
        """An event snapshot for the camera's HA image entity (publish_snapshots only). Latest wins:
        while one is being blurred, a newer one replaces any still waiting."""
        if not self.publish_snapshots or self.controller.uplink is None:
            return
        vehicles = tuple(o.box for o in objects if o.label in VEHICLES)
        self._shots[camera] = Shot(image, box, caption, vehicles)
        if ("share", camera) not in self._busy:
            self._busy.add(("share", camera))
            self._spawn(self._publish_shots(camera), ("share", camera))

    async def _publish_shots(self, camera: str) -> None:
        loop = asyncio.get_running_loop()
        quality = self.service.config.snapshots.quality
        while (shot := self._shots.pop(camera, None)) is not None:
            jpeg = await loop.run_in_executor(self._executor, self._shot_jpeg, shot, quality)
            uplink = self.controller.uplink
            if uplink is not None:
                uplink.publish_image(camera, jpeg)

    def _shot_jpeg(self, shot: Shot, quality: int) -> bytes:
        blurred = self.blur(shot.image, shot.vehicles)
        return encode_jpeg(annotate(blurred, [(shot.box, shot.caption)]), quality)

    # ---- parking lots: retained counts ----------------------------------------------------------

    def lot_state(self, lot: str) -> dict[str, Any]:
        assert self.parking is not None
        return {"lot": lot, **self.parking.lot_counts(lot), "spaces": self.parking.spaces(lot)}

    async def _publish_lots(self) -> None:
        if self.parking is None:
            return
        uplink = self.controller.uplink
        for lot in self._lots:
            state = self.lot_state(lot.id)
            if state == self._lot_state.get(lot.id):
                continue
            self._lot_state[lot.id] = state
            if uplink is not None:
                await uplink.publish_state(f"parking.{lot.id}", state)

    def ha_entities(self) -> list[Entity]:
        """A free-spaces sensor per lot; with publish_snapshots an image entity per camera."""
        from edge.homeassistant import Entity

        uplink = self.controller.uplink
        if uplink is None:
            return []
        entities = [
            Entity("sensor", f"vision_lot_{lot.id}_free".replace("-", "_"), f"{lot.name or lot.id} free spaces", {
                "state_topic": uplink.topics.state(f"parking.{lot.id}"),
                "value_template": "{{ value_json.free }}",
                "unit_of_measurement": "spaces",
                "state_class": "measurement",
                "icon": "mdi:parking",
            })
            for lot in self._lots
        ]
        if self.publish_snapshots:
            entities += [
                Entity("image", f"vision_{camera.id}_snapshot".replace("-", "_"),
                       f"{camera.name or camera.id} snapshot", {
                           "image_topic": f"{uplink.topics.base}/image/{camera.id}",
                           "image_encoding": "b64",  # text on the wire: checkable against edge/schema/mqtt.json
                           "content_type": "image/jpeg",
                       })
                for camera in self.service.cameras
            ]
        return entities

    # ---- for the API -------------------------------------------------------------------------

    def tour_log(self, route: str | None, limit: int) -> list[dict[str, Any]] | None:
        return None if self.patrol is None else self.patrol.tour_log(route, limit)

    def lots(self) -> list[dict[str, Any]] | None:
        return None if self.parking is None else [self.lot_state(lot.id) for lot in self._lots]


def wanted(service: VisionService) -> bool:
    section = service.config
    return (section.patrol is not None or section.parking is not None or section.publish_snapshots
            or any(c.pass_door is not None for c in service.cameras))
