"""Guard tours as pure logic: tour starts, checkpoint confirmations, misses, the tour log.

The service feeds :class:`PatrolEngine` with the clock (:meth:`tick`, every second or so), the
vision pipeline's :class:`~rules.scene.SceneUpdate`s, QR badges read on person crops and
``access.granted`` events; every method takes the time as an argument and returns the events to
emit. Nothing here reads a clock or does I/O.

Policies:

- A tour starts at each configured local start; its checkpoints are due at fixed offsets from it,
  so a window that crosses midnight (or a DST change) is just a span of real seconds.
- A checkpoint is *reached* when confirmed inside its window, *missed* when its due time passes
  first (``patrol.checkpoint_missed`` carries how overdue the miss was noticed). A guard who comes
  later, within the route's ``late_min``, still gets ``patrol.checkpoint_reached`` with ``late`` and
  the lateness in seconds: the log then shows when the round was really walked.
- Checkpoints may be walked in any order; one confirmed while an earlier one is still pending is
  flagged ``out_of_order``.
- One confirmation counts for the oldest open tour of each route that has that checkpoint open.
- After a restart the engine joins a tour that is still running: checkpoints already due when it
  joined are ``unknown`` (it cannot know whether they were walked), never falsely ``missed``.
- A tour ends with ``patrol.tour_completed`` when every checkpoint is reached, or when the last
  late allowance has passed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from edge.events import Severity
from rules.access.model import Weekday
from rules.patrol.config import PatrolCheckpoint, PatrolConfig, PatrolRoute
from rules.scene import SceneUpdate

PERSON = "person"
_WEEKDAYS = tuple(Weekday)


@dataclass(frozen=True, slots=True)
class PatrolEvent:
    """An event to emit, as plain data: the service passes it to ``bus.emit(type, source, data, severity)``."""

    type: str
    source: str
    data: Mapping[str, Any]
    severity: Severity


class CheckpointState(StrEnum):
    PENDING = "pending"
    REACHED = "reached"
    MISSED = "missed"
    UNKNOWN = "unknown"  # already due when the engine joined a running tour


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class CheckpointRecord:
    id: str
    name: str
    opens_at: float
    due_at: float
    state: CheckpointState = CheckpointState.PENDING
    reached_at: float | None = None
    lateness_s: float = 0.0
    out_of_order: bool = False
    guard: str | None = None
    via: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.id,
            "name": self.name,
            "opens_at": iso(self.opens_at),
            "due_at": iso(self.due_at),
            "state": self.state.value,
            "reached_at": None if self.reached_at is None else iso(self.reached_at),
            "late": self.lateness_s > 0,
            "lateness_s": round(self.lateness_s, 1),
            "out_of_order": self.out_of_order,
            "guard": self.guard,
            "via": dict(self.via),
        }


@dataclass(slots=True)
class Tour:
    route: str
    id: str
    started_at: float
    closes_at: float  # after this no late confirmation is taken and the tour completes
    checkpoints: list[CheckpointRecord]
    joined: bool = False
    finished_at: float | None = None

    def count(self, state: CheckpointState) -> int:
        return sum(1 for c in self.checkpoints if c.state is state)

    def summary(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "tour": self.id,
            "started_at": iso(self.started_at),
            "reached": self.count(CheckpointState.REACHED),
            "missed": self.count(CheckpointState.MISSED),
            "unknown": self.count(CheckpointState.UNKNOWN),
            "late": sum(1 for c in self.checkpoints if c.lateness_s > 0),
            "total": len(self.checkpoints),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "joined": self.joined,
            "finished_at": None if self.finished_at is None else iso(self.finished_at),
            "checkpoints": [c.to_json() for c in self.checkpoints],
        }


def route_span_s(route: PatrolRoute) -> float:
    """Seconds from a tour's start until it closes."""
    return (max(c.due_min for c in route.checkpoints) + route.late_min) * 60


def starts_after(route: PatrolRoute, zone: ZoneInfo, after: float) -> float:
    """The first tour start of ``route`` strictly after the instant ``after``.

    Local starts are read with fold=0: a start inside a spring-forward gap happens at the
    equivalent time after the gap, a start in a repeated hour happens once, the first time.
    """
    first_day = datetime.fromtimestamp(after, zone).date() - timedelta(days=1)
    for offset in range(9):  # every weekday within a week of ``after`` is looked at
        day = first_day + timedelta(days=offset)
        found = [s for s in _local_starts(route, zone, day) if s > after]
        if found:
            return min(found)
    raise AssertionError("a route with starts and days has a start every week")


