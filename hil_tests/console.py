"""What every commissioning tool shares: progress lines, exit statuses, and the run from the
command line to the written report."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

from hil_tests.report import Report

EXIT = {"pass": 0, "fail": 1, "incomplete": 3}
EXIT_USAGE = 2
SHOWN = {"pass": "ok", "fail": "FAIL", "skipped": "skipped"}


class UsageError(Exception):
    """The run cannot start: the message says what to change."""


class Console:
    """Progress lines: `[3/8] led ... ok (0.2 s) - 3 LED commands acknowledged`."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._open: str | None = None  # the check whose line is waiting for its result

    def line(self, text: str = "") -> None:
        self._break()
        self.out.write(text + "\n")
        self.out.flush()

    def begin(self, label: str) -> None:
        self._break()
        self.out.write(f"{label} ... ")
        self.out.flush()
        self._open = label

    def say(self, text: str) -> None:
        """An instruction for the installer, in the middle of a check."""
        self.line(f"      -> {text}")

    def end(self, label: str, status: str, seconds: float, message: str, hint: str | None = None) -> None:
        if self._open != label:
            self.out.write(f"      {label.split('] ')[-1]} ... ")
        self._open = None
        self.out.write(f"{status} ({seconds:.1f} s){f' - {message}' if message else ''}\n")
        if hint:
            self.out.write(f"      hint: {hint}\n")
        self.out.flush()

    def _break(self) -> None:
        if self._open is not None:
            self.out.write("\n")
            self._open = None



def _plain(value: Any) -> Any:
    """JSON-safe copies of check details (bytes as hex; keys never get this far)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


class _Plan(Protocol):
    report_path: Path | None


P = TypeVar("P", bound=_Plan)


def run_tool(console: Console, make_plan: Callable[[], P], run: Callable[[P, Console], Awaitable[Report]]) -> int:
    """Plan (a UsageError is exit 2), run, write the report where asked; the exit status."""
    try:
        plan = make_plan()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = asyncio.run(run(plan, console))
    except KeyboardInterrupt:
        console.line("interrupted: no report written")
        return 130
    if plan.report_path is not None:
        report.write(plan.report_path)
        console.line(f"report: {plan.report_path}")
    return EXIT[report.result]
