"""Zigbee in the daemon: drivers.zigbee events -> the bus (the drivers/alarm contract), commands -> devices.

Started by the Controller (supervised task `zigbee`) when the site file has an enabled `zigbee:`
section; `controller.zigbee` is this service while the network runs and None otherwise.

Events, each from the site file's device id (or `zigbee` for a device not in the site file):
`input.changed` {point: "zone", state} only on change, `device.tamper` {active}, `device.battery`
{low, percent}, `device.online`/`device.offline` {reason}, `lock.state` {state}, `output.changed`
{point: "onoff", on}, and the pairing story `zigbee.joined`, `zigbee.interviewed`,
`zigbee.enrolled`, `zigbee.left`, `zigbee.permit_join`. A device with an apartment carries it.

The driver's report callback runs inside zigpy's frame handling and must not block: it only
queues, and one worker puts the events on the bus in order.

`radio: simulated` runs the network on drivers/zigbee/simulator.py with every configured device
simulated and paired at start (`self.network` then holds them: the demo and tests drive them).
`controller.zigbee_app_factory`, when set, replaces the radio library (tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from drivers.zigbee.config import NetworkFileError, ZigbeeDeviceConfig, ZigbeeSection, load_or_create_secrets
from drivers.zigbee.driver import (
    Availability,
    BatteryReport,
    DeviceSpec,
    Enrolled,
    Interviewed,
    Joined,
    Left,
    LockReport,
    OnOffReport,
    PermitJoin,
    RadioSettings,
    ZigbeeCommandError,
    ZigbeeDriver,
    ZigbeeEvent,
    ZoneReport,
)
from drivers.zigbee.kinds import ZONE_KINDS
from edge.events import Severity

if TYPE_CHECKING:
    from drivers.zigbee.simulator import SimDevice, SimNetwork
    from edge.daemon import Controller

log = logging.getLogger(__name__)

SOURCE = "zigbee"
EVENT_QUEUE = 10_000
LOW_BATTERY_PERCENT = 10.0


class ZigbeeService:
    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        section = controller.config.zigbee
        assert section is not None
        self.section: ZigbeeSection = section
        self.by_ieee: dict[str, ZigbeeDeviceConfig] = {d.ieee: d for d in section.devices}
        self.by_id: dict[str, ZigbeeDeviceConfig] = {d.id: d for d in section.devices}
        self.network: SimNetwork | None = None
        self.driver: ZigbeeDriver | None = None
        self.ready = asyncio.Event()
        self._events: asyncio.Queue[ZigbeeEvent] = asyncio.Queue(EVENT_QUEUE)
        self._known: dict[tuple[str, str], Any] = {}  # (device id, what) -> last value put on the bus
        self._emitted = asyncio.Event()  # pulsed after each event is on the bus (simulate_zone)
        self.dropped_events = 0

    # ---- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        data_dir = self.controller.config.data_dir
        section = self.section
        try:
            secrets = await asyncio.to_thread(
                load_or_create_secrets, section.path(data_dir, section.network_file), section.pan_id)
        except NetworkFileError as exc:
            # Retrying cannot fix an unsafe or broken key file: say so once instead of crash-looping.
            await self.controller.bus.emit("zigbee.config_problem", SOURCE, {"error": str(exc)}, Severity.CRITICAL)
            await asyncio.Event().wait()
        radio = RadioSettings(
            radio=section.radio, port=section.port, secrets=secrets,
            database_path=section.path(data_dir, section.database_file), baudrate=section.baudrate,
            flow_control=section.flow_control, channel=section.channel)
        specs = {d.ieee: DeviceSpec(d.kind, d.offline_after) for d in section.devices}
        factory = getattr(self.controller, "zigbee_app_factory", None)
        if factory is None and section.radio == "simulated":
            from drivers.zigbee.simulator import SimNetwork, app_factory

            self.network = SimNetwork()
            for device in section.devices:
                self.network.add(device.kind, device.ieee)
            factory = app_factory(self.network)
        self.driver = ZigbeeDriver(radio, specs, self._on_report, app_factory=factory)
        worker = asyncio.create_task(self._worker())
        try:
            await self.driver.start()
            if self.network is not None:
                await self._pair_simulated()
            self.controller.zigbee = self
            self.ready.set()
            await asyncio.Event().wait()
        finally:
            self.ready.clear()
            if self.controller.zigbee is self:
                self.controller.zigbee = None
            await self.driver.stop()
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            await self._drain()

    async def _pair_simulated(self) -> None:
        assert self.network is not None and self.driver is not None and self.driver.app is not None
        known = self.driver.app.devices
        new = [d for d in self.network.devices.values() if d.ieee not in known]
        for device in self.network.devices.values():
            if device.ieee in known:
                device.announce()
        if new:
            await self.driver.permit_join(10)
            for device in new:
                await device.join()

    # ---- driver events -> bus ------------------------------------------------------------------------

    def _on_report(self, event: ZigbeeEvent) -> None:
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped_events += 1

    async def _worker(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._publish(event)
            except Exception:
                log.exception("zigbee: publishing %r failed", event)
            self._emitted.set()

    async def _drain(self) -> None:
        while not self._events.empty():
            await self._publish(self._events.get_nowait())

    async def _emit(self, type: str, ieee: str | None, data: dict[str, Any],
                    severity: Severity = Severity.INFO) -> None:
        device = self.by_ieee.get(ieee) if ieee else None
        body = dict(data)
        if ieee:
            body["ieee"] = ieee
        if device is not None and device.apartment:
            body["apartment"] = device.apartment
        await self.controller.bus.emit(type, device.id if device else SOURCE, body, severity)

    def _changed(self, device_id: str, what: str, value: Any) -> bool:
        if self._known.get((device_id, what)) == value:
            return False
        self._known[(device_id, what)] = value
        return True

    async def _publish(self, event: ZigbeeEvent) -> None:
        if isinstance(event, PermitJoin):
            await self._emit("zigbee.permit_join", None, {"seconds": event.seconds})
            return
        device = self.by_ieee.get(event.ieee)
        if isinstance(event, Joined):
            await self._emit("zigbee.joined", event.ieee, {"nwk": f"0x{event.nwk:04x}", "configured": bool(device)})
        elif isinstance(event, Interviewed):
            severity = Severity.WARNING if event.missing else Severity.INFO
            await self._emit("zigbee.interviewed", event.ieee, {
                "manufacturer": event.manufacturer, "model": event.model,
                "clusters": [f"0x{c:04x}" for c in event.clusters],
                "missing_clusters": [f"0x{c:04x}" for c in event.missing]}, severity)
        elif isinstance(event, Enrolled):
            await self._emit("zigbee.enrolled", event.ieee, {"zone_id": event.zone_id})
        elif isinstance(event, Left):
            await self._emit("zigbee.left", event.ieee, {}, Severity.WARNING)
        elif device is None:
            return  # state of a device the site file does not name: nobody to tell
        elif isinstance(event, Availability):
            if event.online:
                self.controller.devices.seen(device.id)
            elif (registered := self.controller.devices.get(device.id)) is not None:
                registered.online = False
            if self._changed(device.id, "online", event.online):
                kind = "device.online" if event.online else "device.offline"
                await self._emit(kind, event.ieee, {"reason": event.reason},
                                 Severity.INFO if event.online else Severity.WARNING)
        elif isinstance(event, ZoneReport):
            await self._zone(device, event)
        elif isinstance(event, BatteryReport):
            await self._battery(device, event.percent <= LOW_BATTERY_PERCENT, event.percent)
        elif isinstance(event, LockReport) and self._changed(device.id, "lock", event.state):
            await self._emit("lock.state", event.ieee, {"state": event.state})
        elif isinstance(event, OnOffReport) and self._changed(device.id, "onoff", event.on):
            await self._emit("output.changed", event.ieee, {"point": "onoff", "on": event.on})

    async def _zone(self, device: ZigbeeDeviceConfig, event: ZoneReport) -> None:
        if device.kind in ZONE_KINDS:
            state = "active" if event.alarm else "fault" if event.trouble else "normal"
            if self._changed(device.id, "zone", state):
                severity = Severity.WARNING if state != "normal" else Severity.INFO
                await self._emit("input.changed", event.ieee, {"point": "zone", "state": state}, severity)
        # An unknown tamper/battery state that turns out fine is not news: report only real changes.
        if self._changed(device.id, "tamper", event.tamper) and (event.tamper or (device.id, "tamper_seen") in
                                                                 self._known):
            await self._emit("device.tamper", event.ieee, {"active": event.tamper},
                             Severity.WARNING if event.tamper else Severity.INFO)
        self._known[(device.id, "tamper_seen")] = True
        await self._battery(device, event.battery_low, None)

    async def _battery(self, device: ZigbeeDeviceConfig, low: bool, percent: float | None) -> None:
        first = (device.id, "battery") not in self._known
        if percent is not None:
            self._known[(device.id, "percent")] = percent
        if self._changed(device.id, "battery", low) and (low or not first):
            await self._emit("device.battery", device.ieee,
                             {"low": low, "percent": self._known.get((device.id, "percent"))},
                             Severity.WARNING if low else Severity.INFO)

    # ---- commands (the contract's controller.zigbee) ---------------------------------------------------

    def _ieee(self, device_id: str, *kinds: str) -> str:
        device = self.by_id.get(device_id)
        if device is None:
            raise ZigbeeCommandError(f"no Zigbee device {device_id!r} in the site file")
        if kinds and device.kind not in kinds:
            raise ZigbeeCommandError(f"Zigbee device {device_id!r} is a {device.kind}, not a {'/'.join(kinds)}")
        if self.driver is None:
            raise ZigbeeCommandError("the Zigbee network is not running")
        return device.ieee

    async def siren(self, device_id: str, on: bool, duration_s: float = 0) -> None:
        assert self.driver is not None
        await self.driver.siren(self._ieee(device_id, "siren"), on, duration_s)
        await self._emit("output.changed", self.by_id[device_id].ieee, {"point": "siren", "on": on})

    async def squawk(self, device_id: str, armed: bool) -> None:
        assert self.driver is not None
        await self.driver.squawk(self._ieee(device_id, "siren"), armed)

    async def set_onoff(self, device_id: str, on: bool) -> None:
        assert self.driver is not None
        await self.driver.set_onoff(self._ieee(device_id, "relay"), on)

    async def lock(self, device_id: str) -> None:
        assert self.driver is not None
        await self.driver.lock(self._ieee(device_id, "lock"), locked=True)

    async def unlock(self, device_id: str) -> None:
        assert self.driver is not None
        await self.driver.lock(self._ieee(device_id, "lock"), locked=False)

    async def permit_join(self, seconds: int | None = None) -> int:
        if self.driver is None:
            raise ZigbeeCommandError("the Zigbee network is not running")
        seconds = self.section.permit_join_s if seconds is None else seconds
        await self.driver.permit_join(seconds)
        return seconds

    async def backup(self) -> str:
        if self.driver is None:
            raise ZigbeeCommandError("the Zigbee network is not running")
        path = self.section.path(self.controller.config.data_dir, self.section.backup_file)
        await self.driver.backup(path)
        return str(path)

    def devices(self) -> list[dict[str, Any]]:
        paired = {d["ieee"]: d for d in (self.driver.devices() if self.driver else [])}
        out = []
        for device in self.section.devices:
            info = paired.pop(device.ieee, None)
            out.append({"id": device.id, "ieee": device.ieee, "kind": device.kind, "apartment": device.apartment,
                        "paired": info is not None, **({k: info[k] for k in ("model", "manufacturer", "online")}
                                                       if info else {"online": None})})
        for ieee, info in paired.items():  # paired but not (yet) in the site file: the installer adds them
            out.append({"id": None, "ieee": ieee, "kind": None, "apartment": None, "paired": True,
                        "model": info["model"], "manufacturer": info["manufacturer"], "online": info["online"]})
        return out

    # ---- simulation (demo, benchmark) ---------------------------------------------------------------------

    def sim_device(self, device_id: str) -> SimDevice:
        """The simulated device behind a site-file device (`radio: simulated`): the demo trips it,
        e.g. `sim_device("flat-12-door").set_zone(tamper=True)`, or powers it off (`.powered = False`)."""
        if self.network is None:
            raise ZigbeeCommandError("not a simulated Zigbee network")
        return self.network.device(self._ieee(device_id))

    async def simulate_zone(self, device_id: str, alarm: bool) -> None:
        """Trip or restore a simulated sensor over the fake radio; return once the driver reported it
        and its event is on the bus (bench/alarm_latency.py's `zigbee_p99_ms`)."""
        self._ieee(device_id, *ZONE_KINDS)
        sensor = self.sim_device(device_id)
        if bool(sensor.zone_status & 1) == alarm:
            return
        self._emitted.clear()
        sensor.set_zone(alarm=alarm)
        want = "active" if alarm else "normal"
        while self._known.get((device_id, "zone")) != want:
            await self._emitted.wait()
            self._emitted.clear()
