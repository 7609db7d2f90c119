"""Modbus I/O modules in the daemon: one drivers.modbus.ModbusDriver per configured bus.

The drivers' reports (`input.changed`, `device.online`, `device.offline`) go onto the event bus in
the order they happened: the driver's callback only queues them (it runs inside the poll loop and
must not wait for the journal), one worker emits them. Module state goes to the device registry
and, when there is an uplink, to the module's retained MQTT state.

Outputs: `controller.modbus.set_output(device_id, "do3", True)` (the alarm panel's sirens, door
lock relays). It waits for the module to confirm the write and raises OutputError when the
device or point is unknown, the module is offline or the write is not confirmed.

A reload that changes the `modbus:` section restarts the drivers on the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any

from drivers.modbus import ModbusDriver, OutputError
from edge.config import SiteConfig
from edge.events import Severity

if TYPE_CHECKING:
    from edge.daemon import Controller

log = logging.getLogger(__name__)

EVENT_QUEUE = 10_000  # reports waiting to be journaled; more means the journal is stuck
_OUTPUT = re.compile(r"do(\d{1,2})")

__all__ = ["ModbusService", "OutputError"]


class ModbusService:
    """Started by the Controller (supervised task `modbus`) when the site file has Modbus buses."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.config: SiteConfig = controller.config
        self.drivers: list[ModbusDriver] = []
        self._driver_of: dict[str, ModbusDriver] = {}
        self._events: asyncio.Queue[tuple[str, str, dict[str, Any], str]] = asyncio.Queue(EVENT_QUEUE)
        self._reloaded = asyncio.Event()
        self.dropped_events = 0

    # ---- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._journal_worker(), name="modbus events")
        self.controller.reload_listeners.append(self._on_reload)
        try:
            while True:
                await self._start_drivers()
                self.controller.modbus = self
                self._reloaded.clear()
                await self._wait_reload_or_failure()  # runs until cancelled, or restarts on a changed section
                self.controller.modbus = None
                await self._stop_drivers()
        finally:
            self.controller.modbus = None
            with contextlib.suppress(ValueError):
                self.controller.reload_listeners.remove(self._on_reload)
            await self._stop_drivers()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await self._drain()

    async def _start_drivers(self) -> None:
        for bus in self.config.modbus.buses:
            driver = ModbusDriver(bus.port, [m.spec() for m in bus.modules], self._on_report, **bus.driver_options())
            self.drivers.append(driver)
            for module in bus.modules:
                self._driver_of[module.id] = driver
            await driver.start()
        for driver in self.drivers:
            for module_id in driver.modules:
                await self._publish(module_id)

    async def _wait_reload_or_failure(self) -> None:
        waits = [asyncio.ensure_future(self._reloaded.wait())]
        waits += [asyncio.ensure_future(d.failed.wait()) for d in self.drivers]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        for d in self.drivers:
            if d.failure is not None:  # a bug, not a fault on the bus: let the supervisor restart us
                raise RuntimeError(f"modbus bus {d.name}: poll loop failed: {d.failure!r}") from d.failure

    async def _stop_drivers(self) -> None:
        drivers, self.drivers, self._driver_of = self.drivers, [], {}
        for driver in drivers:
            await driver.stop()

    async def _on_reload(self, new: SiteConfig) -> None:
        if new.modbus != self.config.modbus:
            self.config = new
            self._reloaded.set()

    # ---- outputs ---------------------------------------------------------------------------------------

    async def set_output(self, device_id: str, point: str, on: bool) -> None:
        """Switch output `point` (do0..do15) of Modbus module `device_id`; returns once the module confirmed."""
        driver = self._driver_of.get(device_id)
        if driver is None:
            raise OutputError(f"no Modbus module {device_id!r} (modbus: in the site file)")
        match = _OUTPUT.fullmatch(point)
        if match is None:
            raise OutputError(f"{device_id}: {point!r} is not an output; outputs are do0..do15")
        await driver.set_output(device_id, int(match.group(1)), on)
        await self._publish(device_id)

    def is_online(self, device_id: str) -> bool:
        driver = self._driver_of.get(device_id)
        return driver is not None and driver.is_online(device_id)

    def state(self, device_id: str) -> dict[str, Any]:
        driver = self._driver_of.get(device_id)
        if driver is None:
            raise KeyError(device_id)
        return driver.state(device_id)

    def stats(self) -> dict[str, Any]:
        return {
            d.name: {**d.stats.as_dict(), "connected": d.connected, "port_error": d.port_error} for d in self.drivers
        }

    # ---- driver reports ------------------------------------------------------------------------------

    def _on_report(self, type: str, source: str, data: dict[str, Any], severity: str) -> None:
        """Called inside the driver's poll loop: queue and note, never wait."""
        try:
            self._events.put_nowait((type, source, data, severity))
        except asyncio.QueueFull:
            self.dropped_events += 1
            log.error("modbus: event queue full, dropped %s from %s", type, source)
        if type == "device.online":
            self.controller.devices.seen(source)
        elif type == "device.offline":
            device = self.controller.devices.get(source)
            if device is not None:
                device.online = False

    async def _journal_worker(self) -> None:
        while True:
            item = await self._events.get()
            await self._emit(*item)

    async def _drain(self) -> None:
        while not self._events.empty():
            await self._emit(*self._events.get_nowait())

    async def _emit(self, type: str, source: str, data: dict[str, Any], severity: str) -> None:
        await self.controller.bus.emit(type, source, data, Severity(severity))
        await self._publish(source)

    async def _publish(self, module_id: str) -> None:
        uplink = self.controller.uplink
        driver = self._driver_of.get(module_id)
        if uplink is None or driver is None:
            return
        await uplink.publish_state(module_id, driver.state(module_id))
