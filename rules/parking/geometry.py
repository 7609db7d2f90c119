"""Plane geometry for space polygons in frame pixels: point in polygon, box/polygon overlap."""

from __future__ import annotations

Point = tuple[float, float]
Box = tuple[float, float, float, float]


def polygon_area(points: tuple[Point, ...] | list[Point]) -> float:
    """Shoelace area (absolute, so either winding works)."""
    total = 0.0
    for (x1, y1), (x2, y2) in zip(points, (*points[1:], points[0]), strict=True):
        total += x1 * y2 - x2 * y1
    return abs(total) / 2


def contains(points: tuple[Point, ...], x: float, y: float) -> bool:
    """Ray casting; a point exactly on an edge may fall either way, which is fine for pixels."""
    inside = False
    for (x1, y1), (x2, y2) in zip(points, (*points[1:], points[0]), strict=True):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def clip_to_box(points: tuple[Point, ...], box: Box) -> list[Point]:
    """Sutherland-Hodgman: the part of ``points`` (any simple polygon) inside the axis-aligned box."""
    x1, y1, x2, y2 = box
    edges = (
        (lambda p: p[0] >= x1, lambda a, b: _at_x(a, b, x1)),
        (lambda p: p[0] <= x2, lambda a, b: _at_x(a, b, x2)),
        (lambda p: p[1] >= y1, lambda a, b: _at_y(a, b, y1)),
        (lambda p: p[1] <= y2, lambda a, b: _at_y(a, b, y2)),
    )
    output = list(points)
    for inside, cross in edges:
        if not output:
            break
        current, output = output, []
        for i, point in enumerate(current):
            previous = current[i - 1]
            if inside(point):
                if not inside(previous):
                    output.append(cross(previous, point))
                output.append(point)
            elif inside(previous):
                output.append(cross(previous, point))
    return output


def _at_x(a: Point, b: Point, x: float) -> Point:
    t = (x - a[0]) / (b[0] - a[0])
    return (x, a[1] + t * (b[1] - a[1]))


def _at_y(a: Point, b: Point, y: float) -> Point:
    t = (y - a[1]) / (b[1] - a[1])
    return (a[0] + t * (b[0] - a[0]), y)


def covered_fraction(points: tuple[Point, ...], box: Box) -> float:
    """How much of the polygon's area the box covers, 0..1."""
    area = polygon_area(points)
    if area <= 0:
        return 0.0
    clipped = clip_to_box(points, box)
    return polygon_area(clipped) / area if len(clipped) >= 3 else 0.0
