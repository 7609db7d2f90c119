"""The site file's `vision:` section: model, objects and their filters, cameras with zones and masks,
`publish_snapshots`. The rules that use the cameras (`patrol`, `parking`) join it in edge/vision_config.py,
since vision/ never imports rules/.

Coordinates (zones, masks, filter areas) are in pixels of the camera's *detect* resolution (`detect.width`
x `detect.height`, the size frames are scaled to before motion, detection and tracking), as in Frigate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Same rules as edge.config's Ident / DeviceId (vision does not import edge).
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="lower-case id: a-z 0-9 _ -")]
Point = tuple[float, float]
Polygon = Annotated[list[Point], Field(min_length=3, description="[[x, y], ...] in detect-resolution pixels")]

VEHICLES = ("car", "truck", "bus", "motorcycle", "bicycle")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ObjectFilter(Strict):
    """Which detections of one label count. Areas are box areas in detect-resolution pixels; ratio is w/h."""

    min_score: float = Field(0.35, ge=0, le=1)
    min_area: float = Field(0, ge=0)
    max_area: float = Field(1e9, gt=0)
    min_ratio: float = Field(0, ge=0)
    max_ratio: float = Field(1e6, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> ObjectFilter:
        if self.max_area < self.min_area:
            raise ValueError("max_area must be at least min_area")
        if self.max_ratio < self.min_ratio:
            raise ValueError("max_ratio must be at least min_ratio")
        return self


class ObjectsConfig(Strict):
    track: list[str] = Field(default_factory=lambda: ["person", *VEHICLES], min_length=1,
                             description="labels to detect and track; everything else is ignored")
    filters: dict[str, ObjectFilter] = Field(default_factory=dict, description="per label; default ObjectFilter()")

    def filter_for(self, label: str) -> ObjectFilter:
        return self.filters.get(label) or ObjectFilter()


class DetectConfig(Strict):
    width: int | None = Field(None, ge=32, le=4096, description="scale frames to this size; default: the stream's")
    height: int | None = Field(None, ge=32, le=4096)
    fps: float = Field(5, gt=0, le=30, description="frames per second looked at")

    @model_validator(mode="after")
    def _both(self) -> DetectConfig:
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together")
        return self


class MotionConfig(Strict):
    threshold: int = Field(25, ge=1, le=255, description="pixel difference (0-255) that counts as change")
    contour_area: int = Field(12, ge=1, description="smallest changed area, in motion-resolution pixels")
    frame_height: int = Field(120, ge=32, le=720, description="motion runs on frames scaled to this height")
    recheck_s: float = Field(10, gt=0, description="re-run the detector this often on still scenes with objects")


class TrackerConfig(Strict):
    iou: float = Field(0.25, gt=0, lt=1, description="least overlap to match a detection to a track")
    max_misses: int = Field(5, ge=1, description="detector runs without a match before a track ends")
    stationary_frames: int = Field(10, ge=2, description="detector runs without moving before stationary")


class ZoneConfig(Strict):
    id: Ident
    name: str = ""
    points: Polygon
    objects: list[str] = Field(default_factory=list, description="labels that count in this zone; empty: all")
    inertia: int = Field(3, ge=1, le=100, description="consecutive frames in (or out) before entering (leaving)")


class CameraConfig(Strict):
    id: Ident
    name: str = ""
    url: str = Field(min_length=1, description="rtsp://..., http(s)://... (MJPEG), file:///path or a file path")
    enabled: bool = True
    detect: DetectConfig = DetectConfig()
    loop: bool = Field(False, description="file sources: start again at the end (demo)")
    realtime: bool = Field(True, description="file sources: deliver frames at detect.fps in real time")
    stall_s: float = Field(10, gt=0, le=300, description="no frame for this long: the camera is offline")
    zones: list[ZoneConfig] = Field(default_factory=list)
    motion_masks: list[Polygon] = Field(default_factory=list, description="areas where change is ignored")
    object_masks: list[Polygon] = Field(default_factory=list, description="detections with their bottom centre "
                                        "here are dropped")
    objects: ObjectsConfig | None = Field(None, description="overrides vision.objects for this camera")
    pass_door: Ident | None = Field(None, description="the access door this camera watches: a visitor pass's QR "
                                    "code shown to it by a person is presented at that door (access decides)")

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == "controller":  # a camera is a device; `controller` names the controller's own state topic
            raise ValueError("'controller' is reserved for the controller itself")
        return value

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if "://" in value and value.split("://", 1)[0] not in ("rtsp", "rtsps", "http", "https", "file"):
            raise ValueError("url: rtsp://, http(s)://, file:// or a file path")
        return value

    @model_validator(mode="after")
    def _zones_unique(self) -> CameraConfig:
        ids = [z.id for z in self.zones]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"zones: duplicate id {dupes[0]!r}")
        return self


class ModelConfig(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True)  # hashable: the model check is cached per config

    path: Path | None = Field(None, description="an .onnx file (relative to the site file); default: the shipped "
                              "COCO NanoDet")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="refuse the file unless it has this hash")
    threads: int = Field(2, ge=1, le=16, description="onnxruntime intra-op threads")
    layout: Literal["auto", "yolov8", "yolov5", "end2end", "ssd", "nanodet"] = "auto"
    input_range: Literal["auto", "unit", "byte"] = Field("auto", description="float input 0-1 (unit) or 0-255 "
                                                         "(byte); auto: NCHW 0-1, NHWC 0-255")
    iou: float = Field(0.45, gt=0, lt=1, description="non-maximum suppression overlap")


class SnapshotsConfig(Strict):
    keep: int = Field(200, ge=1, description="most snapshots kept per camera")
    max_age_days: float = Field(7, gt=0)
    quality: int = Field(80, ge=10, le=100, description="JPEG quality")
    crop: bool = Field(False, description="keep only the object and some surroundings, not the whole frame")


class VisionSection(Strict):
    model: ModelConfig = ModelConfig()
    workers: int = Field(1, ge=1, le=8, description="threads running the cameras' pipelines (one camera's "
                         "frames never run at once); see bench/vision.py")
    objects: ObjectsConfig = ObjectsConfig()
    motion: MotionConfig = MotionConfig()
    tracker: TrackerConfig = TrackerConfig()
    snapshots: SnapshotsConfig = SnapshotsConfig()
    cameras: list[CameraConfig] = Field(default_factory=list)
    publish_snapshots: bool = Field(False, description="publish each camera's latest event snapshot on MQTT (the "
                                    "Home Assistant image entity), faces and plates blurred; raw frames never leave")

    @model_validator(mode="after")
    def _unique(self) -> VisionSection:
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"cameras: duplicate id {dupes[0]!r}")
        return self

    def resolve(self, base: Path) -> VisionSection:
        """Make a relative model path relative to the site file's folder."""
        path = self.model.path
        if path is None or path.is_absolute():
            return self
        return self.model_copy(update={"model": self.model.model_copy(update={"path": (base / path).resolve()})})

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Loads the model (cached by file identity) so a bad one is a config error, not a 3 a.m. crash."""
        from vision.detect import ModelError, inspect_model

        try:
            names = set(inspect_model(self.model).names)
        except ModelError as exc:
            return [(("vision", "model", "path"), str(exc))]
        problems: list[tuple[tuple[str | int, ...], str]] = []
        sections: list[tuple[tuple[str | int, ...], ObjectsConfig]] = [(("vision", "objects"), self.objects)]
        sections += [(("vision", "cameras", c, "objects"), cam.objects) for c, cam in enumerate(self.cameras)
                     if cam.objects is not None]
        for loc, section in sections:
            for i, label in enumerate(section.track):
                if label not in names:
                    problems.append(((*loc, "track", i), f"the model has no class {label!r}"))
        for c, camera in enumerate(self.cameras):
            objects = camera.objects or self.objects
            for z, zone in enumerate(camera.zones):
                unknown = [label for label in zone.objects if label not in objects.track]
                if unknown:
                    problems.append((("vision", "cameras", c, "zones", z, "objects"),
                                     f"{unknown[0]!r} is not in the tracked objects"))
        return problems
