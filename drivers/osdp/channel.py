"""The byte channel libosdp's ControlPanel talks through, fed by the asyncio event loop.

libosdp pulls bytes with `read()` and pushes with `write()` during `refresh()`; both must not block.
`BusChannel` is at once that libosdp channel and an asyncio Protocol: pyserial-asyncio-fast reads
the port when the loop says it is readable and hands the bytes to `data_received`, which buffers
them and wakes the driver for an immediate refresh. Writes go to the transport's buffer.

One object lives as long as the ControlPanel (libosdp keeps a reference to it), across any number
of port reconnects: USB adapters get unplugged, ser2net connections drop.

URLs are anything pyserial's `serial_for_url` accepts: `/dev/ttyUSB0`, `/dev/serial/by-id/...`,
`socket://host:port` (ser2net, raw TCP), a pseudo-terminal path (the simulator).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import serial
import serial_asyncio_fast

from drivers.osdp.frames import LinkMonitor

log = logging.getLogger(__name__)

RX_LIMIT = 4096  # bytes; a babbling bus must not grow memory while refresh is late


class BusChannel(asyncio.Protocol):
    def __init__(
        self,
        url: str,
        baudrate: int,
        monitor: LinkMonitor,
        on_data: Callable[[], None],
        on_lost: Callable[[Exception | None], None],
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.monitor = monitor
        self._on_data = on_data
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._rx = bytearray()
        self.rx_overflows = 0
        self.tx_frames = 0

    # -- port lifecycle (asyncio side) ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def open(self) -> None:
        """Open the port; raises OSError / serial.SerialException when it is not there."""
        loop = asyncio.get_running_loop()
        transport, _ = await serial_asyncio_fast.create_serial_connection(
            loop, lambda: self, self.url, baudrate=self.baudrate, timeout=0, write_timeout=0
        )
        # connection_made() only runs on the next loop iteration; the driver may write before that.
        self._transport = transport

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()  # drop unsent bytes: a stale command must not reach a reader later

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._rx.clear()

    def data_received(self, data: bytes) -> None:
        self.monitor.on_rx(data, time.monotonic())
        self._rx += data
        if len(self._rx) > RX_LIMIT:
            self.rx_overflows += 1
            del self._rx[: len(self._rx) - RX_LIMIT]
        self._on_data()

    def connection_lost(self, exc: Exception | None) -> None:
        was_ours = self._transport is not None
        self._transport = None
        self._rx.clear()
        if was_ours:
            self._on_lost(exc)

    # -- libosdp side (called from inside refresh(); must not block) -----------------------------

    def read(self, max_bytes: int) -> bytes:
        if not self._rx:
            return b""
        data = bytes(self._rx[:max_bytes])
        del self._rx[:max_bytes]
        return data

    def write(self, buf: bytes) -> int:
        transport = self._transport
        if transport is None or transport.is_closing():
            return -1  # libosdp treats this as a failed send for that reader
        self.monitor.on_tx(buf, time.monotonic())
        try:
            transport.write(buf)
        except (OSError, serial.SerialException) as exc:
            log.debug("OSDP write failed on %s: %s", self.url, exc)
            return -1
        self.tx_frames += 1
        return len(buf)

    def flush(self) -> None:
        # libosdp flushes before retrying a command: stale reply bytes would desynchronise it.
        self._rx.clear()
