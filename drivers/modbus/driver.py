"""Modbus RTU master for RS-485 I/O modules, on pymodbus's AsyncModbusSerialClient.

One driver per bus. A single task owns the bus (RS-485 is half-duplex: one transaction at a time)
and polls every module back to back, or one cycle per `poll_interval_s` if that is longer; coil
writes queued by `set_output` go ahead of the next poll, so a siren waits at most for the one
transaction in flight. See `model.poll_floor` for what the wire allows.

Supervision: a module that misses `offline_after` polls in a row (no answer, a corrupt or
mismatched answer, an exception response, or the port gone) is reported `device.offline`; it is
then asked only every `offline_retry_s`, so a dead module does not slow down its neighbours with
timeouts. Its first good answer reports `device.online`. Inputs of an offline module are not
reported; the first poll after contact reports every point (its state was unknown) and after that
only changes.

Corrupt frames never become input changes: pymodbus's RTU framer drops frames failing the CRC
(counted here, by wrapping its decoder), answers from the wrong unit are dropped, and an answer is
used only if its function code and length match the request.

The driver knows no rules: it reports `input.changed`, `device.online` and `device.offline`
through `report(type, source, data, severity)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.pdu import ModbusPDU

from drivers.modbus.model import ModuleSpec, PointState, ReportCallback, poll_floor

log = logging.getLogger(__name__)
# pymodbus logs every unanswered request as an error, with a dump of the last frames: a module
# that is off would flood the log once per retry. The driver reports misses itself (events, stats).
logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)

RECONNECT_INITIAL_S = 0.2
RECONNECT_MAX_S = 5.0


class OutputError(Exception):
    """A coil write that cannot be done or was not confirmed; the message says which and why."""


@dataclass
class BusStats:
    transactions: int = 0
    cycles: int = 0
    timeouts: int = 0  # no (valid) answer in time
    crc_errors: int = 0  # frames dropped by the CRC check
    garbage_bytes: int = 0  # bytes skipped while hunting for a frame
    bad_answers: int = 0  # right CRC, wrong function or length
    exceptions: int = 0  # Modbus exception responses
    writes: int = 0
    last_cycle_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ModuleState:
    spec: ModuleSpec
    online: bool = False
    contacted: bool = False  # has answered since start (offline is only reported after contact or start-up)
    missed: int = 0
    last_error: str = ""
    next_try: float = 0.0
    points: dict[str, PointState] = field(default_factory=dict)
    conditions: dict[str, str] = field(default_factory=dict)  # what a change is judged on: state, cut/short
    values: dict[str, int] = field(default_factory=dict)  # latest analog readings
    coils: dict[str, bool] = field(default_factory=dict)  # as last written and confirmed

    def as_dict(self) -> dict[str, Any]:
        return {
            "online": self.online,
            "unit": self.spec.unit,
            "missed": self.missed,
            "last_error": self.last_error,
            "points": dict(self.points),
            "analog": dict(self.values),
            "outputs": dict(self.coils),
        }


@dataclass
class _Write:
    module: ModuleState
    coil: int
    on: bool
    done: asyncio.Future[None]


class _CountingRTU(FramerRTU):
    """pymodbus's RTU framer, counting what it throws away (it only logs it)."""

    def __init__(self, decoder: Any, stats: BusStats) -> None:
        super().__init__(decoder)
        self.stats = stats

    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        used, dev_id, tid, frame = super().decode(data)
        if used and not frame:  # the framer's answer to a failed CRC: drop everything buffered
            self.stats.crc_errors += 1
            self.stats.garbage_bytes += used
        elif frame:
            # The framer consumes the whole buffer; bytes besides the frame were junk.
            self.stats.garbage_bytes += used - (len(frame) + 3)
        return used, dev_id, tid, frame


class _BadAnswer(Exception):
    pass


