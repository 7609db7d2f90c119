"""The Linli intercom panel protocol on the wire (docs/intercom-protocol.md): frames and messages.

A frame is

    SOM 0xA5 | ADDR | CTRL | LEN | CODE | PAYLOAD (LEN bytes) | CRC lo | CRC hi

ADDR bit 7 is the reply bit (set by a device answering), bits 0-6 the device address (127:
broadcast, never answered). CTRL bits 0-3 are the sequence number (0 resets the device's cache,
1-15 cycle), bits 4-7 are zero. The CRC is CRC-16/AUG-CCITT (`binascii.crc_hqx(data, 0x1D0F)`,
the one OSDP uses) over every byte from SOM to the last payload byte, sent low byte first.

Pure code: no I/O. `FrameDecoder` turns a byte stream into frames, resynchronising after noise and
counting what it threw away; `decode_message` turns a frame's code and payload into a typed
message or raises `ProtocolError`.
"""

from __future__ import annotations

import binascii
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

SOM = 0xA5
REPLY_BIT = 0x80
BROADCAST = 0x7F
MAX_ADDRESS = 126
MAX_PAYLOAD = 240
HEADER = 5  # SOM ADDR CTRL LEN CODE
OVERHEAD = HEADER + 2
MAX_FRAME = OVERHEAD + MAX_PAYLOAD
SEQ_MASK = 0x0F
CRC_INIT = 0x1D0F

MAX_TEXT = 64
MAX_APARTMENT = 16
MAX_CODE = 16
MAX_QR = 200
APARTMENT_RE = re.compile(rb"^[0-9A-Za-z-]{1,16}$")
CODE_RE = re.compile(rb"^[0-9*]{1,16}$")


class ProtocolError(ValueError):
    """A frame or message that is not valid; nothing must be acted on."""


def crc16(data: bytes) -> int:
    return binascii.crc_hqx(data, CRC_INIT)


def next_seq(seq: int) -> int:
    """1..15 cycling; 0 is only ever the reset sequence."""
    return 1 if seq >= 15 else seq + 1


@dataclass(frozen=True, slots=True)
class Frame:
    address: int
    seq: int
    code: int
    payload: bytes = b""
    reply: bool = False

    def encode(self) -> bytes:
        if not 0 <= self.address <= BROADCAST:
            raise ProtocolError(f"address {self.address} is outside 0-127")
        if not 0 <= self.seq <= SEQ_MASK:
            raise ProtocolError(f"sequence {self.seq} is outside 0-15")
        if len(self.payload) > MAX_PAYLOAD:
            raise ProtocolError(f"payload of {len(self.payload)} bytes; at most {MAX_PAYLOAD}")
        addr = self.address | (REPLY_BIT if self.reply else 0)
        body = bytes([SOM, addr, self.seq, len(self.payload), self.code]) + self.payload
        return body + struct.pack("<H", crc16(body))


@dataclass
class DecoderStats:
    frames: int = 0
    noise_bytes: int = 0  # bytes skipped while looking for a start of frame
    bad_crc: int = 0
    bad_length: int = 0  # LEN above MAX_PAYLOAD, or reserved CTRL bits set


