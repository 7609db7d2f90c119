"""The Event contract (DESIGN.md): what every part of Linli produces and the platform receives."""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
ID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class Severity(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ALARM = "alarm"
    CRITICAL = "critical"


class Priority(IntEnum):
    """Retention priority: when the disk budget is hit, lower priorities are dropped first."""

    TELEMETRY = 0
    NORMAL = 1
    SECURITY = 2


# Security-relevant families outlive everything else in the journal.
_SECURITY_PREFIXES = (
    "access.",
    "alarm.",
    "door.",
    "zone.",
    "intercom.",
    "patrol.",
    "command.",
    "config.",
    "journal.",
    "audit.",
)
_TELEMETRY_PREFIXES = ("telemetry.", "vision.motion", "device.heartbeat")


def priority_of(event_type: str, severity: Severity) -> Priority:
    if severity in (Severity.ALARM, Severity.CRITICAL) or event_type.startswith(_SECURITY_PREFIXES):
        return Priority.SECURITY
    if event_type.startswith(_TELEMETRY_PREFIXES) or severity is Severity.DEBUG:
        return Priority.TELEMETRY
    return Priority.NORMAL


class UlidGenerator:
    """Monotonic ULIDs: 48-bit millisecond time + 80 bits that increase within a millisecond.

    Lexicographic order of the 26-character string equals creation order on this controller,
    which is what the platform needs to sort and de-duplicate events.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new(self, now_ms: int | None = None) -> str:
        with self._lock:
            ms = int(time.time() * 1000) if now_ms is None else now_ms
            if ms <= self._last_ms:
                # Same (or earlier, after a clock step back) millisecond: keep order.
                ms = self._last_ms
                rand = self._last_rand + 1
            else:
                rand = int.from_bytes(os.urandom(10)) >> 1  # leave headroom for increments
            self._last_ms, self._last_rand = ms, rand
        value = (ms << 80) | rand
        chars = []
        for _ in range(26):
            chars.append(_CROCKFORD[value & 31])
            value >>= 5
        return "".join(reversed(chars))


new_event_id = UlidGenerator().new


class Event(BaseModel):
    """One thing that happened. Immutable once created; JSON on the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=new_event_id, pattern=ID_RE.pattern)
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    site: str
    controller: str
    source: str = Field(min_length=1, max_length=128)
    type: str = Field(pattern=EVENT_TYPE_RE.pattern, max_length=128)
    severity: Severity = Severity.INFO
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry a timezone (UTC)")
        return value.astimezone(UTC)

    @property
    def priority(self) -> Priority:
        return priority_of(self.type, self.severity)

    def to_json(self) -> str:
        return self.model_dump_json()


class EventFactory:
    """Stamps site and controller on events so producers only say what happened."""

    def __init__(self, site: str, controller: str) -> None:
        self.site = site
        self.controller = controller

    def __call__(
        self,
        type: str,
        source: str,
        data: dict[str, Any] | None = None,
        severity: Severity = Severity.INFO,
    ) -> Event:
        return Event(
            site=self.site,
            controller=self.controller,
            source=source,
            type=type,
            severity=severity,
            data=data or {},
        )
