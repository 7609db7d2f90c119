"""The controller: wires config, journal, bus, devices, uplink, API and zeroconf together."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edge import __version__
from edge.bus import EventBus
from edge.commands import CommandRouter
from edge.config import ConfigError, ConfigIssue, SiteConfig, check_live_change, load_config, parse_config
from edge.devices import DeviceRegistry
from edge.events import EventFactory, Severity
from edge.journal import Journal, PruneReport
from edge.supervisor import Supervisor

log = logging.getLogger(__name__)

SOURCE = "controller"


class StartupError(Exception):
    """The controller cannot start; the message says what to do about it."""


class Controller:
    """One running Linli controller.

    `start()` opens the journal and starts every service as a supervised task; `stop()` shuts
    down gracefully, committing everything accepted so far.
    """

    def __init__(self, config: SiteConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.started_at = time.time()
        self.factory = EventFactory(config.site.id, config.controller.id)
        self.journal = Journal(
            config.journal_path,
            budget_bytes=int(config.journal.budget_mb * 1024 * 1024),
            max_age_s=config.journal.max_age_s(),
            linger_s=config.journal.linger_ms / 1000,
        )
        self.bus = EventBus(self.journal, self.factory)
        self.devices = DeviceRegistry()
        self.devices.load(config.device_configs())
        self.supervisor = Supervisor(self._report)
        self.commands = CommandRouter()  # remote commands; features register theirs here
        self.journal.on_prune.append(self._on_prune)
        self.uplink: Any = None  # edge.uplink.Uplink when configured
        self.api_runner: Any = None
        self.api_port: int | None = None
        self.zeroconf: Any = None
        self.access: Any = None  # edge.access.AccessService while the `access` task runs
        self.simulator: Any = None  # edge.demo_devices.DemoDevices under `linli demo`
        self.modbus: Any = None  # edge.modbus.ModbusService while the `modbus` task runs
        self.zigbee: Any = None  # edge.zigbee.ZigbeeService while the `zigbee` task runs
        self.alarm: Any = None  # edge.alarm.AlarmService while the `alarm` task runs
        self.intercom: Any = None  # edge.intercom.IntercomService while the `intercom` task runs
        self.vision: Any = None  # edge.vision.VisionService while the `vision` task runs
        self.reload_listeners: list[Callable[[SiteConfig], Awaitable[None]]] = []
        self.extra_tasks: dict[str, Callable[[], Awaitable[None]]] = {}
        self._stopped = asyncio.Event()
        self.audit_checkpoint_s = 300.0
        self._checkpointed_seq = 0
        self._access_key: tuple[object, ...] = ()

    # ---- events the controller itself raises ----------------------------------------------

    def _report(self, type: str, source: str, data: dict[str, Any], severity: Severity) -> None:
        self.bus.emit_soon(type, source, dict(data), severity)

    def _on_prune(self, report: PruneReport) -> None:
        severity = Severity.WARNING if report.undelivered else Severity.INFO
        self._report("journal.pruned", SOURCE, report.as_data(), severity)

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        from edge.api import start_api

        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await self.journal.open()
        stats = self.journal.stats
        await self.bus.emit(
            "system.started",
            SOURCE,
            {
                "version": __version__,
                "pid": os.getpid(),
                "outbox_depth": stats.outbox_depth,
                "journal_events": stats.stored_events,
            },
        )
        if self.config.uplink.enabled and self.config.uplink.broker:
            from edge.uplink import Uplink

            self.uplink = Uplink(self)
        # The API binds first: a port already taken stops start-up before anything connects out.
        try:
            self.api_runner, self.api_port = await start_api(self)
        except OSError as exc:
            api = self.config.api
            raise StartupError(
                f"cannot serve the API on {api.host}:{api.port}: {exc.strerror or exc}. "
                "Is another Linli running? Choose another port (api.port, or --http-port for the demo)."
            ) from exc
        if self.uplink is not None:
            self.supervisor.start("uplink", self.uplink.run)
        if self.config.zeroconf.enabled:
            from edge.zeroconf_service import Advertiser

            self.zeroconf = Advertiser(self)
            self.supervisor.start("zeroconf", self.zeroconf.run)
        self.supervisor.start("audit-checkpoint", self._audit_checkpoints)
        self._access_key = _access_key(self.config)
        if self.config.osdp.buses:
            self.supervisor.start("access", self._run_access)
        if self.config.modbus.buses:
            self.supervisor.start("modbus", self._run_modbus)
        if self.config.zigbee is not None and self.config.zigbee.enabled:
            self.supervisor.start("zigbee", self._run_zigbee)
        if self.config.alarm.partitions:
            self.supervisor.start("alarm", self._run_alarm)
        if self.config.intercom.buses:
            self.supervisor.start("intercom", self._run_intercom)
        if self.config.vision is not None and self.config.vision.cameras:
            self.supervisor.start("vision", self._run_vision)
        self.reload_listeners.append(self._reload_alarm)
        self.reload_listeners.append(self._reload_intercom)
        self.reload_listeners.append(self._reload_access)
        self.reload_listeners.append(self._reload_vision)
        self.reload_listeners.append(self._reload_zigbee)
        for name, factory in self.extra_tasks.items():
            self.supervisor.start(name, factory)

    async def _run_access(self) -> None:
        from edge.access import AccessService

        # A fresh service per (re)start: a crashed one leaves no half-built doors or drivers behind.
        self.access = AccessService(self)
        await self.access.run()

    async def _run_vision(self) -> None:
        from edge.vision import VisionService

        # A fresh service per (re)start: new capture threads, tracks and model session.
        self.vision = VisionService(self)
        await self.vision.run()

    async def _reload_vision(self, new: SiteConfig) -> None:
        """Cameras, zones or the model changed: restart the pipeline on the new section."""
        running = self.vision.config if self.vision is not None else None
        if new.vision == running:
            return
        await self.supervisor.stop_task("vision")
        self.vision = None
        if new.vision is not None and new.vision.cameras:
            self.supervisor.start("vision", self._run_vision)

    async def _run_intercom(self) -> None:
        from edge.intercom import IntercomService

        # A fresh service per (re)start: a crashed one leaves no calls or drivers half-built.
        self.intercom = IntercomService(self)
        await self.intercom.run()

    async def _reload_intercom(self, new: SiteConfig) -> None:
        """The intercom section changed: restart the service on it (calls in progress end)."""
        if self.intercom is not None and self.intercom.section == new.intercom:
            return
        await self.supervisor.stop_task("intercom")
        self.intercom = None
        if new.intercom.buses:
            self.supervisor.start("intercom", self._run_intercom)

    async def _run_modbus(self) -> None:
        from edge.modbus import ModbusService

        await ModbusService(self).run()  # sets self.modbus while its drivers run

    async def _run_zigbee(self) -> None:
        from edge.zigbee import ZigbeeService

        await ZigbeeService(self).run()  # sets self.zigbee while its network runs

    async def _reload_zigbee(self, new: SiteConfig) -> None:
        """The zigbee section changed (e.g. a just-paired device added): restart on it; zigpy's
        database keeps the pairings."""
        running = self.zigbee.section if self.zigbee is not None else None
        if new.zigbee == running:
            return
        await self.supervisor.stop_task("zigbee")
        if new.zigbee is not None and new.zigbee.enabled:
            self.supervisor.start("zigbee", self._run_zigbee)

    async def _run_alarm(self) -> None:
        from edge.alarm import AlarmService

        # A fresh panel per (re)start, from the persisted state: a crash loses no arming.
        self.alarm = AlarmService(self)
        await self.alarm.run()

    async def _reload_alarm(self, new: SiteConfig) -> None:
        if self.alarm is not None and self.alarm.config == new.alarm:
            return
        await self.supervisor.stop_task("alarm")
        self.alarm = None
        if new.alarm.partitions:
            self.supervisor.start("alarm", self._run_alarm)

    async def _reload_access(self, new: SiteConfig) -> None:
        """Readers and doors changed: restart access control on the new config. The old service
        puts its doors in the safe state (shutting_down) before the new one takes them over."""
        key = _access_key(new)
        if key == self._access_key:
            return
        self._access_key = key
        await self.supervisor.stop_task("access")
        self.access = None
        if new.osdp.buses:
            self.supervisor.start("access", self._run_access)

    async def checkpoint_audit(self) -> bool:
        """Send the audit chain's head to the platform, if it moved: it pins the chain off the box."""
        st = self.journal.stats
        if st.audit_seq <= self._checkpointed_seq:
            return False
        await self.bus.emit("audit.checkpoint", SOURCE, {"seq": st.audit_seq, "hash": st.audit_head})
        self._checkpointed_seq = st.audit_seq  # includes the checkpoint itself, which is chained too
        return True

    async def _audit_checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.audit_checkpoint_s)
            await self.checkpoint_audit()

    async def stop(self) -> None:
        """Graceful shutdown: stop services, then flush the journal so nothing accepted is lost."""
        await self.supervisor.stop()
        if self.api_runner is not None:
            await self.api_runner.cleanup()
        await self.journal.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # ---- config reload ----------------------------------------------------------------------

    async def reload_config(self, text: str | None = None, origin: str = "api") -> SiteConfig:
        """Validate a new site file (the given text, or the file on disk) and switch to it.

        A config that does not validate never replaces the running one; the rejection is an event.
        Settings that need a restart (site/controller id, data dir, API address) are refused.
        """
        path = self.config_path
        try:
            if text is None:
                if path is None:
                    raise ConfigError(
                        [ConfigIssue("<none>", 1, 1, "(file)", "no site file to reload; send the text instead")]
                    )
                new = load_config(path)
            else:
                new = parse_config(text, str(path or "<api>"), path.parent if path else Path.cwd())
            check_live_change(self.config, new, path)
        except ConfigError as exc:
            await self.bus.emit(
                "config.rejected",
                SOURCE,
                {"origin": origin, "errors": [str(i) for i in exc.issues]},
                Severity.WARNING,
            )
            raise
        if text is not None and path is not None:
            await asyncio.to_thread(_atomic_write, path, text)
        self.config = new
        self.devices.load(new.device_configs())
        for listener in self.reload_listeners:
            await listener(new)
        await self.bus.emit("config.applied", SOURCE, {"origin": origin})
        return new

    # ---- health -----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        st = self.journal.stats
        uplink: dict[str, Any] = {"state": "disabled"}
        if self.uplink is not None:
            up = self.uplink
            uplink = {
                "state": up.state,
                "protocol": up.protocol,
                "last_error": up.last_error,
                "published": up.published,
                "reconnects": up.reconnects,
            }
        failed = [h.name for h in self.supervisor.health.values() if not h.running and h.restarts]
        return {
            "status": "degraded" if failed else "ok",
            "site": self.config.site.id,
            "controller": self.config.controller.id,
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 1),
            "uplink": uplink["state"],
            "uplink_detail": uplink,
            "outbox_depth": st.outbox_depth,
            "journal": {
                "accepted": st.accepted,
                "stored_events": st.stored_events,
                "stored_bytes": st.stored_bytes,
                "budget_bytes": self.journal.budget_bytes,
                "batches": st.batches,
                "pruned_undelivered": st.pruned_undelivered,
            },
            "tasks": {
                name: {"running": h.running, "restarts": h.restarts, "last_error": h.last_error}
                for name, h in self.supervisor.health.items()
            },
        }


def _access_key(config: SiteConfig) -> tuple[object, ...]:
    return (config.osdp, tuple(config.doors))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def run_until_signalled(controller: Controller, on_started: Callable[[], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM; SIGHUP reloads the site file."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    async def reload() -> None:
        try:
            await controller.reload_config(origin="sighup")
            log.info("configuration reloaded")
        except ConfigError as exc:
            log.error("configuration rejected, keeping the running one:\n%s", exc)

    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload()))
    try:
        await controller.start()
    except BaseException:
        await controller.stop()  # close what did start, committing the journal
        raise
    if on_started is not None:
        on_started()
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await controller.stop()
