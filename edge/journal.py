"""The durable journal and uplink outbox: one SQLite file in WAL mode.

An event is *accepted* only when its transaction has committed. Writes are group-committed: the
writer thread takes everything that arrived while the previous commit was running (plus an
optional short linger), so the fsync cost is shared by the batch instead of paid per event.

All SQLite work runs on two dedicated threads (one writer, one reader) so the event loop never
blocks on disk I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge import audit
from edge.events import Event, Priority

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL UNIQUE,
    ts_ms    INTEGER NOT NULL,
    type     TEXT NOT NULL,
    source   TEXT NOT NULL,
    priority INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    body     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts_ms);
CREATE INDEX IF NOT EXISTS events_type ON events(type, seq);
CREATE INDEX IF NOT EXISTS events_source ON events(source, seq);
CREATE INDEX IF NOT EXISTS events_priority ON events(priority, seq);
-- Events not yet acknowledged (PUBACK) by the uplink broker, in journal order.
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY);
"""


class JournalClosed(RuntimeError):
    pass


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    id: str
    type: str
    body: str


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    event: Event


@dataclass
class PruneReport:
    """What a retention pass removed, by priority name, split by whether it had been delivered."""

    reason: str
    delivered: dict[str, int] = field(default_factory=dict)
    undelivered: dict[str, int] = field(default_factory=dict)
    bytes_freed: int = 0

    def __bool__(self) -> bool:
        return bool(self.delivered or self.undelivered)

    def as_data(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "delivered": self.delivered,
            "undelivered": self.undelivered,
            "bytes_freed": self.bytes_freed,
        }


@dataclass
class JournalStats:
    accepted: int = 0
    batches: int = 0
    last_batch_size: int = 0
    commit_seconds_total: float = 0.0
    outbox_depth: int = 0
    stored_events: int = 0
    stored_bytes: int = 0
    last_seq: int = 0
    pruned_undelivered: int = 0
    pruned_delivered: int = 0
    audit_seq: int = 0  # newest entry of the audit hash chain
    audit_head: str = audit.GENESIS.hex()


