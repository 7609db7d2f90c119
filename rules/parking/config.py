"""Parking configuration (the ``vision: parking:`` part of the site file): lots and their spaces,
no-parking zones and fire lanes, gates with plate reading, and the plate allow-list.

Polygons are in the pixels of the camera's detection frame. Restricted zones name a zone of the
camera's own zone list (the vision pipeline reports which zones a tracked object is in).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from rules.parking.geometry import polygon_area

Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="lower-case id: a-z 0-9 _ -")]
VEHICLES = ("car", "truck", "bus", "motorcycle")
_SEPARATORS = re.compile(r"[\s·•・.\-_]+")


def plate_key(text: str) -> str:
    """The canonical form plates are compared in: full-width folded, upper case, no separators.

    ``京A·12345``, ``京a 12345`` and ``京Ａ１２３４５`` are one plate; so are ``ABC 1234`` and ``abc-1234``.
    """
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).upper()


def _plate(text: str) -> str:
    key = plate_key(text)
    if not 2 <= len(key) <= 10 or not all(ch.isalnum() for ch in key):
        raise ValueError(f"{text!r} is not a licence plate")
    return key


PlateText = Annotated[str, AfterValidator(_plate)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParkingSpace(_Strict):
    id: Ident
    polygon: tuple[tuple[float, float], ...] = Field(min_length=3, description="corners in frame pixels")

    @model_validator(mode="after")
    def _has_area(self) -> ParkingSpace:
        if polygon_area(self.polygon) < 1:
            raise ValueError(f"space {self.id!r}: the polygon has no area")
        return self


class ParkingLot(_Strict):
    id: Ident
    name: str = ""
    camera: Ident
    method: Literal["bottom_centre", "overlap"] = Field(
        "bottom_centre", description="a vehicle takes a space by its box's bottom centre or by covering it")
    min_overlap: float = Field(0.4, gt=0, le=1, description="for method overlap: share of the space covered")
    occupy_s: float = Field(5, ge=0, le=3600, description="seen taken this long before it counts as occupied")
    free_s: float = Field(15, ge=0, le=3600, description="seen empty this long before it counts as free")
    labels: tuple[str, ...] = VEHICLES
    spaces: tuple[ParkingSpace, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_spaces(self) -> ParkingLot:
        ids = [s.id for s in self.spaces]
        if len(set(ids)) != len(ids):
            raise ValueError("space ids must not repeat")
        return self


class RestrictedKind(StrEnum):
    NO_PARKING = "no_parking"
    FIRE_LANE = "fire_lane"


class RestrictedZone(_Strict):
    id: Ident
    name: str = ""
    kind: RestrictedKind
    camera: Ident
    zone: Ident = Field(description="the camera zone that makes up the restricted area")
    max_dwell_s: float = Field(gt=0, le=86_400, description="a vehicle staying longer is a violation")
    labels: tuple[str, ...] = VEHICLES


class Gate(_Strict):
    id: Ident
    name: str = ""
    camera: Ident
    direction: Literal["entry", "exit"]
    door: Ident | None = Field(None, description="the barrier's door (rules/access) opened for listed plates")


class PlateKind(StrEnum):
    RESIDENT = "resident"
    STAFF = "staff"
    VISITOR = "visitor"


class AllowedPlate(_Strict):
    plate: PlateText
    kind: PlateKind = PlateKind.RESIDENT
    holder: str | None = Field(None, max_length=80, description="access-control holder or apartment it belongs to")
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    gates: tuple[Ident, ...] = Field((), description="gates whose barrier opens for it; empty: every gate")

    def valid_at(self, at: datetime) -> bool:
        started = self.valid_from is None or at >= self.valid_from
        return started and (self.valid_until is None or at < self.valid_until)


class ParkingConfig(_Strict):
    lots: tuple[ParkingLot, ...] = ()
    restricted: tuple[RestrictedZone, ...] = ()
    gates: tuple[Gate, ...] = ()
    plates: tuple[AllowedPlate, ...] = ()
    visitor_max_min: float | None = Field(
        240, gt=0, description="unlisted and visitor vehicles staying longer raise parking.overstay; null: never")
    repeat_s: float = Field(60, ge=0, le=3600, description="the same plate at the same gate within this is one pass")

    @model_validator(mode="after")
    def _consistent(self) -> ParkingConfig:
        for what, ids in (
            ("lot", [lot.id for lot in self.lots]),
            ("restricted zone", [zone.id for zone in self.restricted]),
            ("gate", [gate.id for gate in self.gates]),
            ("plate", [plate.plate for plate in self.plates]),
        ):
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            if repeated:
                raise ValueError(f"{what} ids must not repeat: {repeated}")
        gate_ids = {gate.id for gate in self.gates}
        for plate in self.plates:
            unknown = sorted(set(plate.gates) - gate_ids)
            if unknown:
                raise ValueError(f"plate {plate.plate}: unknown gates {unknown}")
        return self
