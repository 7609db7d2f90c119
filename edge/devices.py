"""The device registry: what the controller knows of each configured device right now."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from edge.config import DeviceConfig


@dataclass
class DeviceState:
    id: str
    name: str
    kind: str
    driver: str
    online: bool | None = None  # None: not heard from yet
    last_seen: float | None = None  # unix time
    state: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "driver": self.driver,
            "online": self.online,
            "last_seen": self.last_seen,
            "state": self.state,
        }


class DeviceRegistry:
    def __init__(self) -> None:
        self._devices: dict[str, DeviceState] = {}

    def load(self, configs: list[DeviceConfig]) -> None:
        """Match the registry to the config, keeping what is known of devices that stay."""
        previous = self._devices
        self._devices = {}
        for cfg in configs:
            old = previous.get(cfg.id)
            self._devices[cfg.id] = DeviceState(
                cfg.id,
                cfg.name or cfg.id,
                cfg.kind,
                cfg.driver,
                online=old.online if old else None,
                last_seen=old.last_seen if old else None,
                state=old.state if old else {},
            )

    def get(self, device_id: str) -> DeviceState | None:
        return self._devices.get(device_id)

    def all(self) -> list[DeviceState]:
        return list(self._devices.values())

    def seen(self, device_id: str, **state: Any) -> DeviceState | None:
        device = self._devices.get(device_id)
        if device is not None:
            device.online = True
            device.last_seen = time.time()
            device.state.update(state)
        return device
