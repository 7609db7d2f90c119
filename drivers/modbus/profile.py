"""The schema of a Modbus RTU I/O module's firmware profile (kind: modbus_io_module). Loaded by hil_tests.profiles.

A profile is the module's register map as the driver reads it (drivers/modbus/model.py), its
serial settings, default end-of-line thresholds and the commissioning plan.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.modbus.model import MAX_POINTS, MAX_UNIT, MIN_UNIT

Text = Annotated[str, Field(min_length=1, max_length=2000)]
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="lower-case id: a-z 0-9 -")]
CheckName = Literal["identify", "inputs", "analog", "outputs", "offline"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Units(_Strict):
    min: int = Field(MIN_UNIT, ge=MIN_UNIT, le=MAX_UNIT)
    max: int = Field(MAX_UNIT, ge=MIN_UNIT, le=MAX_UNIT)
    default: int = Field(1, ge=MIN_UNIT, le=MAX_UNIT, description="the unit id the module ships with")

    @model_validator(mode="after")
    def _inside(self) -> Units:
        if not self.min <= self.default <= self.max:
            raise ValueError(f"default unit {self.default} is outside {self.min}-{self.max}")
        return self


class Transport(_Strict):
    medium: Literal["rs485"]
    duplex: Literal["half"] = "half"
    baud: Literal[9600, 19200, 38400, 57600, 115200] = Field(description="factory baud rate")
    allowed_bauds: list[Literal[9600, 19200, 38400, 57600, 115200]] = Field(min_length=1)
    framing: Literal["8N1", "8E1", "8O1", "8N2"] = "8N1"
    units: Units = Field(default_factory=Units)
    turnaround_ms: float = Field(5.0, gt=0, le=1000, description="the longest the module takes to answer")

    @model_validator(mode="after")
    def _baud_allowed(self) -> Transport:
        if self.baud not in self.allowed_bauds:
            raise ValueError(f"baud {self.baud} is not among allowed_bauds")
        return self


class Block(_Strict):
    """A run of points in one Modbus table: `count` points from `address` (0-based, as on the wire)."""

    address: int = Field(0, ge=0, le=65535)
    count: int = Field(ge=0, le=MAX_POINTS)


class AnalogBlock(Block):
    unit: Literal["ohms", "raw"] = "ohms"  # what a register holds; EOL thresholds are in the same unit


class ConfigRegister(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    address: int = Field(ge=0, le=65535)
    writable: bool = False
    description: Text


class Registers(_Strict):
    discrete_inputs: Block  # FC 2: zones di0..
    input_registers: AnalogBlock  # FC 4: analog inputs ai0..
    coils: Block  # FC 1 / 5: outputs do0..
    holding_registers: list[ConfigRegister] = Field(default_factory=list)  # FC 3 / 6: the module's settings


class Eol(_Strict):
    short_below: int = Field(500, ge=0, le=65535)
    normal_below: int = Field(1500, ge=0, le=65535)
    alarm_below: int = Field(3000, ge=0, le=65535)

    @model_validator(mode="after")
    def _ordered(self) -> Eol:
        if not self.short_below < self.normal_below < self.alarm_below:
            raise ValueError("thresholds must rise: short_below < normal_below < alarm_below")
        return self


class Flashing(_Strict):
    supported: bool
    methods: list[Literal["vendor_tool"]] = Field(default_factory=list)
    instructions: Text


class Firmware(_Strict):
    images: list[dict[str, str]] = Field(default_factory=list)
    flashing: Flashing


class PlannedCheck(_Strict):
    check: CheckName
    required: bool = True
    timeout_s: float = Field(30.0, gt=0, le=600)


class Commissioning(_Strict):
    checks: list[PlannedCheck] = Field(min_length=1)


class ModbusIoProfile(_Strict):
    kind: Literal["modbus_io_module"]
    id: Ident
    vendor: Text
    model: Text
    description: Text | None = None
    transport: Transport
    protocol: Literal["modbus_rtu"] = "modbus_rtu"
    registers: Registers
    eol: Eol = Field(default_factory=Eol)
    firmware: Firmware
    commissioning: Commissioning

    @model_validator(mode="after")
    def _plan_fits_registers(self) -> ModbusIoProfile:
        regs = self.registers
        lacking = {
            "inputs": regs.discrete_inputs.count == 0,
            "analog": regs.input_registers.count == 0,
            "outputs": regs.coils.count == 0,
        }
        names = [c.check for c in self.commissioning.checks]
        for check in names:
            if names.count(check) > 1:
                raise ValueError(f"commissioning: {check} is listed twice")
            if lacking.get(check):
                raise ValueError(f"commissioning: tests {check}, which the register map does not have")
        return self
