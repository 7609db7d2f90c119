"""Modbus RTU I/O modules over RS-485 (or ser2net): a polling master on pymodbus, and a simulator.

    from drivers.modbus import ModbusDriver, ModuleSpec, EolThresholds

The driver reports `input.changed`, `device.online` and `device.offline` through a
`report(type, source, data, severity)` callback and writes coils with `set_output`. Zone and
output point names: di0..di15, ai0..ai15, do0..do15. See drivers/modbus/driver.py.
"""

from drivers.modbus.driver import BusStats, ModbusDriver, OutputError
from drivers.modbus.model import EolThresholds, ModuleSpec, PollFloor, ReportCallback, Severity, poll_floor

__all__ = [
    "BusStats",
    "EolThresholds",
    "ModbusDriver",
    "ModuleSpec",
    "OutputError",
    "PollFloor",
    "ReportCallback",
    "Severity",
    "poll_floor",
]
