"""The in-process event bus.

Publishing goes through the journal first: subscribers only ever see committed events, in journal
order. Every subscriber has a bounded queue, so a slow one never holds up the journal or the
others:

- a *live* subscription (web page, SSE) drops its oldest queued event when full and counts it;
- a *lossless* subscription (rules) stops queueing when full and, once its consumer catches up,
  re-reads the gap from the journal, so it sees every event without unbounded memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from edge.events import Event, EventFactory, Severity
from edge.journal import Journal, StoredEvent

log = logging.getLogger(__name__)

EventFilter = Callable[[Event], bool]


class Subscription:
    def __init__(
        self,
        bus: EventBus,
        name: str,
        maxsize: int,
        lossless: bool,
        accept: EventFilter | None,
    ) -> None:
        self.bus = bus
        self.name = name
        self.lossless = lossless
        self.accept = accept
        self.dropped = 0
        self.closed = False
        self._queue: asyncio.Queue[StoredEvent] = asyncio.Queue(maxsize)
        self._last_seq = bus.journal.stats.last_seq
        self._gap = False  # lossless only: events after _last_seq are waiting in the journal

    def _offer(self, stored: StoredEvent) -> None:
        if self._gap:
            return
        if self.accept is not None and not self.accept(stored.event):
            if self._queue.empty():
                self._last_seq = stored.seq
            return
        if self._queue.full():
            if self.lossless:
                self._gap = True
                return
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(stored)

    async def get(self) -> StoredEvent:
        if self._queue.empty() and self._gap:
            await self._catch_up()
        stored = await self._queue.get()
        self._last_seq = stored.seq
        return stored

    async def _catch_up(self) -> None:
        journal = self.bus.journal
        while self._gap:
            rows = await journal.query(after_seq=self._last_seq, limit=self._queue.maxsize)
            for stored in rows:
                self._last_seq = stored.seq
                if self.accept is None or self.accept(stored.event):
                    self._queue.put_nowait(stored)
            # No await since the read: if the journal has nothing newer, live delivery resumes
            # exactly where the read ended.
            if self._last_seq >= journal.stats.last_seq:
                self._gap = False
            elif not self._queue.empty():
                return

    def __aiter__(self) -> AsyncIterator[StoredEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StoredEvent]:
        while not self.closed:
            yield await self.get()

    def close(self) -> None:
        self.closed = True
        self.bus._subscriptions.discard(self)


class EventBus:
    def __init__(self, journal: Journal, factory: EventFactory) -> None:
        self.journal = journal
        self.factory = factory
        self._subscriptions: set[Subscription] = set()
        journal.on_commit.append(self._fan_out)

    async def publish(self, event: Event) -> int:
        """Journal the event and return its seq once it is committed (accepted)."""
        return await self.journal.append(event)

    async def submit(self, event: Event) -> asyncio.Future[int]:
        """Queue the event without waiting for the commit; the future resolves to its seq."""
        return await self.journal.submit(event)

    async def emit(
        self,
        type: str,
        source: str,
        data: dict[str, Any] | None = None,
        severity: Severity = Severity.INFO,
    ) -> Event:
        event = self.factory(type, source, data, severity)
        await self.publish(event)
        return event

    def emit_soon(
        self,
        type: str,
        source: str,
        data: dict[str, Any] | None = None,
        severity: Severity = Severity.INFO,
    ) -> asyncio.Task[Event]:
        """For synchronous callers (callbacks): publish in a task and log if it fails."""
        task = asyncio.create_task(self.emit(type, source, data, severity))
        task.add_done_callback(_log_failure)
        return task

    def subscribe(
        self,
        name: str,
        *,
        maxsize: int = 1000,
        lossless: bool = False,
        accept: EventFilter | None = None,
    ) -> Subscription:
        sub = Subscription(self, name, maxsize, lossless, accept)
        self._subscriptions.add(sub)
        return sub

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subscriptions)

    def _fan_out(self, batch: list[StoredEvent]) -> None:
        for sub in list(self._subscriptions):
            for stored in batch:
                sub._offer(stored)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("event could not be published: %s", task.exception())
