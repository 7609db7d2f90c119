"""What the vision pipeline saw in one frame: the contract between vision (producer) and rules (consumer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrackedObject:
    track_id: int
    label: str                      # COCO class name: person, car, truck, bus, motorcycle, bicycle, ...
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels
    score: float
    zones: frozenset[str]           # camera zones the object is in (bottom-centre rule, after inertia)
    stationary: bool


@dataclass(frozen=True)
class SceneUpdate:
    camera: str
    at: float                       # frame time, UTC epoch seconds
    frame_size: tuple[int, int]     # width, height
    objects: tuple[TrackedObject, ...]
