"""The vision pipeline in the daemon: per camera capture -> motion -> detect -> track -> events.

- One reader thread per camera (vision.capture) hands frames to the loop, latest frame wins: a slow
  detector drops frames instead of queueing them.
- Processing (motion, detection, tracking) runs on `vision.workers` threads (default one) shared by
  all cameras, never on the loop; onnxruntime and OpenCV release the GIL. Worker processes gave more
  frames/s with two busy cameras on the 2-core box, but each loads its own onnxruntime, OpenCV and
  model (~100 MB), which two cameras cannot afford under the 300 MB target; see bench/vision.py.
- The loop turns results into events: `camera.online` / `camera.offline`, `vision.object_entered` /
  `vision.object_left` per zone (with a snapshot), the camera's device state (objects per zone,
  for Home Assistant's binary_sensors), and a `SceneUpdate` per processed frame for the scene
  listeners (patrol, parking: rules/ code that turns scenes into events).
- The latest frame and its objects are kept per camera for the API (edge/vision_api.py), which
  draws and encodes a JPEG only when asked.
- With `patrol`, `parking` or `publish_snapshots` in the section, edge/vision_rules.py's
  VisionRules listens to the scenes (tours, spaces, violations, gate plates, badges) and publishes
  blurred event snapshots for Home Assistant's image entities.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.events import Severity
from edge.vision_config import VisionSiteSection
from edge.vision_rules import VisionRules, wanted
from rules.scene import SceneUpdate, TrackedObject
from vision.capture import Capture, Frame, is_file, redact
from vision.config import VEHICLES, CameraConfig
from vision.detect import Detector
from vision.pipeline import CameraPipeline, FrameResult, ObjectView, ZoneEvent
from vision.snapshots import SnapshotStore, annotate, encode_jpeg

if TYPE_CHECKING:
    from edge.daemon import Controller

log = logging.getLogger(__name__)

SceneListener = Callable[[SceneUpdate], Awaitable[None] | None]
Redactor = Callable[[np.ndarray, Sequence[ObjectView]], Awaitable[np.ndarray]]  # blurs a copy of a frame
Inbox = asyncio.Queue["Frame | tuple[bool, str]"]  # frames and (online, reason) changes of one camera
GROUPS = {"person": ("person",), "vehicle": VEHICLES}  # HA binary_sensors per zone


@dataclass
class CameraView:
    """What the API shows of a camera: its latest processed frame and what was on it."""

    camera: str
    online: bool = False
    frame: FrameResult | None = None
    reason: str = ""


class VisionService:
    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        config = controller.config.vision
        assert config is not None, "VisionService needs a vision section"
        self.config: VisionSiteSection = config
        self.cameras = [c for c in config.cameras if c.enabled]
        self.snapshots = SnapshotStore(controller.config.data_dir / "snapshots", config.snapshots)
        self.views: dict[str, CameraView] = {c.id: CameraView(c.id) for c in self.cameras}
        self.pipelines: dict[str, CameraPipeline] = {}
        self.captures: dict[str, Capture] = {}
        # rules/ logic fed with every SceneUpdate (patrol, parking); each returns nothing or a coroutine.
        self.scene_listeners: list[SceneListener] = list(getattr(controller, "scene_listeners", []))
        self.rules: VisionRules | None = None  # patrol, parking, plates, shared snapshots (edge/vision_rules.py)
        self._worker = ThreadPoolExecutor(config.workers, thread_name_prefix="vision")
        self._zone_state: dict[str, dict[str, Any]] = {}
        self._closing = threading.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        queues: dict[str, Inbox] = {}
        try:
            detector = await loop.run_in_executor(self._worker, Detector, self.config.model)
            if wanted(self):
                self.rules = VisionRules(self.controller, self)
                await self.rules.load_models()  # a missing or corrupt OCR/face model stops the start here
                self.scene_listeners.append(self.rules.on_scene)
            for camera in self.cameras:
                self.pipelines[camera.id] = CameraPipeline(camera, self.config, detector)
                # A file read as fast as possible (tests, benchmarks) waits for the pipeline: every frame counts.
                every = is_file(camera.url) and not camera.realtime
                queue: Inbox = asyncio.Queue(maxsize=1 if every else 0)
                queues[camera.id] = queue
                on_frame = _every(loop, queue, self._closing) if every else _latest(loop, queue)
                self.captures[camera.id] = Capture(camera, on_frame, _state(loop, queue))
            self._add_ha_entities()
            for capture in self.captures.values():
                capture.start()
            async with asyncio.TaskGroup() as tasks:
                for camera in self.cameras:
                    tasks.create_task(self._camera(camera, queues[camera.id]))
                if self.rules is not None:
                    tasks.create_task(self.rules.run())
        finally:
            self._closing.set()
            for queue in queues.values():
                _drain(queue)  # releases a reader thread waiting to queue its frame
            await asyncio.to_thread(self._stop_captures)
            self._worker.shutdown(wait=False, cancel_futures=True)
            if self.rules is not None:
                self.rules.close()

    def _stop_captures(self) -> None:
        for capture in self.captures.values():
            capture.request_stop()  # all at once: each may sit in a blocking read for up to stall_s
        for capture in self.captures.values():
            capture.stop(timeout=2)  # daemon threads: one stuck in a read is left to its timeout

    async def _camera(self, camera: CameraConfig, queue: Inbox) -> None:
        loop = asyncio.get_running_loop()
        pipeline = self.pipelines[camera.id]
        view = self.views[camera.id]
        while True:
            item = await queue.get()
            if isinstance(item, tuple):
                online, reason = item
                await self._camera_state(camera, view, pipeline, online, reason)
                continue
            result = await loop.run_in_executor(self._worker, pipeline.process, item)
            view.frame = result
            await self._result(camera, result)

    async def _camera_state(self, camera: CameraConfig, view: CameraView, pipeline: CameraPipeline, online: bool,
                            reason: str) -> None:
        view.online, view.reason = online, reason
        device = self.controller.devices.get(camera.id)
        if online:
            self.controller.devices.seen(camera.id)
            size = self.captures[camera.id].frame_size
            await self.controller.bus.emit("camera.online", camera.id,
                                           {"camera": camera.id, "frame_size": list(size) if size else None})
        else:
            if device is not None:
                device.online = False
            for event in pipeline.reset():
                await self._zone_event(camera, None, event)
            await self.controller.bus.emit("camera.offline", camera.id,
                                           {"camera": camera.id, "url": redact(camera.url), "reason": reason},
                                           Severity.WARNING)
        await self._publish_state(camera)

    async def _result(self, camera: CameraConfig, result: FrameResult) -> None:
        for event in result.zone_events:
            await self._zone_event(camera, result, event)
        if result.zone_events:
            await self._publish_state(camera)
        # Every frame, also those motion gating skipped (their objects are the tracks as last seen):
        # dwell timers in the rules move with frame time.
        if self.scene_listeners:
            image = result.frame.image
            update = SceneUpdate(camera.id, result.frame.at, (image.shape[1], image.shape[0]),
                                 tuple(_tracked(o) for o in result.objects))
            for listener in self.scene_listeners:
                try:
                    outcome = listener(update)
                    if inspect.isawaitable(outcome):
                        await outcome
                except Exception:  # one broken listener must not stop the camera
                    log.exception("scene listener %r failed", listener)

    async def _zone_event(self, camera: CameraConfig, result: FrameResult | None, event: ZoneEvent) -> None:
        obj = event.object
        data: dict[str, Any] = {
            "camera": camera.id,
            "zone": event.zone,
            "label": obj.label,
            "track_id": obj.track_id,
            "score": round(obj.score, 3),
            "box": [round(v, 1) for v in obj.box],
        }
        if event.entered and result is not None:
            path = await asyncio.to_thread(self.snapshots.save, camera.id, result.frame.image, obj.box,
                                           f"{obj.label} {obj.score:.2f}", obj.track_id, obj.label, result.frame.at)
            data["snapshot"] = path.name
            if self.rules is not None:  # the HA image entity's copy, blurred (publish_snapshots only)
                self.rules.share(camera.id, result.frame.image, obj.box, f"{obj.label} {obj.score:.2f}",
                                 result.objects)
        await self.controller.bus.emit("vision.object_entered" if event.entered else "vision.object_left",
                                       camera.id, data)

    # ---- Home Assistant: binary_sensor person/vehicle per zone, from the camera's state -------------

    def zone_counts(self, camera: str) -> dict[str, dict[str, int]]:
        view = self.views.get(camera)
        counts: dict[str, dict[str, int]] = {}
        cam = next((c for c in self.cameras if c.id == camera), None)
        if cam is None or view is None:
            return counts
        # The latest frame's immutable views, not the tracker the worker thread is updating. An
        # offline camera's objects left their zones (pipeline.reset()).
        objects = view.frame.objects if view.frame is not None and view.online else ()
        for zone in cam.zones:
            counts[zone.id] = {group: sum(1 for o in objects if zone.id in o.zones and o.label in labels)
                               for group, labels in GROUPS.items()}
        return counts

    async def _publish_state(self, camera: CameraConfig) -> None:
        uplink = self.controller.uplink
        state = {"online": self.views[camera.id].online, "zones": self.zone_counts(camera.id)}
        if state == self._zone_state.get(camera.id):
            return
        self._zone_state[camera.id] = state
        if state["online"]:
            self.controller.devices.seen(camera.id, **state)
        if uplink is not None:
            await uplink.publish_state(camera.id, state)

    def _add_ha_entities(self) -> None:
        uplink = self.controller.uplink
        if uplink is None:
            return
        from edge.homeassistant import Entity

        topic = uplink.topics.state
        # A restarted service (reload, crash) replaces the entities of the one before.
        uplink.ha_entities[:] = [e for e in uplink.ha_entities if not e.object_id.startswith("vision_")]
        for camera in self.cameras:
            for zone in camera.zones:
                for group in GROUPS:
                    object_id = f"vision_{camera.id}_{zone.id}_{group}".replace("-", "_")
                    uplink.ha_entities.append(Entity("binary_sensor", object_id,
                                                     f"{camera.name or camera.id} {zone.name or zone.id} {group}", {
                        "state_topic": topic(camera.id),
                        "value_template": f"{{{{ 'ON' if (value_json.zones['{zone.id}'].{group} | int(0)) > 0 "
                                          "else 'OFF' }}",
                        "device_class": "occupancy" if group == "person" else "presence",
                    }))
        if self.rules is not None:
            uplink.ha_entities += self.rules.ha_entities()
        uplink.request_discovery()

    # ---- for the rules' services (parking violations, plate reading) -------------------------------

    def latest_frame(self, camera: str) -> tuple[float, np.ndarray] | None:
        """The camera's latest processed frame (time, BGR image at detect size); never leaves the box."""
        view = self.views.get(camera)
        if view is None or view.frame is None:
            return None
        return view.frame.frame.at, view.frame.frame.image

    async def snapshot(self, camera: str, track_id: int, redact: Redactor | None = None) -> str | None:
        """Save a snapshot of the latest frame with that track's box (e.g. for parking.violation), the
        frame first passed through `redact` (faces and plates blurred) when given; returns its file
        name in data_dir/snapshots/<camera>/, or None if the track is not in view."""
        view = self.views.get(camera)
        if view is None or view.frame is None:
            return None
        obj = next((o for o in view.frame.objects if o.track_id == track_id), None)
        if obj is None:
            return None
        frame = view.frame.frame
        image = frame.image if redact is None else await redact(frame.image, view.frame.objects)
        path = await asyncio.to_thread(self.snapshots.save, camera, image, obj.box,
                                       f"{obj.label} #{obj.track_id}", obj.track_id, obj.label, frame.at)
        return path.name

    # ---- for the API -----------------------------------------------------------------------------

    def latest_jpeg(self, camera: str, quality: int = 80) -> bytes | None:
        """The camera's latest frame with its tracked objects drawn, as JPEG; None before the first frame."""
        view = self.views.get(camera)
        if view is None or view.frame is None:
            return None
        boxes = [(o.box, f"{o.label} #{o.track_id} {o.score:.2f}") for o in view.frame.objects]
        return encode_jpeg(annotate(view.frame.frame.image, boxes), quality)

    def status(self, camera: str) -> dict[str, Any] | None:
        view = self.views.get(camera)
        if view is None:
            return None
        pipeline = self.pipelines.get(camera)
        frame = view.frame
        size = (frame.frame.image.shape[1], frame.frame.image.shape[0]) if frame else None
        return {
            "camera": camera,
            "online": view.online,
            "reason": view.reason,
            "at": frame.frame.at if frame else None,
            "frame_size": list(size) if size else None,
            "detected": frame.detected if frame else False,
            "objects": [_object_json(o) for o in frame.objects] if frame else [],
            "stats": {"frames": pipeline.stats.frames, "detector_runs": pipeline.stats.detector_runs,
                      "rechecks": pipeline.stats.rechecks} if pipeline else None,
            "zones": self.zone_counts(camera),
        }


