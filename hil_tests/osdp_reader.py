"""Commission an OSDP reader: run its profile's checks and write the handover report.

    python -m hil_tests.osdp_reader                       # against the simulator: anyone can try it
    python -m hil_tests.osdp_reader --port /dev/ttyUSB0 --address 3 --key-file keys.json --commission \\
        --profile firmware_profiles/generic-osdp-reader.yaml --report gate-in.json

Exit status: 0 every required check passed; 1 a required check failed or the reader could not be
reached; 2 the command line, profile or key file is unusable; 3 incomplete (a required check was
skipped, e.g. nobody at the reader).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import osdp_sys

from drivers.osdp import KeyFileError, KeyStore
from drivers.osdp.simulator import SimReader
from hil_tests.console import SHOWN, Console, UsageError, _plain, run_tool
from hil_tests.installer import Installer, NobodyThere, TerminalInstaller
from hil_tests.osdp_checks import CHECKS, CheckContext, format_id
from hil_tests.osdp_session import Session, Target
from hil_tests.profiles import DEFAULT_OSDP_PROFILE, LoadedProfile, ProfileError, load_profile
from hil_tests.report import CheckFailed, CheckResult, CheckSkipped, Report, Status, utc_now


@dataclass
class Plan:
    """Everything a run needs, checked before anything touches the bus."""

    profile: LoadedProfile
    target: Target
    keys: KeyStore | None
    key_label: str | None
    commission: bool
    sim: SimReader | None
    wait_s: float | None
    report_path: Path | None


# -- from the command line to a plan -----------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hil_tests.osdp_reader",
        description="Commissioning checks for an OSDP reader, against the simulator (default) or a real "
        "reader on an RS-485 port. Prints progress, writes a JSON report for the handover.",
        epilog="exit status: 0 pass, 1 fail (or reader unreachable), 2 unusable arguments/profile/key file, "
        "3 incomplete (a required step was skipped)",
    )
    p.add_argument(
        "--port",
        help="serial port of the RS-485 adapter, or socket://host:port (ser2net); "
        "without it a simulated reader is used",
    )
    p.add_argument("--address", type=int, help="the reader's OSDP address (default: the profile's factory address)")
    p.add_argument("--baud", type=int, help="baud rate (default: the profile's)")
    p.add_argument("--profile", type=Path, default=DEFAULT_OSDP_PROFILE, help="firmware profile (YAML)")
    p.add_argument(
        "--key-file",
        type=Path,
        help="the controller's OSDP key file (mode 0600); required for readers with the secure channel",
    )
    p.add_argument("--reader-id", help="the reader's id in the site config and the key file (default reader-ADDRESS)")
    p.add_argument(
        "--commission",
        action="store_true",
        help="install mode: a factory-fresh reader joins with "
        "SCBK-D and is given its own key (generated into the key file if it has none)",
    )
    p.add_argument(
        "--wait", type=float, metavar="S", help="seconds to wait for each step at the reader (default: the profile's)"
    )
    p.add_argument(
        "--report",
        type=Path,
        help="where to write the JSON report (hardware default: ./osdp-READER-TIMESTAMP.json; simulator default: none)",
    )
    return p


def plan_from_args(args: argparse.Namespace, workdir: Path) -> Plan:
    """Check the arguments against the profile; `workdir` holds the simulator's throwaway key file."""
    try:
        loaded = load_profile(args.profile)
    except ProfileError as exc:
        raise UsageError(f"the profile is not valid:\n{exc}") from None
    profile = loaded.profile
    tr = profile.transport
    address = tr.addresses.default if args.address is None else args.address
    if not tr.addresses.min <= address <= tr.addresses.max:
        raise UsageError(f"address {address} is outside this profile's range {tr.addresses.min}-{tr.addresses.max}")
    baud = tr.baud if args.baud is None else args.baud
    if baud not in tr.allowed_bauds:
        raise UsageError(f"baud {baud} is not one this reader supports: {', '.join(map(str, tr.allowed_bauds))}")
    if args.wait is not None and not 0 < args.wait <= 600:
        raise UsageError("--wait must be between 0 and 600 seconds")
    reader_id = args.reader_id or f"reader-{address}"
    sc = profile.secure_channel
    simulated = args.port is None
    commission = args.commission
    if commission and sc.commissioning != "install_mode":
        raise UsageError(
            f"this profile's readers are not commissioned in install mode ({sc.commissioning}): "
            "put the key in with the vendor's tool and give it in --key-file"
        )

    keys: KeyStore | None = None
    key_label: str | None = None
    if args.key_file is not None:
        try:
            keys = KeyStore(args.key_file)
        except KeyFileError as exc:
            raise UsageError(str(exc)) from None
        key_label = f"{args.key_file} [{reader_id}]"
        if keys.get(reader_id) is None and not commission:
            raise UsageError(
                f"{args.key_file} has no key for {reader_id!r}: give the reader's id as in the site config "
                "(--reader-id), or --commission for a factory-fresh reader"
            )
    elif simulated and sc.required:
        # Anyone can try it: a throwaway key file, and the simulated reader as it leaves the factory.
        keys = KeyStore(workdir / "osdp-keys.json")
        key_label = f"temporary key file [{reader_id}]"
        if sc.commissioning == "install_mode":
            commission = True
        else:
            keys.generate(reader_id)
    elif sc.required:
        raise UsageError(
            "this profile requires the secure channel: give --key-file (and --commission for a factory-fresh reader)"
        )

    sim = None
    if simulated:
        preset = None if commission or keys is None else keys.get(reader_id)
        sim = SimReader(address, key=preset, install_mode=commission)

    report_path = args.report
    if report_path is None and not simulated:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        report_path = Path(f"osdp-{reader_id}-{stamp}.json")
    return Plan(
        loaded, Target(args.port, address, baud, reader_id), keys, key_label, commission, sim, args.wait, report_path
    )


