"""The device end of the protocol: what panel or indoor-unit firmware does with each frame.

`DeviceEndpoint` is the reference for firmware writers and the core of the simulator:

- frames not addressed to this device (or replies from other devices) are ignored;
- a command whose sequence (1-15) equals the last one answered is a retry: the cached reply goes
  out again, byte for byte, and nothing is done a second time (an unlock is applied once);
- sequence 0 resets: the cache is dropped and the command handled afresh;
- a broadcast (address 127) is acted on and never answered;
- a command that does not parse gets NAK(bad payload), an unknown code NAK(unknown command), and
  changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from drivers.intercom.protocol import (
    BROADCAST,
    COMMANDS,
    Frame,
    Message,
    Nak,
    NakReason,
    ProtocolError,
    decode_message,
    reply_frame,
)


@dataclass
class EndpointStats:
    handled: int = 0
    retransmits: int = 0  # retried commands answered from the cache
    naks: int = 0
    ignored: int = 0  # frames for other devices, or replies


class DeviceEndpoint:
    def __init__(self, address: int, handle: Callable[[Message], Message]) -> None:
        self.address = address
        self.handle = handle
        self.stats = EndpointStats()
        self._last_seq: int | None = None
        self._cached: bytes | None = None

    def reset(self) -> None:
        """Power-up state: no cached reply."""
        self._last_seq = None
        self._cached = None

    def on_frame(self, frame: Frame) -> bytes | None:
        """The bytes to send back (None: stay silent)."""
        if frame.reply or frame.address not in (self.address, BROADCAST):
            self.stats.ignored += 1
            return None
        if frame.seq and frame.seq == self._last_seq and self._cached is not None:
            self.stats.retransmits += 1
            return self._cached
        if frame.seq == 0:
            self.reset()
        reply: Message
        if frame.code not in COMMANDS:
            reply = Nak(NakReason.UNKNOWN_COMMAND)
        else:
            try:
                msg = decode_message(frame.code, frame.payload)
            except ProtocolError:
                reply = Nak(NakReason.BAD_PAYLOAD)
            else:
                self.stats.handled += 1
                reply = self.handle(msg)
        if isinstance(reply, Nak):
            self.stats.naks += 1
        if frame.address == BROADCAST:
            return None
        encoded = reply_frame(self.address, frame.seq, reply).encode()
        self._last_seq = frame.seq if frame.seq else None
        self._cached = encoded if frame.seq else None
        return encoded