def _object_json(o: ObjectView) -> dict[str, Any]:
    return {"track_id": o.track_id, "label": o.label, "score": round(o.score, 3), "box": [round(v, 1) for v in o.box],
            "zones": sorted(o.zones), "stationary": o.stationary}


def _tracked(o: ObjectView) -> TrackedObject:
    return TrackedObject(o.track_id, o.label, o.box, o.score, o.zones, o.stationary)


def _latest(loop: asyncio.AbstractEventLoop, queue: Inbox) -> Callable[[Frame], None]:
    """on_frame for the reader thread: queue the frame, dropping any older frame still waiting."""

    def put(frame: Frame) -> None:
        def on_loop() -> None:
            kept = [item for item in _drain(queue) if not isinstance(item, Frame)]
            for item in kept:
                queue.put_nowait(item)
            queue.put_nowait(frame)

        with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
            loop.call_soon_threadsafe(on_loop)

    return put


def _every(loop: asyncio.AbstractEventLoop, queue: Inbox, closing: threading.Event) -> Callable[[Frame], None]:
    """on_frame that blocks the reader thread while a frame still waits (the queue holds one): none is lost."""

    def put(frame: Frame) -> None:
        if closing.is_set():
            return
        with contextlib.suppress(RuntimeError, CancelledError):
            asyncio.run_coroutine_threadsafe(queue.put(frame), loop).result()

    return put


