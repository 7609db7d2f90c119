"""One camera's frame processing: motion -> (gated) detection -> tracking -> zone changes.

`CameraPipeline.process(frame)` is synchronous and CPU-bound: the daemon runs it on a worker thread
(onnxruntime and OpenCV release the GIL), never on the event loop. The detector runs only when the
frame has motion, or, on a still scene with objects, every `motion.recheck_s` to see whether the
stationary objects are still there (Frigate's approach); otherwise the tracks stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vision.capture import Frame
from vision.config import CameraConfig, VisionSection
from vision.detect import Detection, Detector
from vision.geometry import Box
from vision.motion import MotionDetector
from vision.tracker import Tracker, ZoneChange


@dataclass(frozen=True)
class ObjectView:
    """An immutable copy of a track as it was after this frame."""

    track_id: int
    label: str
    box: Box
    score: float
    zones: frozenset[str]
    stationary: bool


@dataclass(frozen=True)
class ZoneEvent:
    zone: str
    entered: bool
    object: ObjectView


@dataclass(frozen=True)
class FrameResult:
    frame: Frame
    detected: bool  # the detector ran on this frame
    motion: tuple[Box, ...]
    detections: tuple[Detection, ...]
    objects: tuple[ObjectView, ...]
    zone_events: tuple[ZoneEvent, ...]


@dataclass
class PipelineStats:
    frames: int = 0
    detector_runs: int = 0
    motion_frames: int = 0
    rechecks: int = 0

    @property
    def skipped(self) -> int:
        return self.frames - self.detector_runs


@dataclass
class CameraPipeline:
    camera: CameraConfig
    vision: VisionSection
    detector: Detector
    stats: PipelineStats = field(default_factory=PipelineStats)

    def __post_init__(self) -> None:
        self.objects = self.camera.objects or self.vision.objects
        self.tracker = Tracker(self.vision.tracker, self.camera.zones)
        self._motion: MotionDetector | None = None
        self._last_detect_at: float | None = None

    def process(self, frame: Frame) -> FrameResult:
        image = frame.image
        size = (image.shape[1], image.shape[0])
        if self._motion is None or self._motion.size != _scaled(size, self._motion.scale):
            self._motion = MotionDetector(size, self.vision.motion, self.camera.motion_masks)
        self.stats.frames += 1
        motion = self._motion.detect(image)
        if motion:
            self.stats.motion_frames += 1
        recheck = (bool(self.tracker.tracks) and self._last_detect_at is not None
                   and frame.at - self._last_detect_at >= self.vision.motion.recheck_s)
        first = self._last_detect_at is None  # look once at start: objects may already be standing there
        if not (motion or recheck or first):
            return FrameResult(frame, False, (), (), self._views(), ())
        if recheck and not motion:
            self.stats.rechecks += 1
        self.stats.detector_runs += 1
        self._last_detect_at = frame.at
        detections = self.detector.detect(image, self.objects, self.camera.object_masks)
        _, changes = self.tracker.update(detections, frame.at)
        return FrameResult(frame, True, tuple(motion), tuple(detections), self._views(), self._events(changes))

    def reset(self) -> tuple[ZoneEvent, ...]:
        """The camera went away: forget its tracks (they leave their zones) and its background."""
        self._motion = None
        self._last_detect_at = None
        return self._events(self.tracker.clear())

    def _views(self) -> tuple[ObjectView, ...]:
        return tuple(ObjectView(t.id, t.label, t.box, t.score, frozenset(t.zones), t.stationary)
                     for t in self.tracker.tracks.values())

    @staticmethod
    def _events(changes: list[ZoneChange]) -> tuple[ZoneEvent, ...]:
        return tuple(
            ZoneEvent(c.zone, c.entered, ObjectView(c.track.id, c.track.label, c.track.box, c.track.score,
                                                    frozenset(c.track.zones), c.track.stationary))
            for c in changes
        )


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
