from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.events import Event, EventFactory, Priority, Severity
from edge.journal import Journal, PruneReport

make = EventFactory("site", "ctrl")


async def open_journal(path: Path, **kwargs: object) -> Journal:
    journal = Journal(path, **kwargs)  # type: ignore[arg-type]
    await journal.open()
    return journal


async def test_accepted_events_survive_reopen_in_order(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.db")
    events = [make("access.granted", f"reader-{i % 3}", {"n": i}) for i in range(50)]
    seqs = [await journal.append(e) for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 50
    await journal.close()

    journal = await open_journal(tmp_path / "j.db")
    assert journal.stats.stored_events == 50
    assert journal.stats.outbox_depth == 50
    stored = await journal.query(after_seq=0, limit=100)
    assert [s.event for s in stored] == events
    await journal.close()


async def test_group_commit_batches_concurrent_events(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.db")
    futures = [await journal.submit(make("telemetry.tick", "dev", {"n": i})) for i in range(5000)]
    seqs = await asyncio.gather(*futures)
    assert seqs == list(range(1, 5001))
    # One fsync per batch, not per event.
    assert journal.stats.batches < 100
    assert journal.stats.accepted == 5000
    await journal.close()


async def test_linger_is_bounded() -> None:
    with pytest.raises(ValueError):
        Journal(Path("x.db"), linger_s=0.05)


async def test_outbox_order_ack_and_restart(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.db")
    for i in range(10):
        await journal.append(make("door.opened", "door-1", {"n": i}))
    batch = await journal.outbox_batch(0, 4)
    assert [e.seq for e in batch] == [1, 2, 3, 4]
    assert '"n":0' in batch[0].body and batch[0].type == "door.opened"
    for entry in batch[:3]:
        journal.ack(entry.seq)
    # Acked but not yet flushed entries are not handed out again.
    assert [e.seq for e in await journal.outbox_batch(0, 3)] == [4, 5, 6]
    await journal.close()  # flushes the acks

    journal = await open_journal(tmp_path / "j.db")
    assert journal.stats.outbox_depth == 7
    assert [e.seq for e in await journal.outbox_batch(0, 100)] == list(range(4, 11))
    assert [e.seq for e in await journal.outbox_batch(8, 100)] == [9, 10]
    await journal.close()


async def test_out_of_order_acks_remove_exactly_those_entries(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.db")
    for i in range(8):
        await journal.append(make("door.opened", "door-1", {"n": i}))
    for seq in (2, 3, 5, 8):
        journal.ack(seq)
    await journal.close()
    journal = await open_journal(tmp_path / "j.db")
    assert [e.seq for e in await journal.outbox_batch(0, 100)] == [1, 4, 6, 7]
    assert journal.stats.outbox_depth == 4
    await journal.close()


async def test_disk_budget_drops_low_priority_undelivered_first(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.db", budget_bytes=60_000)
    reports: list[PruneReport] = []
    journal.on_prune.append(reports.append)
    security = [make("alarm.triggered", "zone-1", {"n": i, "pad": "x" * 200}, Severity.ALARM) for i in range(40)]
    for event in security:
        await journal.append(event)
    for i in range(400):
        await journal.append(make("telemetry.environment", "io-1", {"n": i, "pad": "y" * 200}, Severity.DEBUG))
    await asyncio.sleep(0.05)
    assert journal.stats.stored_bytes <= 60_000
    assert reports and reports[0].reason == "disk_budget"
    assert reports[0].undelivered.get("telemetry", 0) > 0
    assert "security" not in reports[0].undelivered
    kept = {s.event.id for s in await journal.query(types=["alarm.*"], limit=100)}
    assert kept == {e.id for e in security}
    # The oldest telemetry went first: what is left is the newest.
    left = [s.event.data["n"] for s in await journal.query(types=["telemetry.*"], after_seq=0, limit=500)]
    assert left == list(range(400 - len(left), 400))
    # Counters stay true to the file.
    conn = sqlite3.connect(tmp_path / "j.db")
    assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == journal.stats.outbox_depth
    assert conn.execute("SELECT sum(size) FROM events").fetchone()[0] == journal.stats.stored_bytes
    await journal.close()


async def test_disk_budget_prefers_delivered_events(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.db", budget_bytes=40_000)
    reports: list[PruneReport] = []
    journal.on_prune.append(reports.append)
    old = [await journal.append(make("access.granted", "r", {"pad": "z" * 300})) for _ in range(60)]
    for seq in old:
        journal.ack(seq)  # delivered to the platform
    await asyncio.sleep(0.3)
    for i in range(80):
        await journal.append(make("telemetry.t", "io", {"n": i, "pad": "z" * 300}, Severity.DEBUG))
    await asyncio.sleep(0.05)
    undelivered = sum(r.undelivered.get("telemetry", 0) for r in reports)
    delivered = sum(r.delivered.get("security", 0) for r in reports)
    assert delivered > 0
    # Delivered history is given up before anything still waiting for the platform.
    assert undelivered == 0 or delivered == 60
    await journal.close()


async def test_age_retention_keeps_undelivered(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.db", max_age_s={Priority.TELEMETRY: 3600})
    old_time = datetime.now(UTC) - timedelta(days=2)
    old = [
        Event(site="s", controller="c", source="io", type="telemetry.t", severity=Severity.DEBUG, time=old_time)
        for _ in range(4)
    ]
    seqs = [await journal.append(e) for e in old]
    journal.ack(seqs[0])
    journal.ack(seqs[1])
    await asyncio.sleep(0.3)
    report = await asyncio.get_running_loop().run_in_executor(
        journal._writer, journal._prune_by_age, old_time.timestamp() + 7200
    )
    assert report.delivered == {"telemetry": 2}
    left = {s.seq for s in await journal.query(limit=10)}
    assert left == {seqs[2], seqs[3]}
    await journal.close()


async def test_commit_failure_refuses_events_and_keeps_running(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.db")
    await journal.append(make("system.started", "c"))
    loop = asyncio.get_running_loop()
    # Make the database full, as a full disk would.
    pages = await loop.run_in_executor(
        journal._writer, lambda: journal._wconn.execute("PRAGMA page_count").fetchone()[0]
    )
    await loop.run_in_executor(journal._writer, lambda: journal._wconn.execute(f"PRAGMA max_page_count={pages}"))
    with pytest.raises(sqlite3.OperationalError, match="full"):
        await journal.append(make("telemetry.t", "io", {"pad": "x" * 100_000}))
    assert journal.stats.accepted == 1
    await loop.run_in_executor(journal._writer, lambda: journal._wconn.execute("PRAGMA max_page_count=1073741823"))
    assert await journal.append(make("access.granted", "r")) == 2
    await journal.close()


async def test_query_filters_and_pagination(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.db")
    for i in range(30):
        kind = ["access.granted", "access.denied", "door.opened"][i % 3]
        await journal.append(make(kind, f"src-{i % 2}", {"n": i}))
    fam = await journal.query(types=["access.*"], limit=100)
    assert len(fam) == 20 and all(s.event.type.startswith("access.") for s in fam)
    page1 = await journal.query(source="src-0", limit=5)
    page2 = await journal.query(source="src-0", limit=5, before_seq=page1[-1].seq)
    ns = [s.event.data["n"] for s in page1 + page2]
    assert ns == [28, 26, 24, 22, 20, 18, 16, 14, 12, 10]
    exact = await journal.query(types=["door.opened"], limit=100)
    assert len(exact) == 10
    assert await journal.query(types=["access"], limit=10) == []
    await journal.close()


async def test_corrupt_journal_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(b"this is not a database" * 100)
    journal = await open_journal(path)
    assert await journal.append(make("system.started", "c")) == 1
    await journal.close()
    assert any(p.name.startswith("j.db.corrupt-") for p in os.scandir(tmp_path))


WRITER = """
import asyncio, sys
from pathlib import Path
from edge.events import EventFactory
from edge.journal import Journal

async def main():
    journal = Journal(Path(sys.argv[1]))
    await journal.open()
    make = EventFactory("s", "c")
    n = 0
    async def one(i):
        event = make("access.granted", "reader", {"n": i})
        await journal.append(event)
        print(event.id, flush=True)  # printed only once committed
    while True:
        await asyncio.gather(*(one(n + k) for k in range(50)))
        n += 50

asyncio.run(main())
"""


def test_kill_9_loses_nothing_accepted(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent
    )
    accepted: list[str] = []
    assert proc.stdout is not None
    while len(accepted) < 3000:
        line = proc.stdout.readline()
        assert line, "writer died"
        accepted.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    accepted += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]

    async def check() -> set[str]:
        journal = await open_journal(path)
        ids = {s.event.id for s in await journal.query(after_seq=0, limit=1_000_000)}
        assert journal.stats.outbox_depth == journal.stats.stored_events
        await journal.close()
        return ids

    stored = asyncio.run(check())
    assert set(accepted) <= stored


async def test_a_failing_retention_pass_does_not_stop_the_writer(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.db", budget_bytes=1_000)
    calls = 0

    def broken() -> PruneReport:
        nonlocal calls
        calls += 1
        raise sqlite3.OperationalError("disk I/O error")

    journal._prune_to_budget = broken  # type: ignore[method-assign]
    for i in range(20):
        await journal.append(make("telemetry.t", "io", {"n": i, "pad": "x" * 200}, Severity.DEBUG))
    assert calls > 0
    assert journal.stats.accepted == 20
    await journal.close()
