"""Runs the daemon's long-lived parts as supervised tasks: a crash is an event and a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from edge.events import Severity

log = logging.getLogger(__name__)

Report = Callable[[str, str, dict[str, object], Severity], object]


@dataclass
class TaskHealth:
    name: str
    running: bool = False
    restarts: int = 0
    last_error: str | None = None
    last_crash: float | None = None


class Supervisor:
    """`report(type, source, data, severity)` publishes supervisor events (crash, restart)."""

    def __init__(self, report: Report, initial_backoff_s: float = 0.5, max_backoff_s: float = 30.0) -> None:
        self.report = report
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.health: dict[str, TaskHealth] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        if name in self._tasks:
            raise ValueError(f"task {name!r} already supervised")
        self.health[name] = TaskHealth(name)
        self._tasks[name] = asyncio.create_task(self._keep_running(name, factory), name=name)

    async def _keep_running(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        health = self.health[name]
        backoff = self.initial_backoff_s
        while True:
            started = time.monotonic()
            health.running = True
            try:
                await factory()
                health.running = False
                log.info("task %s finished", name)
                return
            except asyncio.CancelledError:
                health.running = False
                raise
            except Exception as exc:
                health.running = False
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    # It failed while being stopped: restarting it would outlive the stop.
                    log.exception("task %s failed while stopping", name)
                    raise asyncio.CancelledError from exc
                health.restarts += 1
                health.last_error = f"{type(exc).__name__}: {exc}"
                health.last_crash = time.time()
                log.exception("task %s crashed; restarting", name)
                if time.monotonic() - started > 60:
                    backoff = self.initial_backoff_s  # it ran fine for a while: start over
                delay = random.uniform(backoff / 2, backoff)
                self.report(
                    "supervisor.task_crashed",
                    "controller",
                    {"task": name, "error": health.last_error, "restart_in_s": round(delay, 2)},
                    Severity.WARNING,
                )
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def stop_task(self, name: str) -> None:
        """Cancel one task and wait for it to finish (e.g. to start it again with a new config)."""
        task = self._tasks.pop(name, None)
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        self.health.pop(name, None)

    async def stop(self) -> None:
        """Cancel every task (in reverse start order) and wait for them to finish."""
        for name in reversed(list(self._tasks)):
            self._tasks[name].cancel()
        for name in reversed(list(self._tasks)):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._tasks[name]
        self._tasks.clear()
