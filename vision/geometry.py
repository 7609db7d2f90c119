"""Polygons: point tests for zones and masks, and a filled mask image for motion."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Point = tuple[float, float]
Box = tuple[float, float, float, float]


def inside(point: Point, polygon: Sequence[Point]) -> bool:
    contour = np.asarray(polygon, dtype=np.float32).reshape(-1, 1, 2)
    return cv2.pointPolygonTest(contour, (float(point[0]), float(point[1])), False) >= 0


def inside_any(point: Point, polygons: Sequence[Sequence[Point]]) -> bool:
    return any(inside(point, p) for p in polygons)


def fill_mask(size: tuple[int, int], polygons: Sequence[Sequence[Point]], scale: float = 1.0) -> np.ndarray | None:
    """A uint8 image (height, width) that is 0 inside the polygons and 255 elsewhere; None if no polygons."""
    if not polygons:
        return None
    width, height = size
    mask = np.full((height, width), 255, np.uint8)
    for polygon in polygons:
        pts = np.round(np.asarray(polygon, dtype=np.float64) * scale).astype(np.int32)
        cv2.fillPoly(mask, [pts], 0)
    return mask


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a [N, 4] and b [M, 4] (x1, y1, x2, y2)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)
