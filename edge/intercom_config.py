"""The site file's `intercom:` section: the buses (drivers/intercom/config.py) and the routing settings
(rules/intercom/config.py), and the RoutingSettings they give the router.

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

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.intercom.config import Apartment, IndoorUnitConfig, IntercomBusConfig, PanelConfig
from rules.intercom.config import DndWindowConfig, TimeoutsConfig
from rules.intercom.routing import RoutingSettings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
