"""The alarm panel as pure logic: :class:`Panel` over zone inputs, codes and a clock (no I/O).

Config models for the site file's `alarm:` section live in :mod:`rules.alarm.config`; the state
machine, its events and siren requests in :mod:`rules.alarm.panel`.
"""

from rules.alarm.config import (
    ALWAYS_ARMED,
    ARM_MODES,
    AlarmSection,
    CrossZoneGroup,
    PartitionConfig,
    PointRef,
    SirenConfig,
    UserCode,
    ZoneConfig,
)
from rules.alarm.panel import (
    ARMED_STATES,
    STATES,
    AlarmEvent,
    Output,
    Panel,
    Result,
    SirenRequest,
)

__all__ = [
    "ALWAYS_ARMED",
    "ARMED_STATES",
    "ARM_MODES",
    "STATES",
    "AlarmEvent",
    "AlarmSection",
    "CrossZoneGroup",
    "Output",
    "Panel",
    "PartitionConfig",
    "PointRef",
    "Result",
    "SirenConfig",
    "SirenRequest",
    "UserCode",
    "ZoneConfig",
]
