"""Zigbee pairing test: open the permit-join window, let one device join, interview it, check it
against its firmware profile (firmware_profiles/zigbee-*.yaml) and run the profile's checks.

    python -m hil_tests.zigbee_pairing                             # a simulated contact joins a simulated network
    python -m hil_tests.zigbee_pairing --kind siren                # a simulated siren
    python -m hil_tests.zigbee_pairing --radio znp --port /dev/ttyUSB0 \\
        --network-file /var/lib/linli/zigbee-network.json --profile zigbee-contact --report door-101.json

The coordinator runs through the daemon's own driver (drivers.zigbee), so a device is interviewed
and enrolled exactly as the daemon will do it. Checks, in the profile's plan order: `join` (it
joins while the window is open), `interview` (its clusters include the profile's required ones),
`enrol` (IAS zone: our address written as CIE, zone enrolled, zone type as the profile says),
`trip` / `restore` / `tamper` (the zone status reports it), `battery` (the percentage reads),
`siren` / `squawk` (IAS WD commands acknowledged), `lock` / `unlock` and `switch_on` / `switch_off`
(command acknowledged and the state reads back). `offline` is not part of a pairing test (the
daemon reports it after the profile's check-in time): it is listed as skipped.

Without `--profile` or `--kind` the profile is chosen from the device: its clusters and IAS zone
type say which kind it is. Against the simulator the tool plays the installer (joins the device,
trips the zone); against a real radio it asks the installer on the console. Stop the daemon first:
one application per stick; pass the daemon's network file so the device joins the site's network.

Exit status: 0 every required check passed; 1 a required check failed or the coordinator could not
be started; 2 unusable arguments or profile; 3 incomplete (a required step was skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import zigpy.exceptions
import zigpy.types as zt
from zigpy.zcl.clusters.closures import DoorLock
from zigpy.zcl.clusters.general import OnOff, PowerConfiguration
from zigpy.zcl.clusters.security import IasZone, ZoneState, ZoneType

from drivers.zigbee.config import NetworkFileError, load_or_create_secrets
from drivers.zigbee.driver import (
    Enrolled,
    Interviewed,
    Joined,
    RadioSettings,
    ZigbeeCommandError,
    ZigbeeDriver,
    ZigbeeEvent,
    ZigbeeStartError,
    ZoneReport,
)
from drivers.zigbee.kinds import KINDS
from drivers.zigbee.profile import ZigbeeDeviceProfile, cluster_ids
from drivers.zigbee.simulator import SimDevice, SimNetwork, app_factory
from hil_tests.alarm_common import (
    Console,
    UsageError,
    installer_for,
    profile_arg,
    run_check,
    run_tool,
    summary,
)
from hil_tests.installer import Installer
from hil_tests.profiles import PROFILES_DIR, LoadedProfile
from hil_tests.report import CheckFailed, CheckSkipped, Report, utc_now

RADIOS = ("simulated", "znp", "ezsp", "deconz")
SIREN_TEST_S = 2  # the siren check sounds it this long (IAS WD duration), then stops it
SIM_WAIT_S = 5.0  # the simulator answers at once; this only bounds a broken run
ZONE_KIND_BY_TYPE = {ZoneType.Contact_Switch: "contact", ZoneType.Motion_Sensor: "motion",
                     ZoneType.Fire_Sensor: "smoke", ZoneType.Water_Sensor: "water",
                     ZoneType.Vibration_Movement_Sensor: "vibration"}
NEEDS_PERSON = {
    "trip": "Trip the sensor (open the door or window, walk past it, press its test button, wet its probes)",
    "restore": "Let it restore (close the door, stop moving, dry the probes)",
    "tamper": "Open the sensor's cover, then close it again",
}
CLUSTER_NAMES = {i: n for n, i in cluster_ids().items()}


def sim_device(network: SimNetwork, kind: str) -> SimDevice:
    """The simulated device that joins; tests pass their own (a device lacking a cluster...)."""
    return network.add(kind)  # type: ignore[arg-type]


SimDeviceFactory = Callable[[SimNetwork, str], SimDevice]


@dataclass
class Plan:
    radio: str
    port: str | None
    baud: int
    network_file: Path | None  # None: a throwaway network (simulator)
    database: Path | None  # None: a throwaway device database
    profile: LoadedProfile | None  # None: chosen from the device after its interview
    sim_kind: str
    permit_s: int | None
    report_path: Path | None
    sim_factory: SimDeviceFactory = sim_device


class Events:
    """The driver's events, and waiting for one."""

    def __init__(self) -> None:
        self.events: list[ZigbeeEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: ZigbeeEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait(self, predicate: Callable[[ZigbeeEvent], bool], within: float | None = None,
                   since: int = 0) -> ZigbeeEvent:
        """The first event from index `since` matching `predicate` (TimeoutError after `within`)."""
        async with asyncio.timeout(within):
            while True:
                for event in self.events[since:]:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()


def _cluster_list(ids: Any) -> list[str]:
    return [CLUSTER_NAMES.get(i, f"0x{i:04x}") for i in sorted(ids)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hil_tests.zigbee_pairing",
        description="Zigbee pairing test: permit join, interview, enrol and check one device against its firmware "
        "profile, on a simulated network (default) or a real coordinator stick; a JSON report for the handover.",
        epilog="exit status: 0 pass, 1 fail (or coordinator not started), 2 unusable arguments/profile, "
        "3 incomplete (a required step was skipped)")
    p.add_argument("--radio", choices=RADIOS, default="simulated",
                   help="znp: TI Z-Stack, ezsp: Silicon Labs, deconz: ConBee/RaspBee (default: simulated)")
    p.add_argument("--port", help="the coordinator's serial port, or socket://host:port (required with a real radio)")
    p.add_argument("--baud", type=int, default=115200, help="the stick's baud rate (default 115200)")
    p.add_argument("--profile", help="firmware profile: a YAML file or an id in firmware_profiles/ (zigbee-contact); "
                   "default: chosen from --kind, else from the device's interview")
    p.add_argument("--kind", choices=KINDS, help="the device kind expected (and, on the simulator, the one that joins; "
                   "default contact)")
    p.add_argument("--network-file", type=Path, help="the daemon's zigbee-network.json (required with a real radio, "
                   "so the device joins the site's network)")
    p.add_argument("--database", type=Path, help="zigpy device database to use (default: a throwaway one)")
    p.add_argument("--permit", type=int, metavar="S", help="permit-join window in seconds, 1-254 "
                   "(default: the profile's join timeout)")
    p.add_argument("--report", type=Path, help="where to write the JSON report (hardware default: "
                   "./zigbee-pairing-TIMESTAMP.json; simulator default: none)")
    return p


def plan_from_args(args: argparse.Namespace, sim_factory: SimDeviceFactory = sim_device) -> Plan:
    simulated = args.radio == "simulated"
    if simulated and args.port is not None:
        raise UsageError("--port is for a real radio: add --radio znp|ezsp|deconz")
    if not simulated and args.port is None:
        raise UsageError(f"radio {args.radio} needs --port (e.g. /dev/ttyUSB0 or socket://host:port)")
    if not simulated and args.network_file is None:
        raise UsageError("give the daemon's --network-file, so the device joins the site's network "
                         "(stop the daemon first: one application per stick)")
    if args.permit is not None and not 1 <= args.permit <= 254:
        raise UsageError("--permit must be 1-254 seconds (Zigbee's longest window)")
    if not 9600 <= args.baud <= 1_000_000:
        raise UsageError("--baud must be 9600-1000000")
    loaded = None
    if args.profile is not None:
        loaded = profile_arg(args.profile, "zigbee_device")
    elif args.kind is not None:
        loaded = profile_arg(PROFILES_DIR / f"zigbee-{args.kind}.yaml", "zigbee_device")
    if loaded is not None:
        profile = loaded.profile
        assert isinstance(profile, ZigbeeDeviceProfile)
        if args.kind is not None and profile.device_kind != args.kind:
            raise UsageError(f"--kind {args.kind} but the profile {profile.id} is for a {profile.device_kind}")
    sim_kind = args.kind or (loaded.profile.device_kind if loaded is not None else "contact")  # type: ignore[union-attr]
    report_path = args.report
    if report_path is None and not simulated:
        report_path = Path(f"zigbee-pairing-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json")
    return Plan(args.radio, args.port, args.baud, args.network_file, args.database, loaded, sim_kind, args.permit,
                report_path, sim_factory)


# -- the run -------------------------------------------------------------------------------------------


@dataclass
class Session:
    plan: Plan
    driver: ZigbeeDriver
    events: Events
    console: Console
    installer: Installer
    network: SimNetwork | None  # the simulator's air, or None on a real radio
    ieee: str | None = None
    sim: SimDevice | None = None
    profile: ZigbeeDeviceProfile | None = None
    clusters: tuple[int, ...] = ()
    interviewed_ok: bool = False
    chosen: LoadedProfile | None = None  # the profile chosen from the device's interview
    tasks: set[asyncio.Future[Any]] = field(default_factory=set)  # the simulated installer's

    async def person(self, instruction: str, until: Any, within: float, sim_action: Callable[[], None]) -> Any:
        """The installer's step: the simulator does it; a person is asked (and may be absent)."""
        if self.network is not None:
            sim_action()
            return await asyncio.wait_for(until, min(within, SIM_WAIT_S))
        return await self.installer.ask(instruction, until, within)

    def cluster(self, cluster_id: int) -> Any:
        assert self.driver.app is not None and self.ieee is not None
        device = self.driver.app.get_device(ieee=zt.EUI64.convert(self.ieee))
        for ep_id, endpoint in device.endpoints.items():
            if ep_id and cluster_id in endpoint.in_clusters:  # endpoint 0 is ZDO
                return endpoint.in_clusters[cluster_id]
        raise CheckFailed(f"the device has no {CLUSTER_NAMES.get(cluster_id, hex(cluster_id))} cluster")

    async def read(self, cluster_id: int, attr: str) -> Any:
        try:
            async with asyncio.timeout(10):
                values, failed = await self.cluster(cluster_id).read_attributes([attr])
        except (zigpy.exceptions.DeliveryError, TimeoutError) as exc:
            raise CheckFailed(f"reading {attr}: no answer ({exc or 'timeout'})") from None
        if attr not in values:
            raise CheckFailed(f"reading {attr}: the device answered {failed.get(attr, 'nothing')}")
        return values[attr]


async def check_join(s: Session, within: float) -> tuple[str, dict[str, Any]]:
    permit = s.plan.permit_s or max(1, min(254, round(within)))
    await s.driver.permit_join(permit)
    try:
        mark = len(s.events.events)
        joined = s.events.wait(lambda e: isinstance(e, Joined), since=mark)

        def sim_join() -> None:
            assert s.network is not None
            s.sim = s.plan.sim_factory(s.network, s.plan.sim_kind)
            s.tasks.add(asyncio.ensure_future(s.sim.join()))

        event = await s.person(f"The network is open for {permit} s: put the device in pairing mode "
                               "(usually: hold its button until its LED blinks)", joined, min(within, permit),
                               sim_join)
    finally:
        with contextlib.suppress(ZigbeeCommandError):
            await s.driver.permit_join(0)  # the window closes as soon as the device is in
    assert isinstance(event, Joined)
    s.ieee = event.ieee
    return f"{event.ieee} joined (nwk 0x{event.nwk:04x}); window closed", {"ieee": event.ieee,
                                                                             "nwk": f"0x{event.nwk:04x}"}


async def check_interview(s: Session, within: float) -> tuple[str, dict[str, Any]]:
    if s.ieee is None:
        raise CheckSkipped("not run: no device joined")
    event = await s.events.wait(lambda e: isinstance(e, Interviewed) and e.ieee == s.ieee, within)
    assert isinstance(event, Interviewed)
    s.clusters = event.clusters
    details: dict[str, Any] = {"manufacturer": event.manufacturer, "model": event.model,
                               "clusters": _cluster_list(event.clusters)}
    if s.profile is None:
        s.profile = await _profile_for(s, event.clusters)
        details["profile_chosen"] = s.profile.id
    profile = s.profile
    ids = cluster_ids()
    missing = [n for n in profile.clusters.required if ids[n] not in event.clusters]
    details["optional_present"] = [n for n in profile.clusters.optional if ids[n] in event.clusters]
    if missing:
        details["missing"] = missing
        details["hint"] = f"not a {profile.device_kind} the panel can use: check the model against the profile"
        raise CheckFailed(f"missing required cluster{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                          f"(profile {profile.id})", details)
    s.interviewed_ok = True
    return f"{event.manufacturer} {event.model}: {', '.join(profile.clusters.required)} present", details


async def _profile_for(s: Session, clusters: tuple[int, ...]) -> ZigbeeDeviceProfile:
    """The kind the device shows: IAS WD a siren, a door lock, an IAS zone by its type, on/off a relay."""
    kind: str | None = None
    if 0x0502 in clusters:
        kind = "siren"
    elif DoorLock.cluster_id in clusters:
        kind = "lock"
    elif IasZone.cluster_id in clusters:
        zone_type = await s.read(IasZone.cluster_id, "zone_type")
        kind = ZONE_KIND_BY_TYPE.get(zone_type)
        if kind is None:
            raise CheckFailed(f"IAS zone type {zone_type!r} has no Linli kind; give --profile")
    elif OnOff.cluster_id in clusters:
        kind = "relay"
    if kind is None:
        raise CheckFailed(f"cannot tell the device's kind from its clusters ({', '.join(_cluster_list(clusters))}); "
                          "give --profile or --kind")
    loaded = profile_arg(PROFILES_DIR / f"zigbee-{kind}.yaml", "zigbee_device")
    assert isinstance(loaded.profile, ZigbeeDeviceProfile)
    s.chosen = loaded
    return loaded.profile


async def check_enrol(s: Session, within: float) -> tuple[str, dict[str, Any]]:
    assert s.profile is not None and s.driver.app is not None
    if IasZone.cluster_id not in s.clusters:
        raise CheckFailed("the device has no IAS zone cluster to enrol")
    event = await s.events.wait(lambda e: isinstance(e, Enrolled) and e.ieee == s.ieee, within)
    assert isinstance(event, Enrolled)
    state = await s.read(IasZone.cluster_id, "zone_state")
    cie = await s.read(IasZone.cluster_id, "cie_addr")
    zone_type = await s.read(IasZone.cluster_id, "zone_type")
    type_name = getattr(zone_type, "name", str(zone_type))
    details = {"zone_id": event.zone_id, "zone_state": getattr(state, "name", str(state)), "cie_addr": str(cie),
               "zone_type": type_name}
    if state != ZoneState.Enrolled:
        raise CheckFailed(f"the zone says it is {details['zone_state']}, not enrolled", details)
    if cie != s.driver.app.state.node_info.ieee:
        raise CheckFailed(f"the zone's CIE address is {cie}, not this coordinator's", details)
    if s.profile.zone_type is not None and type_name != s.profile.zone_type:
        raise CheckFailed(f"zone type {type_name}, the profile expects {s.profile.zone_type}", details)
    return f"enrolled as zone {event.zone_id} ({type_name})", details


def _zone_check(bit: str, value: bool) -> Callable[[Session, float], Any]:
    async def check(s: Session, within: float) -> tuple[str, dict[str, Any]]:
        mark = len(s.events.events)
        name = {"alarm": "trip", "tamper": "tamper"}[bit] if value else "restore"

        def report(e: ZigbeeEvent) -> bool:
            return isinstance(e, ZoneReport) and e.ieee == s.ieee and getattr(e, bit) == value

        def act() -> None:
            assert s.sim is not None
            s.sim.set_zone(**{bit: value})

        event = await s.person(NEEDS_PERSON[name], s.events.wait(report, since=mark), within, act)
        assert isinstance(event, ZoneReport)
        return f"zone status reports {bit} {'on' if value else 'off'}", {"zone_status": f"0x{event.status:04x}"}

    return check


async def check_tamper(s: Session, within: float) -> tuple[str, dict[str, Any]]:
    mark = len(s.events.events)
    opened = await _zone_check("tamper", True)(s, within)
    if s.sim is None:
        s.console.say("tamper seen: close the cover again")
    else:
        s.sim.set_zone(tamper=False)
    # The close counts only after the open (a quick hand may close it before we get here).
    at = next(i for i, e in enumerate(s.events.events) if i >= mark and isinstance(e, ZoneReport)
              and e.ieee == s.ieee and e.tamper)
    await s.events.wait(lambda e: isinstance(e, ZoneReport) and e.ieee == s.ieee and not e.tamper,
                        min(within, SIM_WAIT_S) if s.sim is not None else within, since=at + 1)
    return "cover opened and closed reported", opened[1]


async def check_battery(s: Session, within: float) -> tuple[str, dict[str, Any]]:
    if PowerConfiguration.cluster_id not in s.clusters:
        raise CheckFailed("the device has no power configuration cluster: its battery cannot be watched")
    raw = await s.read(PowerConfiguration.cluster_id, "battery_percentage_remaining")
    if raw == 0xFF:
        raise CheckFailed("the battery percentage reads 'unknown'")
    percent = min(100.0, int(raw) / 2)
    return f"battery {percent:g} %", {"battery_percent": percent}


async def _command(what: str, call: Any) -> None:
    try:
        await call
    except ZigbeeCommandError as exc:
        raise CheckFailed(f"{what}: {exc}") from None


async def check_siren(s: Session, within: float) -> tuple[str, dict[str, Any]]:
    assert s.ieee is not None
    if s.sim is None:
        s.console.say(f"the siren sounds for {SIREN_TEST_S} s")
    await _command("start warning", s.driver.siren(s.ieee, True, SIREN_TEST_S))
    try:
        await asyncio.sleep(SIREN_TEST_S if s.sim is None else 0)
    finally:
        await _command("stop warning", s.driver.siren(s.ieee, False))
    return "start and stop warning acknowledged", {"duration_s": SIREN_TEST_S}


async def check_squawk(s: Session, within: float) -> tuple[str, dict[str, Any]]:
    assert s.ieee is not None
    await _command("squawk", s.driver.squawk(s.ieee, True))
    return "squawk acknowledged", {}


def _state_check(name: str, command: Callable[[Session], Any], attr: tuple[int, str], want: Any,
                 shown: str) -> Callable[[Session, float], Any]:
    async def check(s: Session, within: float) -> tuple[str, dict[str, Any]]:
        await _command(name, command(s))
        value = await s.read(*attr)
        if value != want:
            raise CheckFailed(f"{name} acknowledged, but {attr[1]} reads {getattr(value, 'name', value)}",
                              {"read": str(value)})
        return f"{name} acknowledged; {attr[1]} reads {shown}", {}

    return check


async def check_offline(s: Session, within: float) -> tuple[str, dict[str, Any]]:
    assert s.profile is not None
    raise CheckSkipped(f"not part of the pairing test: the daemon reports device.offline after "
                       f"{s.profile.checkin_max_s:g} s without a check-in")


CHECKS: dict[str, Callable[[Session, float], Any]] = {
    "join": check_join,
    "interview": check_interview,
    "enrol": check_enrol,
    "trip": _zone_check("alarm", True),
    "restore": _zone_check("alarm", False),
    "tamper": check_tamper,
    "battery": check_battery,
    "siren": check_siren,
    "squawk": check_squawk,
    "lock": _state_check("lock", lambda s: s.driver.lock(s.ieee, True), (DoorLock.cluster_id, "lock_state"),
                         DoorLock.LockState.Locked, "locked"),
    "unlock": _state_check("unlock", lambda s: s.driver.lock(s.ieee, False), (DoorLock.cluster_id, "lock_state"),
                           DoorLock.LockState.Unlocked, "unlocked"),
    "switch_on": _state_check("on", lambda s: s.driver.set_onoff(s.ieee, True), (OnOff.cluster_id, "on_off"),
                              True, "on"),
    "switch_off": _state_check("off", lambda s: s.driver.set_onoff(s.ieee, False), (OnOff.cluster_id, "on_off"),
                               False, "off"),
    "offline": check_offline,
}
TITLES = {"join": "joins while permit-join is open", "interview": "interview: required clusters present",
          "enrol": "IAS zone enrolment", "trip": "zone trips", "restore": "zone restores", "tamper": "tamper switch",
          "battery": "battery reported", "siren": "IAS WD warning", "squawk": "IAS WD squawk", "lock": "locks",
          "unlock": "unlocks", "switch_on": "switches on", "switch_off": "switches off",
          "offline": "offline supervision"}
FIRST = ("join", "interview")  # run before the profile is known when it is chosen from the device


async def run(plan: Plan, console: Console, installer: Installer | None = None) -> Report:
    installer = installer or installer_for(console, "beside the device")
    loaded = plan.profile
    expected = loaded.profile.device_kind if loaded is not None else None  # type: ignore[union-attr]
    target = {"radio": plan.radio, "port": plan.port or "simulator", "expected_kind": expected}
    if plan.radio == "simulated":
        target["simulated_kind"] = plan.sim_kind
    report = Report(target=target,
                    profile=_profile_doc(loaded), tool="zigbee_pairing",
                    libraries=("zigpy", "zigpy-znp", "bellows", "zigpy-deconz"))
    console.line(f"Zigbee pairing test on {plan.port or 'a simulated network'} ({plan.radio})")
    if loaded is not None:
        console.line(f"profile: {loaded.path} ({loaded.profile.id}, sha256 {loaded.sha256[:12]})")
    with tempfile.TemporaryDirectory(prefix="linli-zigbee-hil-") as workdir:
        network = SimNetwork() if plan.radio == "simulated" else None
        events = Events()
        console.begin("coordinator")
        t0 = time.monotonic()
        driver = await _start(plan, Path(workdir), network, events, report)
        if driver is None:
            console.end("coordinator", "FAIL", time.monotonic() - t0, report.connection["reason"],
                        report.connection.get("hint"))
        else:
            console.end("coordinator", "started", time.monotonic() - t0,
                        f"channel {report.connection['channel']}, PAN 0x{report.connection['pan_id']:04x}")
            session = Session(plan, driver, events, console, installer, network,
                              profile=loaded.profile if loaded is not None else None)  # type: ignore[arg-type]
            try:
                await _checks(session, report)
            finally:
                await driver.stop()
        report.finished_at = utc_now()
    summary(console, report, "beside the device")
    return report


def _profile_doc(loaded: LoadedProfile | None) -> dict[str, Any]:
    if loaded is None:
        return {"id": None, "chosen": "from the device's interview"}
    return {"id": loaded.profile.id, "file": str(loaded.path), "sha256": loaded.sha256,
            "vendor": loaded.profile.vendor, "model": loaded.profile.model}


async def _start(plan: Plan, workdir: Path, network: SimNetwork | None, events: Events,
                 report: Report) -> ZigbeeDriver | None:
    try:
        secrets = load_or_create_secrets(plan.network_file or workdir / "zigbee-network.json")
    except NetworkFileError as exc:
        report.connection = {"online": False, "reason": str(exc)}
        return None
    settings = RadioSettings(radio=plan.radio, port=plan.port, secrets=secrets,
                             database_path=plan.database or workdir / "zigbee.db", baudrate=plan.baud)
    driver = ZigbeeDriver(settings, {}, events, app_factory=app_factory(network) if network is not None else None)
    try:
        async with asyncio.timeout(60):
            await driver.start()
    except (ZigbeeStartError, OSError, RuntimeError, TimeoutError) as exc:
        report.connection = {"online": False, "reason": str(exc) or type(exc).__name__,
                             "hint": "check the port, that the daemon is stopped, and the radio type"}
        return None
    assert driver.app is not None
    info = driver.app.state.network_info
    report.connection = {"online": True, "channel": int(info.channel), "pan_id": int(info.pan_id),
                         "coordinator": str(driver.app.state.node_info.ieee)}
    return driver


async def _checks(s: Session, report: Report) -> None:
    first = [(name, True, 60.0) for name in FIRST]
    if s.profile is not None:
        planned = [(c.check, c.required, c.timeout_s) for c in s.profile.commissioning.checks]
        first = [p for p in planned if p[0] in FIRST] or first
    done: set[str] = set()
    total = f"/{len(s.profile.commissioning.checks)}" if s.profile is not None else ""
    n = 0
    for name, required, within in first:
        n += 1
        await _one(s, report, f"[{n}{total}] {name}", name, required, within)
        done.add(name)
    if s.profile is None:
        return  # the interview could not choose a profile: its failure says why
    if s.chosen is not None:
        report.profile = _profile_doc(s.chosen) | {"chosen": "from the device's interview"}
    for c in s.profile.commissioning.checks:
        if c.check in done:
            continue
        n += 1
        total = f"/{len(s.profile.commissioning.checks)}"
        await _one(s, report, f"[{n}{total}] {c.check}", c.check, c.required, c.timeout_s)


async def _one(s: Session, report: Report, label: str, name: str, required: bool, within: float) -> None:
    async def body() -> tuple[str, dict[str, Any]]:
        if name not in FIRST and not s.interviewed_ok:
            raise CheckSkipped("not run: the device did not pass its interview")
        result: tuple[str, dict[str, Any]] = await CHECKS[name](s, within)
        return result

    await run_check(s.console, report, label, name, TITLES[name], required, body)


def main(argv: list[str] | None = None, out: TextIO | None = None, sim_factory: SimDeviceFactory = sim_device) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    console = Console(out)
    return run_tool(console, lambda: plan_from_args(args, sim_factory), run)


if __name__ == "__main__":
    sys.exit(main())
