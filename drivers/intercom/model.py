"""What the intercom driver is told about its devices, and what it tells its owner back.

The driver reports plain dataclasses to one callback, `on_message(device_id, message)`: the
protocol's device messages (drivers.intercom.protocol: CallRequest, Answer, KeypadCode, ...) as
they arrive, and the link's own news (DeviceOnline, DeviceOffline, BusOnline, BusOffline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.intercom.protocol import DeviceKind, Message, Status


@dataclass(frozen=True)
class DeviceSpec:
    id: str
    address: int
    kind: DeviceKind


@dataclass(frozen=True)
class Timing:
    """Link timings (docs/intercom-protocol.md, "Timing"). Defaults suit 115200 baud on RS-485."""

    reply_timeout_s: float = 0.1
    retries: int = 2  # a command is sent at most 1 + retries times, always with the same sequence
    poll_interval_s: float = 0.02  # each online device is polled at least this often
    heartbeat_s: float = 5.0  # HEARTBEAT (status) to each online device
    offline_probe_s: float = 0.5  # how often an offline device is probed
    reconnect_s: float = 1.0  # port gone: try to reopen it this often


@dataclass(frozen=True)
class DeviceOnline(Message):
    status: Status | None = None


@dataclass(frozen=True)
class DeviceOffline(Message):
    reason: str = "no_reply"


@dataclass(frozen=True)
class BusOnline(Message):
    pass


@dataclass(frozen=True)
class BusOffline(Message):
    error: str = ""


@dataclass
class LinkStats:
    tx_frames: int = 0
    rx_frames: int = 0
    timeouts: int = 0
    retries: int = 0
    unexpected: int = 0  # good frames that answer nothing we asked (wrong address/seq, not a reply)
    bad_payload: int = 0  # good CRC, but the message does not parse: ignored
    naks: int = 0


@dataclass
class DeviceLink:
    """The master's view of one device."""

    spec: DeviceSpec
    online: bool = False
    seq: int = 0  # next sequence to use; 0 until the device has answered a reset poll
    status: Status | None = None
    next_poll: float = 0.0
    next_heartbeat: float = 0.0
    failures: int = 0
    extra: dict[str, object] = field(default_factory=dict)


OnMessage = Callable[[str, Message], None]
