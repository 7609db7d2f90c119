"""OSDP reader simulator: libosdp PeripheralDevices on the far end of a pseudo-terminal.

It speaks real OSDP (libosdp on both ends), so the driver under test cannot tell it from readers on
an RS-485 bus. `SimBus` owns a pty pair and a stable symlink to its terminal end (the "port" the
driver opens, like /dev/serial/by-id/...); the readers sit on the other end and each sees every
byte on the bus, as on a multi-drop line. Everything runs on the asyncio event loop.

    bus = SimBus([SimReader(1, key=k), SimReader(2, display=True)])
    await bus.start()
    ... OsdpDriver(bus.port, ...) ...
    bus.reader(1).present_card(12345, facility=7)
    await bus.reader(1).wait_output(0, True)

Faults for tests: `bus.unplug()` / `bus.replug()` (the pty goes away and comes back under the same
path), `reader.mute` (a reader stops answering), `bus.inject(noise)`, `reader.corrupt_replies`.

Also a program (`python -m drivers.osdp.simulator --help`) for `linli demo` and the benchmark.
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
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import osdp_sys

from drivers.osdp import wiegand
from drivers.pty_port import PtyPort

TICK = 0.02  # readers must be refreshed at least every 50 ms
EVENT_BACKLOG = 64
KEY_CODES = {"#": 0x0D, "*": 0x7F}  # what OSDP readers send for Enter and Clear

INPUT_DPS = 0  # door position switch
INPUT_REX = 1  # request-to-exit button
OUTPUT_LOCK = 0


class _ReaderChannel:
    """The libosdp channel of one simulated reader: bytes from the bus in, replies out to the bus."""

    def __init__(self, reader: SimReader) -> None:
        self.reader = reader
        self.rx = bytearray()

    def read(self, max_bytes: int) -> bytes:
        data = bytes(self.rx[:max_bytes])
        del self.rx[:max_bytes]
        return data

    def write(self, buf: bytes) -> int:
        bus = self.reader.bus
        if bus is None or self.reader.mute:
            return len(buf)  # nobody hears a disconnected reader
        if self.reader.corrupt_replies > 0:
            self.reader.corrupt_replies -= 1
            mangled = bytearray(buf)
            mangled[len(mangled) // 2] ^= 0x5A
            buf = bytes(mangled)
        bus.send(buf)
        return len(buf)

    def flush(self) -> None:
        self.rx.clear()


@dataclass
class _Output:
    permanent: bool = False
    on: bool = False
    timer: asyncio.TimerHandle | None = None


class SimReader:
    """One OSDP reader: keypad, card reader, LED, buzzer, optional display, inputs and outputs."""

    def __init__(
        self,
        address: int,
        *,
        key: bytes | None = None,
        install_mode: bool = False,
        outputs: int = 1,
        inputs: int = 2,
        leds: int = 1,
        buzzer: bool = True,
        display: bool = False,
        reject: Collection[str] = (),
        serial_number: int | None = None,
        on_output: Callable[[SimReader, int, bool], None] | None = None,
    ) -> None:
        self.address = address
        self.key = key
        self.install_mode = install_mode
        self.n_outputs, self.n_inputs, self.n_leds = outputs, inputs, leds
        self.has_buzzer, self.has_display = buzzer, display
        self.reject = {name.lower() for name in reject}  # commands to NAK (firmware that claims too much)
        self.serial_number = serial_number if serial_number is not None else 0x51A0000 + address
        self.on_output = on_output
        self.bus: SimBus | None = None
        self.mute = False
        self.corrupt_replies = 0
        # Observable state
        self.outputs: list[_Output] = [_Output() for _ in range(outputs)]
        self.output_log: deque[tuple[float, int, bool]] = deque(maxlen=1024)
        self.inputs = [False] * inputs
        self.tamper = False
        self.power_ok = True
        self.leds: dict[int, dict[str, Any]] = {}
        self.buzzes: deque[dict[str, Any]] = deque(maxlen=256)
        self.texts: deque[str] = deque(maxlen=256)
        self.commands: deque[dict[str, Any]] = deque(maxlen=256)
        self.last_card_at: float | None = None
        self._events: deque[dict[str, Any]] = deque(maxlen=EVENT_BACKLOG)
        self._changed = asyncio.Condition()  # binds to the running loop on first use
        self._was_online = False
        self.pd: Any = None
        self.channel = _ReaderChannel(self)
        self.power_cycle()

    # -- libosdp PeripheralDevice ------------------------------------------------------------------

    def _capabilities(self) -> list[dict[str, int]]:
        caps = [
            (osdp_sys.CAP_CONTACT_STATUS_MONITORING, 1, self.n_inputs),
            (osdp_sys.CAP_OUTPUT_CONTROL, 1, self.n_outputs),
            (osdp_sys.CAP_CARD_DATA_FORMAT, 1, 1),
            (osdp_sys.CAP_READER_LED_CONTROL, 1, self.n_leds),
            (osdp_sys.CAP_READER_AUDIBLE_OUTPUT, 1 if self.has_buzzer else 0, 1 if self.has_buzzer else 0),
            (osdp_sys.CAP_READER_TEXT_OUTPUT, 1 if self.has_display else 0, 1 if self.has_display else 0),
            (osdp_sys.CAP_CHECK_CHARACTER_SUPPORT, 1, 0),
            (osdp_sys.CAP_READERS, 0, 1),
        ]  # libosdp adds the secure channel capability itself: its PDs always offer it
        return [{"function_code": fc, "compliance_level": cl, "num_items": n} for fc, cl, n in caps]

    def power_cycle(self) -> None:
        """A fresh PD context, as after the reader lost power; the key survives (NV storage)."""
        flags = osdp_sys.FLAG_INSTALL_MODE if self.install_mode and self.key is None else 0
        info = {
            "name": f"sim-{self.address}",
            "address": self.address,
            "flags": flags,
            "scbk": self.key,  # None: libosdp's PD then accepts the default key SCBK-D only
            "channel": self.channel,
            "version": 1,
            "model": 2,
            "vendor_code": 0x4C494E,  # "LIN"
            "serial_number": self.serial_number,
            "firmware_version": 0x010000,
        }
        self.pd = osdp_sys.PeripheralDevice(info, capabilities=self._capabilities())
        self.pd.set_command_callback(self._on_command)
        self.channel.rx.clear()
        self._events.clear()
        self._was_online = False
        for out in self.outputs:
            if out.timer is not None:
                out.timer.cancel()
        self.outputs = [_Output() for _ in range(self.n_outputs)]

    def refresh(self) -> None:
        if self.mute:
            return
        # Hand queued events to libosdp before it answers the poll that may be waiting, or
        # they would ride only on the next poll, 50 ms later.
        self._submit_events()
        self.pd.refresh()
        online = bool(self.pd.is_online())
        if online and not self._was_online:
            # Tell the CP the current state on connect: it never asks (see the driver's notes).
            self._queue_status()
            self._submit_events()
        self._was_online = online

    def _submit_events(self) -> None:
        while self._events and self.pd.submit_event(self._events[0]):
            self._events.popleft()

    @property
    def online(self) -> bool:
        return bool(self.pd.is_online())

    @property
    def sc_active(self) -> bool:
        return bool(self.pd.is_sc_active())

    def _on_command(self, cmd: dict[str, Any]) -> tuple[int, None]:
        self.commands.append(cmd)
        kind = cmd.get("command")
        name = {
            osdp_sys.CMD_OUTPUT: "output",
            osdp_sys.CMD_LED: "led",
            osdp_sys.CMD_BUZZER: "buzzer",
            osdp_sys.CMD_TEXT: "text",
            osdp_sys.CMD_KEYSET: "keyset",
            osdp_sys.CMD_STATUS: "status",
        }.get(kind, "other")
        if name in self.reject:
            return -1, None
        if name == "output":
            self._output_command(cmd["output_no"], cmd["control_code"], cmd["timer_count"])
        elif name == "led":
            self.leds[cmd.get("led_number", 0)] = dict(cmd)
        elif name == "buzzer":
            self.buzzes.append(dict(cmd))
        elif name == "text":
            self.texts.append(str(cmd.get("data", "")))
        elif name == "keyset":
            self.key = bytes(cmd["data"])  # "NV storage": used from the next power cycle on
        self._notify()
        return 0, None

    def _output_command(self, no: int, code: int, timer: int) -> None:
        if not 0 <= no < len(self.outputs):
            return
        out = self.outputs[no]
        if code in (1, 2, 3, 4):
            out.permanent = code in (2, 4)
            if code in (1, 2) or out.timer is None:
                if out.timer is not None:
                    out.timer.cancel()
                    out.timer = None
                self._set_output(no, out.permanent)
        elif code in (5, 6) and timer > 0:
            if out.timer is not None:
                out.timer.cancel()
            self._set_output(no, code == 5)
            out.timer = asyncio.get_running_loop().call_later(timer / 10, self._output_timer_done, no)

    def _output_timer_done(self, no: int) -> None:
        out = self.outputs[no]
        out.timer = None
        self._set_output(no, out.permanent)

    def _set_output(self, no: int, on: bool) -> None:
        out = self.outputs[no]
        if out.on == on:
            return
        out.on = on
        self.output_log.append((time.monotonic(), no, on))
        if self.on_output is not None:
            self.on_output(self, no, on)
        self._notify()

    # -- what people and the door do -------------------------------------------------------------

    def present_card(self, card_number: int, facility: int = 0, fmt: str = "H10301") -> None:
        value, length = wiegand.encode(fmt, facility, card_number)
        self.present_bits(value, length)

    def present_bits(self, value: int, length: int) -> None:
        """A raw Wiegand read (any length, parity as given): for raw formats and bad-parity tests."""
        self.last_card_at = time.monotonic()
        self._events.append(
            {
                "event": osdp_sys.EVENT_CARDREAD,
                "reader_no": 0,
                "format": osdp_sys.CARD_FMT_RAW_WIEGAND,
                "direction": 0,
                "length": length,
                "data": wiegand.bits_to_bytes(value, length),
            }
        )

    def press_keys(self, keys: str) -> None:
        """Digits, '#' (Enter) and '*' (Clear), sent as the key codes OSDP readers use."""
        data = bytes(KEY_CODES.get(k, ord(k)) for k in keys)
        self._events.append({"event": osdp_sys.EVENT_KEYPRESS, "reader_no": 0, "data": data})

    def set_input(self, no: int, active: bool) -> None:
        self.inputs[no] = active
        self._events.append(self._status(osdp_sys.STATUS_REPORT_INPUT))

    def set_tamper(self, active: bool) -> None:
        self.tamper = active
        self._events.append(self._status(osdp_sys.STATUS_REPORT_LOCAL))

    def set_power(self, ok: bool) -> None:
        self.power_ok = ok
        self._events.append(self._status(osdp_sys.STATUS_REPORT_LOCAL))

    def _status(self, kind: int) -> dict[str, Any]:
        if kind == osdp_sys.STATUS_REPORT_INPUT:
            report = bytes(int(v) for v in self.inputs)
        else:
            report = bytes([int(self.tamper), int(not self.power_ok)])
        return {"event": osdp_sys.EVENT_STATUS, "type": kind, "report": report}

    def _queue_status(self) -> None:
        self._events.appendleft(self._status(osdp_sys.STATUS_REPORT_LOCAL))
        if self.n_inputs:
            self._events.appendleft(self._status(osdp_sys.STATUS_REPORT_INPUT))

    @property
    def pending_events(self) -> int:
        return len(self._events)

    # -- waiting, for tests --------------------------------------------------------------------------

    def _notify(self) -> None:
        asyncio.get_running_loop().create_task(_notify_all(self._changed))

    async def wait_for(self, predicate: Callable[[], bool], within: float = 2.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_output(self, no: int, on: bool, within: float = 2.0) -> float:
        """Wait until output `no` is `on`; returns when it switched (time.monotonic())."""
        await self.wait_for(lambda: self.outputs[no].on == on, within)
        return next(t for t, n, state in reversed(self.output_log) if n == no and state == on)


async def _notify_all(cond: asyncio.Condition) -> None:
    async with cond:
        cond.notify_all()


class SimBus:
    """A pseudo-terminal "RS-485 bus" with simulated readers on it."""

    def __init__(self, readers: Sequence[SimReader], *, directory: str | os.PathLike[str] | None = None) -> None:
        addresses = [r.address for r in readers]
        if len(set(addresses)) != len(addresses):
            raise ValueError("two simulated readers share an address")
        self.readers = {r.address: r for r in readers}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="linli-osdp-")
            directory = self._tmp.name
        self._port = PtyPort(str(Path(directory) / "osdp-bus"), self._from_cp)
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.bytes_from_cp = 0

    @property
    def port(self) -> str:
        return self._port.path

    @port.setter
    def port(self, path: str) -> None:
        self._port.path = path

    def reader(self, address: int) -> SimReader:
        return self.readers[address]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for r in self.readers.values():
            r.bus = self
        self._port.plug()
        self._tick()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._port.unplug()
        for r in self.readers.values():
            r.bus = None
        if self._tmp is not None:
            self._tmp.cleanup()

    async def __aenter__(self) -> SimBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the pty ------------------------------------------------------------------------------------

    def unplug(self) -> None:
        """The bus cable (or the USB adapter) is pulled: the driver's port goes away."""
        self._port.unplug()

    def replug(self) -> None:
        """Plugged back in: a new pty under the same path; readers power up fresh."""
        for r in self.readers.values():
            r.power_cycle()
        self._port.plug()

    @property
    def plugged(self) -> bool:
        return self._port.plugged

    def send(self, data: bytes) -> None:
        self._port.send(data)

    def inject(self, data: bytes) -> None:
        """Noise on the line, as the CP will read it."""
        self.send(data)

    def _from_cp(self, data: bytes) -> None:
        self.bytes_from_cp += len(data)
        for r in self.readers.values():
            if not r.mute:
                r.channel.rx += data
        self._refresh()

    def _refresh(self) -> None:
        for r in self.readers.values():
            r.refresh()

    def _tick(self) -> None:
        self._refresh()
        assert self._loop is not None
        self._timer = self._loop.call_later(TICK, self._tick)


