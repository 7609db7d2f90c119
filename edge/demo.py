"""`linli demo`: the daemon with simulated devices, an embedded broker and the live web page."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher

from edge.demo_devices import RESIDENTS
from edge.events import Severity

if TYPE_CHECKING:
    from edge.daemon import Controller

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "linli" / "demo"


def write_demo_site(
    data_dir: Path,
    broker_url: str,
    http_port: int,
    admin_password: str,
    zeroconf: bool,
    protocol: str = "auto",
    osdp_port: str | None = None,
) -> Path:
    """Render the embedded demo site file into `data_dir` and make the command key if missing."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key = data_dir / "command.key"
    if not key.exists():
        key.touch(mode=0o600)
        key.write_text(secrets.token_hex(32))
    template = files("edge").joinpath("demo_site.yaml").read_text(encoding="utf-8")
    text = template.format(
        broker=broker_url,
        protocol=protocol,
        http_port=http_port,
        zeroconf="true" if zeroconf else "false",
        admin_hash=PasswordHasher().hash(admin_password),
        osdp_port=osdp_port or str(data_dir / "osdp-bus"),
    )
    path = data_dir / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class Simulator:
    """Events for the areas whose device simulators are not in the demo yet (perimeter zones,
    intercom, parking, telemetry), at roughly `rate` scenarios per second. Access control is not
    here: its readers are real OSDP simulators on a pty (edge.demo_devices)."""

    def __init__(self, controller: Controller, rate: float = 1.0, seed: int | None = None) -> None:
        self.controller = controller
        self.rate = rate
        self.random = random.Random(seed)

    async def run(self) -> None:
        scenarios = [
            (20, self._telemetry),
            (6, self._zone_activity),
            (4, self._intercom_call),
            (3, self._parking),
        ]
        weights = [w for w, _ in scenarios]
        while True:
            await asyncio.sleep(self.random.expovariate(self.rate))
            scenario = self.random.choices([s for _, s in scenarios], weights)[0]
            await scenario()

    async def _emit(self, type: str, source: str, data: dict[str, Any], severity: Severity = Severity.INFO) -> None:
        self.controller.devices.seen(source)
        await self.controller.bus.emit(type, source, data, severity)

    async def _telemetry(self) -> None:
        await self._emit(
            "telemetry.environment",
            "io-perimeter-1",
            {
                "temperature_c": round(self.random.gauss(24, 1.5), 1),
                "supply_v": round(self.random.gauss(12.1, 0.1), 2),
            },
            Severity.DEBUG,
        )

    async def _zone_activity(self) -> None:
        zone = self.random.choice(["fence-north", "fence-east"])
        await self._emit("zone.opened", "io-perimeter-1", {"zone": zone})
        await asyncio.sleep(self.random.uniform(0.5, 2))
        await self._emit("zone.closed", "io-perimeter-1", {"zone": zone})

    async def _intercom_call(self) -> None:
        who = self.random.choice(RESIDENTS)
        await self._emit("intercom.call", "panel-gate-1", {"apartment": who.apartment})
        await asyncio.sleep(self.random.uniform(2, 6))
        if self.random.random() < 0.7:
            await self._emit("intercom.answered", "panel-gate-1", {"apartment": who.apartment})
        else:
            await self._emit("intercom.missed", "panel-gate-1", {"apartment": who.apartment})

    async def _parking(self) -> None:
        plate = f"沪A{self.random.randint(10000, 99999)}"
        await self._emit("parking.entry", "cam-parking-1", {"plate": plate, "gate": "north"})
