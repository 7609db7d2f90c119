"""Zone walk of a Modbus RTU I/O module: every wired zone is tripped and seen, with its times.

    python -m hil_tests.zone_walk                                  # a simulated module walks itself
    python -m hil_tests.zone_walk --port /dev/ttyUSB0 --unit 3 --profile generic-modbus-io-16 \\
        --inputs 0-11 --analog 0-3 --walk-timeout 300 --report fence-io-3.json

Checks, in the profile's plan order: `identify` (each table of the register map reads at its size,
the firmware register is recorded), `inputs` (each discrete input is seen active and back to
normal) and `analog` (each end-of-line loop is seen in every band: active, cut, short, and back to
normal). The walk uses the daemon's own driver (drivers.modbus), so a zone is judged as the alarm
will judge it. Against the simulator the tool trips each zone itself; against a real module the
installer walks the zones in any order while the tool prints each zone as it is seen, until every
zone is done or `--walk-timeout` runs out. The report lists every zone with its state changes and
times, and the zones never seen.

Exit status: 0 every required check passed; 1 a required check failed or the module could not be
reached; 2 unusable arguments or profile; 3 incomplete (a required step was skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from drivers.modbus import EolThresholds, ModbusDriver, ModuleSpec
from drivers.modbus.profile import ModbusIoProfile
from drivers.modbus.simulator import SimBus, SimModule
from hil_tests.alarm_common import (
    Console,
    UsageError,
    installer_for,
    parse_points,
    profile_arg,
    run_check,
    run_tool,
    summary,
)
from hil_tests.installer import Installer
from hil_tests.modbus_link import Link, Target, add_target_args, answer_timeout_s, sim_bus, target_from_args
from hil_tests.profiles import LoadedProfile
from hil_tests.report import CheckFailed, CheckSkipped, Report, utc_now

DUT = "dut"
WALK_CHECKS = ("identify", "inputs", "analog")  # the profile's other checks belong to siren_test / the daemon
EOL_BANDS = ("active", "cut", "short")  # each must be seen on a supervised loop, then normal again
SIM_STEP_S = 1.0  # how long the simulated installer waits to see each step before going on
SIM_GRACE_S = 0.3  # after the simulated installer is done: a few polls for its last step to arrive


@dataclass
class Zone:
    point: str  # di3 | ai0
    eol: bool
    initial: str | None = None  # band at the first poll
    band: str | None = None  # band now
    changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seen_bands(self) -> set[str]:
        return {c["state"] for c in self.changes} | ({self.initial} if self.initial else set())

    @property
    def missing(self) -> list[str]:
        """What the walk has yet to see of this zone."""
        wanted = EOL_BANDS if self.eol else ("active",)
        lacking = [b for b in wanted if b not in self.seen_bands]
        if not lacking and self.band != "normal":
            lacking.append("normal again")
        return lacking

    @property
    def done(self) -> bool:
        return not self.missing

    def as_dict(self) -> dict[str, Any]:
        return {"zone": self.point, "type": "eol" if self.eol else "input", "initial": self.initial,
                "seen": bool(self.changes), "complete": self.done, "missing": self.missing, "changes": self.changes}


class Walk:
    """The zones' state, fed by the driver's `input.changed` events."""

    def __init__(self, inputs: list[int], analog: list[int], console: Console) -> None:
        self.zones = {f"di{i}": Zone(f"di{i}", False) for i in inputs}
        self.zones |= {f"ai{i}": Zone(f"ai{i}", True) for i in analog}
        self.console = console
        self.started = time.monotonic()
        self.online = False
        self.offline_reason: str | None = None
        self.skipped: str | None = None  # the installer ended the walk (Enter)
        self._changed = asyncio.Event()

    def report(self, type_: str, source: str, data: dict[str, Any], severity: str) -> None:
        if type_ == "device.online":
            self.online = True
        elif type_ == "device.offline":
            self.online = False
            self.offline_reason = str(data.get("reason"))
        elif type_ == "input.changed":
            zone = self.zones.get(data["point"])
            if zone is not None:
                detail = data.get("detail")
                band = detail if detail in ("cut", "short") else data["state"]
                if zone.initial is None:
                    zone.initial = zone.band = band
                else:
                    self._change(zone, band)
        self._changed.set()

    def _change(self, zone: Zone, band: str) -> None:
        was_done = zone.done
        zone.band = band
        t = time.monotonic() - self.started
        zone.changes.append({"state": band, "t_s": round(t, 3), "at": utc_now()})
        if self.console is not None:
            complete = sum(z.done for z in self.zones.values())
            note = f" - done ({complete}/{len(self.zones)})" if zone.done and not was_done else ""
            self.console.say(f"{zone.point}: {band} at {t:.1f} s{note}")

    @property
    def ready(self) -> bool:
        """Every zone has had its first poll."""
        return all(z.initial is not None for z in self.zones.values())

    @property
    def done(self) -> bool:
        return all(z.done for z in self.zones.values())

    async def until(self, predicate: Any, within: float | None = None) -> bool:
        """Wait for `predicate()`; False when `within` ran out or the module went offline."""
        async with contextlib.AsyncExitStack() as stack:
            if within is not None:
                stack.enter_context(contextlib.suppress(TimeoutError))
                await stack.enter_async_context(asyncio.timeout(within))
            while not predicate() and (self.online or self.offline_reason is None):  # until it drops out
                self._changed.clear()
                await self._changed.wait()
        return bool(predicate())


@dataclass
class Plan:
    profile: LoadedProfile
    target: Target
    inputs: list[int]
    analog: list[int]
    walk_timeout_s: float | None  # None: the profile's
    report_path: Path | None
    sim: SimBus | None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hil_tests.zone_walk",
        description="Zone walk of a Modbus RTU I/O module, against the simulator (default) or a real module: "
        "each zone is tripped and seen; a JSON report for the handover.",
        epilog="exit status: 0 pass, 1 fail (or module unreachable), 2 unusable arguments/profile, "
        "3 incomplete (a required step was skipped)")
    add_target_args(p)
    p.add_argument("--inputs", default="all", help="discrete inputs wired as zones: all, none, or e.g. 0-7,10")
    p.add_argument("--analog", help="end-of-line analog inputs to walk: all, none, or e.g. 0-3 (default: all when "
                   "the profile plans the analog check, else none)")
    p.add_argument("--walk-timeout", type=float, metavar="S",
                   help="seconds the walk may take (default: the profile's inputs timeout)")
    p.add_argument("--report", type=Path, help="where to write the JSON report (hardware default: "
                   "./zone-walk-UNIT-TIMESTAMP.json; simulator default: none)")
    return p


def plan_from_args(args: argparse.Namespace, sim_module: type[SimModule] = SimModule) -> Plan:
    loaded = profile_arg(args.profile, "modbus_io_module")
    profile = loaded.profile
    assert isinstance(profile, ModbusIoProfile)
    target = target_from_args(args, loaded)
    regs = profile.registers
    inputs = parse_points(args.inputs, regs.discrete_inputs.count, "--inputs")
    planned = {c.check for c in profile.commissioning.checks}
    analog_text = args.analog if args.analog is not None else ("all" if "analog" in planned else "none")
    analog = parse_points(analog_text, regs.input_registers.count, "--analog")
    if args.walk_timeout is not None and not 0 < args.walk_timeout <= 3600:
        raise UsageError("--walk-timeout must be between 0 and 3600 seconds")
    report_path = args.report
    if report_path is None and target.port is not None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        report_path = Path(f"zone-walk-{target.unit}-{stamp}.json")
    sim = sim_bus(profile, target.unit, sim_module) if target.port is None else None
    return Plan(loaded, target, inputs, analog, args.walk_timeout, report_path, sim)


def _sim_values(eol: EolThresholds) -> dict[str, int]:
    """A value in the middle of each band."""
    return {"normal": (eol.short_below + eol.normal_below) // 2, "active": (eol.normal_below + eol.alarm_below) // 2,
            "cut": min(0xFFFF, eol.alarm_below * 2), "short": eol.short_below // 2}


async def play_installer(module: SimModule, walk: Walk, eol: EolThresholds) -> None:
    """The simulated installer: trips each zone in turn and waits (briefly) to see it."""
    for zone in walk.zones.values():
        no = int(zone.point[2:])
        if zone.eol:
            values = _sim_values(eol)
            for band in ("active", "normal", "cut", "normal", "short", "normal"):
                module.set_analog(no, values[band])
                await walk.until(lambda z=zone, b=band: z.band == b, SIM_STEP_S)  # type: ignore[misc]
        else:
            for on in (True, False):
                module.set_input(no, on)
                band = "active" if on else "normal"
                await walk.until(lambda z=zone, b=band: z.band == b, SIM_STEP_S)  # type: ignore[misc]


async def run(plan: Plan, console: Console, installer: Installer | None = None) -> Report:
    profile = plan.profile.profile
    assert isinstance(profile, ModbusIoProfile)
    target = plan.target
    installer = installer or installer_for(console, "beside the module's zones")
    report = Report(target={**target.describe(), "inputs": [f"di{i}" for i in plan.inputs],
                            "analog": [f"ai{i}" for i in plan.analog]},
                    profile={"id": profile.id, "file": str(plan.profile.path), "sha256": plan.profile.sha256,
                             "vendor": profile.vendor, "model": profile.model},
                    tool="zone_walk", libraries=("pymodbus",))
    console.line(f"Zone walk of Modbus I/O module {target.where}")
    console.line(f"profile: {plan.profile.path} ({profile.id}, sha256 {plan.profile.sha256[:12]})")
    if plan.sim is not None:
        await plan.sim.start()
    port = plan.sim.port if plan.sim is not None else target.port
    assert port is not None
    try:
        link = Link(target, profile, port)
        console.begin("connect")
        t0 = time.monotonic()
        reason = await link.open()
        report.connection = {"online": reason is None, "port": target.port or "simulator"}
        if reason is not None:
            report.connection["reason"] = reason
            console.end("connect", "FAIL", time.monotonic() - t0, reason, "check the port name and its permissions")
        else:
            console.end("connect", "open", time.monotonic() - t0, "")
            try:
                await _checks(plan, link, console, installer, report)
            finally:
                link.close()
    finally:
        if plan.sim is not None:
            await plan.sim.stop()
        report.finished_at = utc_now()
    summary(console, report, "beside the zones")
    return report


async def _checks(plan: Plan, link: Link, console: Console, installer: Installer, report: Report) -> None:
    profile = plan.profile.profile
    assert isinstance(profile, ModbusIoProfile)
    planned = [c for c in profile.commissioning.checks if c.check in WALK_CHECKS]
    walked: asyncio.Future[Walk] | None = None
    identified = True  # unless the plan's identify check fails
    for n, check in enumerate(planned, 1):
        label = f"[{n}/{len(planned)}] {check.check}"
        walk_s = plan.walk_timeout_s or check.timeout_s
        if check.check == "identify":
            async def body() -> tuple[str, dict[str, Any]]:
                message, details = await link.identify()
                report.device = details
                return message, details

            result = await run_check(console, report, label, "identify", "module identity and register map",
                                     check.required, body)
            identified = result.status == "pass"
            if not identified:
                report.connection["online"] = False
                report.connection["reason"] = result.message
            continue
        if walked is None:
            link.close()  # the walk's driver takes the port: one master per bus
            walked = asyncio.ensure_future(_walk(plan, console, installer, walk_s, not identified))
        kind = check.check

        async def evaluate(kind: str = kind, walked: asyncio.Future[Walk] = walked) -> tuple[str, dict[str, Any]]:
            return _judge(await walked, kind == "analog")

        title = "zone walk: discrete inputs" if kind == "inputs" else "zone walk: end-of-line loops"
        await run_check(console, report, label, kind, title, check.required, evaluate)


async def _walk(plan: Plan, console: Console, installer: Installer, walk_s: float, unreached: bool) -> Walk:
    profile = plan.profile.profile
    assert isinstance(profile, ModbusIoProfile)
    regs, target = profile.registers, plan.target
    walk = Walk(plan.inputs, plan.analog, console)
    if unreached:
        raise CheckSkipped("not run: the module did not identify")
    if not walk.zones:
        raise CheckSkipped("no zones to walk (--inputs none --analog none)")
    eol = EolThresholds(profile.eol.short_below, profile.eol.normal_below, profile.eol.alarm_below)
    spec = ModuleSpec(DUT, target.unit, inputs=regs.discrete_inputs.count if plan.inputs else 0, coils=0,
                      analog={i: eol for i in plan.analog}, di_address=regs.discrete_inputs.address,
                      ai_address=regs.input_registers.address)
    port = plan.sim.port if plan.sim is not None else target.port
    assert port is not None
    driver = ModbusDriver(port, [spec], walk.report, baudrate=target.baud,
                          timeout_s=answer_timeout_s(profile, target), offline_after=3)
    await driver.start()
    try:
        if not await walk.until(lambda: walk.ready, 5.0):
            raise CheckFailed(f"the module did not answer the walk's polls ({walk.offline_reason or 'no answer'})")
        walk.started = time.monotonic()
        if plan.sim is not None:
            sim = plan.sim.module(target.unit)
            async with asyncio.timeout(walk_s):
                await play_installer(sim, walk, eol)
            await walk.until(lambda: walk.done, SIM_GRACE_S)
        else:
            names = ", ".join(walk.zones)
            try:
                eol_note = " (end-of-line loops: trip, cut and short each)" if plan.analog else ""
                await installer.ask(f"Walk the zones: trip each of {names} and let it restore{eol_note}",
                                    walk.until(lambda: walk.done), walk_s)
            except TimeoutError:
                pass
            except CheckSkipped as exc:
                if installer.absent_reason is not None:
                    raise  # nobody walked: nothing to judge
                walk.skipped = exc.message  # ended early: what was seen still goes into the report
    except TimeoutError:
        pass  # the walk's time is up: the judgement lists what was not seen
    finally:
        await driver.stop()
    return walk


def _judge(walk: Walk, eol: bool) -> tuple[str, dict[str, Any]]:
    zones = [z for z in walk.zones.values() if z.eol == eol]
    if not zones:
        raise CheckSkipped("no " + ("end-of-line loops" if eol else "discrete inputs") + " in this walk")
    details: dict[str, Any] = {
        "zones": [z.as_dict() for z in zones],
        "never_seen": [z.point for z in zones if not z.changes],
        "incomplete": {z.point: f"{', '.join(z.missing)} not seen" for z in zones if z.changes and not z.done},
        "walk_s": round(time.monotonic() - walk.started, 3),
    }
    stuck = [z.point for z in zones if z.initial not in (None, "normal")]
    if stuck:
        details["not_normal_at_start"] = stuck
    done = sum(z.done for z in zones)
    problems = []
    if walk.offline_reason is not None and not walk.online:
        problems.append(f"the module stopped answering ({walk.offline_reason})")
    if details["never_seen"]:
        problems.append(f"never seen: {', '.join(details['never_seen'])}")
    if details["incomplete"]:
        problems.append("; ".join(f"{p}: {m}" for p, m in details["incomplete"].items()))
    if problems and walk.skipped is not None:
        raise CheckSkipped(f"{walk.skipped} after {done} of {len(zones)} zones; " + "; ".join(problems), details)
    if problems:
        details["hint"] = "check the wiring of the zones named, and the sensor on each"
        raise CheckFailed(f"{done} of {len(zones)} zones done; " + "; ".join(problems), details)
    seen = "in every band (active, cut, short) and normal again" if eol else "tripped and restored"
    return f"all {len(zones)} zones seen {seen}", details


def main(argv: list[str] | None = None, out: TextIO | None = None, sim_module: type[SimModule] = SimModule) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    console = Console(out)
    return run_tool(console, lambda: plan_from_args(args, sim_module), run)


if __name__ == "__main__":
    sys.exit(main())
