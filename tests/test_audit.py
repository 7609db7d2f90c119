from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from edge.audit import verify_file
from edge.cli import main
from edge.events import EventFactory, Severity
from edge.journal import Journal
from tests.controller_helpers import running_controller

make = EventFactory("site", "ctrl")


async def fill(path: Path, **kwargs: object) -> Journal:
    journal = Journal(path, **kwargs)  # type: ignore[arg-type]
    await journal.open()
    for i in range(30):
        await journal.append(make("access.granted", "reader-1", {"n": i}))
        await journal.append(make("telemetry.environment", "io-1", {"n": i}, Severity.DEBUG))
    return journal


async def test_chain_covers_every_security_event(tmp_path: Path) -> None:
    journal = await fill(tmp_path / "j.db")
    head = journal.stats.audit_head
    await journal.close()
    report = verify_file(tmp_path / "j.db")
    assert report.ok and report.checked == 30 and report.pruned == 0
    assert report.head == head
    # The chain continues across a restart.
    journal = Journal(tmp_path / "j.db")
    await journal.open()
    await journal.append(make("door.opened", "door-1"))
    await journal.close()
    report = verify_file(tmp_path / "j.db")
    assert report.ok and report.checked == 31


def tamper(path: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("UPDATE events SET body = replace(body, '\"n\":7', '\"n\":8') WHERE seq = ?", "does not match its hash"),
        ("DELETE FROM events WHERE seq = ?", "event missing from the journal"),
        ("DELETE FROM audit WHERE seq = ? - 2", "does not match its hash"),
    ],
)
async def test_tampering_is_found_and_named(tmp_path: Path, sql: str, reason: str) -> None:
    journal = await fill(tmp_path / "j.db")
    target = next(
        s for s in await journal.query(types=["access.granted"], after_seq=0, limit=100) if s.event.data["n"] == 7
    )
    await journal.close()
    tamper(tmp_path / "j.db", sql, target.seq)
    report = verify_file(tmp_path / "j.db")
    assert not report.ok and report.reason == reason
    assert report.broken_seq == target.seq


async def test_an_event_added_by_hand_is_not_on_the_chain(tmp_path: Path) -> None:
    journal = await fill(tmp_path / "j.db")
    await journal.close()
    forged = make("access.granted", "reader-1", {"holder": "intruder"})
    tamper(
        tmp_path / "j.db",
        "INSERT INTO events(id, ts_ms, type, source, priority, size, body)"
        " VALUES (?, 0, 'access.granted', 'r', 2, 1, ?)",
        forged.id,
        forged.to_json(),
    )
    report = verify_file(tmp_path / "j.db")
    assert not report.ok and report.reason == "security event not on the chain" and report.broken_id == forged.id


async def test_retention_keeps_the_chain_verifiable(tmp_path: Path) -> None:
    journal = await fill(tmp_path / "j.db", budget_bytes=6_000)
    await asyncio.sleep(0.05)
    assert journal.stats.pruned_delivered + journal.stats.pruned_undelivered > 0
    for i in range(20):
        await journal.append(make("access.denied", "reader-1", {"n": i, "pad": "x" * 300}))
    await asyncio.sleep(0.05)
    await journal.close()
    report = verify_file(tmp_path / "j.db")
    assert report.ok, report
    conn = sqlite3.connect(tmp_path / "j.db")
    assert conn.execute("SELECT count(*) FROM audit_anchor").fetchone()[0] == 1  # the head was trimmed
    conn.close()


async def test_a_failed_commit_does_not_move_the_chain(tmp_path: Path) -> None:
    journal = await fill(tmp_path / "j.db")
    loop = asyncio.get_running_loop()
    conn = journal._wconn
    assert conn is not None
    pages = await loop.run_in_executor(journal._writer, lambda: conn.execute("PRAGMA page_count").fetchone()[0])
    await loop.run_in_executor(journal._writer, lambda: conn.execute(f"PRAGMA max_page_count={pages}"))
    with pytest.raises(sqlite3.OperationalError):
        await journal.append(make("access.granted", "r", {"pad": "x" * 100_000}))
    await loop.run_in_executor(journal._writer, lambda: conn.execute("PRAGMA max_page_count=1073741823"))
    await journal.append(make("access.granted", "r"))
    await journal.close()
    assert verify_file(tmp_path / "j.db").ok


async def test_audit_verify_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = await fill(tmp_path / "j.db")
    await journal.close()
    assert await asyncio.to_thread(main, ["audit", "verify", "--journal", str(tmp_path / "j.db")]) == 0
    assert "audit trail intact: 30 entries" in capsys.readouterr().out
    tamper(tmp_path / "j.db", "UPDATE events SET body = replace(body, 'reader-1', 'reader-9') WHERE seq = 5")
    assert await asyncio.to_thread(main, ["audit", "verify", "--journal", str(tmp_path / "j.db")]) == 1
    out = capsys.readouterr().out
    assert "BROKEN at seq 5" in out


async def test_checkpoint_sends_the_head_only_when_it_moved(tmp_path: Path) -> None:
    async with running_controller(tmp_path) as controller:
        await controller.bus.emit("access.granted", "reader-1")
        assert await controller.checkpoint_audit()
        assert not await controller.checkpoint_audit()  # nothing new but the checkpoint itself
        [checkpoint] = await controller.journal.query(types=["audit.checkpoint"], limit=5)
        assert checkpoint.event.data["seq"] < controller.journal.stats.audit_seq
        await controller.bus.emit("door.opened", "door-1")
        assert await controller.checkpoint_audit()
