"""The Modbus I/O module under test, for zone_walk and siren_test: the target, the simulator standing in
for it, a pymodbus client on it, and the `identify` check (the profile's register map answers).

The installer tools talk to the module with pymodbus directly (read back coils, read the settings
registers), not through the daemon's driver; zone_walk uses drivers.modbus.ModbusDriver for the walk
itself, so inputs and end-of-line bands are judged exactly as the daemon judges them.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

import drivers.modbus  # noqa: F401  (quietens pymodbus's own error log of every unanswered request)
from drivers.modbus.profile import ModbusIoProfile
from drivers.modbus.simulator import SimBus, SimModule
from hil_tests.alarm_common import UsageError
from hil_tests.profiles import LoadedProfile
from hil_tests.report import CheckFailed

DEFAULT_PROFILE = "generic-modbus-io-16"
SIM_BAUD = 115200  # the simulator runs at the alarm's baud whatever the profile's factory setting


@dataclass(frozen=True)
class Target:
    port: str | None  # None: the simulator
    unit: int
    baud: int
    timeout_s: float | None = None  # how long the module may take to answer; None: from the profile

    def describe(self) -> dict[str, Any]:
        return {"port": self.port or "simulator", "unit": self.unit, "baud": self.baud}

    @property
    def where(self) -> str:
        return f"unit {self.unit} on {self.port or 'a simulated bus'} ({self.baud} baud)"


def add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", help="serial port of the RS-485 adapter, or socket://host:port (ser2net); "
                   "without it a simulated module is used")
    p.add_argument("--unit", type=int, help="the module's Modbus unit id (default: the profile's factory unit)")
    p.add_argument("--baud", type=int, help="baud rate (default: the profile's)")
    p.add_argument("--timeout-ms", type=float, help="how long the module may take to answer (default: from the "
                   "profile's turnaround and the baud rate; more for ser2net over a slow network)")
    p.add_argument("--profile", default=DEFAULT_PROFILE,
                   help=f"firmware profile: a YAML file or an id in firmware_profiles/ (default {DEFAULT_PROFILE})")


def target_from_args(args: argparse.Namespace, loaded: LoadedProfile) -> Target:
    profile = loaded.profile
    assert isinstance(profile, ModbusIoProfile)
    tr = profile.transport
    unit = tr.units.default if args.unit is None else args.unit
    if args.timeout_ms is not None and not 5 <= args.timeout_ms <= 5000:
        raise UsageError("--timeout-ms must be between 5 and 5000")
    timeout_s = None if args.timeout_ms is None else args.timeout_ms / 1000
    if not tr.units.min <= unit <= tr.units.max:
        raise UsageError(f"unit {unit} is outside this profile's range {tr.units.min}-{tr.units.max}")
    if args.port is None:
        return Target(None, unit, args.baud or SIM_BAUD, timeout_s)
    baud = tr.baud if args.baud is None else args.baud
    if baud not in tr.allowed_bauds:
        raise UsageError(f"baud {baud} is not one this module supports: {', '.join(map(str, tr.allowed_bauds))}")
    return Target(args.port, unit, baud, timeout_s)


def sim_bus(profile: ModbusIoProfile, unit: int, module: type[SimModule] = SimModule) -> SimBus:
    regs = profile.registers
    dut = module(unit, inputs=regs.discrete_inputs.count, analog=regs.input_registers.count, coils=regs.coils.count)
    return SimBus([dut], baudrate=SIM_BAUD)


def answer_timeout_s(profile: ModbusIoProfile, target: Target) -> float:
    """`--timeout-ms`, or long enough for the longest answer of the map (16 registers) and the
    module's turnaround. The simulator shares the CPU with everything else on the machine: a second."""
    if target.timeout_s is not None:
        return target.timeout_s
    simulated, baud = target.port is None, target.baud
    longest = (8 + 5 + 2 * max(1, profile.registers.input_registers.count)) * 11 / baud
    return max(1.0 if simulated else 0.1, 2 * longest + profile.transport.turnaround_ms / 1000 + 0.05)