def _local_starts(route: PatrolRoute, zone: ZoneInfo, day: date) -> Iterable[float]:
    if _WEEKDAYS[day.weekday()] not in route.days:
        return ()
    starts = []
    for hhmm in route.starts:
        hours, minutes = (int(part) for part in hhmm.split(":"))
        starts.append(datetime.combine(day, time(hours, minutes), tzinfo=zone).timestamp())
    return starts


class PatrolEngine:
    def __init__(self, config: PatrolConfig, timezone: str = "UTC", history: int = 200) -> None:
        self.config = config
        self.zone = ZoneInfo(timezone)
        self.routes = {route.id: route for route in config.routes}
        self._guards = {guard.id for guard in config.guards}
        self._badges = {guard.badge: guard.id for guard in config.guards if guard.badge}
        self._next_start: dict[str, float] = {}
        self._open: list[Tour] = []
        self._history: deque[Tour] = deque(maxlen=history)
        # Camera confirmation state, per (camera, track id): when it entered each zone, its badge.
        self._in_zone_since: dict[tuple[str, int, str], float] = {}
        self._track_guard: dict[tuple[str, int], str] = {}

    # --- inputs ---

    def tick(self, now: float) -> list[PatrolEvent]:
        """Start tours that are due, declare misses, complete tours. Call it about once a second."""
        events: list[PatrolEvent] = []
        for route in self.config.routes:
            if route.id not in self._next_start:
                # First look: join the latest tour that is still running (closes after now), if any.
                self._next_start[route.id] = starts_after(route, self.zone, now - route_span_s(route))
            while self._next_start[route.id] <= now:
                start = self._next_start[route.id]
                events.append(self._start_tour(route, start, now))
                self._next_start[route.id] = starts_after(route, self.zone, start)
        for tour in list(self._open):
            for checkpoint in tour.checkpoints:
                if checkpoint.state is CheckpointState.PENDING and now >= checkpoint.due_at:
                    checkpoint.state = CheckpointState.MISSED
                    events.append(self._missed(tour, checkpoint, now))
            if now >= tour.closes_at:
                events.append(self._finish(tour, now))
        return events

    def on_scene(self, update: SceneUpdate) -> list[PatrolEvent]:
        """A person in a checkpoint's camera zone (for long enough) confirms it."""
        now = update.at
        events = self.tick(now)
        seen_zones: set[tuple[str, int, str]] = set()
        seen_tracks: set[tuple[str, int]] = set()
        for obj in update.objects:
            if obj.label != PERSON:
                continue
            seen_tracks.add((update.camera, obj.track_id))
            for zone in obj.zones:
                key = (update.camera, obj.track_id, zone)
                seen_zones.add(key)
                self._in_zone_since.setdefault(key, now)
        self._forget(update.camera, seen_zones, seen_tracks)

        for camera, track_id, zone in sorted(seen_zones):
            since = self._in_zone_since[(camera, track_id, zone)]
            guard = self._track_guard.get((camera, track_id))
            via = {"via": "camera", "camera": camera, "zone": zone, "track_id": track_id}

            def matches(cp: PatrolCheckpoint, camera: str = camera, zone: str = zone, since: float = since) -> bool:
                return cp.camera == camera and cp.zone == zone and now - since >= cp.dwell_s

            events += self._confirm(matches, now, guard, via, by_card=False)
        return events

    def on_badge(self, camera: str, track_id: int, text: str, now: float) -> list[PatrolEvent]:
        """A QR badge read on a person's crop: that track is the badge's guard from now on."""
        guard = self._badges.get(text.strip()) if isinstance(text, str) else None
        if guard is None:
            return []
        self._track_guard[(camera, track_id)] = guard
        return []

    def on_access(self, event_type: str, data: Mapping[str, Any], now: float) -> list[PatrolEvent]:
        """An ``access.granted`` for a guard at a checkpoint's reader confirms it."""
        if event_type != "access.granted":
            return []
        reader, holder = data.get("reader"), data.get("holder")
        if not isinstance(reader, str) or not isinstance(holder, str) or holder not in self._guards:
            return []
        events = self.tick(now)
        via = {"via": "card", "reader": reader}
        return events + self._confirm(lambda cp: reader in cp.readers, now, holder, via, by_card=True)

    # --- outputs ---

    def tour_log(self, route: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Running and finished tours, newest first, as JSON-ready dicts (what the API serves)."""
        tours = [*self._open, *self._history]
        tours.sort(key=lambda t: t.started_at, reverse=True)
        return [t.to_json() for t in tours if route is None or t.route == route][:limit]

    def open_tours(self) -> list[Tour]:
        return list(self._open)

    # --- internals ---

    def _start_tour(self, route: PatrolRoute, start: float, now: float) -> PatrolEvent:
        checkpoints = [
            CheckpointRecord(cp.id, cp.name, start + cp.opens_min * 60, start + cp.due_min * 60)
            for cp in route.checkpoints
        ]
        joined = start < now - 1.0  # a tour started more than a tick ago: the engine joins it late
        if joined:
            for record in checkpoints:
                if record.due_at <= now:
                    record.state = CheckpointState.UNKNOWN
        tour = Tour(route.id, f"{route.id}@{iso(start)}", start, start + route_span_s(route), checkpoints, joined)
        self._open.append(tour)
        data = {
            "route": route.id,
            "tour": tour.id,
            "started_at": iso(start),
            "joined": joined,
            "checkpoints": [{"checkpoint": c.id, "due_at": iso(c.due_at)} for c in checkpoints],
        }
        return PatrolEvent("patrol.tour_started", route.id, data, Severity.INFO)

    def _missed(self, tour: Tour, checkpoint: CheckpointRecord, now: float) -> PatrolEvent:
        data = {
            "route": tour.route,
            "tour": tour.id,
            "checkpoint": checkpoint.id,
            "name": checkpoint.name,
            "due_at": iso(checkpoint.due_at),
            "overdue_s": round(now - checkpoint.due_at, 1),
        }
        return PatrolEvent("patrol.checkpoint_missed", tour.route, data, Severity.WARNING)

    def _finish(self, tour: Tour, now: float) -> PatrolEvent:
        tour.finished_at = now
        self._open.remove(tour)
        self._history.append(tour)
        summary = tour.summary()
        complete = summary["reached"] == summary["total"]
        data = {**summary, "complete": complete, "finished_at": iso(now)}
        return PatrolEvent("patrol.tour_completed", tour.route, data, Severity.INFO if complete else Severity.WARNING)

    def _confirm(
        self,
        matches: Callable[[PatrolCheckpoint], bool],
        now: float,
        guard: str | None,
        via: dict[str, Any],
        *,
        by_card: bool,
    ) -> list[PatrolEvent]:
        events: list[PatrolEvent] = []
        for tour in sorted(self._open, key=lambda t: t.started_at):
            route = self.routes[tour.route]
            if not by_card and route.require_badge and guard is None:
                continue
            if guard is not None and route.guards and guard not in route.guards:
                continue
            if any(e.source == route.id for e in events):
                continue  # this route's oldest matching tour already took the confirmation
            for cp, record in zip(route.checkpoints, tour.checkpoints, strict=True):
                if not matches(cp) or not self._takes(record, route, now):
                    continue
                events.append(self._reached(tour, record, now, guard, via))
                break
        finished = [t for t in self._open if t.count(CheckpointState.REACHED) == len(t.checkpoints)]
        events += [self._finish(t, now) for t in finished]
        return events

    @staticmethod
    def _takes(record: CheckpointRecord, route: PatrolRoute, now: float) -> bool:
        if record.state is CheckpointState.PENDING:
            return now >= record.opens_at
        if record.state is CheckpointState.MISSED:
            return now <= record.due_at + route.late_min * 60
        return False

    def _reached(
        self, tour: Tour, record: CheckpointRecord, now: float, guard: str | None, via: dict[str, Any]
    ) -> PatrolEvent:
        index = tour.checkpoints.index(record)
        record.out_of_order = any(c.state is CheckpointState.PENDING for c in tour.checkpoints[:index])
        record.state = CheckpointState.REACHED
        record.reached_at = now
        record.lateness_s = max(0.0, now - record.due_at)
        record.guard = guard
        record.via = dict(via)
        data = {
            "route": tour.route,
            "tour": tour.id,
            "checkpoint": record.id,
            "name": record.name,
            "reached_at": iso(now),
            "due_at": iso(record.due_at),
            "late": record.lateness_s > 0,
            "lateness_s": round(record.lateness_s, 1),
            "out_of_order": record.out_of_order,
            "guard": guard,
            **via,
        }
        return PatrolEvent("patrol.checkpoint_reached", tour.route, data, Severity.INFO)

    def _forget(self, camera: str, seen_zones: set[tuple[str, int, str]], seen_tracks: set[tuple[str, int]]) -> None:
        """Drop dwell timers of people who left a zone and badges of tracks gone from the camera."""
        for key in [k for k in self._in_zone_since if k[0] == camera and k not in seen_zones]:
            del self._in_zone_since[key]
        for key in [k for k in self._track_guard if k[0] == camera and k not in seen_tracks]:
            del self._track_guard[key]
