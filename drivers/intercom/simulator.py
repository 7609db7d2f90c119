"""Simulated intercom panels and indoor units speaking the Linli panel protocol over a pseudo-terminal.

`SimIntercomBus` owns a pty pair (both ends raw) and a stable symlink to its terminal end, the
"port" the driver opens. The devices sit on the other end; each decodes every byte the master sends
with the same FrameDecoder and answers through a `DeviceEndpoint` (cached reply on a repeated
sequence), so the driver cannot tell them from firmware on an RS-485 line.

    async with SimIntercomBus([SimPanel(1), SimIndoorUnit(10)]) as bus:
        ... IntercomBus(bus.port, ...) ...
        bus.device(1).call("1203")             # a visitor dials apartment 1203
        await bus.device(10).wait_ringing()
        bus.device(10).answer(); bus.device(10).unlock()
        await bus.device(1).wait_relay(1)

Faults for tests: `device.mute` (stops answering), `device.corrupt_replies` (n replies with a
flipped byte), `device.drop_replies` (n replies lost, so the master retries), `bus.inject(noise)`,
`bus.unplug()` / `bus.replug()`.

Also a program (`python -m drivers.intercom.simulator --help`) with line commands on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from drivers.intercom.device import DeviceEndpoint
from drivers.intercom.protocol import (
    Ack,
    Answer,
    CallCancel,
    CallRequest,
    CallState,
    CallStateMsg,
    DeviceKind,
    Display,
    Dnd,
    FrameDecoder,
    HangUp,
    Heartbeat,
    KeypadCode,
    Message,
    Nak,
    NakReason,
    Poll,
    QrToken,
    Ring,
    RingStop,
    SetDnd,
    Status,
    Tamper,
    Unlock,
    UnlockRequest,
)
from drivers.pty_port import PtyPort

Listener = Callable[["SimDevice", str, dict[str, Any]], None]


class SimDevice:
    kind: DeviceKind

    def __init__(self, address: int, *, listener: Listener | None = None) -> None:
        self.address = address
        self.endpoint = DeviceEndpoint(address, self._handle)
        self.decoder = FrameDecoder()
        self.events: deque[Message] = deque(maxlen=64)
        self.mute = False
        self.corrupt_replies = 0
        self.drop_replies = 0
        self.tamper = False
        self.listener = listener
        self.started = time.monotonic()
        self.commands: list[Message] = []  # every command acted on (not retries), for tests

    # -- the wire --------------------------------------------------------------------------------

    def on_bytes(self, data: bytes) -> bytes:
        out = b""
        for frame in self.decoder.feed(data):
            reply = self.endpoint.on_frame(frame)
            if reply is None or self.mute:
                continue
            if self.drop_replies > 0:
                self.drop_replies -= 1
                continue
            if self.corrupt_replies > 0:
                self.corrupt_replies -= 1
                mangled = bytearray(reply)
                mangled[len(mangled) // 2] ^= 0x5A
                reply = bytes(mangled)
            out += reply
        return out

    def power_cycle(self) -> None:
        self.endpoint.reset()
        self.decoder.reset()
        self.events.clear()
        self.started = time.monotonic()

    def _handle(self, msg: Message) -> Message:
        if isinstance(msg, Poll):
            return self.events.popleft() if self.events else Ack()
        if isinstance(msg, Heartbeat):
            return self.status()
        self.commands.append(msg)
        return self.command(msg)

    def status(self) -> Status:
        return Status(self.kind, (1, 0), tamper=self.tamper, uptime_s=int(time.monotonic() - self.started))

    def command(self, msg: Message) -> Message:
        return Nak(NakReason.NOT_SUPPORTED)

    def queue(self, msg: Message) -> None:
        self.events.append(msg)

    def set_tamper(self, active: bool) -> None:
        self.tamper = active
        self.queue(Tamper(active))

    def _tell(self, what: str, **data: Any) -> None:
        if self.listener is not None:
            self.listener(self, what, data)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 2.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"simulated device {self.address}: condition not met within {within}s")
            await asyncio.sleep(0.002)


class SimPanel(SimDevice):
    """A door panel: keypad and call buttons, a QR scanner, a display and one lock relay."""

    kind = DeviceKind.PANEL

    def __init__(self, address: int, *, listener: Listener | None = None) -> None:
        super().__init__(address, listener=listener)
        self.relay_activations = 0
        self.relay_times: list[float] = []
        self.relay_until = 0.0
        self.display_lines: dict[int, str] = {}
        self.call_states: list[tuple[int, CallState]] = []

    @property
    def relay_on(self) -> bool:
        return time.monotonic() < self.relay_until

    @property
    def call_state(self) -> tuple[int, CallState] | None:
        return self.call_states[-1] if self.call_states else None

    def status(self) -> Status:
        up = int(time.monotonic() - self.started)
        return Status(self.kind, (1, 0), tamper=self.tamper, relay=self.relay_on, uptime_s=up)

    def command(self, msg: Message) -> Message:
        if isinstance(msg, Unlock):
            if msg.relay != 0:
                return Nak(NakReason.NOT_SUPPORTED)
            self.relay_activations += 1
            self.relay_times.append(time.monotonic())
            self.relay_until = time.monotonic() + msg.pulse_ds / 10
            self._tell("relay", activations=self.relay_activations, pulse_s=msg.pulse_ds / 10)
            return Ack()
        if isinstance(msg, Display):
            self.display_lines[msg.line] = msg.text
            self._tell("display", line=msg.line, text=msg.text)
            return Ack()
        if isinstance(msg, CallStateMsg):
            self.call_states.append((msg.call, msg.state))
            self._tell("call_state", call=msg.call, state=msg.state.name.lower())
            return Ack()
        return Nak(NakReason.NOT_SUPPORTED)

    # -- a visitor at the panel -------------------------------------------------------------------

    def call(self, apartment: str) -> None:
        self.queue(CallRequest(apartment=apartment))

    def press_button(self, entry: int) -> None:
        """A directory call button (panels without a keypad)."""
        self.queue(CallRequest(entry=entry))

    def cancel(self) -> None:
        self.queue(CallCancel())

    def enter_code(self, digits: str) -> None:
        self.queue(KeypadCode(digits))

    def scan_qr(self, token: bytes) -> None:
        self.queue(QrToken(token))

    async def wait_relay(self, activations: int, within: float = 2.0) -> None:
        await self.wait_for(lambda: self.relay_activations >= activations, within)

    async def wait_call_state(self, state: CallState, within: float = 2.0) -> int:
        await self.wait_for(lambda: any(s == state for _, s in self.call_states), within)
        return next(c for c, s in self.call_states if s == state)


class SimIndoorUnit(SimDevice):
    """An apartment's indoor unit: rings, answer / hang-up / unlock buttons, a do-not-disturb switch."""

    kind = DeviceKind.INDOOR_UNIT

    def __init__(self, address: int, *, listener: Listener | None = None) -> None:
        super().__init__(address, listener=listener)
        self.ringing: int | None = None  # the call id ringing now
        self.panel: int | None = None
        self.in_call: int | None = None
        self.dnd = False
        self.rings = 0
        self.ring_times: list[float] = []
        self.stopped: list[tuple[int, CallState]] = []

    def status(self) -> Status:
        up = int(time.monotonic() - self.started)
        return Status(self.kind, (1, 0), tamper=self.tamper, dnd=self.dnd, uptime_s=up)

    def command(self, msg: Message) -> Message:
        if isinstance(msg, Ring):
            self.ringing, self.panel = msg.call, msg.panel
            self.rings += 1
            self.ring_times.append(time.monotonic())
            self._tell("ring", call=msg.call, panel=msg.panel)
            return Ack()
        if isinstance(msg, RingStop):
            self.stopped.append((msg.call, msg.state))
            if self.ringing == msg.call:
                self.ringing = None
            if self.in_call == msg.call and msg.state is not CallState.ANSWERED:
                self.in_call = None
            self._tell("ring_stop", call=msg.call, state=msg.state.name.lower())
            return Ack()
        if isinstance(msg, SetDnd):
            self.dnd = msg.on
            return Ack()
        return Nak(NakReason.NOT_SUPPORTED)

    # -- the resident ---------------------------------------------------------------------------

    def answer(self) -> int:
        call = self.ringing if self.ringing is not None else 0
        self.in_call, self.ringing = call, None
        self.queue(Answer(call))
        return call

    def hang_up(self) -> None:
        call = self.in_call if self.in_call is not None else (self.ringing or 0)
        self.in_call = self.ringing = None
        self.queue(HangUp(call))

    def unlock(self, call: int | None = None) -> None:
        if call is None:
            call = self.in_call if self.in_call is not None else (self.ringing or 0)
        self.queue(UnlockRequest(call))

    def set_dnd(self, on: bool) -> None:
        self.dnd = on
        self.queue(Dnd(on))

    async def wait_ringing(self, within: float = 2.0) -> int:
        await self.wait_for(lambda: self.ringing is not None, within)
        assert self.ringing is not None
        return self.ringing