class Journal:
    """Append-only event journal with an outbox of undelivered events.

    `budget_bytes` bounds the stored event bodies; `max_age_s` maps a priority to how long its
    delivered events are kept. `on_commit` callbacks run on the event loop, in journal order,
    right after each batch is durable.
    """

    def __init__(
        self,
        path: Path,
        *,
        budget_bytes: int = 512 * 1024 * 1024,
        max_age_s: dict[Priority, float] | None = None,
        linger_s: float = 0.0,
        max_batch: int = 2000,
        intake_limit: int = 20000,
        synchronous: str = "FULL",
    ) -> None:
        if not 0 <= linger_s <= 0.02:
            raise ValueError("linger_s must be between 0 and 20 ms")
        self.path = Path(path)
        self.budget_bytes = budget_bytes
        self.max_age_s = max_age_s or {}
        self.linger_s = linger_s
        self.max_batch = max_batch
        self.intake_limit = intake_limit
        self.synchronous = synchronous
        self.stats = JournalStats()
        self.on_commit: list[Callable[[list[StoredEvent]], None]] = []
        self.on_prune: list[Callable[[PruneReport], None]] = []
        self.new_entries = asyncio.Event()  # set after each commit that added outbox entries
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="journal-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="journal-reader")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._pending: list[tuple[Event, asyncio.Future[int]]] = []
        self._acks: set[int] = set()  # PUBACKed seqs whose outbox rows are not yet deleted
        self._acks_in_flight: set[int] = set()  # being deleted by the current transaction
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._audit_hash = audit.GENESIS  # writer thread only

    # ---- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await loop.run_in_executor(self._writer, self._open_writer)
        await loop.run_in_executor(self._reader, self._open_reader)
        self._task = asyncio.create_task(self._run(), name="journal-writer")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _open_writer(self) -> None:
        try:
            conn = self._connect()
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
        except sqlite3.DatabaseError as exc:
            # A journal we cannot read must not stop the doors: keep it for forensics, start anew.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error("journal %s is unreadable (%s); moved aside to %s", self.path, exc, aside)
            self.path.rename(aside)
            conn = self._connect()
        conn.executescript(SCHEMA + audit.SCHEMA)
        seq, head = audit.head(conn)
        self.stats.audit_seq, self.stats.audit_head = seq, head.hex()
        self._audit_hash = head
        row = conn.execute("SELECT count(*), coalesce(sum(size), 0), coalesce(max(seq), 0) FROM events").fetchone()
        self.stats.stored_events, self.stats.stored_bytes, self.stats.last_seq = row
        self.stats.outbox_depth = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        self._wconn = conn

    def _open_reader(self) -> None:
        self._rconn = self._connect()

    async def close(self) -> None:
        """Commit everything submitted so far, flush acks, and close the files."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        loop = asyncio.get_running_loop()
        if self._wconn is not None:
            await loop.run_in_executor(self._writer, self._wconn.close)
        if self._rconn is not None:
            await loop.run_in_executor(self._reader, self._rconn.close)
        self._writer.shutdown()
        self._reader.shutdown()

    # ---- writing ---------------------------------------------------------------------------

    async def submit(self, event: Event) -> asyncio.Future[int]:
        """Queue an event; the returned future resolves to its seq once it is committed.

        Waits (backpressure on the producer) while the intake is full.
        """
        while len(self._pending) >= self.intake_limit:
            self._space.clear()
            await self._space.wait()
        if self._closing:
            raise JournalClosed("journal is closing")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        self._wake.set()
        return future

    async def append(self, event: Event) -> int:
        """Journal one event and return its seq once it is durable."""
        return await (await self.submit(event))

    def ack(self, seq: int) -> None:
        """The uplink broker acknowledged this entry; it leaves the outbox with the next commit."""
        self._acks.add(seq)
        # Flush in bulk, or at once when this was the last outstanding entry (a drained outbox
        # should read as empty without waiting for the periodic flush).
        if len(self._acks) >= 256 or len(self._acks) + len(self._acks_in_flight) >= self.stats.outbox_depth:
            self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_age_prune = time.monotonic() + 5
        while True:
            if not self._pending and not self._closing:
                # Acks are flushed at least every 200 ms even when no events arrive.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=0.2)
            self._wake.clear()
            if self.linger_s and self._pending and len(self._pending) < self.max_batch:
                await asyncio.sleep(self.linger_s)
            batch = self._pending[: self.max_batch]
            del self._pending[: len(batch)]
            if len(self._pending) < self.intake_limit:
                self._space.set()
            acks, self._acks = self._acks, set()
            self._acks_in_flight = acks
            if batch or acks:
                await self._commit(loop, batch, acks)
            self._acks_in_flight = set()
            if self.stats.stored_bytes > self.budget_bytes:
                await self._retention(loop, self._prune_to_budget)
            if time.monotonic() >= next_age_prune and self.max_age_s:
                next_age_prune = time.monotonic() + 60
                await self._retention(loop, self._prune_by_age, time.time())
            if self._closing and not self._pending and not self._acks:
                return

    async def _commit(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[Event, asyncio.Future[int]]],
        acks: set[int],
    ) -> None:
        rows = []
        for ev, _ in batch:
            body = ev.to_json()
            ts_ms = int(ev.time.timestamp() * 1000)
            rows.append((ev.id, ts_ms, ev.type, ev.source, int(ev.priority), len(body.encode()), body))
        started = time.perf_counter()
        try:
            seqs, removed = await loop.run_in_executor(self._writer, self._write, rows, acks)
        except Exception as exc:  # disk full, I/O error: refuse the batch, keep running
            log.exception("journal commit failed; %d events not accepted", len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            self._acks |= acks
            return
        elapsed = time.perf_counter() - started
        st = self.stats
        st.batches += 1
        st.last_batch_size = len(batch)
        st.commit_seconds_total += elapsed
        st.accepted += len(batch)
        st.stored_events += len(batch)
        st.stored_bytes += sum(r[5] for r in rows)
        st.outbox_depth += len(batch) - removed
        stored = []
        for (event, future), seq in zip(batch, seqs, strict=True):
            st.last_seq = seq
            if not future.done():
                future.set_result(seq)
            stored.append(StoredEvent(seq, event))
        if stored:
            self.new_entries.set()
            for callback in self.on_commit:
                try:
                    callback(stored)
                except Exception:
                    log.exception("journal commit callback failed")

    def _write(self, rows: list[tuple[Any, ...]], acks: Iterable[int]) -> tuple[list[int], int]:
        conn = self._wconn
        assert conn is not None
        seqs = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                cur = conn.execute(
                    "INSERT INTO events(id, ts_ms, type, source, priority, size, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                seqs.append(cur.lastrowid)
            conn.executemany("INSERT INTO outbox(seq) VALUES (?)", ((s,) for s in seqs))
            chain, head = [], self._audit_hash
            for row, seq in zip(rows, seqs, strict=True):
                if row[4] == Priority.SECURITY:
                    head = audit.link(head, row[6])
                    chain.append((seq, head))
            conn.executemany("INSERT INTO audit(seq, hash) VALUES (?, ?)", chain)
            removed = 0
            if acks:
                # Acks arrive mostly in order: delete runs of consecutive seqs as ranges.
                removed = conn.executemany("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", _runs(sorted(acks))).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLITE_FULL and friends roll back by themselves
                conn.execute("ROLLBACK")
            raise
        if chain:  # only once committed: a failed batch must not move the chain on
            self._audit_hash = head
            self.stats.audit_seq, self.stats.audit_head = chain[-1][0], head.hex()
        return seqs, removed

    # ---- retention -------------------------------------------------------------------------

    async def _retention(self, loop: asyncio.AbstractEventLoop, prune: Callable[..., PruneReport], *args: Any) -> None:
        # A failed retention pass must never stop the writer: events keep being accepted.
        try:
            report = await loop.run_in_executor(self._writer, prune, *args)
        except Exception:
            log.exception("journal retention pass failed; will retry")
            if self._wconn is not None and self._wconn.in_transaction:
                await loop.run_in_executor(self._writer, self._wconn.rollback)
            return
        self._report(report)

    def _report(self, report: PruneReport) -> None:
        if not report:
            return
        for callback in self.on_prune:
            try:
                callback(report)
            except Exception:
                log.exception("journal prune callback failed")

    def _delete(self, conn: sqlite3.Connection, victims: list[tuple[int, int, int, bool]], report: PruneReport) -> None:
        conn.executemany("DELETE FROM events WHERE seq = ?", ((v[0],) for v in victims))
        # Retention, not tampering: say so on the chain, and trim what no event needs any more.
        conn.executemany(
            "UPDATE audit SET pruned = 1 WHERE seq = ?", ((v[0],) for v in victims if v[1] == Priority.SECURITY)
        )
        oldest = conn.execute(
            "SELECT min(seq) FROM events WHERE priority = ?", (int(Priority.SECURITY),)
        ).fetchone()[0]
        audit.trim_head(conn, oldest if oldest is not None else self.stats.audit_seq + 1)
        conn.executemany("DELETE FROM outbox WHERE seq = ?", ((v[0],) for v in victims if not v[3]))
        for _seq, prio, size, delivered in victims:
            bucket = report.delivered if delivered else report.undelivered
            name = Priority(prio).name.lower()
            bucket[name] = bucket.get(name, 0) + 1
            report.bytes_freed += size
            self.stats.stored_bytes -= size
            self.stats.stored_events -= 1
            if delivered:
                self.stats.pruned_delivered += 1
            else:
                self.stats.pruned_undelivered += 1
                self.stats.outbox_depth -= 1

    def _prune_to_budget(self) -> PruneReport:
        """Free space down to 90% of the budget.

        Delivered events go first (the platform has them), lowest priority and oldest first;
        only then undelivered ones, in the same order. High-priority events go last.
        """
        conn = self._wconn
        assert conn is not None
        report = PruneReport(reason="disk_budget")
        target = int(self.budget_bytes * 0.9)
        for delivered in (True, False):
            for prio in Priority:
                while self.stats.stored_bytes > target:
                    victims = conn.execute(
                        "SELECT e.seq, e.priority, e.size, o.seq IS NULL FROM events e"
                        " LEFT JOIN outbox o ON o.seq = e.seq"
                        " WHERE e.priority = ? AND (o.seq IS NULL) = ? ORDER BY e.seq LIMIT 500",
                        (int(prio), delivered),
                    ).fetchall()
                    if not victims:
                        break
                    chosen, freed = [], 0
                    for v in victims:
                        chosen.append((v[0], v[1], v[2], bool(v[3])))
                        freed += v[2]
                        if self.stats.stored_bytes - freed <= target:
                            break
                    conn.execute("BEGIN IMMEDIATE")
                    self._delete(conn, chosen, report)
                    conn.execute("COMMIT")
        return report

    def _prune_by_age(self, now: float) -> PruneReport:
        """Drop delivered events older than their priority's maximum age."""
        conn = self._wconn
        assert conn is not None
        report = PruneReport(reason="max_age")
        for prio, max_age in self.max_age_s.items():
            cutoff_ms = int((now - max_age) * 1000)
            victims = conn.execute(
                "SELECT e.seq, e.priority, e.size, 1 FROM events e"
                " WHERE e.priority = ? AND e.ts_ms < ?"
                " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.seq = e.seq)",
                (int(prio), cutoff_ms),
            ).fetchall()
            if victims:
                conn.execute("BEGIN IMMEDIATE")
                self._delete(conn, [(v[0], v[1], v[2], True) for v in victims], report)
                conn.execute("COMMIT")
        return report

    # ---- reading ---------------------------------------------------------------------------

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    async def outbox_batch(self, after_seq: int, limit: int = 500) -> list[OutboxEntry]:
        """Undelivered entries after `after_seq`, in journal order (acked ones excluded)."""
        extra = len(self._acks) + len(self._acks_in_flight)
        rows = await self._read(self._outbox_rows, after_seq, limit + extra)
        skip = self._acks | self._acks_in_flight
        return [OutboxEntry(*r) for r in rows if r[0] not in skip][:limit]

    def _outbox_rows(self, after_seq: int, limit: int) -> list[tuple[int, str, str, str]]:
        assert self._rconn is not None
        return self._rconn.execute(
            "SELECT e.seq, e.id, e.type, e.body FROM outbox o JOIN events e ON e.seq = o.seq"
            " WHERE o.seq > ? ORDER BY o.seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()

    async def query(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        types: list[str] | None = None,
        source: str | None = None,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        """Journal search for the API. Newest first, or oldest first when `after_seq` is given.

        A type ending in `.*` matches the whole family (`access.*`).
        """
        clauses: list[str] = []
        args: list[Any] = []
        if since_ms is not None:
            clauses.append("ts_ms >= ?")
            args.append(since_ms)
        if until_ms is not None:
            clauses.append("ts_ms < ?")
            args.append(until_ms)
        if types:
            parts = []
            for t in types:
                if t.endswith(".*"):
                    parts.append("type GLOB ?")
                    args.append(t[:-1].replace("[", "[[]") + "*")
                else:
                    parts.append("type = ?")
                    args.append(t)
            clauses.append("(" + " OR ".join(parts) + ")")
        if source is not None:
            clauses.append("source = ?")
            args.append(source)
        if before_seq is not None:
            clauses.append("seq < ?")
            args.append(before_seq)
        order = "DESC"
        if after_seq is not None:
            clauses.append("seq > ?")
            args.append(after_seq)
            order = "ASC"
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        sql = f"SELECT seq, body FROM events{where} ORDER BY seq {order} LIMIT ?"
        args.append(limit)
        rows = await self._read(self._fetch, sql, args)
        return [StoredEvent(seq, Event.model_validate_json(body)) for seq, body in rows]

    def _fetch(self, sql: str, args: list[Any]) -> list[tuple[Any, ...]]:
        assert self._rconn is not None
        return self._rconn.execute(sql, args).fetchall()

    async def get(self, event_id: str) -> StoredEvent | None:
        rows = await self._read(self._fetch, "SELECT seq, body FROM events WHERE id = ?", [event_id])
        return StoredEvent(rows[0][0], Event.model_validate_json(rows[0][1])) if rows else None


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    """[1, 2, 3, 7, 8] -> [(1, 3), (7, 8)]"""
    runs: list[tuple[int, int]] = []
    for seq in seqs:
        if runs and runs[-1][1] == seq - 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs
