"""Parking policy as pure logic: space occupancy with hysteresis, dwell violations in no-parking
zones and fire lanes, and plates at the gates (allow-list, entry/exit matching, visitor stays).

The service feeds :class:`ParkingEngine` with :class:`~rules.scene.SceneUpdate`s, plate readings at
gates and clock ticks; every method takes the time and returns events (and, for plates, barrier
actions). No I/O, no clock reads.

Privacy: a plate on the allow-list is registered with the property manager and travels in clear.
Any other plate is only ever kept and emitted as ``plate_hash``, an HMAC-SHA256 of its canonical
form with the site's secret key: the engine can still match a visitor's exit to its entry, but
the journal, the uplink and the API never hold the number.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edge.events import Severity
from rules.parking.config import AllowedPlate, ParkingConfig, ParkingLot, PlateKind, RestrictedKind, plate_key
from rules.parking.geometry import contains, covered_fraction
from rules.scene import SceneUpdate, TrackedObject

LOST_S = 5.0  # a vehicle missing from a zone this long has left it (tracker flicker is shorter)
MAX_PRESENT = 20_000  # vehicles remembered inside; the oldest entries go first
MIN_KEY_BYTES = 16


@dataclass(frozen=True, slots=True)
class ParkingEvent:
    """An event to emit, as plain data: the service passes it to ``bus.emit(type, source, data, severity)``.
    For ``parking.violation`` the service attaches the snapshot of the frame with ``track_id``'s box."""

    type: str
    source: str
    data: Mapping[str, Any]
    severity: Severity


@dataclass(frozen=True, slots=True)
class OpenBarrier:
    """Open the gate's barrier for a listed plate: the service hands it to the door rules (rules/access)."""

    gate: str
    door: str
    plate: str
    holder: str | None


@dataclass(frozen=True, slots=True)
class PlateOutcome:
    events: list[ParkingEvent]
    actions: list[OpenBarrier]


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class SpaceState:
    occupied: bool | None = None  # None: not yet known
    raw: bool | None = None  # what the latest frame says
    raw_since: float = 0.0
    track_id: int | None = None


@dataclass(slots=True)
class Dwell:
    entered: float
    last_seen: float
    label: str
    box: tuple[float, float, float, float]
    reported: bool = False


@dataclass(slots=True)
class Presence:
    entered: float
    gate: str
    listed: bool
    kind: str
    overstay_reported: bool = False
    data: dict[str, Any] = field(default_factory=dict)