class SimIntercomBus:
    """A pseudo-terminal "RS-485 bus" with simulated intercom devices on it."""

    def __init__(self, devices: Sequence[SimDevice], *, directory: str | os.PathLike[str] | None = None) -> None:
        addresses = [d.address for d in devices]
        if len(set(addresses)) != len(addresses):
            raise ValueError("two simulated devices share an address")
        self.devices = {d.address: d for d in devices}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="linli-intercom-")
            directory = self._tmp.name
        self._port = PtyPort(str(Path(directory) / "intercom-bus"), self._from_master)
        self.bytes_from_master = 0

    @property
    def port(self) -> str:
        return self._port.path

    @port.setter
    def port(self, path: str) -> None:
        self._port.path = path

    def device(self, address: int) -> Any:
        return self.devices[address]

    async def start(self) -> None:
        self._port.plug()

    async def stop(self) -> None:
        self._port.unplug()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def __aenter__(self) -> SimIntercomBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def unplug(self) -> None:
        self._port.unplug()

    def replug(self) -> None:
        for d in self.devices.values():
            d.power_cycle()
        self._port.plug()

    def send(self, data: bytes) -> None:
        self._port.send(data)

    def inject(self, data: bytes) -> None:
        """Noise on the line, as the master will read it."""
        self.send(data)

    def _from_master(self, data: bytes) -> None:
        self.bytes_from_master += len(data)
        for d in self.devices.values():
            self.send(d.on_bytes(data))


