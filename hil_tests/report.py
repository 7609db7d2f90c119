"""The commissioning report: what was tested, against which profile, and how each check went.

It is the installer's handover document, so it is plain JSON, self-describing (device, profile
file and its sha256, tool versions, UTC timestamps) and never holds a key.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

Status = Literal["pass", "fail", "skipped"]
Result = Literal["pass", "fail", "incomplete"]
REPORT_FORMAT = 1


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class CheckResult:
    id: str
    title: str
    required: bool
    status: Status
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    duration_s: float = 0.0


@dataclass
class Report:
    target: dict[str, Any]
    profile: dict[str, Any]
    started_at: str = field(default_factory=utc_now)
    finished_at: str = ""
    connection: dict[str, Any] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    tool: str = "osdp_reader"  # the hil_tests program that wrote it: names the report and its tool entry
    libraries: tuple[str, ...] = ("libosdp",)  # distributions whose versions the report records

    @property
    def result(self) -> Result:
        """fail: the reader could not be reached or a required check failed; incomplete: a required
        check was skipped (nobody at the reader); pass: every required check passed."""
        if not self.connection.get("online") or any(c.required and c.status == "fail" for c in self.checks):
            return "fail"
        if any(c.required and c.status != "pass" for c in self.checks):
            return "incomplete"
        return "pass"

    def summary(self) -> dict[str, Any]:
        counts = {s: sum(1 for c in self.checks if c.status == s) for s in ("pass", "fail", "skipped")}
        return {
            **counts,
            "required_failed": [c.id for c in self.checks if c.required and c.status == "fail"],
            "required_skipped": [c.id for c in self.checks if c.required and c.status == "skipped"],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": f"linli.commissioning.{self.tool}",
            "format": REPORT_FORMAT,
            "result": self.result,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "target": self.target,
            "profile": self.profile,
            "connection": self.connection,
            "device": self.device,
            "checks": [asdict(c) for c in self.checks],
            "summary": self.summary(),
            "tool": _tool(self.tool, self.libraries),
        }

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write atomically: a report half-written by a pulled laptop lead is worse than none."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _tool(name: str, libraries: tuple[str, ...]) -> dict[str, Any]:
    return {
        "name": f"hil_tests.{name}",
        "linli": _version("linli"),
        **{lib: _version(lib) for lib in libraries},
        "python": platform.python_version(),
        "host": platform.node(),
    }


class CheckFailed(Exception):
    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class CheckSkipped(Exception):
    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
