"""The driver through ser2net: OSDP over a raw TCP socket (`socket://host:port`), as installers wire
readers far from the controller. The "ser2net" here is a small TCP-to-serial bridge in front of
the simulator's pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty

from drivers.osdp import OsdpDriver, ReaderConfig
from drivers.osdp.simulator import SimBus, SimReader
from drivers.osdp.testing import EventRecorder


class Ser2Net:
    """ser2net's raw mode: every byte from the TCP client to the device and back."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.server: asyncio.Server | None = None
        self.clients: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        fd = os.open(self.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)

        def from_device() -> None:
            with contextlib.suppress(BlockingIOError):
                writer.write(os.read(fd, 4096))

        loop.add_reader(fd, from_device)
        self.clients.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while data := await reader.read(4096):
                os.write(fd, data)
        except ConnectionError:
            pass
        finally:
            loop.remove_reader(fd)
            os.close(fd)
            self.clients.discard(writer)
            self.handlers.discard(task)
            writer.close()

    def drop_clients(self) -> None:
        for writer in list(self.clients):
            writer.transport.abort()

    async def stop(self) -> None:
        self.drop_clients()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_reader_over_ser2net_socket_and_reconnect() -> None:
    events = EventRecorder()
    async with SimBus([SimReader(1)]) as bus:
        bridge = Ser2Net(bus.port)
        tcp_port = await bridge.start()
        driver = OsdpDriver(f"socket://127.0.0.1:{tcp_port}", [ReaderConfig("gate", 1, secure=False)], events)
        try:
            async with driver:
                await events.wait("device.online", "gate")
                bus.reader(1).present_card(321, 12)
                card = await events.wait("reader.card")
                assert (card.data["facility"], card.data["card"]) == (12, 321)
                assert await driver.output("gate", 0, True, duration_ms=200)
                assert bus.reader(1).outputs[0].on
                # The TCP connection drops (network hiccup, ser2net restart): reported, then redialled.
                mark = events.mark()
                bridge.drop_clients()
                assert (await events.wait("device.offline", since=mark)).data["reason"] == "port_lost"
                await events.wait("device.online", "gate", since=mark, within=3.0)
        finally:
            await bridge.stop()
