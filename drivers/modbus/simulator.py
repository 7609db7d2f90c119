"""Modbus RTU I/O module simulator: pymodbus's server (SimDevice API) on a pseudo-terminal.

Several modules (unit ids) share one "RS-485 bus". The driver opens `bus.port`, a stable symlink
to the terminal end of one pty (like /dev/serial/by-id/...); pymodbus's ModbusSerialServer opens
the terminal end of a second pty; the bus joins the two master ends. That join is the wire: it
delays each frame by its time on the line at the bus's baud rate (`wire_timing`, on by default, so
latencies match a real bus), and it is where faults are made: garbage on the line, the cable
pulled (`unplug` / `replug`).

pymodbus answers a request for a unit id it does not know with exception 4 (its SimCore looks the
id up and fails): on a shared bus that is a module answering for another. `_SilentCore` raises
NoSuchIdException instead, which with `ignore_missing_devices` makes the server stay silent, as a
real module does for a frame that is not its own; a module switched off (`present = False`)
goes silent the same way. `corrupt_replies` mangles a module's next answers after the CRC was
computed, as line noise would.

    bus = SimBus([SimModule(1), SimModule(2, coils=4)])
    await bus.start()
    ... ModbusDriver(bus.port, ...) ...
    bus.module(1).set_input(3, True)
    await bus.module(2).wait_coil(0, True)

Also a program, `python -m drivers.modbus.simulator --help`, with a line-based control on stdin.
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
import tty
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

from drivers.modbus.model import MAX_POINTS, char_bits, t35_s
from drivers.pty_port import Pty, PtyPort, read_available, write_or_drop

DEFAULT_ANALOG = 1000  # ohms: a loop with its 1k end-of-line resistor, i.e. normal
# Line noise ahead of an answer; it ends in bytes that look like the start of a frame from unit 1.
GARBLE = bytes([0x00, 0xFF, 0x13, 0x01, 0x02])


class _SilentCore(SimCore):
    """SimCore that knows only the modules present on the bus, and lets the others stay silent."""

    def __init__(self, bus: SimBus) -> None:
        super().__init__([m.device for m in bus.modules.values()])
        self.bus = bus

    def _check(self, device_id: int) -> SimModule:
        module = self.bus.modules.get(device_id)
        if module is None or not module.present:
            raise NoSuchIdException(f"no module {device_id} on this bus")
        return module

    async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1) -> Any:
        self._check(device_id).requests += 1  # every request reads (a write reads back what it wrote)
        return await super().async_getValues(device_id, func_code, address, count)

    async def async_setValues(self, device_id: int, func_code: int, address: int, values: Any) -> Any:
        self._check(device_id)
        return await super().async_setValues(device_id, func_code, address, values)


class SimModule:
    """One I/O module: 16 discrete inputs, up to 16 analog inputs (input registers), coils."""

    def __init__(
        self,
        unit: int,
        *,
        inputs: int = 16,
        analog: int = 16,
        coils: int = 8,
        analog_default: int = DEFAULT_ANALOG,
        on_coil: Callable[[SimModule, int, bool], None] | None = None,
    ) -> None:
        if not 1 <= unit <= 247:
            raise ValueError("a module's unit id is 1-247")
        self.unit = unit
        self.n_inputs, self.n_analog, self.n_coils = inputs, analog, coils
        self.on_coil = on_coil
        self.present = True  # False: powered off, silent
        self.corrupt_replies = 0
        self.garble_replies = 0
        self.requests = 0
        self.coil_log: deque[tuple[float, int, bool]] = deque(maxlen=1024)
        self.last_change_at: float | None = None  # when an input last changed (for latency figures)
        self._coils = [False] * coils
        self._changed: asyncio.Condition | None = None
        self.device = SimDevice(
            id=unit,
            simdata=(
                [SimData(0, count=max(1, coils), values=False, datatype=DataType.BITS)],
                [SimData(0, count=max(1, inputs), values=False, datatype=DataType.BITS)],
                [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=max(1, analog), values=analog_default, datatype=DataType.REGISTERS)],
            ),
            action=self._action,
        )
        self._core: SimCore | None = None

    # -- the registers inside pymodbus's runtime ---------------------------------------------------------

    def _block(self, kind: str) -> list[int]:
        if self._core is None:
            raise RuntimeError("the module is not on a started bus")
        return self._core.devices[self.unit].block[kind][2]

    def set_input(self, no: int, active: bool) -> None:
        if not 0 <= no < self.n_inputs:
            raise ValueError(f"unit {self.unit} has no input {no}")
        regs = self._block("d")
        mask = 1 << (no % 16)
        regs[no // 16] = regs[no // 16] | mask if active else regs[no // 16] & ~mask
        self.last_change_at = time.monotonic()

    def input(self, no: int) -> bool:
        return bool(self._block("d")[no // 16] >> (no % 16) & 1)

    def set_analog(self, no: int, value: int) -> None:
        if not 0 <= no < self.n_analog or not 0 <= value <= 0xFFFF:
            raise ValueError(f"unit {self.unit}: analog input {no} takes 0-65535")
        self._block("i")[no] = value
        self.last_change_at = time.monotonic()

    def coil(self, no: int) -> bool:
        return self._coils[no]

    @property
    def coils(self) -> list[bool]:
        return list(self._coils)

    async def _action(
        self, function_code: int, start: int, address: int, count: int, registers: list[int], values: Any
    ) -> None:
        if function_code in (5, 15) and values is not None:
            now = time.monotonic()
            for k, on in enumerate(values[:count]):
                no = address + k
                if 0 <= no < self.n_coils and self._coils[no] != bool(on):
                    self._coils[no] = bool(on)
                    self.coil_log.append((now, no, bool(on)))
                    if self.on_coil is not None:
                        self.on_coil(self, no, bool(on))
            await self._notify()
        return None

    # -- waiting, for tests --------------------------------------------------------------------------------

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        cond = self._condition()
        async with cond:
            cond.notify_all()

    async def wait_coil(self, no: int, on: bool, within: float = 2.0) -> float:
        """Wait until coil `no` is `on`; returns when it was written (time.monotonic())."""
        cond = self._condition()
        async with asyncio.timeout(within), cond:
            await cond.wait_for(lambda: self._coils[no] == on)
        return next((t for t, n, state in reversed(self.coil_log) if n == no and state == on), time.monotonic())


class SimBus:
    """A pseudo-terminal "RS-485 bus" with simulated I/O modules on it."""

    def __init__(
        self,
        modules: Sequence[SimModule],
        *,
        baudrate: int = 115200,
        parity: str = "N",
        wire_timing: bool = True,
        directory: str | os.PathLike[str] | None = None,
        name: str = "modbus-bus",
    ) -> None:
        units = [m.unit for m in modules]
        if len(set(units)) != len(units):
            raise ValueError("two simulated modules share a unit id")
        self.modules = {m.unit: m for m in modules}
        self.baudrate, self.parity, self.wire_timing = baudrate, parity, wire_timing
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="linli-modbus-")
            directory = self._tmp.name
        self._driver_port = PtyPort(str(Path(directory) / name), self._from_driver)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._module_side: Pty | None = None
        self._server: ModbusSerialServer | None = None
        self._line_free_at = 0.0
        self.bytes_from_master = 0

    def module(self, unit: int) -> SimModule:
        return self.modules[unit]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._module_side = Pty()
        self._loop.add_reader(self._module_side.master, self._from_modules)
        self._server = ModbusSerialServer(
            [m.device for m in self.modules.values()],
            framer=FramerType.RTU,
            port=self._module_side.path,
            baudrate=self.baudrate,
            parity=self.parity,
            ignore_missing_devices=True,
            trace_packet=self._trace,
        )
        core = _SilentCore(self)
        self._server.context = core
        for m in self.modules.values():
            m._core = core
        await self._server.serve_forever(background=True)
        self.replug()

    async def stop(self) -> None:
        self.unplug()
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
        if self._module_side is not None:
            assert self._loop is not None
            self._loop.remove_reader(self._module_side.master)
            self._module_side.close()
            self._module_side = None
        if self._tmp is not None:
            self._tmp.cleanup()

    async def __aenter__(self) -> SimBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the driver's end: plugging and unplugging ---------------------------------------------------------

    @property
    def port(self) -> str:
        return self._driver_port.path

    @port.setter
    def port(self, path: str) -> None:
        self._driver_port.path = path

    def unplug(self) -> None:
        """The cable (or the USB adapter) is pulled: the driver's port goes away."""
        self._driver_port.unplug()

    def replug(self) -> None:
        """Plugged (back) in: a fresh pty under the same path."""
        self._driver_port.plug()

    @property
    def plugged(self) -> bool:
        return self._driver_port.plugged

    @property
    def pty(self) -> str | None:
        """The terminal `port` leads to right now (/dev/pts/N); None while unplugged."""
        pty = self._driver_port.pty
        return pty.path if pty is not None else None

    # -- the wire ------------------------------------------------------------------------------------------

    def inject(self, data: bytes) -> None:
        """Noise on the line, as the driver will read it."""
        self._driver_port.send(data)

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending and data:
            module = self.modules.get(data[0])
            if module is not None and module.corrupt_replies > 0:
                module.corrupt_replies -= 1
                mangled = bytearray(data)
                mangled[len(mangled) // 2] ^= 0x5A  # a data byte: the CRC no longer matches
                return bytes(mangled)
            if module is not None and module.garble_replies > 0:
                module.garble_replies -= 1
                return GARBLE + data
        return data

    def _from_driver(self, data: bytes) -> None:
        if self._module_side is not None:
            self.bytes_from_master += len(data)
            self._carry(data, self._module_side.master)

    def _from_modules(self) -> None:
        assert self._module_side is not None
        data = read_available(self._module_side.master)
        if data:
            self._carry(data, None)

    def _carry(self, data: bytes, fd: int | None) -> None:
        """Deliver bytes to the other end once they would have crossed the line and the frame's
        closing silence passed (that is when a receiver knows the frame has ended)."""
        if not self.wire_timing:
            self._deliver(data, fd)
            return
        assert self._loop is not None
        now = self._loop.time()
        start = max(now, self._line_free_at)
        self._line_free_at = start + len(data) * char_bits(self.parity) / self.baudrate
        self._loop.call_at(self._line_free_at + t35_s(self.baudrate), self._deliver, data, fd)

    def _deliver(self, data: bytes, fd: int | None) -> None:
        if fd is None:  # towards the driver, whose end may have been unplugged meanwhile
            self._driver_port.send(data)
        else:
            write_or_drop(fd, data)


async def ser2net(port: str, host: str = "127.0.0.1", tcp_port: int = 0) -> asyncio.Server:
    """A TCP to serial relay like ser2net's raw mode: each TCP client is joined to the serial `port`.

    For drivers configured with socket://host:port; `server.sockets[0].getsockname()[1]` is the port.
    """

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        loop.add_reader(fd, lambda: (data := read_available(fd)) and writer.write(data))
        try:
            while data := await reader.read(4096):
                write_or_drop(fd, data)
        finally:
            loop.remove_reader(fd)
            os.close(fd)
            writer.close()

    return await asyncio.start_server(relay, host, tcp_port)


# -- the program: `python -m drivers.modbus.simulator` ------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    out = sys.stdout

    def emit(doc: dict[str, Any]) -> None:
        out.write(json.dumps(doc) + "\n")
        out.flush()

    def on_coil(module: SimModule, no: int, on: bool) -> None:
        since = None if module.last_change_at is None else round((time.monotonic() - module.last_change_at) * 1000, 3)
        emit({"event": "coil", "unit": module.unit, "coil": no, "on": on, "since_input_ms": since})

    modules = []
    for spec in args.module or ["1"]:  # UNIT[:INPUTS[:COILS[:ANALOG]]]
        parts = [int(p) for p in spec.split(":")]
        inputs, coils, analog = (parts[1:] + [MAX_POINTS, 8, MAX_POINTS][len(parts) - 1 :])[:3]
        modules.append(SimModule(parts[0], inputs=inputs, coils=coils, analog=analog, on_coil=on_coil))
    link = Path(args.link)
    bus = SimBus(
        modules, baudrate=args.baudrate, wire_timing=not args.no_wire_timing, directory=link.parent, name=link.name
    )
    async with bus:
        units = [m.unit for m in modules]
        emit({"event": "ready", "port": bus.port, "pty": bus.pty, "units": units, "baudrate": args.baudrate})
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        while line := (await stdin.readline()).decode().strip():
            try:
                reply = command(bus, line.split())
            except (KeyError, ValueError, IndexError) as exc:
                emit({"event": "error", "line": line, "error": str(exc)})
                continue
            if reply is None:
                break
            if reply:
                emit(reply)


def command(bus: SimBus, words: list[str]) -> dict[str, Any] | None:
    """One control line; None means quit, {} means done and nothing to say."""
    verb, rest = words[0], words[1:]
    if verb == "quit":
        return None
    if verb == "garbage":  # garbage HEX
        bus.inject(bytes.fromhex(rest[0]))
        return {}
    if verb == "unplug":
        bus.unplug()
        return {}
    if verb == "replug":
        bus.replug()
        return {}
    module = bus.module(int(rest[0]))
    if verb == "input":  # input UNIT NO 0|1
        module.set_input(int(rest[1]), rest[2] == "1")
    elif verb == "analog":  # analog UNIT NO VALUE
        module.set_analog(int(rest[1]), int(rest[2]))
    elif verb == "power":  # power UNIT 0|1 (off: the module goes silent)
        module.present = rest[1] == "1"
    elif verb == "corrupt":  # corrupt UNIT N: the next N answers fail their CRC
        module.corrupt_replies = int(rest[1])
    elif verb == "garble":  # garble UNIT N: noise ahead of the next N answers
        module.garble_replies = int(rest[1])
    elif verb == "coils":  # coils UNIT
        return {"event": "coils", "unit": module.unit, "coils": module.coils}
    else:
        raise ValueError(f"unknown command {verb!r}")
    return {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m drivers.modbus.simulator",
        description="Simulated Modbus RTU I/O modules on a pseudo-terminal. Prints JSON lines; reads commands "
        "on stdin: input UNIT NO 0|1, analog UNIT NO VALUE, power UNIT 0|1, corrupt UNIT N, garble UNIT N, "
        "coils UNIT, "
        "garbage HEX, unplug, replug, quit.",
    )
    parser.add_argument("--module", action="append", help="UNIT[:INPUTS[:COILS[:ANALOG]]], repeatable (default 1)")
    parser.add_argument("--link", default=os.path.join(tempfile.gettempdir(), "linli-modbus"), help="port symlink")
    parser.add_argument("--baudrate", type=int, default=115200)
    parser.add_argument("--no-wire-timing", action="store_true", help="deliver bytes at once, not at line speed")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