# -- the program: `python -m drivers.osdp.simulator` ------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    keys = None
    if args.keys:
        from drivers.osdp.keys import KeyStore

        keys = KeyStore(args.keys)
    out = sys.stdout

    def emit(doc: dict[str, Any]) -> None:
        out.write(json.dumps(doc) + "\n")
        out.flush()

    def on_output(reader: SimReader, no: int, on: bool) -> None:
        now = time.monotonic()
        since = None if reader.last_card_at is None else round((now - reader.last_card_at) * 1000, 3)
        emit({"event": "output", "address": reader.address, "output": no, "on": on, "since_card_ms": since})

    readers = []
    for spec in args.reader:
        address, _, reader_id = spec.partition(":")
        key = keys.get(reader_id) if keys is not None and reader_id else None
        readers.append(
            SimReader(int(address), key=key, display=args.display, install_mode=args.install_mode, on_output=on_output)
        )
    link = Path(args.link)
    bus = SimBus(readers, directory=link.parent)
    bus.port = str(link)
    async with bus:
        emit({"event": "ready", "port": bus.port, "readers": [r.address for r in readers]})
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        while line := (await stdin.readline()).decode().strip():
            try:
                if not _command(bus, line.split()):
                    break
            except (KeyError, ValueError, IndexError) as exc:
                emit({"event": "error", "line": line, "error": str(exc)})


