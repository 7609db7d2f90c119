"""Asking the installer to do something at the reader (present a card, type a code, open the housing).

Steps that need a person run only when one can answer: stdin is a terminal. Run from cron, CI or
a pipe, they are skipped with a status that says so, rather than waiting out their timeouts and
reporting a failure nobody caused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import termios
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from hil_tests.report import CheckSkipped

T = TypeVar("T")


class Installer(Protocol):
    @property
    def absent_reason(self) -> str | None:
        """None when a person can be asked; otherwise why not (shown as the skip reason)."""
        ...

    async def ask(self, instruction: str, until: Coroutine[Any, Any, T], within: float) -> T:
        """Tell the person what to do and wait for `until`. TimeoutError after `within` seconds;
        CheckSkipped if the person chooses to skip."""
        ...


class NobodyThere:
    def __init__(self, reason: str) -> None:
        self._reason = reason

    @property
    def absent_reason(self) -> str | None:
        return self._reason

    async def ask(self, instruction: str, until: Coroutine[Any, Any, T], within: float) -> T:
        until.close()
        raise CheckSkipped(self._reason)


class TerminalInstaller:
    """A person at a terminal: instructions are printed, Enter skips the step."""

    def __init__(self, say: Callable[[str], None], fd: int | None = None) -> None:
        self._say = say
        self._fd = sys.stdin.fileno() if fd is None else fd

    @property
    def absent_reason(self) -> str | None:
        return None

    async def ask(self, instruction: str, until: Coroutine[Any, Any, T], within: float) -> T:
        loop = asyncio.get_running_loop()
        skipped: asyncio.Future[None] = loop.create_future()
        # Keys typed before this prompt (an impatient Enter during the last step) must not skip it.
        with contextlib.suppress(termios.error, OSError):
            termios.tcflush(self._fd, termios.TCIFLUSH)

        def on_input() -> None:
            with contextlib.suppress(OSError):
                os.read(self._fd, 1024)
            if not skipped.done():
                skipped.set_result(None)

        self._say(f"{instruction} (within {within:g} s; Enter skips)")
        task: asyncio.Future[Any] = asyncio.ensure_future(until)
        loop.add_reader(self._fd, on_input)
        try:
            async with asyncio.timeout(within):
                await asyncio.wait([task, skipped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(self._fd)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not task.done() or task.cancelled():
            raise CheckSkipped("skipped by the installer")
        return task.result()