class FrameDecoder:
    """Bytes in, whole frames with a good CRC out.

    After a bad frame only its SOM byte is dropped and the search goes on from the next byte, so a
    real frame that followed noise (or began inside a broken one) is still found.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.stats = DecoderStats()

    def reset(self) -> None:
        self._buf.clear()

    def discard(self) -> None:
        """Drop a partial frame (counted as noise): a master does so before each command, since
        nothing that arrived before it can be the answer to it."""
        self.stats.noise_bytes += len(self._buf)
        self._buf.clear()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        buf = self._buf
        while buf:
            start = buf.find(SOM)
            if start < 0:
                self.stats.noise_bytes += len(buf)
                buf.clear()
                break
            if start:
                self.stats.noise_bytes += start
                del buf[:start]
            if len(buf) < HEADER:
                break
            length = buf[3]
            if length > MAX_PAYLOAD or buf[2] & ~SEQ_MASK:
                self.stats.bad_length += 1
                del buf[:1]
                continue
            end = HEADER + length + 2
            if len(buf) < end:
                break
            (crc,) = struct.unpack_from("<H", buf, end - 2)
            if crc != crc16(bytes(buf[: end - 2])):
                self.stats.bad_crc += 1
                del buf[:1]
                continue
            addr = buf[1]
            frames.append(
                Frame(addr & ~REPLY_BIT, buf[2], buf[4], bytes(buf[HEADER : end - 2]), bool(addr & REPLY_BIT))
            )
            self.stats.frames += 1
            del buf[:end]
        return frames


# ---- messages --------------------------------------------------------------------------------


class Code(IntEnum):
    # replies (device -> master)
    ACK = 0x40
    STATUS = 0x41
    NAK = 0x42
    CALL_REQUEST = 0x50
    CALL_CANCEL = 0x51
    KEYPAD_CODE = 0x52
    QR_TOKEN = 0x53
    TAMPER = 0x54
    ANSWER = 0x55
    HANG_UP = 0x56
    UNLOCK_REQUEST = 0x57
    DND = 0x58
    # commands (master -> device)
    POLL = 0x60
    HEARTBEAT = 0x61
    UNLOCK = 0x62
    DISPLAY = 0x63
    CALL_STATE = 0x64
    RING = 0x65
    RING_STOP = 0x66
    SET_DND = 0x67


class CallState(IntEnum):
    RINGING = 1
    ANSWERED = 2
    BUSY = 3
    REJECTED = 4
    TIMED_OUT = 5
    ENDED = 6


class DeviceKind(IntEnum):
    PANEL = 1
    INDOOR_UNIT = 2


class NakReason(IntEnum):
    UNKNOWN_COMMAND = 1
    BAD_PAYLOAD = 2
    NOT_SUPPORTED = 3


class Message:
    """Base of every typed message; `code` says which, `payload()` gives its bytes."""

    code: ClassVar[Code]

    def payload(self) -> bytes:
        return b""


def _u8(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFF:
        raise ProtocolError(f"{what} {value} does not fit a byte")
    return bytes([value])


def _u16(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ProtocolError(f"{what} {value} does not fit 16 bits")
    return struct.pack("<H", value)


def _exact(payload: bytes, n: int, what: str) -> None:
    if len(payload) != n:
        raise ProtocolError(f"{what} takes {n} payload bytes, got {len(payload)}")


def _flag(payload: bytes, what: str) -> bool:
    _exact(payload, 1, what)
    if payload[0] > 1:
        raise ProtocolError(f"{what}: flag must be 0 or 1")
    return bool(payload[0])


@dataclass(frozen=True, slots=True)
class Ack(Message):
    code: ClassVar[Code] = Code.ACK


@dataclass(frozen=True, slots=True)
class Nak(Message):
    code: ClassVar[Code] = Code.NAK
    reason: int

    def payload(self) -> bytes:
        return _u8(self.reason, "reason")


@dataclass(frozen=True, slots=True)
class Status(Message):
    """The heartbeat's answer: what the device is and how it is."""

    code: ClassVar[Code] = Code.STATUS
    kind: DeviceKind
    version: tuple[int, int] = (1, 0)
    tamper: bool = False
    dnd: bool = False
    relay: bool = False
    uptime_s: int = 0

    def payload(self) -> bytes:
        flags = int(self.tamper) | int(self.dnd) << 1 | int(self.relay) << 2
        return struct.pack("<BBBBI", self.kind, self.version[0], self.version[1], flags, self.uptime_s)


@dataclass(frozen=True, slots=True)
class CallRequest(Message):
    """A visitor at a panel asks for an apartment (typed number) or a directory entry (button)."""

    code: ClassVar[Code] = Code.CALL_REQUEST
    apartment: str | None = None
    entry: int | None = None

    def payload(self) -> bytes:
        if (self.apartment is None) == (self.entry is None):
            raise ProtocolError("a call request names an apartment or a directory entry")
        if self.apartment is not None:
            raw = self.apartment.encode("ascii", "replace")
            if not APARTMENT_RE.match(raw):
                raise ProtocolError("apartment: 1-16 of 0-9 A-Z a-z -")
            return b"\x00" + raw
        assert self.entry is not None
        return b"\x01" + _u16(self.entry, "entry")


@dataclass(frozen=True, slots=True)
class CallCancel(Message):
    code: ClassVar[Code] = Code.CALL_CANCEL


@dataclass(frozen=True, slots=True)
class KeypadCode(Message):
    code: ClassVar[Code] = Code.KEYPAD_CODE
    digits: str = field(repr=False)  # a PIN: never in a log

    def payload(self) -> bytes:
        raw = self.digits.encode("ascii", "replace")
        if not CODE_RE.match(raw):
            raise ProtocolError("keypad code: 1-16 of 0-9 *")
        return raw


