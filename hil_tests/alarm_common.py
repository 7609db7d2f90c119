"""What the alarm hardware tools (zone_walk, siren_test, zigbee_pairing) share: running one check into
the report, choosing a profile by file or id, point lists on the command line, the closing summary.

They print and report like hil_tests.osdp_reader (its Console, its exit codes, report.Report).
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hil_tests.console import EXIT, EXIT_USAGE, SHOWN, Console, UsageError, _plain, run_tool
from hil_tests.installer import Installer, NobodyThere, TerminalInstaller
from hil_tests.profiles import PROFILES_DIR, LoadedProfile, ProfileError, load_profile
from hil_tests.report import CheckFailed, CheckResult, CheckSkipped, Report, Status, utc_now

__all__ = [
    "EXIT",
    "EXIT_USAGE",
    "Console",
    "UsageError",
    "installer_for",
    "parse_points",
    "profile_arg",
    "run_check",
    "run_tool",
    "summary",
]

CheckBody = Callable[[], Awaitable[tuple[str, dict[str, Any]]]]


def profile_arg(value: str | Path, kind: str) -> LoadedProfile:
    """`--profile` as a file, or as a profile id in firmware_profiles/ (`generic-modbus-io-16`)."""
    path = Path(value)
    if not path.suffix and not path.exists():
        path = PROFILES_DIR / f"{value}.yaml"
    try:
        loaded = load_profile(path)
    except ProfileError as exc:
        raise UsageError(f"the profile is not valid:\n{exc}") from None
    if loaded.profile.kind != kind:
        raise UsageError(f"{path} describes a {loaded.profile.kind}, not a {kind}")
    return loaded


def parse_points(text: str, count: int, what: str) -> list[int]:
    """`all`, `none`, or numbers and ranges (`0-7,10`) below `count`, in order, each once."""
    text = text.strip().lower()
    if text == "all":
        return list(range(count))
    if text in ("none", ""):
        return []
    numbers: list[int] = []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        try:
            lo, hi = int(first), int(last) if sep else int(first)
        except ValueError:
            raise UsageError(f"{what}: {part.strip()!r} is not a number or a range like 0-7") from None
        if not 0 <= lo <= hi < count:
            raise UsageError(f"{what}: {part.strip()} is outside 0-{count - 1} (the profile's {count})")
        numbers.extend(n for n in range(lo, hi + 1) if n not in numbers)
    return numbers


def installer_for(console: Console, where: str) -> Installer:
    if sys.stdin is not None and sys.stdin.isatty():
        return TerminalInstaller(console.say)
    return NobodyThere(f"stdin is not a terminal; run it from a terminal {where}")


async def run_check(
    console: Console, report: Report, label: str, check_id: str, title: str, required: bool, body: CheckBody
) -> CheckResult:
    """Run one check, print its line and add it to the report; a bug in a check fails only that check."""
    console.begin(label)
    started_at, t0 = utc_now(), time.monotonic()
    details: dict[str, Any] = {}
    status: Status
    try:
        message, details = await body()
        status = "pass"
    except CheckFailed as exc:
        status, message, details = "fail", exc.message, exc.details
    except CheckSkipped as exc:
        status, message, details = "skipped", exc.message, exc.details
    except TimeoutError:
        status, message = "fail", "timed out"
    except Exception as exc:
        status, message = "fail", f"error: {type(exc).__name__}: {exc}"
        details = {"traceback": traceback.format_exception(exc)[-3:]}
    seconds = time.monotonic() - t0
    console.end(label, SHOWN[status], seconds, message, details.get("hint"))
    result = CheckResult(check_id, title, required, status, message, _plain(details), started_at, utc_now(),
                         round(seconds, 3))
    report.checks.append(result)
    return result


def summary(console: Console, report: Report, where: str) -> None:
    s = report.summary()
    console.line()
    console.line(f"result: {report.result.upper()} - {s['pass']} passed, {s['fail']} failed, {s['skipped']} skipped")
    if not report.connection.get("online"):
        console.line(f"  not reached: {report.connection.get('reason', 'no answer')}")
    for c in report.checks:
        if c.status != "pass":
            kind = "required" if c.required else "optional"
            console.line(f"  {c.id} ({kind}) {c.status}: {c.message}")
    if report.result == "incomplete":
        console.line(f"  required steps were skipped: run again from a terminal {where} to finish")


def exit_status(report: Report) -> int:
    return EXIT[report.result]
