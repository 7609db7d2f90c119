"""Helpers for tests (and the commissioning checks) that drive the OSDP driver against the simulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from drivers.osdp.cp import OsdpDriver
from drivers.osdp.model import CredentialCallback, ReaderConfig
from drivers.osdp.simulator import SimBus, SimReader


@dataclass
class Reported:
    type: str
    source: str
    data: dict[str, Any]
    severity: str
    at: float


@dataclass
class EventRecorder:
    """A `report` callback that keeps every event, with ways to wait for one."""

    events: list[Reported] = field(default_factory=list)

    def __call__(self, type: str, source: str, data: dict[str, Any], severity: str) -> None:
        self.events.append(Reported(type, source, dict(data), severity, time.monotonic()))

    def of(self, type: str, source: str | None = None) -> list[Reported]:
        return [e for e in self.events if e.type == type and (source is None or e.source == source)]

    def mark(self) -> int:
        return len(self.events)

    async def wait(
        self,
        type: str,
        source: str | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        *,
        since: int = 0,
        within: float = 2.0,
    ) -> Reported:
        """The first matching event at or after index `since`, waiting up to `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            for e in self.events[since:]:
                if e.type == type and (source is None or e.source == source) and (where is None or where(e.data)):
                    return e
            if time.monotonic() > deadline:
                seen = [f"{e.type}:{e.source}" for e in self.events[since:]]
                raise TimeoutError(f"no {type} from {source or 'any source'} within {within}s; saw {seen}")
            await asyncio.sleep(0.005)


async def eventually(predicate: Callable[[], bool], within: float = 2.0) -> None:
    """Wait until `predicate()` holds (checked every 5 ms); TimeoutError after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within}s")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def sim_bus(
    sims: Sequence[SimReader],
    readers: Sequence[ReaderConfig],
    *,
    on_credential: CredentialCallback | None = None,
    wait_online: bool = True,
    **driver_args: Any,
) -> AsyncIterator[tuple[SimBus, OsdpDriver, EventRecorder]]:
    """A simulated bus with a driver on it; by default returns once every reader is online."""
    recorder = EventRecorder()
    async with SimBus(sims) as bus:
        driver = OsdpDriver(bus.port, readers, recorder, on_credential=on_credential, baudrate=115200, **driver_args)
        await driver.start()
        try:
            if wait_online:
                for r in readers:
                    await recorder.wait("device.online", r.id, within=3.0)
            yield bus, driver, recorder
        finally:
            await driver.stop()
