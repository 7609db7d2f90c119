"""A pseudo-terminal that stands in for an RS-485 port in the simulators.

The driver under test opens `path` as its serial port: a symlink to the terminal end of a raw
pty. The simulator reads and writes the master end. `unplug()` takes the port away (the cable or
USB adapter pulled); `plug()` puts a fresh pty under the same path.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tty
from collections.abc import Callable


class Pty:
    """One pseudo-terminal in raw mode (no echo, no line editing, no CR/LF translation of bytes)."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def read_available(fd: int) -> bytes:
    """What is waiting on `fd`; b"" when nothing is (or nobody has the terminal end open: EIO)."""
    try:
        return os.read(fd, 4096)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EINTR, errno.EIO):
            return b""
        raise


def write_or_drop(fd: int, data: bytes) -> None:
    """Bytes on a line nobody listens to are lost, as on a real bus."""
    try:
        os.write(fd, data)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EIO, errno.EBADF):
            raise


class PtyPort:
    """The driver's port: a pty reached through the symlink `path`; bytes the driver writes go to
    `on_data`, `send()` is what the driver reads."""

    def __init__(self, path: str, on_data: Callable[[bytes], None]) -> None:
        self.path = path
        self.on_data = on_data
        self.pty: Pty | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def plugged(self) -> bool:
        return self.pty is not None

    def plug(self) -> None:
        if self.pty is not None:
            return
        self._loop = asyncio.get_running_loop()
        # The slave stays open here too, so reading the master never fails while the driver has
        # the port closed between reconnects.
        self.pty = Pty()
        link = f"{self.path}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(self.pty.path, link)
        os.replace(link, self.path)  # the driver's path now leads to this pty
        self._loop.add_reader(self.pty.master, self._readable)

    def unplug(self) -> None:
        if self.pty is not None:
            assert self._loop is not None
            self._loop.remove_reader(self.pty.master)
            self.pty.close()
            self.pty = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def send(self, data: bytes) -> None:
        if self.pty is not None and data:
            write_or_drop(self.pty.master, data)

    def _readable(self) -> None:
        assert self.pty is not None
        data = read_available(self.pty.master)
        if data:
            self.on_data(data)