def _command(bus: SimBus, words: list[str]) -> bool:
    verb, rest = words[0], words[1:]
    if verb == "quit":
        return False
    reader = bus.reader(int(rest[0]))
    if verb == "card":  # card ADDRESS NUMBER [FACILITY] [FORMAT]
        facility = int(rest[2]) if len(rest) > 2 else 0
        reader.present_card(int(rest[1]), facility, rest[3] if len(rest) > 3 else "H10301")
    elif verb == "keys":  # keys ADDRESS 1234#
        reader.press_keys(rest[1])
    elif verb == "input":  # input ADDRESS NO 0|1
        reader.set_input(int(rest[1]), rest[2] == "1")
    elif verb == "tamper":  # tamper ADDRESS 0|1
        reader.set_tamper(rest[1] == "1")
    else:
        raise ValueError(f"unknown command {verb!r}")
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m drivers.osdp.simulator",
        description="Simulated OSDP readers on a pseudo-terminal. Commands on stdin: "
        "'card ADDR NUMBER [FACILITY] [FORMAT]', 'keys ADDR 1234#', 'input ADDR NO 0|1', 'tamper ADDR 0|1', "
        "'quit'. Prints JSON lines (ready, output changes with the time since the last card).",
    )
    parser.add_argument("--link", required=True, help="path of the symlink the driver opens as its port")
    parser.add_argument(
        "--reader", action="append", required=True, help="ADDRESS or ADDRESS:READER_ID (the id names its key)"
    )
    parser.add_argument("--keys", help="key file (the driver's format) with the readers' SCBKs")
    parser.add_argument("--display", action="store_true", help="readers have a text display")
    parser.add_argument("--install-mode", action="store_true", help="readers without a key accept SCBK-D")
    args = parser.parse_args(argv)
    osdp_sys.set_loglevel(osdp_sys.LOG_ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
