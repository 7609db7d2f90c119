"""Siren and strobe test of a Modbus RTU I/O module's relays: each coil on for a bounded time, read back.

    python -m hil_tests.siren_test                                 # a simulated module
    python -m hil_tests.siren_test --port /dev/ttyUSB0 --unit 3 --coils 0,1 --on-time 2 --yes \\
        --report fence-io-3-sirens.json

Checks: `identify` (the profile's register map answers, as in zone_walk), then one check per coil
(`do0`, ...): switched on (FC 5), read back on (FC 1), held for `--on-time` seconds so the installer
can hear or see it, switched off and read back off. Whatever happens (a failed read, Ctrl-C), every
coil the test switched on is switched off again before the tool exits.

A real port makes noise: `--yes` is required, and so is `--coils` (only the relays wired to sirens
and strobes: another relay may open a gate).

Exit status: 0 every required check passed; 1 a required check failed or the module could not be
reached; 2 unusable arguments or profile; 3 incomplete.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from drivers.modbus.profile import ModbusIoProfile
from drivers.modbus.simulator import SimBus, SimModule
from hil_tests.alarm_common import (
    Console,
    UsageError,
    parse_points,
    profile_arg,
    run_check,
    run_tool,
    summary,
)
from hil_tests.modbus_link import Link, Target, add_target_args, sim_bus, target_from_args
from hil_tests.profiles import LoadedProfile
from hil_tests.report import CheckFailed, CheckSkipped, Report, utc_now

DEFAULT_ON_S = 2.0
MAX_ON_S = 10.0  # long enough to hear and see it; a siren left on is a neighbourhood's problem
MIN_ON_S = 0.05


@dataclass
class Plan:
    profile: LoadedProfile
    target: Target
    coils: list[int]
    on_s: float
    report_path: Path | None
    sim: SimBus | None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hil_tests.siren_test",
        description="Switches each siren/strobe relay of a Modbus I/O module on for a short time and reads it "
        "back, against the simulator (default) or a real module; a JSON report for the handover.",
        epilog="exit status: 0 pass, 1 fail (or module unreachable), 2 unusable arguments/profile, 3 incomplete")
    add_target_args(p)
    p.add_argument("--coils", help="relays wired to sirens/strobes: all, or e.g. 0,1 or 0-3 (required with --port; "
                   "simulator default: all)")
    p.add_argument("--on-time", type=float, default=DEFAULT_ON_S, metavar="S",
                   help=f"seconds each relay stays on (default {DEFAULT_ON_S:g}, at most {MAX_ON_S:g})")
    p.add_argument("--yes", action="store_true", help="confirm that sounding the sirens now is all right "
                   "(required with --port)")
    p.add_argument("--report", type=Path, help="where to write the JSON report (hardware default: "
                   "./siren-test-UNIT-TIMESTAMP.json; simulator default: none)")
    return p


def plan_from_args(args: argparse.Namespace, sim_module: type[SimModule] = SimModule) -> Plan:
    loaded = profile_arg(args.profile, "modbus_io_module")
    profile = loaded.profile
    assert isinstance(profile, ModbusIoProfile)
    target = target_from_args(args, loaded)
    if not MIN_ON_S <= args.on_time <= MAX_ON_S:
        raise UsageError(f"--on-time must be between {MIN_ON_S:g} and {MAX_ON_S:g} seconds")
    count = profile.registers.coils.count
    if count == 0:
        raise UsageError(f"{profile.id} has no coils to test")
    if target.port is not None:
        if not args.yes:
            raise UsageError("this sounds the sirens on a real module: warn the neighbours, then add --yes")
        if args.coils is None:
            raise UsageError("say which relays drive sirens or strobes (--coils 0,1): another relay may open a gate")
    coils = parse_points(args.coils or "all", count, "--coils")
    if not coils:
        raise UsageError("--coils names no relay")
    report_path = args.report
    if report_path is None and target.port is not None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        report_path = Path(f"siren-test-{target.unit}-{stamp}.json")
    sim = sim_bus(profile, target.unit, sim_module) if target.port is None else None
    return Plan(loaded, target, coils, args.on_time, report_path, sim)


async def exercise_coil(
    link: Link, no: int, on_s: float, console: Console, switched_on: set[int]
) -> tuple[str, dict[str, Any]]:
    details: dict[str, Any] = {"coil": f"do{no}", "on_time_s": on_s}
    before = (await link.read_coils(no, 1))[0]
    details["on_before"] = before
    if before:
        raise CheckFailed(f"do{no} was already on before the test: is the alarm sounding, or the relay stuck?",
                          details | {"hint": "find out why it is on before testing it"})
    switched_on.add(no)
    await link.write_coil(no, True)
    on_at = time.monotonic()
    details["on_read_back"] = (await link.read_coils(no, 1))[0]
    if not details["on_read_back"]:
        raise CheckFailed(f"do{no} switched on but reads back off", details | {
            "hint": "the module did not keep the output on: relay or output driver fault, or this coil is not "
                    "where the profile says"})
    console.say(f"do{no} is on for {on_s:g} s: the siren/strobe on it should sound/flash now")
    await asyncio.sleep(max(0.0, on_s - (time.monotonic() - on_at)))
    await link.write_coil(no, False)
    details["off_read_back"] = (await link.read_coils(no, 1))[0]
    if details["off_read_back"]:
        raise CheckFailed(f"do{no} switched off but reads back on", details | {"hint": "relay stuck on"})
    switched_on.discard(no)
    details["on_for_s"] = round(time.monotonic() - on_at, 3)
    return f"on and off confirmed by read-back ({details['on_for_s']:.1f} s on)", details


async def run(plan: Plan, console: Console) -> Report:
    profile = plan.profile.profile
    assert isinstance(profile, ModbusIoProfile)
    target = plan.target
    report = Report(target={**target.describe(), "coils": [f"do{i}" for i in plan.coils], "on_time_s": plan.on_s},
                    profile={"id": profile.id, "file": str(plan.profile.path), "sha256": plan.profile.sha256,
                             "vendor": profile.vendor, "model": profile.model},
                    tool="siren_test", libraries=("pymodbus",))
    console.line(f"Siren test of Modbus I/O module {target.where}: {', '.join(report.target['coils'])}")
    console.line(f"profile: {plan.profile.path} ({profile.id}, sha256 {plan.profile.sha256[:12]})")
    if plan.sim is not None:
        await plan.sim.start()
    port = plan.sim.port if plan.sim is not None else target.port
    assert port is not None
    link = Link(target, profile, port)
    switched_on: set[int] = set()
    try:
        console.begin("connect")
        t0 = time.monotonic()
        reason = await link.open()
        report.connection = {"online": reason is None, "port": target.port or "simulator"}
        if reason is not None:
            report.connection["reason"] = reason
            console.end("connect", "FAIL", time.monotonic() - t0, reason, "check the port name and its permissions")
        else:
            console.end("connect", "open", time.monotonic() - t0, "")
            await _checks(plan, link, console, report, switched_on)
    finally:
        await _all_off(link, switched_on, console, report)
        link.close()
        if plan.sim is not None:
            await plan.sim.stop()
        report.finished_at = utc_now()
    summary(console, report, "at the module")
    return report


async def _checks(plan: Plan, link: Link, console: Console, report: Report, switched_on: set[int]) -> None:
    total = 1 + len(plan.coils)

    async def identify() -> tuple[str, dict[str, Any]]:
        message, details = await link.identify()
        report.device = details
        return message, details

    result = await run_check(console, report, f"[1/{total}] identify", "identify", "module identity and register map",
                             True, identify)
    if result.status != "pass":
        report.connection.update(online=False, reason=result.message)
    profile = plan.profile.profile
    assert isinstance(profile, ModbusIoProfile)
    required = next((c.required for c in profile.commissioning.checks if c.check == "outputs"), True)
    for n, no in enumerate(plan.coils, 2):
        async def body(no: int = no) -> tuple[str, dict[str, Any]]:
            if result.status != "pass":
                raise CheckSkipped("not run: the module did not identify")
            return await exercise_coil(link, no, plan.on_s, console, switched_on)

        await run_check(console, report, f"[{n}/{total}] do{no}", f"do{no}", f"siren/strobe relay do{no}", required,
                        body)
        await _all_off(link, switched_on, console, report)  # a failed coil must not sound through the next ones


async def _all_off(link: Link, switched_on: set[int], console: Console, report: Report) -> None:
    """Never leave a siren sounding: switch off whatever this run switched on, and say so if that fails."""
    for no in sorted(switched_on):
        try:
            await link.write_coil(no, False)
            if (await link.read_coils(no, 1))[0]:
                raise CheckFailed("it still reads back on")
        except Exception as exc:  # whatever it was, the installer must know the siren may be on
            message = getattr(exc, "message", str(exc))
            console.line(f"WARNING: do{no} may still be ON: switching it off failed ({message}); cut its power")
            if f"do{no}" not in report.device.setdefault("left_on", []):
                report.device["left_on"].append(f"do{no}")
        else:
            switched_on.discard(no)


def main(argv: list[str] | None = None, out: TextIO | None = None, sim_module: type[SimModule] = SimModule) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    console = Console(out)
    return run_tool(console, lambda: plan_from_args(args, sim_module), run)


if __name__ == "__main__":
    sys.exit(main())
