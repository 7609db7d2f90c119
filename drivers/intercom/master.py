"""The bus master: one RS-485 line (or a ser2net `socket://` port) with panels and indoor units on it.

One task owns the line and does one exchange at a time (command out, reply or timeout back), as a
half-duplex multi-drop bus requires:

- queued commands (unlock, display, ring, ...) go first, then polls of the online devices that are
  due, a HEARTBEAT to each every `heartbeat_s`, and a reset poll (sequence 0) to each offline
  device every `offline_probe_s`;
- a command that gets no good reply in `reply_timeout_s` is sent again, byte for byte the same
  frame with the same sequence, up to `retries` times: the device answers a repeated sequence with
  its cached reply and does not act again, so a retried unlock opens once;
- a device that leaves a command unanswered after its retries is offline (its queued commands fail
  at once, nothing is delivered late); it is probed until it answers, then online again;
- the port going away (USB unplugged, ser2net dropped) is `BusOffline` and every device offline;
  the driver reopens it every `reconnect_s`.

Device messages come back as the replies to polls, one queued event per poll. The driver knows no
rules: it reports every message to `on_message` and carries out what it is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import serial
import serial_asyncio_fast

from drivers.intercom.model import (
    BusOffline,
    BusOnline,
    DeviceLink,
    DeviceOffline,
    DeviceOnline,
    DeviceSpec,
    LinkStats,
    OnMessage,
    Timing,
)
from drivers.intercom.protocol import (
    BROADCAST,
    CallState,
    CallStateMsg,
    Display,
    Frame,
    FrameDecoder,
    Heartbeat,
    Message,
    Nak,
    Poll,
    ProtocolError,
    Ring,
    RingStop,
    SetDnd,
    Status,
    Unlock,
    command_frame,
    decode_message,
    next_seq,
)
from drivers.intercom.protocol import Ack as AckMsg

log = logging.getLogger(__name__)


class _PortLost(Exception):
    pass


@dataclass
class _Queued:
    link: DeviceLink
    msg: Message
    done: asyncio.Future[Any]
    twice: bool = False  # commissioning: the identical frame twice, both raw replies back


class _Channel(asyncio.Protocol):
    def __init__(self, owner: IntercomBus) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.owner._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(exc)


class IntercomBus:
    def __init__(
        self,
        port: str,
        devices: Sequence[DeviceSpec],
        on_message: OnMessage,
        *,
        baudrate: int = 115200,
        timing: Timing | None = None,
        name: str | None = None,
    ) -> None:
        addresses = [d.address for d in devices]
        if len(set(addresses)) != len(addresses):
            raise ValueError("two intercom devices share a bus address")
        if any(not 0 <= a < BROADCAST for a in addresses):
            raise ValueError("intercom addresses are 0-126")
        self.port = port
        self.baudrate = baudrate
        self.timing = timing or Timing()
        self.name = name or f"intercom-bus:{port}"
        self.on_message = on_message
        self.links = {d.id: DeviceLink(d) for d in devices}
        self._by_address = {d.address: self.links[d.id] for d in devices}
        self.decoder = FrameDecoder()
        self.stats = LinkStats()
        self.bus_online = False
        self._channel: _Channel | None = None
        self._queue: list[_Queued] = []
        self._wake = asyncio.Event()
        self._waiting: tuple[int, int] | None = None  # (address, seq) of the reply we wait for
        self._reply: asyncio.Future[Frame] | None = None
        self._task: asyncio.Task[None] | None = None

    # ---- public API ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._close()
        self._fail_queued(lambda q: True)

    def is_online(self, device_id: str) -> bool:
        return self.links[device_id].online

    def status(self, device_id: str) -> Status | None:
        return self.links[device_id].status

    async def send(self, device_id: str, msg: Message) -> Message | None:
        """Send one command; its reply (Ack, Nak, ...), or None when the device is offline or never
        answered. Never delivered late: an offline device's commands fail at once."""
        link = self.links[device_id]
        if not link.online or not self.bus_online:
            return None
        done: asyncio.Future[Message | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(link, msg, done))
        self._wake.set()
        return await done

    async def send_twice(self, device_id: str, msg: Message) -> tuple[Frame, Frame] | None:
        """Commissioning check of the cached-reply rule: the identical frame (same sequence) twice,
        as a retry would send it; both replies as received. None when the device is offline."""
        link = self.links[device_id]
        if not link.online or not self.bus_online:
            return None
        done: asyncio.Future[tuple[Frame, Frame] | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(link, msg, done, twice=True))
        self._wake.set()
        return await done

    async def unlock(self, device_id: str, duration_s: float = 5.0, relay: int = 0) -> bool:
        pulse = min(6000, max(1, round(duration_s * 10)))
        return isinstance(await self.send(device_id, Unlock(relay, pulse)), AckMsg)

    async def display(self, device_id: str, text: str, line: int = 0) -> bool:
        return isinstance(await self.send(device_id, Display(text, line)), AckMsg)

    async def call_state(self, device_id: str, call: int, state: CallState) -> bool:
        return isinstance(await self.send(device_id, CallStateMsg(call, state)), AckMsg)

    async def ring(self, device_id: str, call: int, panel_address: int) -> bool:
        return isinstance(await self.send(device_id, Ring(call, panel_address)), AckMsg)

    async def ring_stop(self, device_id: str, call: int, state: CallState) -> bool:
        return isinstance(await self.send(device_id, RingStop(call, state)), AckMsg)

    async def set_dnd(self, device_id: str, on: bool) -> bool:
        return isinstance(await self.send(device_id, SetDnd(on)), AckMsg)

    # ---- the line --------------------------------------------------------------------------------

    async def _run(self) -> None:
        first = True
        while True:
            try:
                await self._open()
            except (OSError, serial.SerialException) as exc:
                if first or self.bus_online:
                    self._bus_down(str(exc))
                first = False
                await asyncio.sleep(self.timing.reconnect_s)
                continue
            first = False
            self.bus_online = True
            self.on_message(self.name, BusOnline())
            try:
                await self._serve()
            except _PortLost as exc:
                self._bus_down(str(exc) or "port closed")
            self._close()
            await asyncio.sleep(self.timing.reconnect_s)

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        channel = _Channel(self)
        transport, _ = await serial_asyncio_fast.create_serial_connection(
            loop, lambda: channel, self.port, baudrate=self.baudrate, timeout=0, write_timeout=0
        )
        # connection_made() only runs on the next loop iteration; the first poll may come before.
        channel.transport = transport
        self._channel = channel
        self.decoder.reset()

    def _close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and channel.transport is not None:
            channel.transport.abort()

    def _bus_down(self, error: str) -> None:
        self.bus_online = False
        self.on_message(self.name, BusOffline(error))
        for link in self.links.values():
            self._set_offline(link, "bus_offline")

    async def _serve(self) -> None:
        while True:
            channel = self._channel
            if channel is None or channel.lost.done():
                raise _PortLost(str(channel.lost.result() or "") if channel is not None else "")
            if self._queue:
                item = self._queue.pop(0)
                if item.done.done():
                    continue
                if not item.link.online:
                    item.done.set_result(None)
                    continue
                result = await (self._twice(item.link, item.msg) if item.twice else self._exchange(item.link, item.msg))
                if not item.done.done():
                    item.done.set_result(result)
                continue
            now = time.monotonic()
            link = self._due(now)
            if link is None:
                self._wake.clear()
                wait = max(0.0, min(self._next_due() - now, 1.0))
                waiter = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait([waiter, channel.lost], timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                continue
            await self._poll(link, now)

    def _due(self, now: float) -> DeviceLink | None:
        due = [lk for lk in self.links.values() if lk.next_poll <= now]
        return min(due, key=lambda lk: lk.next_poll) if due else None

    def _next_due(self) -> float:
        return min((lk.next_poll for lk in self.links.values()), default=time.monotonic() + 1.0)

    async def _poll(self, link: DeviceLink, now: float) -> None:
        if not link.online:
            link.next_poll = now + self.timing.offline_probe_s
            reply = await self._exchange(link, Poll(), probe=True)
            if reply is None:
                return
            # Back: learn its state before telling anyone.
            status = await self._exchange(link, Heartbeat())
            if status is None:
                return
            link.online = True
            link.next_poll = time.monotonic()
            link.next_heartbeat = link.next_poll + self.timing.heartbeat_s
            self.on_message(link.spec.id, DeviceOnline(link.status))
            self._handle(link, reply)
            return
        link.next_poll = now + self.timing.poll_interval_s
        if now >= link.next_heartbeat:
            link.next_heartbeat = now + self.timing.heartbeat_s
            await self._exchange(link, Heartbeat())
            return
        reply = await self._exchange(link, Poll())
        if reply is not None:
            self._handle(link, reply)

    def _handle(self, link: DeviceLink, reply: Message) -> None:
        if isinstance(reply, AckMsg | Status | Nak):
            return  # a status is taken in _exchange
        self.on_message(link.spec.id, reply)

    async def _exchange(self, link: DeviceLink, msg: Message, *, probe: bool = False) -> Message | None:
        """One command, retried with the same sequence; the decoded reply, or None (then offline)."""
        seq = 0 if probe else link.seq
        frame = command_frame(link.spec.address, seq, msg).encode()
        loop = asyncio.get_running_loop()
        attempts = 1 if probe else 1 + self.timing.retries
        for attempt in range(attempts):
            channel = self._channel
            if channel is None or channel.transport is None or channel.lost.done():
                raise _PortLost("port closed")
            self._reply = loop.create_future()
            self._waiting = (link.spec.address, seq)
            if attempt:
                self.stats.retries += 1
            # A half-duplex master hears nothing but answers: bytes still pending (a reply whose
            # LEN was hit by noise) would otherwise swallow the answer to this command.
            self.decoder.discard()
            try:
                channel.transport.write(frame)
            except (OSError, serial.SerialException) as exc:
                raise _PortLost(str(exc)) from exc
            self.stats.tx_frames += 1
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
                # that lands as the reply arrives, and the driver would then never stop.
                async with asyncio.timeout(self.timing.reply_timeout_s):
                    got = await self._reply
            except TimeoutError:
                self.stats.timeouts += 1
                continue
            finally:
                self._waiting = None
            try:
                reply = decode_message(got.code, got.payload)
            except ProtocolError as exc:
                # A good CRC with a bad message: the device speaks it wrong. Not acted on; the
                # retry asks again (the device's cached reply will be the same, so it fails).
                self.stats.bad_payload += 1
                log.debug("%s: bad reply from %s: %s", self.name, link.spec.id, exc)
                continue
            link.seq = next_seq(seq)
            link.failures = 0
            if isinstance(reply, Status):
                link.status = reply
            elif isinstance(reply, Nak):
                self.stats.naks += 1
            return reply
        if not probe:
            self._set_offline(link, "no_reply")
        return None

    async def _twice(self, link: DeviceLink, msg: Message) -> tuple[Frame, Frame] | None:
        frame = command_frame(link.spec.address, link.seq, msg).encode()
        replies: list[Frame] = []
        for _ in range(2):
            channel = self._channel
            if channel is None or channel.transport is None:
                raise _PortLost("port closed")
            self._reply = asyncio.get_running_loop().create_future()
            self._waiting = (link.spec.address, link.seq)
            self.decoder.discard()
            channel.transport.write(frame)
            self.stats.tx_frames += 1
            try:
                async with asyncio.timeout(self.timing.reply_timeout_s):
                    replies.append(await self._reply)
            except TimeoutError:
                self.stats.timeouts += 1
                return None
            finally:
                self._waiting = None
        link.seq = next_seq(link.seq)
        return replies[0], replies[1]

    def _set_offline(self, link: DeviceLink, reason: str) -> None:
        link.seq = 0
        link.next_poll = time.monotonic() + (self.timing.offline_probe_s if reason == "no_reply" else 0.0)
        self._fail_queued(lambda q: q.link is link)
        if link.online:
            link.online = False
            self.on_message(link.spec.id, DeviceOffline(reason))

    def _fail_queued(self, which: object) -> None:
        assert callable(which)
        keep: list[_Queued] = []
        for q in self._queue:
            if which(q):
                if not q.done.done():
                    q.done.set_result(None)
            else:
                keep.append(q)
        self._queue = keep

    def _received(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            self.stats.rx_frames += 1
            waiting, reply = self._waiting, self._reply
            if (
                waiting is not None
                and reply is not None
                and not reply.done()
                and frame.reply
                and (frame.address, frame.seq) == waiting
            ):
                reply.set_result(frame)
            else:
                self.stats.unexpected += 1