# -- the run -----------------------------------------------------------------------------------------


async def run(plan: Plan, console: Console, installer: Installer | None = None) -> Report:
    target, loaded = plan.target, plan.profile
    profile = loaded.profile
    if installer is None:
        installer = (
            TerminalInstaller(console.say)
            if sys.stdin is not None and sys.stdin.isatty()
            else NobodyThere("stdin is not a terminal; run it from a terminal at the reader")
        )
    report = Report(
        target={**target.describe(), "commission": plan.commission, "key": plan.key_label},
        profile={
            "id": profile.id,
            "file": str(loaded.path),
            "sha256": loaded.sha256,
            "vendor": profile.vendor,
            "model": profile.model,
        },
    )
    where = "a simulated bus" if target.port is None else target.port
    console.line(
        f"Commissioning OSDP reader {target.reader_id!r} at address {target.address} on {where} ({target.baud} baud)"
    )
    console.line(f"profile: {loaded.path} ({profile.id}, sha256 {loaded.sha256[:12]})")

    session = Session(
        target,
        keys=plan.keys,
        key_label=plan.key_label,
        commission=plan.commission,
        sim=plan.sim,
        feedback=plan.sim is None,
    )
    try:
        console.begin("connect")
        conn = await session.open()
        report.connection = conn
        if conn["online"]:
            assert session.driver is not None
            state = session.driver.reader_state(target.reader_id)
            online = session.events.of("device.online", target.reader_id)
            report.device = {
                "id": format_id(dict(online[-1].data.get("id", {}))) if online else {},
                "capabilities": state["capabilities"],
                "secure_channel": state["secure"],
            }
            how = ["secure channel active" if state["secure"] else "plaintext"]
            if conn["commissioned"]:
                how.append("commissioned with its own key")
            console.end("connect", "online", conn["seconds"], ", ".join(how))
        else:
            console.end("connect", "FAIL", conn["seconds"], conn["reason"], conn.get("hint"))
        await _run_checks(plan, session, installer, console, report)
    finally:
        await session.close()
        report.finished_at = utc_now()
    _summary(console, report)
    return report


async def _run_checks(plan: Plan, session: Session, installer: Installer, console: Console, report: Report) -> None:
    profile = plan.profile.profile
    checks = profile.commissioning.checks
    for n, planned in enumerate(checks, 1):
        if plan.wait_s is not None:
            planned = planned.model_copy(update={"timeout_s": plan.wait_s})
        spec = CHECKS[planned.check]
        label = f"[{n}/{len(checks)}] {planned.check}"
        console.begin(label)
        started_at, t0 = utc_now(), time.monotonic()
        details: dict[str, Any] = {}
        hint = None
        status: Status
        try:
            if spec.needs_online and not session.connection.get("online"):
                raise CheckSkipped(f"not run: the reader is not online ({session.connection.get('reason')})")
            assert session.driver is not None
            ctx = CheckContext(
                driver=session.driver,
                reader_id=plan.target.reader_id,
                events=session.events,
                profile=profile,
                installer=installer,
                pins=session.pins,
                connection=session.connection,
                sim=plan.sim,
                key=plan.keys.get(plan.target.reader_id) if plan.keys else None,
            )
            message, details = await spec.run(ctx, planned)
            status = "pass"
        except CheckFailed as exc:
            status, message, details = "fail", exc.message, exc.details
            hint = details.get("hint")
        except CheckSkipped as exc:
            status, message, details = "skipped", exc.message, exc.details
        except Exception as exc:  # a bug in a check must not cost the installer the rest of the run
            status, message = "fail", f"error: {type(exc).__name__}: {exc}"
            details = {"traceback": traceback.format_exception(exc)[-3:]}
        if status == "fail" and session.driver is not None and not session.driver.is_online(plan.target.reader_id):
            offline = session.events.of("device.offline", plan.target.reader_id)
            if offline and session.connection.get("online"):
                message += f" (the reader went offline: {offline[-1].data.get('reason')})"
        seconds = time.monotonic() - t0
        console.end(label, SHOWN[status], seconds, message, hint)
        report.checks.append(
            CheckResult(
                planned.check,
                spec.title,
                planned.required,
                status,
                message,
                _plain(details),
                started_at,
                utc_now(),
                round(seconds, 3),
            )
        )


def _summary(console: Console, report: Report) -> None:
    s = report.summary()
    console.line()
    console.line(f"result: {report.result.upper()} - {s['pass']} passed, {s['fail']} failed, {s['skipped']} skipped")
    for c in report.checks:
        if c.status != "pass":
            kind = "required" if c.required else "optional"
            console.line(f"  {c.id} ({kind}) {c.status}: {c.message}")
    if report.result == "incomplete":
        console.line("  required steps were skipped: run again from a terminal at the reader to finish")


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    console = Console(out)
    # libosdp logs to stderr, process-wide; the simulated reader is created before the driver would
    # turn it down, and its warnings would bury the progress lines.
    osdp_sys.set_loglevel(osdp_sys.LOG_ERROR)
    with tempfile.TemporaryDirectory(prefix="linli-hil-") as workdir:
        return run_tool(console, lambda: plan_from_args(args, Path(workdir)), run)


if __name__ == "__main__":
    sys.exit(main())
