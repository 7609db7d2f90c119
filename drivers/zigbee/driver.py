"""A Zigbee coordinator through zigpy: pairing, IAS zones, sirens, locks, relays, availability, backups.

The driver turns zigpy's frames into `ZigbeeEvent`s passed to one `report` callback (it knows no
rules: which device is which zone is the edge's business) and commands into ZCL requests.

IAS zone status and attribute reports are read from zigpy's application-level `handle_message`
listener, i.e. *before* zigpy's per-device duplicate filter: that filter silently drops a frame
byte-identical to one seen within the last 10 s, so with a device that does not advance its ZCL
sequence number, open -> close -> open within 10 s would lose the second open. The driver
deduplicates by state instead: a repeated status (a retransmission) changes nothing.

The radio library is chosen by `RadioSettings.radio` and imported only then, so zigpy-znp, bellows
and zigpy-deconz stay optional; tests and the demo pass an `app_factory` (drivers.zigbee.simulator).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zigpy.application
import zigpy.backups
import zigpy.config as zconf
import zigpy.device
import zigpy.exceptions
import zigpy.types as t
from zigpy.zcl import foundation
from zigpy.zcl.clusters.closures import DoorLock
from zigpy.zcl.clusters.general import Basic, OnOff, PowerConfiguration
from zigpy.zcl.clusters.security import IasWd, IasZone, ZoneStatus

from drivers.zigbee import zcl
from drivers.zigbee.config import NetworkSecrets
from drivers.zigbee.kinds import MAINS_KINDS, REQUIRED_CLUSTERS

log = logging.getLogger(__name__)

AppFactory = Callable[[dict[str, Any]], zigpy.application.ControllerApplication]
# zigpy and the radio libraries print network info, backups and NVRAM contents (the network key
# among them) at DEBUG: they log at INFO at most, whatever the daemon's own level.
RADIO_LOGGERS = ("zigpy", "zigpy_znp", "bellows", "zigpy_deconz", "aiosqlite")  # aiosqlite: zigpy's appdb
COMMAND_TIMEOUT_S = 10.0
SIREN_UNTIL_STOPPED_S = 1800  # IAS WD has no "forever": the panel stops the siren itself


class ZigbeeCommandError(Exception):
    """A command could not be delivered or was refused; the message names the device and why."""


class ZigbeeStartError(Exception):
    """The coordinator could not be started; the message says why, with the network key blanked out."""


def quiet_radio_logs() -> None:
    for name in RADIO_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def redact(text: str, key: bytes) -> str:
    """`text` without the key, in the forms zigpy writes it (aa:bb:.., aabb..)."""
    for form in (key.hex(":"), key.hex(), key.hex(":").upper(), key.hex().upper()):
        text = text.replace(form, "<network key>")
    return text


# ---- what the driver reports ---------------------------------------------------------------------


@dataclass(frozen=True)
class Joined:
    ieee: str
    nwk: int


@dataclass(frozen=True)
class Interviewed:
    ieee: str
    manufacturer: str | None
    model: str | None
    clusters: tuple[int, ...]  # server clusters over all endpoints
    missing: tuple[int, ...] = ()  # clusters its configured kind needs but it lacks


@dataclass(frozen=True)
class Enrolled:
    ieee: str
    zone_id: int


@dataclass(frozen=True)
class Left:
    ieee: str


@dataclass(frozen=True)
class ZoneReport:
    ieee: str
    status: int  # the raw IAS ZoneStatus bits

    @property
    def alarm(self) -> bool:
        return bool(self.status & ZoneStatus.Alarm_1)

    @property
    def tamper(self) -> bool:
        return bool(self.status & ZoneStatus.Tamper)

    @property
    def battery_low(self) -> bool:
        return bool(self.status & ZoneStatus.Battery)

    @property
    def trouble(self) -> bool:
        return bool(self.status & (ZoneStatus.Trouble | ZoneStatus.Battery_Defect))


@dataclass(frozen=True)
class BatteryReport:
    ieee: str
    percent: float


@dataclass(frozen=True)
class LockReport:
    ieee: str
    state: str  # locked | unlocked | not_fully_locked


@dataclass(frozen=True)
class OnOffReport:
    ieee: str
    on: bool


@dataclass(frozen=True)
class Availability:
    ieee: str
    online: bool
    reason: str


@dataclass(frozen=True)
class PermitJoin:
    seconds: int


ZigbeeEvent = (Joined | Interviewed | Enrolled | Left | ZoneReport | BatteryReport | LockReport | OnOffReport
               | Availability | PermitJoin)


# ---- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceSpec:
    kind: str
    offline_after_s: float


@dataclass(frozen=True)
class RadioSettings:
    radio: str  # znp | ezsp | deconz | simulated
    port: str | None
    secrets: NetworkSecrets
    database_path: Path | None
    baudrate: int = 115200
    flow_control: str | None = None
    channel: int = 15

    def zigpy_config(self) -> dict[str, Any]:
        device: dict[str, Any] = {zconf.CONF_DEVICE_PATH: self.port or "simulated",
                                  zconf.CONF_DEVICE_BAUDRATE: self.baudrate}
        if self.flow_control is not None:
            device[zconf.CONF_DEVICE_FLOW_CONTROL] = self.flow_control
        return {
            zconf.CONF_DEVICE: device,
            zconf.CONF_DATABASE: str(self.database_path) if self.database_path else None,
            zconf.CONF_NWK: {
                zconf.CONF_NWK_CHANNEL: self.channel,
                zconf.CONF_NWK_PAN_ID: t.PanId(self.secrets.pan_id),
                zconf.CONF_NWK_EXTENDED_PAN_ID: t.ExtendedPanId(self.secrets.extended_pan_id),
                zconf.CONF_NWK_KEY: list(self.secrets.network_key),
            },
            zconf.CONF_OTA: {zconf.CONF_OTA_ENABLED: False},  # no firmware downloads from the box
            zconf.CONF_TOPO_SCAN_ENABLED: False,
        }


def radio_application(radio: str) -> type[zigpy.application.ControllerApplication]:
    """The radio library's ControllerApplication, imported only when that radio is configured."""
    try:
        if radio == "znp":
            from zigpy_znp.zigbee.application import ControllerApplication as Znp

            return Znp
        if radio == "ezsp":
            from bellows.zigbee.application import ControllerApplication as Ezsp

            return Ezsp
        if radio == "deconz":
            from zigpy_deconz.zigbee.application import ControllerApplication as Deconz

            return Deconz
        if radio == "simulated":
            from drivers.zigbee.simulator import SimulatedApplication

            return SimulatedApplication
    except ImportError as exc:
        raise RuntimeError(f"the {radio} radio needs its library: pip install 'linli[zigbee]' ({exc})") from None
    raise ValueError(f"unknown Zigbee radio {radio!r}")