class ModbusDriver:
    """A Modbus RTU bus with I/O modules. `port` is a serial device or socket://host:port (ser2net)."""

    def __init__(
        self,
        port: str,
        modules: list[ModuleSpec],
        report: ReportCallback,
        *,
        baudrate: int = 115200,
        parity: str = "N",
        stopbits: int = 1,
        timeout_s: float = 0.1,
        poll_interval_s: float = 0.0,
        offline_after: int = 3,
        offline_retry_s: float = 1.0,
        name: str | None = None,
    ) -> None:
        if not modules:
            raise ValueError("a bus needs at least one module")
        units = [m.unit for m in modules]
        if len(set(units)) != len(units):
            raise ValueError("two modules share a unit id on this bus")
        ids = [m.id for m in modules]
        if len(set(ids)) != len(ids):
            raise ValueError("two modules share an id")
        self.port = port
        self.name = name or port
        self.report = report
        self.baudrate, self.parity, self.stopbits = baudrate, parity, stopbits
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        self.offline_after = max(1, offline_after)
        self.offline_retry_s = offline_retry_s
        self.modules: dict[str, ModuleState] = {m.id: ModuleState(m) for m in modules}
        self.stats = BusStats()
        self.floor = poll_floor(modules, baudrate)
        self.connected = False
        self.port_error = ""
        self._writes: asyncio.Queue[_Write] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.failure: BaseException | None = None  # what ended the poll loop, if not stop()
        self.failed = asyncio.Event()
        self._client: AsyncModbusSerialClient | None = None
        self._reconnect_s = RECONNECT_INITIAL_S

    # ---- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"modbus {self.name}")
            self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failure = task.exception()
            self.failed.set()
            log.error("modbus bus %s: the poll loop failed", self.name, exc_info=self.failure)

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping = True
        # pymodbus waits for answers with asyncio.wait_for, which on Python 3.11 can swallow a
        # cancellation that coincides with the answer: cancel until the task has really ended.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        self._close()
        while not self._writes.empty():
            w = self._writes.get_nowait()
            if not w.done.done():
                w.done.set_exception(OutputError(f"{w.module.spec.id}: the driver stopped"))

    async def __aenter__(self) -> ModbusDriver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- queries and commands -------------------------------------------------------------------------

    def is_online(self, module_id: str) -> bool:
        return self.modules[module_id].online

    def state(self, module_id: str) -> dict[str, Any]:
        return self.modules[module_id].as_dict()

    async def set_output(self, module_id: str, coil: int, on: bool) -> None:
        """Write one coil and wait for the module's confirmation; OutputError if that cannot be had."""
        module = self.modules.get(module_id)
        if module is None:
            raise OutputError(f"no Modbus module {module_id!r} on bus {self.name}")
        if not 0 <= coil < module.spec.coils:
            raise OutputError(f"{module_id}: no output do{coil} (the module has {module.spec.coils})")
        if not module.online:
            raise OutputError(f"{module_id}: module is offline ({module.last_error or 'no answer yet'})")
        if self._task is None:
            raise OutputError(f"{module_id}: the driver is not running")
        write = _Write(module, coil, on, asyncio.get_running_loop().create_future())
        self._writes.put_nowait(write)
        self._wake.set()
        await write.done

    # ---- the bus task ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not self._stopping:
                if not self.connected and not await self._connect():
                    await self._sleep_or_write(self._reconnect_s)
                    self._reconnect_s = min(self._reconnect_s * 2, RECONNECT_MAX_S)
                    continue
                started = time.monotonic()
                await self._cycle()
                await asyncio.sleep(0)  # a cycle that found nothing to ask must still let the loop run
                self.stats.cycles += 1
                self.stats.last_cycle_s = time.monotonic() - started
                rest = self.poll_interval_s - self.stats.last_cycle_s
                if rest > 0:
                    await self._sleep_or_write(rest)
                elif not any(m.online or m.next_try <= time.monotonic() for m in self.modules.values()):
                    # Every module is offline and waiting for its retry: nothing to do until then.
                    await self._sleep_or_write(min(m.next_try for m in self.modules.values()) - time.monotonic())
        finally:
            self._close()
            self.port_error = self.port_error or "the driver stopped"
            self._fail_writes()  # nobody is left to do them

    async def _sleep_or_write(self, seconds: float) -> None:
        """Wait, but do queued writes at once; a write is never kept waiting for the poll interval."""
        deadline = time.monotonic() + max(0.0, seconds)
        while (left := deadline - time.monotonic()) > 0:
            self._wake.clear()
            if self._writes.empty():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._wake.wait()
            if self.connected:
                await self._do_writes()
            else:
                self._fail_writes()

    async def _connect(self) -> bool:
        client = AsyncModbusSerialClient(
            self.port,
            framer=FramerType.RTU,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            timeout=self.timeout_s,
            retries=0,  # a missed poll is counted here; the next cycle is the retry
            reconnect_delay=0,  # reconnection is ours, with the port's state reported
        )
        client.ctx.framer = _CountingRTU(client.ctx.framer.decoder, self.stats)
        try:
            ok = await client.connect()
        except Exception as exc:  # pyserial raises its own errors for a missing or busy port
            ok, self.port_error = False, str(exc)
        if not ok:
            client.close()
            self.port_error = self.port_error or f"cannot open {self.port}"
            self._missed_all(f"port: {self.port_error}")
            self._fail_writes()
            return False
        self._client, self.connected, self.port_error = client, True, ""
        self._reconnect_s = RECONNECT_INITIAL_S
        return True

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self.connected = False

    def _check_link(self) -> bool:
        """pymodbus drops its transport when the port fails (cable or adapter pulled)."""
        if self._client is not None and self._client.connected:
            return True
        self._close()
        self.port_error = "port closed"
        self._missed_all(f"port: {self.port_error}")
        self._fail_writes()
        return False

    async def _cycle(self) -> None:
        now = time.monotonic()
        for module in self.modules.values():
            await self._do_writes()
            if not self._check_link():
                return
            if not module.online and module.next_try > now:
                continue
            await self._poll(module)
        await self._do_writes()
        self._check_link()

    async def _do_writes(self) -> None:
        while not self._writes.empty():
            w = self._writes.get_nowait()
            if w.done.done():  # the caller gave up waiting
                continue
            spec = w.module.spec
            try:
                rr = await self._execute(
                    self._require_client().write_coil(spec.coil_address + w.coil, w.on, device_id=spec.unit), 5
                )
                bits = getattr(rr, "bits", None)
                if not bits or bool(bits[0]) != w.on:
                    raise _BadAnswer("the module did not echo the write")
            except (ModbusException, _BadAnswer, OutputError) as exc:
                w.done.set_exception(OutputError(f"{spec.id}: do{w.coil} not confirmed: {exc}"))
                continue
            self.stats.writes += 1
            w.module.coils[f"do{w.coil}"] = w.on
            w.done.set_result(None)

    def _fail_writes(self) -> None:
        while not self._writes.empty():
            w = self._writes.get_nowait()
            if not w.done.done():
                w.done.set_exception(OutputError(f"{w.module.spec.id}: bus {self.name} is down ({self.port_error})"))

    def _require_client(self) -> AsyncModbusSerialClient:
        if self._client is None:
            raise OutputError("the port is closed")
        return self._client

    async def _execute(self, call: Any, function_code: int) -> ModbusPDU:
        """Run one transaction; anything but a well-formed answer to this request raises."""
        self.stats.transactions += 1
        try:
            rr: ModbusPDU = await call
        except ModbusException:
            self.stats.timeouts += 1
            raise
        if rr.isError():
            self.stats.exceptions += 1
            raise _BadAnswer(f"exception code {getattr(rr, 'exception_code', '?')}")
        if rr.function_code != function_code:
            self.stats.bad_answers += 1
            raise _BadAnswer(f"answer to function {rr.function_code}, asked {function_code}")
        return rr

    async def _poll(self, module: ModuleState) -> None:
        spec, client = module.spec, self._require_client()
        readings: dict[str, tuple[PointState, str]] = {}
        values: dict[str, int] = {}
        try:
            if spec.inputs:
                rr = await self._execute(
                    client.read_discrete_inputs(spec.di_address, count=spec.inputs, device_id=spec.unit), 2
                )
                if len(rr.bits) < spec.inputs:
                    self.stats.bad_answers += 1
                    raise _BadAnswer(f"{len(rr.bits)} inputs in the answer, asked {spec.inputs}")
                for i in range(spec.inputs):
                    readings[f"di{i}"] = ("active" if rr.bits[i] else "normal", "")
            if spec.analog:
                rr = await self._execute(
                    client.read_input_registers(spec.ai_address, count=spec.analog_count, device_id=spec.unit), 4
                )
                if len(rr.registers) != spec.analog_count:
                    self.stats.bad_answers += 1
                    raise _BadAnswer(f"{len(rr.registers)} registers in the answer, asked {spec.analog_count}")
                for i, thresholds in spec.analog.items():
                    values[f"ai{i}"] = rr.registers[i]
                    readings[f"ai{i}"] = thresholds.classify(rr.registers[i])
            if not spec.inputs and not spec.analog:
                # An output-only module (siren relays) is supervised by reading its coils back.
                rr = await self._execute(client.read_coils(spec.coil_address, count=spec.coils, device_id=spec.unit), 1)
                if len(rr.bits) < spec.coils:
                    self.stats.bad_answers += 1
                    raise _BadAnswer(f"{len(rr.bits)} coils in the answer, asked {spec.coils}")
                module.coils.update({f"do{i}": bool(rr.bits[i]) for i in range(spec.coils)})
        except (ModbusException, _BadAnswer) as exc:
            reason = str(exc) if isinstance(exc, _BadAnswer) else "no answer"
            self._missed(module, reason)
            return
        self._answered(module, readings, values)

    # ---- supervision and reporting ----------------------------------------------------------------------

    def _missed_all(self, reason: str) -> None:
        for module in self.modules.values():
            self._missed(module, reason)

    def _missed(self, module: ModuleState, reason: str) -> None:
        module.missed += 1
        module.last_error = reason
        if module.online and module.missed >= self.offline_after:
            module.online = False
            self.report("device.offline", module.spec.id, {"reason": reason, "missed": module.missed}, "warning")
        elif not module.online and not module.contacted and module.missed == self.offline_after:
            # Never answered since start: say so once, so a miswired module is not silent trouble.
            self.report("device.offline", module.spec.id, {"reason": reason, "missed": module.missed}, "warning")
        if not module.online and module.missed >= self.offline_after:
            module.next_try = time.monotonic() + self.offline_retry_s

    def _answered(
        self, module: ModuleState, readings: dict[str, tuple[PointState, str]], values: dict[str, int]
    ) -> None:
        if not module.online:
            was_lost = module.contacted
            module.online = module.contacted = True
            data = {"reason": "answering again" if was_lost else "first contact", "unit": module.spec.unit}
            self.report("device.online", module.spec.id, data, "info")
        module.missed, module.last_error, module.next_try = 0, "", 0.0
        module.values.update(values)
        for point, (state, detail) in readings.items():
            # A new value within the same band is no change; a cut loop becoming a short is.
            condition = f"{state}:{detail}" if detail in ("cut", "short") else state
            if module.conditions.get(point) == condition:
                continue
            module.conditions[point] = condition
            module.points[point] = state
            data: dict[str, Any] = {"point": point, "state": state}
            if detail:
                data["detail"] = detail
            # Zone semantics are the alarm panel's; for the driver only a supervision problem is a warning.
            self.report("input.changed", module.spec.id, data, "warning" if state in ("tamper", "fault") else "info")
