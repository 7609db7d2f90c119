"""The tamper-evident audit trail: a hash chain over the journal's security events.

Every security-priority event (access, door, alarm, command, config, ...) gets a row in the
journal's `audit` table, written in the same transaction as the event: `hash = SHA-256(previous
hash || event body)`. Changing a stored body, or deleting or reordering audit rows, breaks the
chain at that entry, and `linli audit verify` names it.

Retention keeps the chain checkable: when the journal prunes a security event it marks its audit
row `pruned` (the hash stays, so the links around it still verify), and when rows fall off the
head of the chain the last removed hash is kept as the anchor the rest starts from. Someone who
can rewrite the whole file can rewrite the whole chain, which is why the controller also sends
`audit.checkpoint` events (the head's seq and hash) to the platform: they pin the chain off the box.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from edge.events import Priority

GENESIS = bytes(32)

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq    INTEGER PRIMARY KEY,  -- the event's journal seq
    hash   BLOB NOT NULL,
    pruned INTEGER NOT NULL DEFAULT 0  -- the body was removed by retention, not by hand
);
-- The hash the oldest remaining audit row chains from (GENESIS until the head is trimmed).
CREATE TABLE IF NOT EXISTS audit_anchor (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB NOT NULL
);
"""


def link(previous: bytes, body: str) -> bytes:
    return hashlib.sha256(previous + body.encode()).digest()


def head(conn: sqlite3.Connection) -> tuple[int, bytes]:
    """The newest (seq, hash) of the chain."""
    row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    if row is not None:
        return row[0], row[1]
    anchor = conn.execute("SELECT seq, hash FROM audit_anchor").fetchone()
    return (anchor[0], anchor[1]) if anchor else (0, GENESIS)


def trim_head(conn: sqlite3.Connection, keep_from_seq: int) -> None:
    """Drop audit rows before `keep_from_seq`, remembering the last dropped hash as the anchor."""
    last = conn.execute(
        "SELECT seq, hash FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT 1", (keep_from_seq,)
    ).fetchone()
    if last is None:
        return
    conn.execute("INSERT OR REPLACE INTO audit_anchor(id, seq, hash) VALUES (1, ?, ?)", last)
    conn.execute("DELETE FROM audit WHERE seq < ?", (keep_from_seq,))


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    checked: int  # entries whose body was re-hashed
    pruned: int  # entries whose body retention removed (their links still verified)
    first_seq: int | None
    last_seq: int | None
    head: str  # hex of the newest hash
    broken_seq: int | None = None
    broken_id: str | None = None
    reason: str | None = None


def verify(conn: sqlite3.Connection) -> AuditReport:
    anchor = conn.execute("SELECT hash FROM audit_anchor").fetchone()
    previous = anchor[0] if anchor else GENESIS
    checked = pruned = 0
    first = last = None
    rows = conn.execute(
        "SELECT a.seq, a.hash, a.pruned, e.id, e.body FROM audit a LEFT JOIN events e ON e.seq = a.seq ORDER BY a.seq"
    )
    for seq, stored, was_pruned, event_id, body in rows:
        first = seq if first is None else first
        last = seq
        if body is None:
            if not was_pruned:
                return _broken(checked, pruned, first, last, previous, seq, None, "event missing from the journal")
            pruned += 1
        else:
            if link(previous, body) != stored:
                return _broken(checked, pruned, first, last, previous, seq, event_id, "does not match its hash")
            checked += 1
        previous = stored
    # Every security event must be on the chain: one added by hand would not be.
    stray = conn.execute(
        "SELECT e.seq, e.id FROM events e LEFT JOIN audit a ON a.seq = e.seq"
        " WHERE e.priority = ? AND a.seq IS NULL AND e.seq > coalesce((SELECT seq FROM audit_anchor), 0)"
        " ORDER BY e.seq LIMIT 1",
        (int(Priority.SECURITY),),
    ).fetchone()
    if stray is not None:
        return _broken(checked, pruned, first, last, previous, stray[0], stray[1], "security event not on the chain")
    return AuditReport(True, checked, pruned, first, last, previous.hex())


def _broken(
    checked: int,
    pruned: int,
    first: int | None,
    last: int | None,
    previous: bytes,
    seq: int,
    event_id: str | None,
    reason: str,
) -> AuditReport:
    return AuditReport(False, checked, pruned, first, last, previous.hex(), seq, event_id, reason)


def verify_file(path: Path) -> AuditReport:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return verify(conn)
    finally:
        conn.close()