# ---- the driver -----------------------------------------------------------------------------------------


@dataclass
class _DeviceState:
    last_seen: float
    online: bool | None = None  # None: not heard from since start
    zone_status: int | None = None
    enrolled: bool = False
    pinging: bool = False


class ZigbeeDriver:
    def __init__(
        self,
        radio: RadioSettings,
        devices: Mapping[str, DeviceSpec],
        report: Callable[[ZigbeeEvent], None],
        *,
        app_factory: AppFactory | None = None,
        supervision_s: float | None = None,
    ) -> None:
        self.radio = radio
        self.specs = {str(t.EUI64.convert(ieee)): spec for ieee, spec in devices.items()}
        self.report = report
        self.app_factory = app_factory
        timeouts = [s.offline_after_s for s in self.specs.values()] or [60.0]
        self.supervision_s = supervision_s or min(30.0, max(0.05, min(timeouts) / 4))
        self.app: zigpy.application.ControllerApplication | None = None
        self.state: dict[str, _DeviceState] = {}
        self.malformed = 0  # frames that did not parse
        self.duplicates = 0  # zone notifications repeating the known status
        self._zone_ids: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def start(self, restore_from: Path | None = None) -> None:
        """Connect, start (forming the network with our secrets on a blank stick) and supervise.

        `restore_from`: a backup file from `backup()`, written to the stick before the network starts
        (a replaced or re-flashed coordinator keeps its network and paired devices)."""
        quiet_radio_logs()
        if self.radio.database_path is not None:
            await asyncio.to_thread(_private_file, self.radio.database_path)
        factory = self.app_factory or radio_application(self.radio.radio)
        app = factory(self.radio.zigpy_config())
        app.add_listener(self)
        self.app = app
        try:
            await app._load_db()  # what zigpy's ControllerApplication.new() does; our factories take a config
            await app.connect()
            if restore_from is not None:
                text = await asyncio.to_thread(restore_from.read_text, encoding="utf-8")
                backup = zigpy.backups.NetworkBackup.from_dict(json.loads(text))
                await app.backups.restore_backup(backup)
            await app.initialize(auto_form=True)
        except BaseException as exc:
            self.app = None
            await app.shutdown()
            if isinstance(exc, Exception) and not isinstance(exc, OSError):
                # zigpy's and the radio libraries' messages can quote the network settings or NVRAM
                # writes, key included (NetworkSettingsInconsistent, a refused NV write)
                message = redact(f"{type(exc).__name__}: {exc}", self.radio.secrets.network_key)
                raise ZigbeeStartError(message) from None
            raise
        now = self._now()
        for ieee in self.specs:
            self.state.setdefault(ieee, _DeviceState(last_seen=now))
        self._supervisor = asyncio.create_task(self._supervise())

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.app is not None:
            app, self.app = self.app, None
            await app.shutdown()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("zigbee: %s failed: %s", task.get_name(), task.exception())

    def _emit(self, event: ZigbeeEvent) -> None:
        try:
            self.report(event)
        except Exception:
            log.exception("zigbee: the report callback failed on %r", event)

    # ---- zigpy listener (called synchronously by zigpy; exceptions there would only be debug-logged) ----

    def device_joined(self, device: zigpy.device.Device) -> None:
        self._emit(Joined(str(device.ieee), int(device.nwk)))

    def device_left(self, device: zigpy.device.Device) -> None:
        self._emit(Left(str(device.ieee)))

    def _is_coordinator(self, device: zigpy.device.Device) -> bool:
        return self.app is not None and device.ieee == self.app.state.node_info.ieee

    def device_initialized(self, device: zigpy.device.Device) -> None:
        if self._is_coordinator(device):
            return
        ieee = str(device.ieee)
        clusters = sorted({c for ep_id, ep in device.endpoints.items() if ep_id for c in ep.in_clusters})
        spec = self.specs.get(ieee)
        missing = sorted(REQUIRED_CLUSTERS[spec.kind] - set(clusters)) if spec else []
        self._emit(Interviewed(ieee, device.manufacturer, device.model, tuple(clusters), tuple(missing)))
        if IasZone.cluster_id in clusters:
            self._spawn(self._enroll(device), f"enrol {ieee}")

    def handle_message(self, device: zigpy.device.Device, profile: int, cluster: int, src_ep: int, dst_ep: int,
                       message: bytes) -> None:
        try:
            self._handle(device, profile, cluster, message)
        except Exception:
            log.exception("zigbee: handling a frame from %s failed", device.ieee)

    def _handle(self, device: zigpy.device.Device, profile: int, cluster: int, message: bytes) -> None:
        if self._is_coordinator(device):
            return
        ieee = str(device.ieee)
        self._seen(ieee)
        if profile != zcl.HA_PROFILE:
            return
        try:
            hdr, cmd = zcl.parse(cluster, message)
        except (ValueError, KeyError, IndexError):
            self.malformed += 1
            log.debug("zigbee: malformed frame from %s on cluster 0x%04x", ieee, cluster)
            return
        if cmd is None or hdr.direction != foundation.Direction.Server_to_Client:
            return
        if cluster == IasZone.cluster_id and not hdr.frame_control.is_general:
            if hdr.command_id == IasZone.ClientCommandDefs.status_change_notification.id:
                self._zone(ieee, int(cmd.zone_status))
            elif hdr.command_id == IasZone.ClientCommandDefs.enroll.id:
                self._spawn(self._answer_enrol_request(device), f"enrol request {ieee}")
            return
        if hdr.frame_control.is_general and hdr.command_id == foundation.GeneralCommand.Report_Attributes:
            for record in cmd.attribute_reports:
                self._attribute(ieee, cluster, record.attrid, record.value.value)

    def _attribute(self, ieee: str, cluster: int, attr: int, value: Any) -> None:
        if cluster == IasZone.cluster_id and attr == IasZone.AttributeDefs.zone_status.id:
            self._zone(ieee, int(value))
        elif cluster == PowerConfiguration.cluster_id and attr == 0x0021 and value != 0xFF:  # 0xFF: unknown
            self._emit(BatteryReport(ieee, min(100.0, int(value) / 2)))
        elif cluster == DoorLock.cluster_id and attr == DoorLock.AttributeDefs.lock_state.id:
            self._emit(LockReport(ieee, _lock_state(value)))
        elif cluster == OnOff.cluster_id and attr == OnOff.AttributeDefs.on_off.id:
            self._emit(OnOffReport(ieee, bool(value)))

    def _state(self, ieee: str) -> _DeviceState:
        state = self.state.get(ieee)
        if state is None:
            state = self.state[ieee] = _DeviceState(last_seen=self._now())
        return state

    def _seen(self, ieee: str) -> None:
        state = self._state(ieee)
        state.last_seen = self._now()
        if state.online is not True:
            reason = "heard again" if state.online is False else "heard"
            state.online = True
            self._emit(Availability(ieee, True, reason))

    def _zone(self, ieee: str, status: int) -> None:
        state = self._state(ieee)
        if state.zone_status == status:
            self.duplicates += 1
            return
        state.zone_status = status
        self._emit(ZoneReport(ieee, status))

    # ---- IAS enrolment ----------------------------------------------------------------------------------

    def _zone_id(self, ieee: str) -> int:
        if ieee not in self._zone_ids:
            used = set(self._zone_ids.values())
            self._zone_ids[ieee] = next(i for i in range(255) if i not in used)
        return self._zone_ids[ieee]

    async def _enroll(self, device: zigpy.device.Device) -> None:
        """Write our address as the CIE, then enrol without waiting to be asked (some sensors never ask)."""
        assert self.app is not None
        zone = _find_cluster(device, IasZone.cluster_id)
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            await zone.write_attributes({"cie_addr": self.app.state.node_info.ieee})
            await self._send_enrol_response(device)
            values, _ = await zone.read_attributes(["zone_status"])
        if "zone_status" in values:
            self._zone(str(device.ieee), int(values["zone_status"]))

    async def _answer_enrol_request(self, device: zigpy.device.Device) -> None:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            await self._send_enrol_response(device)

    async def _send_enrol_response(self, device: zigpy.device.Device) -> None:
        ieee = str(device.ieee)
        zone_id = self._zone_id(ieee)
        await _find_cluster(device, IasZone.cluster_id).enroll_response(
            enroll_response_code=IasZone.EnrollResponse.Success, zone_id=zone_id, expect_reply=False)
        state = self._state(ieee)
        if not state.enrolled:
            state.enrolled = True
            self._emit(Enrolled(ieee, zone_id))

    # ---- commands ---------------------------------------------------------------------------------------

    def _device(self, ieee: str) -> zigpy.device.Device:
        if self.app is None:
            raise ZigbeeCommandError("the Zigbee network is not running")
        try:
            return self.app.get_device(ieee=t.EUI64.convert(ieee))  # type: ignore[return-value]
        except (KeyError, ValueError):
            raise ZigbeeCommandError(f"device {ieee} is not paired") from None

    async def _command(self, ieee: str, cluster_id: int, name: str, **args: Any) -> Any:
        device = self._device(ieee)
        try:
            cluster = _find_cluster(device, cluster_id)
        except KeyError:
            raise ZigbeeCommandError(f"device {ieee} has no cluster 0x{cluster_id:04x}") from None
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                rsp = await getattr(cluster, name)(**args)
        except (zigpy.exceptions.DeliveryError, TimeoutError) as exc:
            raise ZigbeeCommandError(f"{name} to {ieee}: not delivered ({exc or 'timeout'})") from None
        status = getattr(rsp, "status", foundation.Status.SUCCESS)
        if status != foundation.Status.SUCCESS:
            raise ZigbeeCommandError(f"{name} to {ieee}: refused ({status!r})")
        return rsp

    async def siren(self, ieee: str, on: bool, duration_s: float = 0) -> None:
        warning = IasWd.Warning(0)
        warning.mode = IasWd.Warning.WarningMode.Burglar if on else IasWd.Warning.WarningMode.Stop
        warning.strobe = IasWd.Warning.Strobe.Strobe if on else IasWd.Warning.Strobe.No_strobe
        warning.level = IasWd.Warning.SirenLevel.High_level_sound
        duration = min(0xFFFE, round(duration_s)) if duration_s > 0 else SIREN_UNTIL_STOPPED_S
        await self._command(ieee, IasWd.cluster_id, "start_warning", warning=warning,
                            warning_duration=duration if on else 0, strobe_duty_cycle=50 if on else 0,
                            strobe_level=IasWd.StrobeLevel.High_level_strobe)

    async def squawk(self, ieee: str, armed: bool) -> None:
        squawk = IasWd.Squawk(0)
        squawk.mode = IasWd.Squawk.SquawkMode.Armed if armed else IasWd.Squawk.SquawkMode.Disarmed
        squawk.strobe = IasWd.Squawk.Strobe.Strobe
        squawk.level = IasWd.Squawk.SquawkLevel.Medium_level_sound
        await self._command(ieee, IasWd.cluster_id, "squawk", squawk=squawk)

    async def set_onoff(self, ieee: str, on: bool) -> None:
        await self._command(ieee, OnOff.cluster_id, "on" if on else "off")

    async def lock(self, ieee: str, locked: bool = True) -> None:
        await self._command(ieee, DoorLock.cluster_id, "lock_door" if locked else "unlock_door")

    async def permit_join(self, seconds: int) -> None:
        if self.app is None:
            raise ZigbeeCommandError("the Zigbee network is not running")
        seconds = max(0, min(254, int(seconds)))
        await self.app.permit(seconds)
        self._emit(PermitJoin(seconds))

    # ---- backup ------------------------------------------------------------------------------------------

    async def backup(self, path: Path) -> zigpy.backups.NetworkBackup:
        """Write the network (keys, frame counters, device addresses) to `path` as JSON, mode 0600."""
        if self.app is None:
            raise ZigbeeCommandError("the Zigbee network is not running")
        backup = await self.app.backups.create_backup(load_devices=True)
        text = json.dumps(backup.as_dict(), indent=1)
        await asyncio.to_thread(_write_private, path, text)
        return backup

    # ---- availability --------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(self.supervision_s)
            self.check_availability()

    def check_availability(self) -> None:
        now = self._now()
        for ieee, spec in self.specs.items():
            state = self._state(ieee)
            silent = now - state.last_seen
            if silent > spec.offline_after_s:
                if state.online is not False:
                    state.online = False
                    self._emit(Availability(ieee, False, f"no check-in for {silent:.0f} s"))
            elif spec.kind in MAINS_KINDS and silent > spec.offline_after_s / 3 and not state.pinging:
                # Mains devices stay quiet when nothing changes: ask them something.
                state.pinging = True
                self._spawn(self._ping(ieee, state), f"ping {ieee}")

    async def _ping(self, ieee: str, state: _DeviceState) -> None:
        try:
            device = self._device(ieee)
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                await _find_cluster(device, Basic.cluster_id).read_attributes(["power_source"])
        except (ZigbeeCommandError, KeyError, zigpy.exceptions.DeliveryError, TimeoutError):
            pass  # the answer would have refreshed last_seen; silence runs into the offline timeout
        finally:
            state.pinging = False

    def devices(self) -> list[dict[str, Any]]:
        """The paired devices zigpy knows (its database), with our availability view."""
        if self.app is None:
            return []
        coordinator = self.app.state.node_info.ieee
        out = []
        for ieee, device in self.app.devices.items():
            if ieee == coordinator:
                continue
            state = self.state.get(str(ieee))
            out.append({
                "ieee": str(ieee), "nwk": f"0x{int(device.nwk):04x}", "manufacturer": device.manufacturer,
                "model": device.model, "initialized": bool(getattr(device, "is_initialized", False)),
                "online": state.online if state else None,
                "zone_status": state.zone_status if state else None,
            })
        return out


def _find_cluster(device: zigpy.device.Device, cluster_id: int) -> Any:
    for ep_id, endpoint in device.endpoints.items():
        if ep_id and cluster_id in endpoint.in_clusters:
            return endpoint.in_clusters[cluster_id]
    raise KeyError(cluster_id)


def _lock_state(value: Any) -> str:
    return {1: "locked", 2: "unlocked"}.get(int(value), "not_fully_locked")


def _private_file(path: Path) -> None:
    """zigpy's database holds the network backups, key included: only the daemon's user may read it.
    SQLite gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
