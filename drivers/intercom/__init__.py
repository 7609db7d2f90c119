"""Intercom door panels and indoor units on the Linli panel protocol (docs/intercom-protocol.md).

`protocol` is the wire format (frames, messages, the resynchronising decoder), `device` the device
end of it (the cached-reply rule), `master` the bus master driver (`IntercomBus`), `simulator`
panels and indoor units on a pseudo-terminal. The driver knows no rules: call routing is
rules.intercom's, the wiring edge.intercom's.
"""

from drivers.intercom.master import IntercomBus
from drivers.intercom.model import BusOffline, BusOnline, DeviceOffline, DeviceOnline, DeviceSpec, Timing
from drivers.intercom.protocol import CallState, DeviceKind, FrameDecoder, ProtocolError

__all__ = [
    "BusOffline",
    "BusOnline",
    "CallState",
    "DeviceKind",
    "DeviceOffline",
    "DeviceOnline",
    "DeviceSpec",
    "FrameDecoder",
    "IntercomBus",
    "ProtocolError",
    "Timing",
]
