"""A passive watcher of the OSDP bus: which reader answered, when, and with what reply code.

libosdp tells the application little about *why* a reader went offline (it just waits 300 s). The
driver needs to know whether a reader is silent (unplugged), answered with a NAK, or took part in
the secure-channel handshake and was then dropped (wrong key). This module parses the frames the
CP reads from the bus just far enough to say so: start of message, address, length, control byte,
CRC-16 or checksum, reply code. It never changes a byte; libosdp parses the same bytes itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SOM = 0x53
MARK = 0xFF
REPLY_FLAG = 0x80
CTRL_CRC = 0x04
CTRL_SCB = 0x08
CTRL_RESERVED = 0x70
MIN_FRAME = 7  # SOM ADDR LEN LEN CTRL CODE CKSUM
MAX_FRAME = 256  # libosdp's packet buffer

# Reply codes the driver reasons about (OSDP 2.2, table of replies).
REPLY_ACK = 0x40
REPLY_NAK = 0x41
REPLY_PDID = 0x45
REPLY_PDCAP = 0x46
REPLY_CCRYPT = 0x76
REPLY_RMAC_I = 0x78
REPLY_NAMES = {
    0x40: "ACK",
    0x41: "NAK",
    0x45: "PDID",
    0x46: "PDCAP",
    0x48: "LSTATR",
    0x49: "ISTATR",
    0x4A: "OSTATR",
    0x4B: "RSTATR",
    0x50: "RAW",
    0x53: "KEYPAD",
    0x76: "CCRYPT",
    0x78: "RMAC_I",
    0x79: "BUSY",
    0x90: "MFGREP",
}


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT with OSDP's initial value 0x1D0F."""
    crc = 0x1D0F
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


@dataclass
class PeerLink:
    """What the watcher knows about one address."""

    last_reply_at: float | None = None
    last_reply_code: int | None = None
    replies: int = 0
    naks: int = 0
    unanswered_since: float | None = None  # first command sent since the last reply


@dataclass
class BusStats:
    frames: int = 0
    bad_frames: int = 0  # header plausible, check failed
    discarded_bytes: int = 0


@dataclass
class LinkMonitor:
    addresses: frozenset[int]
    baudrate: int = 115200
    peers: dict[int, PeerLink] = field(default_factory=dict)
    stats: BusStats = field(default_factory=BusStats)
    _buf: bytearray = field(default_factory=bytearray)
    _pending_since: float | None = None

    def __post_init__(self) -> None:
        for addr in self.addresses:
            self.peers.setdefault(addr, PeerLink())

    def on_tx(self, data: bytes, now: float) -> None:
        """A command libosdp wrote: the addressed reader now owes a reply."""
        start = 1 if data[:1] == bytes([MARK]) else 0
        if len(data) > start + 1 and data[start] == SOM:
            peer = self.peers.get(data[start + 1] & 0x7F)
            if peer is not None and peer.unanswered_since is None:
                peer.unanswered_since = now

    def on_rx(self, data: bytes, now: float) -> None:
        self._buf += data
        self._parse(now)

    def poll(self, now: float) -> None:
        """Give up on a partial frame that should have arrived completely by now."""
        self._parse(now)

    def _drop(self, n: int) -> None:
        del self._buf[:n]
        self.stats.discarded_bytes += n
        self._pending_since = None

    def _parse(self, now: float) -> None:
        buf = self._buf
        while buf:
            som = buf.find(SOM)
            if som < 0:
                self._drop(len(buf))
                return
            if som:
                self._drop(som)
            if len(buf) < 5:
                return
            addr, length, ctrl = buf[1], buf[2] | (buf[3] << 8), buf[4]
            if (
                not addr & REPLY_FLAG
                or (addr & 0x7F) not in self.addresses
                or not MIN_FRAME <= length <= MAX_FRAME
                or ctrl & CTRL_RESERVED
            ):
                self._drop(1)  # not a reply header (noise, or a command echoed by the adapter)
                continue
            if len(buf) < length:
                # A burst of noise can look like a header claiming a long frame: wait at most the
                # frame's transmission time plus a margin, then resynchronise past it.
                if self._pending_since is None:
                    self._pending_since = now
                if now - self._pending_since > length * 10 / self.baudrate + 0.05:
                    self._drop(1)
                    continue
                return
            self._pending_since = None
            if not self._check(ctrl, length):
                self.stats.bad_frames += 1
                self._drop(1)
                continue
            code_at = 5 + (buf[5] if ctrl & CTRL_SCB and length > 5 else 0)
            code = buf[code_at] if code_at < length - (2 if ctrl & CTRL_CRC else 1) else None
            self._reply(addr & 0x7F, code, now)
            del buf[:length]

    def _check(self, ctrl: int, length: int) -> bool:
        frame = memoryview(self._buf)[:length]
        try:
            if ctrl & CTRL_CRC:
                return crc16(frame[:-2]) == frame[-2] | (frame[-1] << 8)
            return sum(frame) & 0xFF == 0
        finally:
            frame.release()

    def _reply(self, addr: int, code: int | None, now: float) -> None:
        self.stats.frames += 1
        peer = self.peers[addr]
        peer.last_reply_at = now
        peer.last_reply_code = code
        peer.replies += 1
        peer.unanswered_since = None
        if code == REPLY_NAK:
            peer.naks += 1

    def silent_for(self, addr: int, now: float) -> float:
        """How long `addr` has owed a reply (0 when it has answered everything sent to it)."""
        since = self.peers[addr].unanswered_since
        return 0.0 if since is None else now - since
