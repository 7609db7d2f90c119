"""Guard QR badges read on a person's crop with OpenCV's QR detector, for patrol checkpoints.

The text is only an observation: ``rules/patrol`` decides whether it is a guard's badge. A badge
worn on the chest is small in a wide camera view, so a crop that fails is tried again enlarged.
"""

from __future__ import annotations

import math
import re

import cv2
import numpy as np

Box = tuple[float, float, float, float]
MAX_TEXT = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UPSCALE_BELOW = 400  # pixels on the crop's longer side


class BadgeReader:
    """Blocking (image decoding work): call it from an executor, one reader per worker thread."""

    def __init__(self) -> None:
        self._detector = cv2.QRCodeDetector()

    def read(self, image: np.ndarray, box: Box | None = None) -> str | None:
        """The text of a QR code in ``image`` (or in ``box`` of it, frame pixels), None if there is none."""
        crop = _crop(image, box)
        if crop is None:
            return None
        text = self._decode(crop)
        if text is None and max(crop.shape[:2]) < _UPSCALE_BELOW:
            scale = _UPSCALE_BELOW / max(crop.shape[:2])
            text = self._decode(cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC))
        return text

    def _decode(self, crop: np.ndarray) -> str | None:
        try:
            text, _points, _straight = self._detector.detectAndDecode(crop)
        except cv2.error:
            return None  # OpenCV refuses some degenerate inputs; that is "no badge", not a crash
        text = (text or "").strip()
        if not text or len(text) > MAX_TEXT or _CONTROL.search(text):
            return None
        return text


def _crop(image: np.ndarray, box: Box | None) -> np.ndarray | None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("expected a BGR or grey image as a uint8 numpy array")
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (0, 0, width, height) if box is None else box
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    x1, y1 = max(0, int(x1)), max(0, int(y1))
    x2, y2 = min(width, math.ceil(x2)), min(height, math.ceil(y2))
    if x2 - x1 < 21 or y2 - y1 < 21:  # a QR code has at least 21 modules a side
        return None
    return image[y1:y2, x1:x2]
