from __future__ import annotations

import asyncio
from pathlib import Path

from edge.bus import EventBus
from edge.events import EventFactory, Severity
from edge.journal import Journal


async def make_bus(tmp_path: Path) -> EventBus:
    journal = Journal(tmp_path / "j.db")
    await journal.open()
    return EventBus(journal, EventFactory("s", "c"))


async def test_subscribers_see_only_committed_events_in_order(tmp_path: Path) -> None:
    bus = await make_bus(tmp_path)
    sub = bus.subscribe("rules", lossless=True)
    sent = [await bus.emit("door.opened", "door-1", {"n": i}) for i in range(20)]
    got = [await sub.get() for _ in range(20)]
    assert [g.event for g in got] == sent
    # Everything a subscriber saw is already in the journal.
    for g in got:
        assert (await bus.journal.get(g.event.id)) is not None
    await bus.journal.close()


async def test_live_feed_drops_oldest_and_counts(tmp_path: Path) -> None:
    bus = await make_bus(tmp_path)
    live = bus.subscribe("web", maxsize=10)
    for i in range(25):
        await bus.emit("telemetry.t", "io", {"n": i}, Severity.DEBUG)
    assert live.dropped == 15
    got = [(await live.get()).event.data["n"] for _ in range(10)]
    assert got == list(range(15, 25))
    await bus.journal.close()


async def test_slow_subscriber_never_blocks_the_journal(tmp_path: Path) -> None:
    bus = await make_bus(tmp_path)
    bus.subscribe("stuck", maxsize=5, lossless=True)  # never read
    bus.subscribe("stuck-live", maxsize=5)
    futures = [await bus.submit(bus.factory("telemetry.t", "io", {"n": i})) for i in range(3000)]
    done = await asyncio.wait_for(asyncio.gather(*futures), timeout=10)
    assert len(done) == 3000
    await bus.journal.close()


async def test_lossless_subscriber_recovers_overflow_from_journal(tmp_path: Path) -> None:
    bus = await make_bus(tmp_path)
    sub = bus.subscribe("rules", maxsize=8, lossless=True, accept=lambda e: e.type == "access.granted")
    futures = []
    for i in range(500):
        kind = "access.granted" if i % 2 else "telemetry.t"
        futures.append(await bus.submit(bus.factory(kind, "r", {"n": i})))
    await asyncio.gather(*futures)
    got = []
    while len(got) < 250:
        got.append((await asyncio.wait_for(sub.get(), 5)).event.data["n"])
    assert got == list(range(1, 500, 2))
    # And live delivery resumes after the catch-up.
    await bus.emit("access.granted", "r", {"n": 1000})
    assert (await asyncio.wait_for(sub.get(), 5)).event.data["n"] == 1000
    assert sub.dropped == 0
    await bus.journal.close()


async def test_closed_subscription_stops_receiving(tmp_path: Path) -> None:
    bus = await make_bus(tmp_path)
    sub = bus.subscribe("tmp")
    sub.close()
    await bus.emit("door.opened", "d")
    assert sub not in bus.subscriptions
    assert sub._queue.empty()
    await bus.journal.close()
