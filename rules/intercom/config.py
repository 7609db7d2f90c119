"""The routing part of the site file's `intercom:` section: timeouts and do-not-disturb windows
(pydantic, unknown keys are errors). edge/intercom_config.py joins it with the buses.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rules.intercom.routing import DndWindow

Apartment = Annotated[str, Field(pattern=r"^[0-9A-Za-z-]{1,16}$", description="apartment number as dialled")]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeoutsConfig(_Strict):
    unit_ring_s: float = Field(20.0, gt=0, le=600, description="indoor units ring this long before the app")
    app_ring_s: float = Field(30.0, ge=0, le=600, description="the resident's app; 0 skips the app")
    guard_ring_s: float = Field(30.0, ge=0, le=600, description="the guard station; 0 skips it")
    talk_s: float = Field(120.0, gt=0, le=3600)
    unlock_grace_s: float = Field(10.0, ge=0, le=300, description="unlock still allowed this long after the call")


class DndWindowConfig(_Strict):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(default_factory=lambda: list(DAYS))
    start: str = Field(description="HH:MM local time")
    end: str = Field(description="HH:MM local time; before start means the next day")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("time as HH:MM (00:00-23:59)")
        return value

    def window(self) -> DndWindow:
        start, end = (time(int(v[:2]), int(v[3:])) for v in (self.start, self.end))
        return DndWindow(frozenset(DAYS.index(d) for d in self.days), start, end)