class ParkingEngine:
    def __init__(self, config: ParkingConfig, site_key: bytes) -> None:
        if len(site_key) < MIN_KEY_BYTES:
            raise ValueError(f"the site key for plate hashing needs at least {MIN_KEY_BYTES} bytes")
        self.config = config
        self._key = site_key
        self._spaces: dict[tuple[str, str], SpaceState] = {
            (lot.id, space.id): SpaceState() for lot in config.lots for space in lot.spaces
        }
        self._dwell: dict[tuple[str, str, int], Dwell] = {}  # (restricted zone, camera, track id)
        self._gates = {gate.id: gate for gate in config.gates}
        self._allowed = {plate.plate: plate for plate in config.plates}
        self._present: OrderedDict[str, Presence] = OrderedDict()  # plate key or hash -> who is inside
        self._last_read: dict[tuple[str, str], float] = {}  # (gate, key) -> time, against repeated reads

    # --- privacy ---

    def plate_hash(self, plate: str) -> str:
        """HMAC-SHA256 of the canonical plate with the site key (hex). Stable per site, useless elsewhere."""
        return hmac.new(self._key, plate_key(plate).encode(), hashlib.sha256).hexdigest()

    # --- scene ---

    def on_scene(self, update: SceneUpdate) -> list[ParkingEvent]:
        events: list[ParkingEvent] = []
        for lot in self.config.lots:
            if lot.camera == update.camera:
                events += self._occupancy(lot, update)
        events += self._violations(update)
        return events

    def lot_counts(self, lot_id: str) -> dict[str, int]:
        """Retained per-lot state: free, occupied, unknown (not yet decided) and total spaces."""
        states = [s.occupied for (lot, _), s in self._spaces.items() if lot == lot_id]
        return {
            "free": states.count(False),
            "occupied": states.count(True),
            "unknown": states.count(None),
            "total": len(states),
        }

    def spaces(self, lot_id: str) -> dict[str, bool | None]:
        return {space: s.occupied for (lot, space), s in self._spaces.items() if lot == lot_id}

    def _occupancy(self, lot: ParkingLot, update: SceneUpdate) -> list[ParkingEvent]:
        vehicles = [obj for obj in update.objects if obj.label in lot.labels]
        for space in lot.spaces:
            state = self._spaces[(lot.id, space.id)]
            taker = next((v for v in vehicles if _takes(lot, space.polygon, v)), None)
            raw = taker is not None
            if raw != state.raw:
                state.raw, state.raw_since = raw, update.at
            if taker is not None:
                state.track_id = taker.track_id
        return self._settle(lot, update.at)

    def _settle(self, lot: ParkingLot, now: float) -> list[ParkingEvent]:
        """Spaces whose latest observation has held long enough change state.

        Also run from :meth:`tick`: the pipeline sends scenes only when the detector runs (motion,
        or a periodic re-check while objects remain), so after the last car leaves a still scene
        no update may come for a long time; what it last showed still holds, so the clock decides.
        """
        events = []
        for space in lot.spaces:
            state = self._spaces[(lot.id, space.id)]
            raw = state.raw
            if raw is None:
                continue
            hold = lot.occupy_s if raw else lot.free_s
            if state.occupied is not raw and now - state.raw_since >= hold:
                initial = state.occupied is None
                state.occupied = raw
                data = {
                    "lot": lot.id,
                    "space": space.id,
                    "camera": lot.camera,
                    "since": iso(state.raw_since),
                    "initial": initial,
                    "track_id": state.track_id,
                    "counts": self.lot_counts(lot.id),
                }
                kind = "parking.space_occupied" if raw else "parking.space_freed"
                events.append(ParkingEvent(kind, lot.id, data, Severity.INFO))
        return events

    def _violations(self, update: SceneUpdate) -> list[ParkingEvent]:
        now = update.at
        events = []
        for zone in self.config.restricted:
            if zone.camera != update.camera:
                continue
            for obj in update.objects:
                if obj.label not in zone.labels or zone.zone not in obj.zones:
                    continue
                key = (zone.id, update.camera, obj.track_id)
                dwell = self._dwell.get(key)
                if dwell is None:
                    dwell = self._dwell[key] = Dwell(now, now, obj.label, obj.box)
                dwell.last_seen, dwell.box = now, obj.box
                if not dwell.reported and now - dwell.entered >= zone.max_dwell_s:
                    dwell.reported = True
                    severity = Severity.ALARM if zone.kind is RestrictedKind.FIRE_LANE else Severity.WARNING
                    data = self._violation_data(zone.id, zone.kind, update.camera, obj.track_id, dwell, now)
                    data["max_dwell_s"] = zone.max_dwell_s
                    events.append(ParkingEvent("parking.violation", zone.id, data, severity))
            for key in [k for k in self._dwell if k[0] == zone.id and k[1] == update.camera]:
                dwell = self._dwell[key]
                if now - dwell.last_seen > LOST_S:
                    del self._dwell[key]
                    if dwell.reported:
                        data = self._violation_data(zone.id, zone.kind, update.camera, key[2], dwell, dwell.last_seen)
                        events.append(ParkingEvent("parking.violation_ended", zone.id, data, Severity.INFO))
        return events

    @staticmethod
    def _violation_data(
        zone: str, kind: RestrictedKind, camera: str, track_id: int, dwell: Dwell, until: float
    ) -> dict[str, Any]:
        return {
            "zone": zone,
            "kind": kind.value,
            "camera": camera,
            "track_id": track_id,
            "label": dwell.label,
            "box": list(dwell.box),
            "since": iso(dwell.entered),
            "dwell_s": round(until - dwell.entered, 1),
        }

    # --- gates ---

    def on_plate(self, gate_id: str, plate: str, now: float, confidence: float | None = None) -> PlateOutcome:
        """A plate read at a gate (already normalised by the reader; compared in canonical form)."""
        gate = self._gates.get(gate_id)
        key = plate_key(plate) if isinstance(plate, str) else ""
        if gate is None or not key:
            return PlateOutcome([], [])
        entry = self._allowed.get(key)
        listed = entry is not None and entry.valid_at(datetime.fromtimestamp(now, UTC))
        hashed = self.plate_hash(key)
        ident: dict[str, Any] = {"plate": key} if listed else {"plate_hash": hashed}
        memory_key = key if listed else hashed  # an unlisted number is never kept, even in memory

        last = self._last_read.get((gate.id, memory_key))
        self._last_read[(gate.id, memory_key)] = now
        if last is not None and now - last < self.config.repeat_s:
            return PlateOutcome([], [])  # the same car still in front of the camera
        self._prune_reads(now)
        data: dict[str, Any] = {"gate": gate.id, "camera": gate.camera, **ident, "listed": listed}
        if entry is not None and listed:
            data.update(kind=entry.kind.value, holder=entry.holder)
        if confidence is not None:
            data["confidence"] = round(confidence, 3)
        actions = []
        if listed and gate.door is not None and _opens(entry, gate.id):
            actions.append(OpenBarrier(gate.id, gate.door, key, entry.holder if entry else None))
        data["barrier"] = "open" if actions else "closed"

        kind = entry.kind.value if entry is not None and listed else "unlisted"
        if gate.direction == "entry":
            previous = self._forget_presence(key, hashed)
            data["reentry"] = previous is not None  # its exit was never seen
            self._present[memory_key] = Presence(now, gate.id, listed, kind, data=ident)
            while len(self._present) > MAX_PRESENT:
                self._present.popitem(last=False)
            return PlateOutcome([ParkingEvent("parking.vehicle_entered", gate.id, data, Severity.INFO)], actions)

        # A listed plate may have expired (or been listed) while the car was inside: look under both.
        presence = self._forget_presence(key, hashed)
        data["matched"] = presence is not None
        if presence is not None:
            duration = round(now - presence.entered)
            data.update(entered_at=iso(presence.entered), entry_gate=presence.gate, duration_s=duration)
        return PlateOutcome([ParkingEvent("parking.vehicle_exited", gate.id, data, Severity.INFO)], actions)

    def tick(self, now: float) -> list[ParkingEvent]:
        """Call about once a second: settles space states between scenes, and reports visitor and
        unlisted vehicles inside longer than ``visitor_max_min`` (``parking.overstay``, once each)."""
        events = [event for lot in self.config.lots for event in self._settle(lot, now)]
        limit = self.config.visitor_max_min
        if limit is None:
            return events
        for presence in self._present.values():
            if presence.overstay_reported or presence.kind not in ("unlisted", PlateKind.VISITOR.value):
                continue
            if now - presence.entered >= limit * 60:
                presence.overstay_reported = True
                data = {
                    **presence.data,
                    "gate": presence.gate,
                    "kind": presence.kind,
                    "entered_at": iso(presence.entered),
                    "duration_s": round(now - presence.entered),
                    "max_min": limit,
                }
                events.append(ParkingEvent("parking.overstay", presence.gate, data, Severity.WARNING))
        return events

    def inside(self) -> list[dict[str, Any]]:
        """Vehicles recorded inside (listed ones by plate, others by hash), oldest first."""
        return [
            {**p.data, "entered_at": iso(p.entered), "gate": p.gate, "kind": p.kind} for p in self._present.values()
        ]

    def _forget_presence(self, key: str, hashed: str) -> Presence | None:
        by_plate = self._present.pop(key, None)
        by_hash = self._present.pop(hashed, None)
        return by_plate or by_hash

    def _prune_reads(self, now: float) -> None:
        if len(self._last_read) > 1000:
            horizon = now - self.config.repeat_s
            self._last_read = {k: t for k, t in self._last_read.items() if t >= horizon}


def _takes(lot: ParkingLot, polygon: tuple[tuple[float, float], ...], vehicle: TrackedObject) -> bool:
    x1, _, x2, y2 = vehicle.box
    if lot.method == "bottom_centre":
        return contains(polygon, (x1 + x2) / 2, y2)
    return covered_fraction(polygon, vehicle.box) >= lot.min_overlap


def _opens(entry: AllowedPlate | None, gate: str) -> bool:
    return entry is not None and (not entry.gates or gate in entry.gates)