class Link:
    """A pymodbus client on the module under test; every request names the module's unit."""

    def __init__(self, target: Target, profile: ModbusIoProfile, port: str) -> None:
        self.target, self.profile = target, profile
        timeout = answer_timeout_s(profile, target)
        self.client = AsyncModbusSerialClient(
            port, framer=FramerType.RTU, baudrate=target.baud, timeout=timeout,
            retries=1, reconnect_delay=0)
        self.answer_s: list[float] = []

    async def open(self) -> str | None:
        """None when the port is open; otherwise why not."""
        try:
            if await self.client.connect():
                return None
        except Exception as exc:  # pyserial's own errors for a missing or busy port
            return f"cannot open {self.target.port}: {exc}"
        return f"cannot open {self.target.port or 'the simulator'}"

    def close(self) -> None:
        self.client.close()

    async def _call(self, what: str, call: Any) -> ModbusPDU:
        t0 = time.monotonic()
        try:
            rr: ModbusPDU = await call
        except ModbusException:
            raise CheckFailed(f"{what}: no answer from {self.target.where}",
                              {"hint": "check the A/B wiring, the unit id and the baud rate"}) from None
        if rr.isError():
            code = getattr(rr, "exception_code", "?")
            raise CheckFailed(f"{what}: refused with Modbus exception {code}",
                              {"hint": "exception 2 (illegal address): the module's register map is not the "
                                       "profile's; is this the right profile?"})
        self.answer_s.append(time.monotonic() - t0)
        return rr

    async def read_coils(self, first: int, count: int) -> list[bool]:
        addr = self.profile.registers.coils.address + first
        rr = await self._call(f"reading coils do{first}..", self.client.read_coils(
            addr, count=count, device_id=self.target.unit))
        if len(rr.bits) < count:
            raise CheckFailed(f"the module answered {len(rr.bits)} coils, asked {count}")
        return [bool(b) for b in rr.bits[:count]]

    async def write_coil(self, no: int, on: bool) -> None:
        addr = self.profile.registers.coils.address + no
        rr = await self._call(f"switching do{no} {'on' if on else 'off'}", self.client.write_coil(
            addr, on, device_id=self.target.unit))
        bits = getattr(rr, "bits", None)
        if not bits or bool(bits[0]) != on:
            raise CheckFailed(f"do{no}: the module did not echo the write")

    async def identify(self) -> tuple[str, dict[str, Any]]:
        """Each table of the profile's register map reads at its size; the firmware register if any."""
        regs, unit, c = self.profile.registers, self.target.unit, self.client
        details: dict[str, Any] = {}
        if regs.discrete_inputs.count:
            rr = await self._call("reading the discrete inputs", c.read_discrete_inputs(
                regs.discrete_inputs.address, count=regs.discrete_inputs.count, device_id=unit))
            details["discrete_inputs"] = regs.discrete_inputs.count
            details["inputs_active"] = [f"di{i}" for i, b in enumerate(rr.bits[:regs.discrete_inputs.count]) if b]
        if regs.input_registers.count:
            rr = await self._call("reading the analog inputs", c.read_input_registers(
                regs.input_registers.address, count=regs.input_registers.count, device_id=unit))
            if len(rr.registers) != regs.input_registers.count:
                raise CheckFailed(f"{len(rr.registers)} analog inputs answered, the profile has "
                                  f"{regs.input_registers.count}")
            details["analog_inputs"] = regs.input_registers.count
            details["analog_values"] = list(rr.registers)
        if regs.coils.count:
            on = await self.read_coils(0, regs.coils.count)
            details["coils"] = regs.coils.count
            details["coils_on"] = [f"do{i}" for i, b in enumerate(on) if b]
        firmware = next((r for r in regs.holding_registers if r.name == "firmware_version"), None)
        if firmware is not None:
            # Not every module has it where the generic profile says: recorded, never a failure.
            try:
                rr = await self._call("reading firmware_version", c.read_holding_registers(
                    firmware.address, count=1, device_id=unit))
                details["firmware"] = f"{rr.registers[0] >> 8}.{rr.registers[0] & 0xFF}"
            except CheckFailed as exc:
                details["firmware"] = None
                details["firmware_note"] = exc.message
        details["answer_ms_max"] = round(max(self.answer_s, default=0.0) * 1000, 1)
        parts = [f"{n} {what}" for what, n in (("inputs", details.get("discrete_inputs")),
                                               ("analog inputs", details.get("analog_inputs")),
                                               ("coils", details.get("coils"))) if n]
        fw = f", firmware {details['firmware']}" if details.get("firmware") else ""
        return f"unit {unit} answers: {', '.join(parts)}{fw}", details