@dataclass(frozen=True, slots=True)
class QrToken(Message):
    code: ClassVar[Code] = Code.QR_TOKEN
    token: bytes = field(repr=False)

    def payload(self) -> bytes:
        if not 1 <= len(self.token) <= MAX_QR:
            raise ProtocolError(f"QR token: 1-{MAX_QR} bytes")
        return self.token


@dataclass(frozen=True, slots=True)
class Tamper(Message):
    code: ClassVar[Code] = Code.TAMPER
    active: bool

    def payload(self) -> bytes:
        return bytes([int(self.active)])


@dataclass(frozen=True, slots=True)
class Answer(Message):
    code: ClassVar[Code] = Code.ANSWER
    call: int

    def payload(self) -> bytes:
        return _u16(self.call, "call")


@dataclass(frozen=True, slots=True)
class HangUp(Message):
    code: ClassVar[Code] = Code.HANG_UP
    call: int

    def payload(self) -> bytes:
        return _u16(self.call, "call")


@dataclass(frozen=True, slots=True)
class UnlockRequest(Message):
    code: ClassVar[Code] = Code.UNLOCK_REQUEST
    call: int

    def payload(self) -> bytes:
        return _u16(self.call, "call")


@dataclass(frozen=True, slots=True)
class Dnd(Message):
    code: ClassVar[Code] = Code.DND
    on: bool

    def payload(self) -> bytes:
        return bytes([int(self.on)])


@dataclass(frozen=True, slots=True)
class Poll(Message):
    code: ClassVar[Code] = Code.POLL


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    code: ClassVar[Code] = Code.HEARTBEAT


@dataclass(frozen=True, slots=True)
class Unlock(Message):
    """Pulse a relay for `pulse_ds` tenths of a second (1-6000)."""

    code: ClassVar[Code] = Code.UNLOCK
    relay: int = 0
    pulse_ds: int = 50

    def payload(self) -> bytes:
        if not 1 <= self.pulse_ds <= 6000:
            raise ProtocolError("pulse: 1-6000 tenths of a second")
        return _u8(self.relay, "relay") + _u16(self.pulse_ds, "pulse")


@dataclass(frozen=True, slots=True)
class Display(Message):
    code: ClassVar[Code] = Code.DISPLAY
    text: str
    line: int = 0

    def payload(self) -> bytes:
        raw = self.text.encode("utf-8")
        if len(raw) > MAX_TEXT:
            raise ProtocolError(f"display text: at most {MAX_TEXT} bytes of UTF-8")
        if not 0 <= self.line <= 3:
            raise ProtocolError("display line: 0-3")
        return bytes([self.line]) + raw


@dataclass(frozen=True, slots=True)
class CallStateMsg(Message):
    code: ClassVar[Code] = Code.CALL_STATE
    call: int
    state: CallState

    def payload(self) -> bytes:
        return _u16(self.call, "call") + bytes([self.state])


@dataclass(frozen=True, slots=True)
class Ring(Message):
    code: ClassVar[Code] = Code.RING
    call: int
    panel: int  # the calling panel's bus address, for the unit's display

    def payload(self) -> bytes:
        return _u16(self.call, "call") + _u8(self.panel, "panel")


@dataclass(frozen=True, slots=True)
class RingStop(Message):
    code: ClassVar[Code] = Code.RING_STOP
    call: int
    state: CallState

    def payload(self) -> bytes:
        return _u16(self.call, "call") + bytes([self.state])


@dataclass(frozen=True, slots=True)
class SetDnd(Message):
    code: ClassVar[Code] = Code.SET_DND
    on: bool

    def payload(self) -> bytes:
        return bytes([int(self.on)])


def _call(p: bytes, what: str) -> int:
    _exact(p, 2, what)
    return int(struct.unpack("<H", p)[0])


def _state(value: int) -> CallState:
    try:
        return CallState(value)
    except ValueError:
        raise ProtocolError(f"unknown call state {value}") from None


def _status(p: bytes) -> Status:
    _exact(p, 8, "STATUS")
    kind, major, minor, flags, uptime = struct.unpack("<BBBBI", p)
    try:
        device_kind = DeviceKind(kind)
    except ValueError:
        raise ProtocolError(f"unknown device kind {kind}") from None
    if flags & ~0x07:
        raise ProtocolError("STATUS: reserved flag bits set")
    return Status(device_kind, (major, minor), bool(flags & 1), bool(flags & 2), bool(flags & 4), uptime)


