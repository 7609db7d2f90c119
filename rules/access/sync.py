"""Versioned sync of the access configuration, as pure logic.

The platform sends either a full :class:`Snapshot` (version N) or a :class:`Delta` from version N
to N+1. A delta applies only on top of exactly its base version; otherwise :class:`StaleDeltaError`
tells the caller to ask for a snapshot. Whichever path reaches a version, the index is the same
(``AccessIndex.__eq__``); the tests hold both paths to that. A rejected snapshot or delta leaves the
current index as it was: indexes are immutable and the new one only replaces the old on success.

    index = apply_snapshot(snapshot, pin_hasher)           # start, or resync after StaleDeltaError
    index = apply_delta(index, delta)                      # the common path
"""

from __future__ import annotations

from rules.access.index import AccessDataError, AccessIndex
from rules.access.model import Delta, Snapshot
from rules.access.pin import PinHasher

__all__ = ["AccessDataError", "StaleDeltaError", "StaleSnapshotError", "apply_delta", "apply_snapshot"]


class StaleDeltaError(Exception):
    """The delta's base is not the current version: ask the platform for a snapshot."""

    def __init__(self, current_version: int, base_version: int) -> None:
        super().__init__(f"delta from version {base_version} does not apply to version {current_version}")
        self.current_version = current_version
        self.base_version = base_version


class StaleSnapshotError(Exception):
    """A snapshot older than what is loaded (a replay, or messages out of order)."""


def apply_snapshot(snapshot: Snapshot, pin_hasher: PinHasher, current: AccessIndex | None = None) -> AccessIndex:
    """The index for ``snapshot``. With ``current``, an older snapshot is refused; pass None to
    accept any version (e.g. the platform's database was restored and its versions restarted)."""
    if current is not None and snapshot.version < current.version:
        raise StaleSnapshotError(f"snapshot version {snapshot.version} is older than loaded {current.version}")
    return AccessIndex.build(snapshot, pin_hasher)


def apply_delta(current: AccessIndex, delta: Delta) -> AccessIndex:
    if delta.base_version != current.version:
        raise StaleDeltaError(current.version, delta.base_version)
    return current.with_delta(delta)