# -- for `linli demo` ------------------------------------------------------------------------------

DEMO_PANEL = 1
DEMO_UNITS = {"1203": 10, "1204": 11}
DEMO_GUARD = 20


async def start_demo_bus(directory: str | os.PathLike[str], listener: Listener | None = None) -> SimIntercomBus:
    """The demo's gate panel (address 1), indoor units of apartments 1203 (10) and 1204 (11) and the
    guard desk (20) on one pty under `directory`; its `.port` goes into `demo_site_yaml`. Drive it
    with `command(bus, "call 1 1203".split())`, `command(bus, ["answer", "10"])`, ... and stop it
    with `await bus.stop()`."""
    units = [*DEMO_UNITS.values(), DEMO_GUARD]
    bus = SimIntercomBus(build_devices([DEMO_PANEL], units, listener), directory=directory)
    await bus.start()
    return bus


def demo_site_yaml(port: str, door: str | None = None) -> str:
    """The `intercom:` section for the demo site. With `door`, the panel opens that access door
    (which must list `intercom` in its `remote_unlock`); without, the panel's own relay."""
    door_key = f", door: {door}" if door else ""
    units = "\n".join(
        f'        - {{id: unit-{apt}, name: "Apartment {apt}", address: {addr}, apartment: "{apt}"}}'
        for apt, addr in DEMO_UNITS.items()
    )
    return (
        "intercom:\n"
        "  buses:\n"
        f"    - port: {port}\n"
        "      baudrate: 115200\n"
        "      panels:\n"
        f'        - {{id: gate-panel, name: "Gate panel", address: {DEMO_PANEL}{door_key},'
        ' directory: {1: "1203", 2: "1204"}}\n'
        "      indoor_units:\n"
        f"{units}\n"
        f'        - {{id: guard-desk, name: "Guard desk", address: {DEMO_GUARD}, guard: true}}\n'
        "  timeouts: {unit_ring_s: 20, app_ring_s: 20, guard_ring_s: 30, talk_s: 120, unlock_grace_s: 10}\n"
    )


