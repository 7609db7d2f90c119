"""Event snapshots: a JPEG of the event frame with the object's box drawn, kept within count and age limits.

Files live in `<data_dir>/snapshots/<camera>/`, named `<epoch ms>-<track id>-<label>.jpg` so that the
oldest sort first. They never leave the box unless configuration says so (that is the caller's call).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from vision.config import SnapshotsConfig
from vision.geometry import Box

_SAFE = re.compile(r"[^a-z0-9_-]+")
GREEN = (60, 200, 60)
ORANGE = (0, 140, 255)


def annotate(frame_bgr: np.ndarray, boxes: Sequence[tuple[Box, str]], highlight: int | None = None) -> np.ndarray:
    """A copy of the frame with each (box, caption) drawn; the `highlight`-th box in orange."""
    out = frame_bgr.copy()
    for i, (box, caption) in enumerate(boxes):
        colour = ORANGE if i == highlight else GREEN
        x1, y1, x2, y2 = (round(v) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        if caption:
            (tw, th), _ = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
            top = max(0, y1 - th - 6)
            left = max(0, min(x1, out.shape[1] - tw - 4))  # a box at the right edge keeps its caption in view
            cv2.rectangle(out, (left, top), (left + tw + 4, top + th + 6), colour, -1)
            cv2.putText(out, caption, (left + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                        cv2.LINE_AA)
    return out


def crop(image: np.ndarray, box: Box, margin: float = 0.5) -> np.ndarray:
    """The box grown by `margin` of its size on each side (and room for its caption), within the image."""
    h, w = image.shape[:2]
    bw, bh = box[2] - box[0], box[3] - box[1]
    x1, x2 = max(0, int(box[0] - bw * margin)), min(w, int(box[2] + bw * margin) + 1)
    y1, y2 = max(0, int(box[1] - bh * margin) - 24), min(h, int(box[3] + bh * margin) + 1)
    return image[y1:y2, x1:x2].copy() if x2 > x1 and y2 > y1 else image


def encode_jpeg(frame_bgr: np.ndarray, quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class SnapshotStore:
    def __init__(self, root: Path, config: SnapshotsConfig) -> None:
        self.root = root
        self.config = config

    def save(self, camera: str, frame_bgr: np.ndarray, box: Box, caption: str, track_id: int, label: str,
             at: float) -> Path:
        """Write the snapshot (atomically), then apply retention; returns its path."""
        folder = self.root / camera
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{int(at * 1000):013d}-{track_id}-{_SAFE.sub('_', label.lower())}.jpg"
        path = folder / name
        tmp = folder / f".{name}.tmp"
        image = annotate(frame_bgr, [(box, caption)], highlight=0)
        if self.config.crop:
            image = crop(image, box)
        tmp.write_bytes(encode_jpeg(image, self.config.quality))
        os.replace(tmp, path)
        self.prune(camera)
        return path

    def list(self, camera: str) -> list[Path]:
        folder = self.root / camera
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix == ".jpg" and not p.name.startswith("."))

    def latest(self, camera: str) -> Path | None:
        files = self.list(camera)
        return files[-1] if files else None

    def prune(self, camera: str, now: float | None = None) -> int:
        """Delete snapshots beyond `keep` (oldest first) and older than `max_age_days`; returns how many."""
        files = self.list(camera)
        cutoff_ms = ((now if now is not None else time.time()) - self.config.max_age_days * 86400) * 1000
        doomed = files[: max(0, len(files) - self.config.keep)]
        doomed += [p for p in files[len(doomed):] if _stamp_ms(p) < cutoff_ms]
        for path in doomed:
            path.unlink(missing_ok=True)
        return len(doomed)


def _stamp_ms(path: Path) -> float:
    try:
        return float(path.name.split("-", 1)[0])
    except ValueError:
        return 0.0
