"""Parking (车辆出入与停车): configuration models and the pure parking policy engine."""

from rules.parking.config import (
    AllowedPlate,
    Gate,
    ParkingConfig,
    ParkingLot,
    ParkingSpace,
    PlateKind,
    RestrictedKind,
    RestrictedZone,
    plate_key,
)
from rules.parking.engine import OpenBarrier, ParkingEngine, ParkingEvent, PlateOutcome

__all__ = [
    "AllowedPlate",
    "Gate",
    "OpenBarrier",
    "ParkingConfig",
    "ParkingEngine",
    "ParkingEvent",
    "ParkingLot",
    "ParkingSpace",
    "PlateKind",
    "PlateOutcome",
    "RestrictedKind",
    "RestrictedZone",
    "plate_key",
]