# -- the program: `python -m drivers.intercom.simulator` -----------------------------------------


def build_devices(panels: Sequence[int], units: Sequence[int], listener: Listener | None = None) -> list[SimDevice]:
    devices: list[SimDevice] = [SimPanel(a, listener=listener) for a in panels]
    devices += [SimIndoorUnit(a, listener=listener) for a in units]
    return devices


def command(bus: SimIntercomBus, words: list[str]) -> bool:
    """One stdin line: False to quit. Also used by `linli demo` to drive the devices."""
    verb, rest = words[0], words[1:]
    if verb == "quit":
        return False
    device = bus.device(int(rest[0]))
    if verb == "call":  # call PANEL APARTMENT
        device.call(rest[1])
    elif verb == "button":  # button PANEL ENTRY
        device.press_button(int(rest[1]))
    elif verb == "cancel":  # cancel PANEL
        device.cancel()
    elif verb == "code":  # code PANEL 1234
        device.enter_code(rest[1])
    elif verb == "qr":  # qr PANEL TOKEN
        device.scan_qr(rest[1].encode())
    elif verb == "tamper":  # tamper ADDR 0|1
        device.set_tamper(rest[1] == "1")
    elif verb == "answer":  # answer UNIT
        device.answer()
    elif verb == "hangup":  # hangup UNIT
        device.hang_up()
    elif verb == "unlock":  # unlock UNIT
        device.unlock()
    elif verb == "dnd":  # dnd UNIT 0|1
        device.set_dnd(rest[1] == "1")
    elif verb == "mute":  # mute ADDR 0|1
        device.mute = rest[1] == "1"
    else:
        raise ValueError(f"unknown command {verb!r}")
    return True


async def _serve(args: argparse.Namespace) -> None:
    out = sys.stdout

    def emit(doc: dict[str, Any]) -> None:
        out.write(json.dumps(doc) + "\n")
        out.flush()

    marks: dict[str, float] = {}  # verb -> when its last stdin line was taken, for latency figures

    def listener(device: SimDevice, what: str, data: dict[str, Any]) -> None:
        doc = {"event": what, "address": device.address, **data}
        since = {"ring": "call", "relay": "unlock"}.get(what)
        if since is not None and since in marks:
            doc[f"since_{since}_ms"] = round((time.monotonic() - marks[since]) * 1000, 3)
        emit(doc)

    devices = build_devices(args.panel or [], args.unit or [], listener)
    link = Path(args.link)
    bus = SimIntercomBus(devices, directory=link.parent)
    bus.port = str(link)
    async with bus:
        emit({"event": "ready", "port": bus.port, "panels": args.panel or [], "units": args.unit or []})
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        while line := (await stdin.readline()).decode().strip():
            try:
                words = line.split()
                marks[words[0]] = time.monotonic()
                if not command(bus, words):
                    break
            except (KeyError, ValueError, IndexError) as exc:
                emit({"event": "error", "line": line, "error": str(exc)})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m drivers.intercom.simulator",
        description="Simulated intercom panels and indoor units on a pseudo-terminal. Commands on stdin: "
        "'call PANEL APT', 'button PANEL ENTRY', 'cancel PANEL', 'code PANEL DIGITS', 'qr PANEL TOKEN', "
        "'tamper ADDR 0|1', 'answer UNIT', 'hangup UNIT', 'unlock UNIT', 'dnd UNIT 0|1', 'mute ADDR 0|1', "
        "'quit'. Prints JSON lines (ready, ring, ring_stop, call_state, display, relay).",
    )
    parser.add_argument("--link", required=True, help="path of the symlink the driver opens as its port")
    parser.add_argument("--panel", type=int, action="append", help="a panel's bus address (repeatable)")
    parser.add_argument("--unit", type=int, action="append", help="an indoor unit's bus address (repeatable)")
    args = parser.parse_args(argv)
    if not args.panel and not args.unit:
        parser.error("give at least one --panel or --unit")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
