"""The mutable side of access control: where holders are (anti-passback), wrong-PIN counters,
lockouts and first-person-in grants.

``decide()`` reads and mutates one :class:`AccessState`; the caller persists it (``to_dict`` is
plain JSON) whenever a decision says ``state_changed``. Nothing here reads a clock: every method
takes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rules.access.model import LockoutPolicy
from rules.access.schedule import WindowOccurrence


@dataclass(frozen=True, slots=True)
class AreaPosition:
    area: str
    since: datetime


def credential_scope(credential_id: str) -> str:
    return f"credential:{credential_id}"


def reader_scope(reader_id: str) -> str:
    return f"reader:{reader_id}"


class AccessState:
    def __init__(self) -> None:
        self.positions: dict[str, AreaPosition] = {}  # holder id -> last area entered
        self.pin_failures: dict[str, list[datetime]] = {}  # scope -> recent wrong-PIN times, oldest first
        self.lockouts: dict[str, datetime] = {}  # scope -> locked out until
        self.first_person_in: dict[str, WindowOccurrence] = {}  # door id -> window a staff grant opened

    # --- anti-passback ---

    def record_position(self, holder_id: str, area: str, now: datetime) -> None:
        self.positions[holder_id] = AreaPosition(area, now)

    def reset_antipassback(self, holder_id: str | None = None) -> None:
        """Manual forgiveness: one holder, or everyone (e.g. a nightly reset)."""
        if holder_id is None:
            self.positions.clear()
        else:
            self.positions.pop(holder_id, None)

    # --- PIN retry lockout ---

    def locked_until(self, scope: str, now: datetime) -> datetime | None:
        until = self.lockouts.get(scope)
        if until is None:
            return None
        if now >= until:
            del self.lockouts[scope]  # expired: forget it so the table stays small
            return None
        return until

    def record_pin_failure(self, scope: str, now: datetime, policy: LockoutPolicy) -> datetime | None:
        """Count a wrong PIN; return the lockout's end if this failure starts one."""
        window_start = now - timedelta(seconds=policy.window_s)
        recent = [at for at in self.pin_failures.get(scope, ()) if at > window_start]
        recent.append(now)
        if len(recent) >= policy.max_failures:
            self.pin_failures.pop(scope, None)
            until = now + timedelta(seconds=policy.lockout_s)
            self.lockouts[scope] = until
            return until
        # Only the last max_failures can matter, so a flood of failures cannot grow the list.
        self.pin_failures[scope] = recent[-policy.max_failures :]
        return None

    def clear_pin_failures(self, scope: str) -> None:
        self.pin_failures.pop(scope, None)

    def clear_lockout(self, scope: str) -> None:
        """Manual unlock by a manager: the lockout and its failure count go."""
        self.lockouts.pop(scope, None)
        self.pin_failures.pop(scope, None)

    # --- housekeeping and persistence ---

    def prune(self, now: datetime, longest_failure_window_s: int) -> None:
        """Drop expired lockouts and failures too old to count; call now and then to bound memory."""
        self.lockouts = {scope: until for scope, until in self.lockouts.items() if until > now}
        oldest = now - timedelta(seconds=longest_failure_window_s)
        self.pin_failures = {
            scope: kept for scope, times in self.pin_failures.items() if (kept := [at for at in times if at > oldest])
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "positions": {holder: [p.area, p.since.isoformat()] for holder, p in self.positions.items()},
            "pin_failures": {scope: [at.isoformat() for at in times] for scope, times in self.pin_failures.items()},
            "lockouts": {scope: until.isoformat() for scope, until in self.lockouts.items()},
            "first_person_in": {door: occ.to_json() for door, occ in self.first_person_in.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccessState:
        state = cls()
        state.positions = {
            holder: AreaPosition(area, datetime.fromisoformat(since))
            for holder, (area, since) in data.get("positions", {}).items()
        }
        state.pin_failures = {
            scope: [datetime.fromisoformat(at) for at in times] for scope, times in data.get("pin_failures", {}).items()
        }
        state.lockouts = {scope: datetime.fromisoformat(until) for scope, until in data.get("lockouts", {}).items()}
        state.first_person_in = {
            door: WindowOccurrence.from_json(text) for door, text in data.get("first_person_in", {}).items()
        }
        return state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AccessState) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable
