"""The Modbus driver's vocabulary: module layout, end-of-line supervision, bus timing.

Register map of a generic I/O module (firmware_profiles/generic-modbus-io-16.yaml), all 0-based:
discrete inputs (FC 2) from `di_address` are the zone inputs di0..; input registers (FC 4) from
`ai_address` are the analog inputs ai0.., read as the loop's value (ohms, or the module's raw
scale: the thresholds are in the same unit); coils (FC 1/5) from `coil_address` are the outputs
do0...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

# Severity values understood by edge's event model (edge.events.Severity); drivers do not import edge.
Severity = Literal["debug", "info", "warning", "alarm", "critical"]
ReportCallback = Callable[[str, str, dict[str, Any], Severity], None]
PointState = Literal["normal", "active", "tamper", "fault"]

MIN_UNIT, MAX_UNIT = 1, 247  # 0 is broadcast, 248-255 reserved
MAX_POINTS = 16


@dataclass(frozen=True)
class EolThresholds:
    """End-of-line supervision of one analog input: four bands of the loop's value.

    value < short_below: the loop is shorted; < normal_below: the EOL resistor alone (normal);
    < alarm_below: EOL plus the alarm resistor (the contact opened: active); above: the loop is cut.
    A cut loop is tamper; a short is `short_state` (tamper on double-EOL wiring, where it can only
    be sabotage; fault where a short means a wiring fault to be fixed).
    """

    short_below: int = 500
    normal_below: int = 1500
    alarm_below: int = 3000
    short_state: PointState = "tamper"

    def __post_init__(self) -> None:
        if not 0 <= self.short_below < self.normal_below < self.alarm_below:
            raise ValueError("EOL thresholds must rise: 0 <= short_below < normal_below < alarm_below")

    def classify(self, value: int) -> tuple[PointState, str]:
        if value < self.short_below:
            return self.short_state, "short"
        if value < self.normal_below:
            return "normal", f"value={value}"
        if value < self.alarm_below:
            return "active", f"value={value}"
        return "tamper", "cut"


@dataclass(frozen=True)
class ModuleSpec:
    """One I/O module on a bus. `analog` maps an analog input number to its EOL thresholds."""

    id: str
    unit: int
    inputs: int = 16
    coils: int = 8
    analog: dict[int, EolThresholds] = field(default_factory=dict)
    di_address: int = 0
    ai_address: int = 0
    coil_address: int = 0

    def __post_init__(self) -> None:
        if not MIN_UNIT <= self.unit <= MAX_UNIT:
            raise ValueError(f"module {self.id!r}: unit id {self.unit} is outside {MIN_UNIT}-{MAX_UNIT}")
        for name, n in (("inputs", self.inputs), ("coils", self.coils)):
            if not 0 <= n <= MAX_POINTS:
                raise ValueError(f"module {self.id!r}: {name} must be 0-{MAX_POINTS}")
        if any(not 0 <= i < MAX_POINTS for i in self.analog):
            raise ValueError(f"module {self.id!r}: analog inputs are numbered 0-{MAX_POINTS - 1}")
        if not (self.inputs or self.analog or self.coils):
            raise ValueError(f"module {self.id!r}: no inputs, analog inputs or coils: nothing to poll")

    @property
    def analog_count(self) -> int:
        """Registers read per poll: up to the highest supervised analog input."""
        return max(self.analog) + 1 if self.analog else 0


# ---- bus timing: the floor that no poll schedule can beat ------------------------------------
#
# A transaction costs (request + response bytes) x 11 bits / baud, plus the 3.5-character silence
# that ends each frame (fixed at 1.75 ms above 19200 baud), plus the module's turnaround. Reading
# 16 discrete inputs (FC 2) is an 8-byte request and a 7-byte answer: at 115200 baud 1.43 ms on the
# wire + 3.5 ms of silence = 4.93 ms. Eight such modules: a 39.5 ms cycle. An input that changes
# just after its module was read is seen one cycle later (39.5 ms + its own read, 44.4 ms); on
# average after half a cycle (19.7 ms). A siren write (FC 5, 8 + 8 bytes) adds 5.0 ms, and waits
# for at most one transaction in flight. So the wire allows an input -> siren worst case of about
# 54 ms, inside issue 6's 100 ms p99, provided the modules answer within a few ms. Reading 16
# analog registers (FC 4, 37-byte answer) costs 7.8 ms per module: supervised loops on all eight
# modules as well as the discrete inputs would push the cycle to ~102 ms. Poll only what is wired.


def char_bits(parity: str = "N", stopbits: int = 1) -> int:
    """Bits on the wire per byte: start + 8 data + parity + stop (11 in Modbus RTU's default 8E1 /
    8N2; 8N1 is 10, but the spec's timing uses 11 and so does this floor)."""
    return 1 + 8 + (0 if parity == "N" else 1) + stopbits


def t35_s(baudrate: int) -> float:
    """Inter-frame silence (3.5 characters); the Modbus serial spec fixes it at 1.75 ms above 19200 baud."""
    return 1.75e-3 if baudrate > 19200 else 3.5 * 11 / baudrate


def transaction_s(request_bytes: int, response_bytes: int, baudrate: int, turnaround_s: float = 0.0) -> float:
    """One request/response on the wire: both frames, the silence ending each, the module's turnaround."""
    return (request_bytes + response_bytes) * 11 / baudrate + 2 * t35_s(baudrate) + turnaround_s


def read_bits_bytes(count: int) -> tuple[int, int]:
    """(request, response) frame sizes of FC 1/2: addr fc start(2) count(2) crc(2); addr fc n bits crc(2)."""
    return 8, 5 + (count + 7) // 8


def read_registers_bytes(count: int) -> tuple[int, int]:
    return 8, 5 + 2 * count


WRITE_COIL_BYTES = (8, 8)  # FC 5 request and its echo


def module_poll_s(spec: ModuleSpec, baudrate: int, turnaround_s: float = 0.0) -> float:
    total = 0.0
    if spec.inputs:
        total += transaction_s(*read_bits_bytes(spec.inputs), baudrate, turnaround_s)
    if spec.analog:
        total += transaction_s(*read_registers_bytes(spec.analog_count), baudrate, turnaround_s)
    if not spec.inputs and not spec.analog and spec.coils:  # output-only: its coils are read back
        total += transaction_s(*read_bits_bytes(spec.coils), baudrate, turnaround_s)
    return total


@dataclass(frozen=True)
class PollFloor:
    """The wire-time floor of a bus's poll schedule, in seconds."""

    cycle_s: float  # one poll of every module, back to back
    write_s: float  # one coil write
    detect_worst_s: float  # input change -> read: it changed just after its module was read
    worst_s: float  # input change -> siren coil written: detect_worst_s, then the transaction in
    # flight when the alarm decides, then the write
    mean_s: float  # input change -> siren, the change landing uniformly in the cycle: half a cycle + the write

    def as_dict(self) -> dict[str, float]:
        return {k: round(v * 1000, 3) for k, v in self.__dict__.items()}


def poll_floor(modules: list[ModuleSpec], baudrate: int, turnaround_s: float = 0.0) -> PollFloor:
    cycle = sum(module_poll_s(m, baudrate, turnaround_s) for m in modules)
    write = transaction_s(*WRITE_COIL_BYTES, baudrate, turnaround_s)
    longest = max((module_poll_s(m, baudrate, turnaround_s) for m in modules), default=0.0)
    return PollFloor(
        cycle_s=cycle,
        write_s=write,
        detect_worst_s=cycle + longest,
        worst_s=cycle + 2 * longest + write,
        mean_s=cycle / 2 + write,
    )
