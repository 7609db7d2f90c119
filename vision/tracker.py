"""Multi-object tracking by box overlap (IoU), with stationary objects and zone membership.

A small ByteTrack-like tracker without a motion model: each detector run, detections are matched to
the live tracks of the same label, best overlap first (confident detections first, then the rest
for tracks still unmatched). Unmatched confident detections start tracks; a track that misses
`max_misses` detector runs in a row ends. Ids are never reused within a camera.

An object is in a zone when the bottom centre of its box (its feet, or its wheels) is inside the
zone's polygon for `inertia` consecutive updates, and out after as many updates outside, so a box
flickering on the border does not enter and leave every frame.

norfair would do the matching too, but it needs scipy and filterpy for what is ~100 lines here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from vision.config import TrackerConfig, ZoneConfig
from vision.detect import Detection
from vision.geometry import Box, iou_matrix

# A stationary object's box may wobble this much (IoU with where it settled) and stay stationary.
STILL_IOU = 0.8
# Detections at least this confident may start a track; weaker ones only keep tracks alive.
START_SCORE = 0.45


@dataclass
class Track:
    id: int
    label: str
    box: Box
    score: float
    first_seen: float
    last_seen: float
    hits: int = 1
    misses: int = 0
    anchor: Box = (0, 0, 0, 0)  # where it last settled; stationary while it stays there
    still_runs: int = 0
    stationary: bool = False
    zones: set[str] = field(default_factory=set)
    _zone_runs: dict[str, int] = field(default_factory=dict)  # consecutive updates disagreeing with `zones`


@dataclass(frozen=True)
class ZoneChange:
    track: Track
    zone: str
    entered: bool  # False: left


class Tracker:
    def __init__(self, config: TrackerConfig, zones: Sequence[ZoneConfig] = ()) -> None:
        self.config = config
        self.zones = list(zones)
        # Zone polygons as OpenCV contours once, not on every point test.
        self._contours = [np.asarray(z.points, dtype=np.float32).reshape(-1, 1, 2) for z in self.zones]
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(self, detections: Sequence[Detection], at: float) -> tuple[list[Track], list[ZoneChange]]:
        """One detector run's detections; returns the live tracks and the zone entries/exits it caused
        (an ending track leaves its zones)."""
        changes: list[ZoneChange] = []
        unmatched = set(range(len(detections)))
        matched_tracks: set[int] = set()
        for confident in (True, False):
            candidates = [i for i in unmatched if (detections[i].score >= START_SCORE) == confident]
            self._match(detections, candidates, matched_tracks, unmatched, at)
        for i in sorted(unmatched):
            det = detections[i]
            if det.score < START_SCORE:
                continue
            track = Track(self._next_id, det.label, det.box, det.score, at, at, anchor=det.box)
            self._next_id += 1
            self.tracks[track.id] = track
            matched_tracks.add(track.id)
        for track in list(self.tracks.values()):
            if track.id not in matched_tracks:
                track.misses += 1
                if track.misses >= self.config.max_misses:
                    del self.tracks[track.id]
                    changes.extend(ZoneChange(track, z, False) for z in sorted(track.zones))
                    track.zones.clear()
                    continue
            changes.extend(self._zones(track))
        return list(self.tracks.values()), changes

    def _match(self, detections: Sequence[Detection], candidates: list[int], matched_tracks: set[int],
               unmatched: set[int], at: float) -> None:
        live = [t for t in self.tracks.values() if t.id not in matched_tracks]
        if not candidates or not live:
            return
        ious = iou_matrix(np.array([detections[i].box for i in candidates], dtype=np.float32),
                          np.array([t.box for t in live], dtype=np.float32))
        for d, t in zip(*np.unravel_index(np.argsort(-ious, axis=None), ious.shape), strict=True):
            if ious[d, t] < self.config.iou:
                break
            det, track = detections[candidates[d]], live[t]
            if candidates[d] not in unmatched or track.id in matched_tracks or det.label != track.label:
                continue
            unmatched.discard(candidates[d])
            matched_tracks.add(track.id)
            self._follow(track, det, at)

    def _follow(self, track: Track, det: Detection, at: float) -> None:
        track.box, track.score, track.last_seen = det.box, det.score, at
        track.hits += 1
        track.misses = 0
        if _iou(det.box, track.anchor) >= STILL_IOU:
            track.still_runs += 1
        else:
            track.anchor, track.still_runs = det.box, 0
        track.stationary = track.still_runs >= self.config.stationary_frames

    def _zones(self, track: Track) -> list[ZoneChange]:
        changes = []
        foot = (float(track.box[0] + track.box[2]) / 2, float(track.box[3]))
        for zone, contour in zip(self.zones, self._contours, strict=True):
            if zone.objects and track.label not in zone.objects:
                continue
            now_in = cv2.pointPolygonTest(contour, foot, False) >= 0
            if now_in == (zone.id in track.zones):
                track._zone_runs[zone.id] = 0
                continue
            runs = track._zone_runs.get(zone.id, 0) + 1
            track._zone_runs[zone.id] = runs
            if runs >= zone.inertia:
                track._zone_runs[zone.id] = 0
                if now_in:
                    track.zones.add(zone.id)
                else:
                    track.zones.discard(zone.id)
                changes.append(ZoneChange(track, zone.id, now_in))
        return changes

    def clear(self) -> list[ZoneChange]:
        """Drop every track (the camera went away): each leaves its zones."""
        changes = [ZoneChange(t, z, False) for t in self.tracks.values() for z in sorted(t.zones)]
        self.tracks.clear()
        return changes


def _iou(a: Box, b: Box) -> float:
    """IoU of two boxes; one pair per call, where geometry.iou_matrix's array set-up would cost 10x more."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