def _call_request(p: bytes) -> CallRequest:
    if not p:
        raise ProtocolError("CALL_REQUEST: empty")
    if p[0] == 0:
        if not APARTMENT_RE.match(p[1:]):
            raise ProtocolError("CALL_REQUEST: apartment must be 1-16 of 0-9 A-Z a-z -")
        return CallRequest(apartment=p[1:].decode("ascii"))
    if p[0] == 1:
        _exact(p, 3, "CALL_REQUEST (entry)")
        return CallRequest(entry=int(struct.unpack_from("<H", p, 1)[0]))
    raise ProtocolError(f"CALL_REQUEST: unknown kind {p[0]}")


def _keypad(p: bytes) -> KeypadCode:
    if not CODE_RE.match(p):
        raise ProtocolError("KEYPAD_CODE: 1-16 of 0-9 *")
    return KeypadCode(p.decode("ascii"))


def _qr(p: bytes) -> QrToken:
    if not 1 <= len(p) <= MAX_QR:
        raise ProtocolError(f"QR_TOKEN: 1-{MAX_QR} bytes")
    return QrToken(p)


def _empty(cls: type[Message]) -> Callable[[bytes], Message]:
    def parse(p: bytes) -> Message:
        _exact(p, 0, cls.code.name)
        return cls()

    return parse


def _unlock(p: bytes) -> Unlock:
    _exact(p, 3, "UNLOCK")
    relay, pulse = struct.unpack("<BH", p)
    if not 1 <= pulse <= 6000:
        raise ProtocolError("UNLOCK: pulse 1-6000 tenths of a second")
    return Unlock(relay, pulse)


def _display(p: bytes) -> Display:
    if not 1 <= len(p) <= MAX_TEXT + 1 or p[0] > 3:
        raise ProtocolError("DISPLAY: line 0-3 and at most 64 bytes of text")
    try:
        return Display(p[1:].decode("utf-8"), p[0])
    except UnicodeDecodeError:
        raise ProtocolError("DISPLAY: text is not UTF-8") from None


def _nak(p: bytes) -> Nak:
    _exact(p, 1, "NAK")
    return Nak(p[0])


def _ring(p: bytes) -> Ring:
    _exact(p, 3, "RING")
    call, panel = struct.unpack("<HB", p)
    return Ring(call, panel)


def _call_and_state(cls: type[CallStateMsg] | type[RingStop]) -> Callable[[bytes], Message]:
    def parse(p: bytes) -> Message:
        _exact(p, 3, cls.code.name)
        call, state = struct.unpack("<HB", p)
        return cls(call, _state(state))

    return parse


_PARSERS: dict[int, Callable[[bytes], Message]] = {
    Code.ACK: _empty(Ack),
    Code.STATUS: _status,
    Code.NAK: _nak,
    Code.CALL_REQUEST: _call_request,
    Code.CALL_CANCEL: _empty(CallCancel),
    Code.KEYPAD_CODE: _keypad,
    Code.QR_TOKEN: _qr,
    Code.TAMPER: lambda p: Tamper(_flag(p, "TAMPER")),
    Code.ANSWER: lambda p: Answer(_call(p, "ANSWER")),
    Code.HANG_UP: lambda p: HangUp(_call(p, "HANG_UP")),
    Code.UNLOCK_REQUEST: lambda p: UnlockRequest(_call(p, "UNLOCK_REQUEST")),
    Code.DND: lambda p: Dnd(_flag(p, "DND")),
    Code.POLL: _empty(Poll),
    Code.HEARTBEAT: _empty(Heartbeat),
    Code.UNLOCK: _unlock,
    Code.DISPLAY: _display,
    Code.CALL_STATE: _call_and_state(CallStateMsg),
    Code.RING: _ring,
    Code.RING_STOP: _call_and_state(RingStop),
    Code.SET_DND: lambda p: SetDnd(_flag(p, "SET_DND")),
}

COMMANDS = frozenset(c for c in Code if c >= 0x60)
REPLIES = frozenset(c for c in Code if c < 0x60)


def decode_message(code: int, payload: bytes) -> Message:
    parser = _PARSERS.get(code)
    if parser is None:
        raise ProtocolError(f"unknown message code 0x{code:02X}")
    return parser(payload)


def command_frame(address: int, seq: int, msg: Message) -> Frame:
    return Frame(address, seq, msg.code, msg.payload())


def reply_frame(address: int, seq: int, msg: Message) -> Frame:
    return Frame(address, seq, msg.code, msg.payload(), reply=True)
