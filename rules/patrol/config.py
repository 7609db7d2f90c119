"""Patrol configuration (the ``vision: patrol:`` part of the site file): guards, routes, checkpoints.

A route starts a tour at each of its local wall-clock ``starts`` (site time zone). Each checkpoint
has a window relative to that start, ``opens_min`` to ``due_min``, so a tour that starts at 23:40
with a checkpoint due after 30 minutes is due at 00:10 the next day: windows cross midnight
naturally. A checkpoint is confirmed by a person in its camera zone (optionally only one showing a
guard's QR badge) or by a guard's card at one of its readers.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rules.access.model import ID_PATTERN, Weekday

Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="lower-case id: a-z 0-9 _ -")]
HolderId = Annotated[str, Field(pattern=ID_PATTERN, description="an access-control holder id")]
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatrolGuard(_Strict):
    """A guard: the access-control holder whose card taps count, and the text of their QR badge."""

    id: HolderId
    name: str = ""
    badge: str | None = Field(None, min_length=4, max_length=256, description="text encoded in the guard's QR badge")


class PatrolCheckpoint(_Strict):
    id: Ident
    name: str = ""
    camera: Ident | None = Field(None, description="camera whose zone confirms the checkpoint")
    zone: Ident | None = Field(None, description="zone of that camera a person must be in")
    readers: tuple[Ident, ...] = Field((), description="OSDP readers where a guard's card confirms it")
    opens_min: float = Field(0, ge=0, description="the window opens this long after the tour starts")
    due_min: float = Field(gt=0, le=24 * 60, description="the checkpoint is missed when not confirmed by then")
    dwell_s: float = Field(0, ge=0, le=600, description="how long a person must stay in the zone")

    @model_validator(mode="after")
    def _confirmable(self) -> PatrolCheckpoint:
        if (self.camera is None) != (self.zone is None):
            raise ValueError("camera and zone go together")
        if self.camera is None and not self.readers:
            raise ValueError("a checkpoint needs a camera zone or readers to be confirmed by")
        if self.due_min <= self.opens_min:
            raise ValueError("due_min must be after opens_min")
        return self


class PatrolRoute(_Strict):
    id: Ident
    name: str = ""
    starts: tuple[str, ...] = Field(min_length=1, description="local wall-clock start times, HH:MM")
    days: tuple[Weekday, ...] = Field(tuple(Weekday), description="weekdays on which tours start")
    guards: tuple[HolderId, ...] = Field((), description="guards who may walk it; empty: every guard")
    require_badge: bool = Field(False, description="camera confirmations need a guard's QR badge")
    late_min: float = Field(30, ge=0, le=24 * 60, description="a checkpoint reached this long after due counts as late")
    checkpoints: tuple[PatrolCheckpoint, ...] = Field(min_length=1)

    @field_validator("starts")
    @classmethod
    def _hhmm(cls, starts: tuple[str, ...]) -> tuple[str, ...]:
        for start in starts:
            if not _HHMM.match(start):
                raise ValueError(f"start {start!r} is not HH:MM")
        if len(set(starts)) != len(starts):
            raise ValueError("starts must not repeat")
        return tuple(sorted(starts))

    @model_validator(mode="after")
    def _unique_checkpoints(self) -> PatrolRoute:
        ids = [c.id for c in self.checkpoints]
        if len(set(ids)) != len(ids):
            raise ValueError("checkpoint ids must not repeat")
        if not self.days:
            raise ValueError("days must not be empty")
        return self


class PatrolConfig(_Strict):
    guards: tuple[PatrolGuard, ...] = ()
    routes: tuple[PatrolRoute, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> PatrolConfig:
        guard_ids = [g.id for g in self.guards]
        if len(set(guard_ids)) != len(guard_ids):
            raise ValueError("guard ids must not repeat")
        badges = [g.badge for g in self.guards if g.badge is not None]
        if len(set(badges)) != len(badges):
            raise ValueError("two guards must not share a badge")
        route_ids = [r.id for r in self.routes]
        if len(set(route_ids)) != len(route_ids):
            raise ValueError("route ids must not repeat")
        for route in self.routes:
            unknown = sorted(set(route.guards) - set(guard_ids))
            if unknown:
                raise ValueError(f"route {route.id!r}: unknown guards {unknown}")
            if route.require_badge and not any(g.badge for g in self.guards):
                raise ValueError(f"route {route.id!r} requires a badge but no guard has one")
        return self
