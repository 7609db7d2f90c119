"""The site file's `modbus:` section (pydantic; edge.config.SiteConfig includes it).

modbus:
  buses:
    - port: /dev/ttyUSB1            # or socket://host:port (ser2net)
      baudrate: 115200
      poll_interval_ms: 0           # 0: poll back to back, as fast as the line allows
      timeout_ms: 100
      modules:
        - id: fence-io-1
          unit: 1
          inputs: 16
          coils: 8
          analog:
            - {input: 0, short_below: 500, normal_below: 1500, alarm_below: 3000}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from drivers.modbus.model import MAX_POINTS, MAX_UNIT, MIN_UNIT, EolThresholds, ModuleSpec
from drivers.serial_port import SerialPort


def _not_reserved(value: str) -> str:
    if value == "controller":
        raise ValueError("'controller' is reserved for the controller itself")
    return value


# The same form as edge.config.DeviceId (drivers do not import edge).
ModuleId = Annotated[
    str,
    Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="lower-case id: a-z 0-9 _ -"),
    AfterValidator(_not_reserved),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnalogInputConfig(_Strict):
    """An analog input with end-of-line supervision; values in the module's unit (ohms, or raw)."""

    input: int = Field(ge=0, lt=MAX_POINTS, description="analog input number: the point is ai<input>")
    short_below: int = Field(500, ge=0, le=65535, description="below this the loop is shorted")
    normal_below: int = Field(1500, ge=0, le=65535, description="below this (and above short): normal")
    alarm_below: int = Field(3000, ge=0, le=65535, description="below this: active (alarm); above: cut (tamper)")
    short_state: Literal["tamper", "fault", "active"] = "tamper"

    @model_validator(mode="after")
    def _ordered(self) -> AnalogInputConfig:
        if not self.short_below < self.normal_below < self.alarm_below:
            raise ValueError(
                f"ai{self.input}: thresholds must rise: short_below ({self.short_below}) < normal_below "
                f"({self.normal_below}) < alarm_below ({self.alarm_below})"
            )
        return self

    def thresholds(self) -> EolThresholds:
        return EolThresholds(self.short_below, self.normal_below, self.alarm_below, self.short_state)


class ModbusModuleConfig(_Strict):
    id: ModuleId
    name: str = ""
    unit: int = Field(ge=MIN_UNIT, le=MAX_UNIT, description="Modbus unit (slave) id on its bus, 1-247")
    inputs: int = Field(16, ge=0, le=MAX_POINTS, description="discrete inputs read as zones di0..")
    coils: int = Field(8, ge=0, le=MAX_POINTS, description="coils (relays) do0..")
    analog: list[AnalogInputConfig] = Field(default_factory=list, description="supervised analog inputs ai0..")
    di_address: int = Field(0, ge=0, le=65535, description="register address of di0")
    ai_address: int = Field(0, ge=0, le=65535, description="input register address of ai0")
    coil_address: int = Field(0, ge=0, le=65535, description="coil address of do0")

    @model_validator(mode="after")
    def _analog_unique(self) -> ModbusModuleConfig:
        numbers = [a.input for a in self.analog]
        dupes = sorted({n for n in numbers if numbers.count(n) > 1})
        if dupes:
            raise ValueError(f"analog: input {dupes[0]} is listed twice")
        if not self.inputs and not self.analog and not self.coils:
            raise ValueError("a module needs inputs, analog inputs or coils")
        return self

    def spec(self) -> ModuleSpec:
        return ModuleSpec(
            id=self.id,
            unit=self.unit,
            inputs=self.inputs,
            coils=self.coils,
            analog={a.input: a.thresholds() for a in self.analog},
            di_address=self.di_address,
            ai_address=self.ai_address,
            coil_address=self.coil_address,
        )


class ModbusBusConfig(_Strict):
    port: SerialPort
    baudrate: Literal[9600, 19200, 38400, 57600, 115200] = 115200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    poll_interval_ms: float = Field(0, ge=0, le=60_000, description="least time per poll cycle; 0: back to back")
    timeout_ms: float = Field(100, ge=5, le=5000, description="how long a module may take to answer")
    offline_after: int = Field(3, ge=1, le=100, description="missed polls in a row before the module is offline")
    offline_retry_ms: float = Field(1000, ge=10, le=60_000, description="how often an offline module is asked")
    modules: list[ModbusModuleConfig] = Field(min_length=1, max_length=247)

    @model_validator(mode="after")
    def _units_unique(self) -> ModbusBusConfig:
        units = [m.unit for m in self.modules]
        dupes = sorted({u for u in units if units.count(u) > 1})
        if dupes:
            raise ValueError(f"modules: unit {dupes[0]} is used twice on this bus (each module needs its own unit id)")
        return self

    def driver_options(self) -> dict[str, Any]:
        """Keyword arguments of drivers.modbus.ModbusDriver for this bus."""
        return {
            "baudrate": self.baudrate,
            "parity": self.parity,
            "stopbits": self.stopbits,
            "timeout_s": self.timeout_ms / 1000,
            "poll_interval_s": self.poll_interval_ms / 1000,
            "offline_after": self.offline_after,
            "offline_retry_s": self.offline_retry_ms / 1000,
        }


class ModbusSection(_Strict):
    buses: list[ModbusBusConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> ModbusSection:
        ports = [b.port for b in self.buses]
        dupes = sorted({p for p in ports if ports.count(p) > 1})
        if dupes:
            raise ValueError(f"buses: port {dupes[0]} is configured twice")
        ids = [m.id for b in self.buses for m in b.modules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"modules: duplicate module id {dupes[0]!r}")
        return self

    def modules(self) -> dict[str, ModbusModuleConfig]:
        return {m.id: m for b in self.buses for m in b.modules}
