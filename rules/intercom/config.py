"""The site file's `intercom:` section (pydantic, unknown keys are errors) and the routing settings it gives.

```yaml
intercom:
  buses:
    - port: /dev/ttyUSB1            # or socket://host:port (ser2net)
      baudrate: 115200
      panels:
        - {id: gate-panel, address: 1, door: gate, directory: {1: "1203", 2: "1204"}}
      indoor_units:
        - {id: unit-1203, address: 10, apartment: "1203"}
        - {id: guard-desk, address: 20, guard: true}
  timeouts: {unit_ring_s: 20, app_ring_s: 30, guard_ring_s: 30, talk_s: 120, unlock_grace_s: 10}
  unlock_s: 5
  dnd:
    "1203": [{days: [mon, tue, wed, thu, fri], start: "22:00", end: "07:00"}]
```
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rules.intercom.routing import DndWindow, RoutingSettings

IdStr = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="lower-case id: a-z 0-9 _ -")]
Apartment = Annotated[str, Field(pattern=r"^[0-9A-Za-z-]{1,16}$", description="apartment number as dialled")]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PanelConfig(_Strict):
    id: IdStr
    address: int = Field(ge=0, le=126)
    name: str = ""
    door: IdStr | None = Field(None, description="access-control door it opens; without one, the panel's own relay")
    relay: int = Field(0, ge=0, le=255, description="the panel relay used when no door is named")
    directory: dict[int, Apartment] = Field(default_factory=dict, description="call button -> apartment")
    home_assistant_unlock: bool = Field(
        False,
        description="an unlock button in Home Assistant for this panel's calls "
        "(HA cannot sign: the broker's ACL is all that guards it)",
    )


class IndoorUnitConfig(_Strict):
    id: IdStr
    address: int = Field(ge=0, le=126)
    name: str = ""
    apartment: Apartment | None = None
    guard: bool = Field(False, description="a guard station unit: rung when the apartment does not answer")

    @model_validator(mode="after")
    def _one_role(self) -> IndoorUnitConfig:
        if (self.apartment is None) == (not self.guard):
            raise ValueError("an indoor unit has an apartment, or is a guard station (guard: true), not both")
        return self


class IntercomBusConfig(_Strict):
    port: str = Field(min_length=1, description="serial device path, or socket://host:port (ser2net)")
    baudrate: Literal[9600, 19200, 38400, 57600, 115200] = 115200
    panels: list[PanelConfig] = Field(default_factory=list, max_length=32)
    indoor_units: list[IndoorUnitConfig] = Field(default_factory=list, max_length=126)

    @field_validator("port")
    @classmethod
    def _port_form(cls, value: str) -> str:
        if value.startswith("socket://"):
            if not re.fullmatch(r"socket://[^/\s:]+:\d{1,5}", value):
                raise ValueError("a ser2net port is socket://host:port")
        elif not value.startswith("/"):
            raise ValueError("a serial port is an absolute path (e.g. /dev/ttyUSB0) or socket://host:port")
        return value

    @model_validator(mode="after")
    def _addresses_unique(self) -> IntercomBusConfig:
        addresses = [d.address for d in [*self.panels, *self.indoor_units]]
        dupes = sorted({a for a in addresses if addresses.count(a) > 1})
        if dupes:
            raise ValueError(f"address {dupes[0]} is used twice on this bus")
        return self


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


class IntercomSection(_Strict):
    buses: list[IntercomBusConfig] = Field(default_factory=list)
    timeouts: TimeoutsConfig = TimeoutsConfig()
    unlock_s: float = Field(5.0, gt=0, le=600, description="how long a panel relay unlocks (no access door)")
    dnd: dict[Apartment, list[DndWindowConfig]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> IntercomSection:
        ports = [b.port for b in self.buses]
        if len(set(ports)) != len(ports):
            raise ValueError("buses: the same port is configured twice")
        ids = [d.id for b in self.buses for d in [*b.panels, *b.indoor_units]]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate intercom device id {dupes[0]!r}")
        apartments = {u.apartment for u in self.indoor_units() if u.apartment}
        for panel in self.panels():
            for entry, apartment in panel.directory.items():
                if apartment not in apartments:
                    raise ValueError(f"panel {panel.id!r}: directory entry {entry} names apartment {apartment!r}, "
                                     "which has no indoor unit")
        return self

    def panels(self) -> list[PanelConfig]:
        return [p for b in self.buses for p in b.panels]

    def indoor_units(self) -> list[IndoorUnitConfig]:
        return [u for b in self.buses for u in b.indoor_units]

    def routing(self, timezone: str = "UTC") -> RoutingSettings:
        apartments: dict[str, list[str]] = {}
        for unit in self.indoor_units():
            if unit.apartment is not None:
                apartments.setdefault(unit.apartment, []).append(unit.id)
        t = self.timeouts
        return RoutingSettings(
            apartments={a: tuple(units) for a, units in apartments.items()},
            guard_units=tuple(u.id for u in self.indoor_units() if u.guard),
            directories={p.id: dict(p.directory) for p in self.panels()},
            unit_ring_s=t.unit_ring_s,
            app_ring_s=t.app_ring_s,
            guard_ring_s=t.guard_ring_s,
            talk_s=t.talk_s,
            unlock_grace_s=t.unlock_grace_s,
            dnd={a: tuple(w.window() for w in windows) for a, windows in self.dnd.items()},
            timezone=timezone,
        )
