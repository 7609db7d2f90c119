"""The credential store: the access Snapshot, its version and the AccessState, in SQLite.

`access.db` in the data dir (WAL). The whole access configuration is one JSON document (the
Snapshot) under its version: a delta is applied in memory with rules.access.apply_delta and the
resulting snapshot replaces the stored one in one transaction, so a rejected delta (stale, or data
that does not validate) changes nothing, neither on disk nor in memory. 10,000 credentials are a
few MB of JSON: rewriting it per delta is cheaper than keeping two models of the data in step.

Every SQLite call and every index build runs in one dedicated executor thread (SQLite connections
belong to one thread; index builds for big snapshots take tens of ms), never on the event loop.
The AccessState (anti-passback positions, PIN lockouts) changes on many decisions: it is saved
debounced, at most once per `state_delay_s`, and on close.

The PIN key (`pin.key`, 32 random bytes, mode 0600) is created on first start. It is never logged;
losing it makes every stored PIN hash useless, so it is kept beside the database, not in it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from edge.secret_key import load_or_create_key
from rules.access import AccessIndex, AccessState, Delta, PinHasher, Snapshot, apply_delta, apply_snapshot
from rules.access.passes import PassBook, PassHasher, VisitorPass

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS access_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS visitor_passes (id TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


class AccessStoreError(Exception):
    """The store cannot be opened (unsafe key file, unreadable database); the message says why."""


def load_pin_key(path: Path) -> bytes:
    """Read the PIN key, creating it (0600, never readable by others) on first start."""
    return load_or_create_key(path, "PIN key", AccessStoreError)


class AccessStore:
    """Load with `await open()`; then `index` and `state` are the live data (read them on the loop)."""

    def __init__(self, data_dir: Path, *, state_delay_s: float = 1.0) -> None:
        self.path = data_dir / "access.db"
        self.key_path = data_dir / "pin.key"
        self.state_delay_s = state_delay_s
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()  # one change at a time: each builds on the index before it
        self._state_task: asyncio.Task[None] | None = None
        self.pin_hasher: PinHasher | None = None
        self.index: AccessIndex | None = None
        self.state = AccessState()
        # Visitor passes live in their own table, outside the snapshot: a snapshot from the
        # platform replaces the access data, never the passes residents issued on the box.
        self.pass_hasher: PassHasher | None = None
        self.passes = PassBook()
        self.pass_lock = asyncio.Lock()  # one pass use or change at a time: uses are counted exactly

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None, "the store is not open"
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---- lifecycle --------------------------------------------------------------------------------

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="access-store")
        try:
            self.index, self.state = await self._run(self._open_sync)
        except BaseException:
            await self.close()
            raise

    def _open_sync(self) -> tuple[AccessIndex, AccessState]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = load_pin_key(self.key_path)
        self.pin_hasher = PinHasher(key)
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a credential change acknowledged is a change kept
        db.executescript(SCHEMA)
        self._db = db
        rows = dict(db.execute("SELECT key, value FROM access_meta").fetchall())
        snapshot = Snapshot.model_validate_json(rows["snapshot"]) if "snapshot" in rows else Snapshot(version=0)
        index = apply_snapshot(snapshot, self.pin_hasher)
        state = AccessState.from_dict(json.loads(rows["state"])) if "state" in rows else AccessState()
        self.pass_hasher = PassHasher(key)
        bodies = db.execute("SELECT body FROM visitor_passes").fetchall()
        self.passes = PassBook(VisitorPass.model_validate_json(body) for (body,) in bodies)
        return index, state

    async def close(self) -> None:
        if self._state_task is not None:
            self._state_task.cancel()
            self._state_task = None
        if self._executor is None:
            return
        if self._db is not None:
            await self._run(self._write_state, json.dumps(self.state.to_dict()))
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)
        self._executor = None

    # ---- access data ------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        assert self.index is not None
        return self.index.version

    def snapshot(self) -> Snapshot:
        assert self.index is not None
        return self.index.to_snapshot()

    async def replace_snapshot(self, snapshot: Snapshot, *, allow_older: bool = False) -> AccessIndex:
        """Store a full snapshot; an older version is refused (StaleSnapshotError) unless allowed."""
        async with self._lock:
            current = None if allow_older else self.index
            assert self.pin_hasher is not None
            index = await self._run(apply_snapshot, snapshot, self.pin_hasher, current)
            await self._run(self._write_snapshot, index)
            self.index = index
            return index

    async def apply_delta(self, delta: Delta) -> AccessIndex:
        """Apply one delta; StaleDeltaError / AccessDataError leave everything as it was."""
        async with self._lock:
            assert self.index is not None
            index = await self._run(apply_delta, self.index, delta)
            await self._run(self._write_snapshot, index)
            self.index = index  # only after the commit: memory never runs ahead of the disk
            return index

    def _write_snapshot(self, index: AccessIndex) -> None:
        assert self._db is not None
        text = index.to_snapshot().model_dump_json()
        with self._db:  # one transaction: snapshot and version together or not at all
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO access_meta VALUES ('snapshot', ?)", (text,))
            self._db.execute("INSERT OR REPLACE INTO access_meta VALUES ('version', ?)", (str(index.version),))

    async def put_pass(self, visitor_pass: VisitorPass) -> None:
        """Store a new or changed pass (committed on return), then show it to lookups."""
        await self._run(self._write_pass, visitor_pass.id, visitor_pass.model_dump_json())
        self.passes.put(visitor_pass)

    def _write_pass(self, pass_id: str, body: str) -> None:
        assert self._db is not None
        self._db.execute("INSERT OR REPLACE INTO visitor_passes VALUES (?, ?)", (pass_id, body))

    # ---- mutable state ----------------------------------------------------------------------------

    def state_changed(self) -> None:
        """A decision changed the AccessState: save it soon (debounced)."""
        if self._state_task is None or self._state_task.done():
            self._state_task = asyncio.ensure_future(self._save_state_later())

    async def _save_state_later(self) -> None:
        await asyncio.sleep(self.state_delay_s)
        await self.flush_state()

    async def flush_state(self) -> None:
        if self._db is not None:
            await self._run(self._write_state, json.dumps(self.state.to_dict()))

    def _write_state(self, text: str) -> None:
        assert self._db is not None
        self._db.execute("INSERT OR REPLACE INTO access_meta VALUES ('state', ?)", (text,))