def _state(loop: asyncio.AbstractEventLoop, queue: Inbox) -> Callable[[bool, str], None]:
    def put(online: bool, reason: str) -> None:
        with contextlib.suppress(RuntimeError):  # after queued frames, in order
            asyncio.run_coroutine_threadsafe(queue.put((online, reason)), loop)

    return put


def _drain(queue: Inbox) -> list[Frame | tuple[bool, str]]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


# ---- the demo ----------------------------------------------------------------------------------------

DEMO_VIDEO = Path(__file__).resolve().parent.parent / "tests" / "data" / "vtest-80.mp4"


def demo_section(video: Path = DEMO_VIDEO, patrol_start: str | None = None, fps: float = 5) -> str:
    """The demo site file's `vision:` section: the vtest clip (people on a pavement) as a camera looping
    at `fps` in real time, with a zone on its right edge where people walk in and out. Only people are
    tracked: the clip has no vehicles, and a false "car" now and then would only add noise.

    With `patrol_start` (local HH:MM, e.g. a minute before the demo starts) a guard tour is added
    whose checkpoint is that zone: the demo shows `patrol.checkpoint_reached` and the tour log."""
    text = (
        "vision:\n"
        "  objects: {track: [person]}\n"
        "  cameras:\n"
        f"    - id: pavement\n      name: Pavement\n      url: '{video}'\n      loop: true\n"
        f"      detect: {{fps: {fps:g}}}\n"
        "      zones:\n"
        "        - {id: entrance, name: Entrance, points: [[600, 0], [768, 0], [768, 576], [600, 576]], inertia: 5}\n"
    )
    if patrol_start is not None:
        text += (
            "  patrol:\n"
            "    routes:\n"
            f"      - {{id: pavement-round, name: Pavement round, starts: ['{patrol_start}'], checkpoints: [\n"
            "          {id: entrance, name: Entrance, camera: pavement, zone: entrance, due_min: 30}]}\n"
        )
    return text
