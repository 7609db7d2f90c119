"""The camera pipeline: motion gating, tracking through real video, zones with inertia, broken streams.

Streams are real: an MJPEG server (multipart/x-mixed-replace over HTTP, what IP cameras send) that a
test makes die, stall or send garbage, read by OpenCV's FFmpeg backend exactly as in production.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiohttp import web

from vision.capture import Capture, Frame
from vision.config import CameraConfig, MotionConfig, TrackerConfig, VisionSection, ZoneConfig
from vision.detect import Detection, Detector
from vision.motion import MotionDetector
from vision.pipeline import CameraPipeline
from vision.snapshots import SnapshotStore
from vision.tracker import Tracker

DATA = Path(__file__).parent / "data"
VTEST = DATA / "vtest-80.mp4"


def vtest_frames() -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(VTEST))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    got = vtest_frames()
    assert len(got) == 80 and got[0].shape == (576, 768, 3)
    return got


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(VisionSection().model)


def pipeline(detector: Detector, **camera: object) -> CameraPipeline:
    cfg = CameraConfig.model_validate({"id": "lobby", "url": str(VTEST), **camera})
    return CameraPipeline(cfg, VisionSection(cameras=[cfg]), detector)


# ---- motion ----------------------------------------------------------------------------------------


def test_motion_gating_skips_a_still_scene(frames: list[np.ndarray], detector: Detector) -> None:
    p = pipeline(detector)
    still = frames[0]
    results = [p.process(Frame("lobby", i, 1000 + i * 0.2, still.copy())) for i in range(50)]
    # One look at the start (people may already stand there), then nothing moves: no detector runs
    # until the stationary re-check is due (every 10 s = 50 frames at 5 fps).
    assert [r.detected for r in results].count(True) == 1 and results[0].detected
    assert p.stats.skipped / p.stats.frames >= 0.9
    assert len(results[-1].objects) >= 3  # the people seen at the start are still tracked
    later = p.process(Frame("lobby", 50, 1000 + 10.5, still.copy()))
    assert later.detected and p.stats.rechecks == 1


def test_motion_gating_runs_the_detector_on_walking_people(frames: list[np.ndarray], detector: Detector) -> None:
    p = pipeline(detector)
    results = [p.process(Frame("lobby", i, 1000 + i * 0.1, f)) for i, f in enumerate(frames[:20])]
    assert sum(r.detected for r in results) >= 18
    assert all(r.motion for r in results[1:])


def test_motion_masks_hide_change_inside_them() -> None:
    masked = [[(0.0, 0.0), (320.0, 0.0), (320.0, 480.0), (0.0, 480.0)]]  # the left half
    motion = MotionDetector((640, 480), MotionConfig(), masked)
    blank = np.zeros((480, 640, 3), np.uint8)
    assert motion.detect(blank) == []  # the first frame makes the background
    left = blank.copy()
    cv2.rectangle(left, (100, 100), (200, 200), (255, 255, 255), -1)
    assert motion.detect(left) == []
    right = blank.copy()
    cv2.rectangle(right, (400, 100), (500, 200), (255, 255, 255), -1)
    boxes = motion.detect(right)
    assert boxes and all(b[0] >= 320 for b in boxes)
    x1, y1, x2, y2 = boxes[0]
    assert 380 <= x1 <= 410 and 480 <= x2 <= 520 and 80 <= y1 <= 110 and 190 <= y2 <= 220


# ---- tracking --------------------------------------------------------------------------------------


def test_track_ids_are_stable_through_the_video(frames: list[np.ndarray], detector: Detector) -> None:
    p = pipeline(detector)
    lifetimes: dict[int, list[int]] = {}
    boxes: dict[int, list[tuple[float, ...]]] = {}
    most = 0
    for i, frame in enumerate(frames):
        result = p.process(Frame("lobby", i, 1000 + i * 0.1, frame))
        most = max(most, len(result.objects))
        for obj in result.objects:
            lifetimes.setdefault(obj.track_id, []).append(i)
            boxes.setdefault(obj.track_id, []).append(obj.box)
    assert most >= 4
    # People who stay in view keep one id: several tracks live through (nearly) the whole clip,
    # and far fewer ids are handed out than there are person detections.
    assert sum(1 for frames_seen in lifetimes.values() if len(frames_seen) >= 60) >= 3, lifetimes
    assert len(lifetimes) <= 2 * most, lifetimes
    # A track never jumps: its box moves by at most a few pixels per frame at 10 fps.
    for track_id, seen in boxes.items():
        for a, b in itertools.pairwise(seen):
            centre_a = ((a[0] + a[2]) / 2, a[3])
            centre_b = ((b[0] + b[2]) / 2, b[3])
            assert abs(centre_a[0] - centre_b[0]) < 40 and abs(centre_a[1] - centre_b[1]) < 40, track_id


def det(x: float, y: float, label: str = "person", score: float = 0.9, w: float = 20, h: float = 40) -> Detection:
    """A detection whose bottom centre is (x, y)."""
    return Detection(label, score, (x - w / 2, y - h, x + w / 2, y))


ZONE = ZoneConfig(id="gate", points=[(100, 0), (200, 0), (200, 200), (100, 200)], inertia=3)


def test_zone_entry_and_exit_need_inertia() -> None:
    tracker = Tracker(TrackerConfig(), [ZONE])
    t = 0.0
    events: list[tuple[int, str, bool]] = []

    def step(x: float) -> None:
        nonlocal t
        t += 0.2
        _, changes = tracker.update([det(x, 100)], t)
        events.extend((c.track.id, c.zone, c.entered) for c in changes)

    step(90)
    # Flicker across the border (in, out, in, out): never three in a row, so never in.
    for x in (101, 99, 101, 99, 102, 98):
        step(x)
    assert events == []
    for x in (105, 106, 107):
        step(x)
    assert events == [(1, "gate", True)]
    assert tracker.tracks[1].zones == {"gate"}
    for x in (99, 101):  # a short trip out is not leaving
        step(x)
    assert len(events) == 1
    for x in (95, 94, 93):
        step(x)
    assert events == [(1, "gate", True), (1, "gate", False)]


def test_zone_counts_only_its_labels_and_a_lost_track_leaves() -> None:
    zone = ZoneConfig(id="lane", points=[(0, 0), (300, 0), (300, 300), (0, 300)], objects=["car"], inertia=1)
    tracker = Tracker(TrackerConfig(max_misses=2), [zone])
    _, changes = tracker.update([det(50, 100, "car", w=60, h=40), det(200, 100, "person")], 1.0)
    assert [(c.track.label, c.entered) for c in changes] == [("car", True)]
    car = next(t for t in tracker.tracks.values() if t.label == "car")
    tracker.update([], 2.0)
    _, changes = tracker.update([], 3.0)  # second miss: the car's track ends and leaves the zone
    assert [(c.track.id, c.zone, c.entered) for c in changes] == [(car.id, "lane", False)]
    assert not tracker.tracks


def test_stationary_objects_and_label_matching() -> None:
    tracker = Tracker(TrackerConfig(stationary_frames=3), [])
    for i in range(3):
        tracks, _ = tracker.update([det(100, 100, "car", w=60, h=40)], i)
        assert not tracks[0].stationary
    tracks, _ = tracker.update([det(101, 100, "car", w=60, h=40)], 3)  # wobble: still parked
    assert tracks[0].stationary
    tracks, _ = tracker.update([det(115, 100, "car", w=60, h=40)], 4)  # drives off
    assert not tracks[0].stationary and tracks[0].id == 1
    # A person appearing on the car's box does not take over the car's track.
    tracks, _ = tracker.update([det(115, 100, "car", w=60, h=40), det(115, 100, "person", w=60, h=40)], 5)
    assert sorted((t.id, t.label) for t in tracks) == [(1, "car"), (2, "person")]


def test_weak_detections_keep_tracks_but_do_not_start_them() -> None:
    tracker = Tracker(TrackerConfig(), [])
    tracks, _ = tracker.update([det(100, 100, score=0.3)], 0)
    assert tracks == []
    tracker.update([det(100, 100, score=0.9)], 1)
    tracks, _ = tracker.update([det(102, 100, score=0.3)], 2)
    assert [(t.id, t.misses) for t in tracks] == [(1, 0)]


# ---- snapshots -----------------------------------------------------------------------------------


def test_snapshots_draw_the_box_and_keep_within_limits(tmp_path: Path, frames: list[np.ndarray]) -> None:
    store = SnapshotStore(tmp_path, VisionSection().snapshots.model_copy(update={"keep": 3, "max_age_days": 1}))
    now = time.time()
    paths = [store.save("lobby", frames[0], (100, 100, 200, 300), "person 0.9", i, "person", now - 10 + i)
             for i in range(5)]
    kept = store.list("lobby")
    assert kept == paths[2:] and not paths[0].exists()
    image = cv2.imread(str(kept[-1]))
    assert image.shape == frames[0].shape
    assert tuple(int(v) for v in image[200, 100]) != tuple(int(v) for v in frames[0][200, 100])  # the box edge
    old = store.save("lobby", frames[0], (0, 0, 10, 10), "", 9, "car", now - 3 * 86400)
    assert not old.exists()  # older than max_age_days: pruned at once
    assert store.latest("lobby") == kept[-1]
    cropping = SnapshotStore(tmp_path / "crop", VisionSection().snapshots.model_copy(update={"crop": True}))
    cropped = cv2.imread(str(cropping.save("lobby", frames[0], (100, 200, 200, 300), "x", 1, "person", now)))
    assert cropped.shape == (24 + 200 + 1, 200 + 1, 3)  # the box, half its size around it, its caption


# ---- broken streams ----------------------------------------------------------------------------------


def jpeg(i: int) -> bytes:
    image = np.zeros((120, 160, 3), np.uint8)
    cv2.putText(image, str(i), (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    return cv2.imencode(".jpg", image)[1].tobytes()


@dataclass
class Camera:
    """An MJPEG-over-HTTP camera whose behaviour the test changes while it streams."""

    mode: str = "ok"  # ok | die (close after `frames`) | stall (stop sending, keep the connection) | garbage
    frames: int = 10
    connections: int = 0
    port: int = 0

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        reply = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"})
        await reply.prepare(request)
        i = 0
        while True:
            mode = self.mode
            if mode in ("die", "stall") and i >= self.frames:
                if mode == "die":
                    return reply
                await asyncio.sleep(3600)
            body = jpeg(i) if mode != "garbage" or i % 3 != 2 else bytes(range(256)) * 8
            try:
                await reply.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                  % len(body) + body + b"\r\n")
            except ConnectionError:  # the reader went away (aiohttp's reset error is one)
                return reply
            i += 1
            await asyncio.sleep(0.02)


@asynccontextmanager
async def camera_server(camera: Camera) -> AsyncIterator[Camera]:
    app = web.Application()
    app.router.add_get("/video.mjpg", camera.stream)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", camera.port)
    await site.start()
    camera.port = runner.addresses[0][1]
    try:
        yield camera
    finally:
        await runner.cleanup()


@dataclass
class Watch:
    frames: list[Frame] = field(default_factory=list)
    states: list[tuple[bool, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_frame(self, frame: Frame) -> None:
        with self.lock:
            self.frames.append(frame)

    def on_state(self, online: bool, reason: str) -> None:
        with self.lock:
            self.states.append((online, reason))

    async def until(self, condition: Callable[[], bool], within: float = 15) -> None:
        deadline = time.monotonic() + within
        while not condition():
            assert time.monotonic() < deadline, f"timed out; states {self.states}, {len(self.frames)} frames"
            await asyncio.sleep(0.02)


def capture(url: str, watch: Watch, **extra: object) -> Capture:
    cfg = CameraConfig.model_validate({"id": "gate", "url": url, "stall_s": 1, "detect": {"fps": 25}, **extra})
    cap = Capture(cfg, watch.on_frame, watch.on_state)
    cap.backoff_initial_s = cap.backoff_max_s = 0.2
    return cap


async def test_stream_that_dies_goes_offline_and_comes_back() -> None:
    async with camera_server(Camera(mode="die", frames=5)) as cam:
        watch = Watch()
        cap = capture(f"http://127.0.0.1:{cam.port}/video.mjpg", watch)
        cap.start()
        try:
            await watch.until(lambda: watch.states[:2] == [(True, ""), (False, "stream ended or stalled")])
            await watch.until(lambda: len(watch.states) >= 3 and watch.states[2] == (True, ""))
            assert cam.connections >= 2 and cap.reconnects >= 1
            before = len(watch.frames)
            await watch.until(lambda: len(watch.frames) > before)  # frames flow again on the new connection
            stamps = [f.at for f in watch.frames]
            assert stamps == sorted(stamps) and abs(stamps[-1] - time.time()) < 15
            assert [f.index for f in watch.frames] == list(range(len(watch.frames)))
        finally:
            await asyncio.to_thread(cap.stop)


async def test_stream_that_stalls_goes_offline_after_stall_s() -> None:
    async with camera_server(Camera(mode="stall", frames=5)) as cam:
        watch = Watch()
        cap = capture(f"http://127.0.0.1:{cam.port}/video.mjpg", watch)
        cap.start()
        try:
            await watch.until(lambda: (True, "") in watch.states)
            started = time.monotonic()
            await watch.until(lambda: (False, "stream ended or stalled") in watch.states)
            assert time.monotonic() - started < 6  # stall_s is 1: FFmpeg's read timeout ended the read
            cam.mode, cam.frames = "ok", 10**9
            await watch.until(lambda: watch.states.count((True, "")) >= 2)
        finally:
            await asyncio.to_thread(cap.stop)


async def test_stream_with_corrupt_frames_keeps_delivering_good_ones() -> None:
    async with camera_server(Camera(mode="garbage")) as cam:
        watch = Watch()
        cap = capture(f"http://127.0.0.1:{cam.port}/video.mjpg", watch)
        cap.start()
        try:
            await watch.until(lambda: len(watch.frames) >= 10)
            assert watch.states == [(True, "")] and cam.connections == 1  # a bad frame is not a dead camera
            assert all(f.image.shape == (120, 160, 3) for f in watch.frames)
            assert cap._thread is not None and cap._thread.is_alive()
        finally:
            await asyncio.to_thread(cap.stop)
        assert not cap._thread.is_alive()


async def test_unreachable_camera_and_broken_file_retry_without_crashing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    for url in ("http://127.0.0.1:9/video.mjpg", str(broken), str(tmp_path / "missing.mp4")):
        watch = Watch()
        cap = capture(url, watch)
        cap.start()
        try:
            await watch.until(lambda cap=cap: cap.reconnects >= 2)
            assert watch.states and watch.states[0][0] is False  # reported once, not once per retry
            assert len(watch.states) == 1 and watch.frames == []
        finally:
            await asyncio.to_thread(cap.stop)
        assert cap._thread is not None and not cap._thread.is_alive()  # no reader thread left behind


async def test_file_source_keeps_detect_fps_and_loops(tmp_path: Path) -> None:
    watch = Watch()
    cap = capture(str(VTEST), watch, detect={"fps": 5, "width": 384, "height": 288}, loop=True, realtime=False)
    cap.start()
    try:
        await watch.until(lambda: len(watch.frames) >= 45)  # more than the 40 of one pass at 5 of 10 fps
    finally:
        await asyncio.to_thread(cap.stop)
    assert watch.states == [(True, "")]
    assert watch.frames[0].image.shape == (288, 384, 3)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def test_many_reconnects_leak_no_threads_or_memory() -> None:
    async with camera_server(Camera(mode="die", frames=3)) as cam:
        watch = Watch()
        cap = capture(f"http://127.0.0.1:{cam.port}/video.mjpg", watch)
        cap.backoff_initial_s = cap.backoff_max_s = 0.01
        cap.start()
        try:
            await watch.until(lambda: cap.reconnects >= 5)
            threads, memory = threading.active_count(), rss_mb()
            await watch.until(lambda: cap.reconnects >= 40, within=60)
            assert threading.active_count() <= threads
            assert rss_mb() - memory < 30  # each connection's decoder is freed (one is ~1 MB of frames)
            assert watch.states.count((False, "stream ended or stalled")) >= 35
        finally:
            await asyncio.to_thread(cap.stop)


# ---- the cheaper motion scaling and pairwise IoU --------------------------------------------------------


def test_motion_finds_the_mover_on_large_and_odd_sized_frames() -> None:
    # Frames many times the motion height are halved before the last INTER_AREA step; odd sizes too.
    for width, height in ((1920, 1080), (1001, 751), (640, 130)):
        motion = MotionDetector((width, height), MotionConfig())
        blank = np.zeros((height, width, 3), np.uint8)
        assert motion.detect(blank) == []
        x1, y1, x2, y2 = width // 3, height // 4, width // 3 + width // 8, height // 4 + height // 3
        moved = blank.copy()
        cv2.rectangle(moved, (x1, y1), (x2, y2), (200, 200, 200), -1)
        boxes = motion.detect(moved)
        assert len(boxes) == 1
        slack = 6 / motion.scale  # blur and dilation widen the change by a few motion pixels
        bx1, by1, bx2, by2 = boxes[0]
        assert abs(bx1 - x1) <= slack and abs(by1 - y1) <= slack and abs(bx2 - x2) <= slack and abs(by2 - y2) <= slack


def test_tracker_pairwise_iou_matches_the_iou_matrix() -> None:
    from vision.geometry import iou_matrix
    from vision.tracker import _iou

    rng = np.random.default_rng(5)
    corners = rng.uniform(0, 100, (200, 2, 2))
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1).astype(np.float32)
    boxes[0] = boxes[1] = (10, 10, 10, 50)  # zero area
    boxes[2], boxes[3] = (0, 0, 10, 10), (10, 0, 20, 10)  # touching edges
    expected = iou_matrix(boxes, boxes)
    for i in range(len(boxes)):
        for j in range(0, len(boxes), 7):
            assert abs(_iou(tuple(boxes[i]), tuple(boxes[j])) - expected[i, j]) < 1e-5  # type: ignore[arg-type]
