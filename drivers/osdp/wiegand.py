"""Wiegand card formats: decode the bit strings OSDP readers report, and build them for the simulator.

Bits are numbered in transmission order: bit 0 is the first bit the reader sent (the leading
parity bit in every format here). OSDP carries them MSB-first in `data`, `length` bits long.

Supported formats (the common ones in residential compounds):

| name      | bits | facility | card   | parity                                                        |
|-----------|------|----------|--------|---------------------------------------------------------------|
| H10301    | 26   | 1-8      | 9-24   | 0 even over 1-12, 25 odd over 13-24                            |
| H10306    | 34   | 1-16     | 17-32  | 0 even over 1-16, 33 odd over 17-32                            |
| C1000_35  | 35   | 2-13     | 14-33  | 1 even over a 2-of-3 pattern, 34 odd over the other, 0 odd all |
| C1000_48  | 48   | 2-23     | 24-46  | same scheme as C1000_35, 48 bits long                          |

Any other length decodes as `raw`: no facility, the whole bit string as the card number. A known
length whose parity does not check raises `WiegandParityError`: a misread is never a card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Parity = Literal["even", "odd"]


class WiegandError(ValueError):
    """The bits cannot be decoded (or a card cannot be encoded) in the requested format."""


class WiegandParityError(WiegandError):
    """A parity bit does not match: the read is corrupt and must not be treated as a card."""


@dataclass(frozen=True)
class ParityBit:
    position: int
    kind: Parity
    covers: tuple[int, ...]


@dataclass(frozen=True)
class WiegandFormat:
    name: str
    bits: int
    facility: tuple[int, int]  # first bit, number of bits
    card: tuple[int, int]
    parity: tuple[ParityBit, ...]  # in the order they must be computed when encoding


@dataclass(frozen=True)
class CardRead:
    """One decoded card read. `card`/`facility` are None only where the format has no such field."""

    format: str
    bits: int
    facility: int | None
    card: int | None
    raw_hex: str  # the bits as read, MSB-first, zero-padded to whole bytes

    def as_data(self) -> dict[str, object]:
        return {
            "format": self.format,
            "facility": self.facility,
            "card": self.card,
            "bits": self.bits,
            "raw_hex": self.raw_hex,
        }


def _c1000(name: str, bits: int, facility_bits: int) -> WiegandFormat:
    # HID Corporate 1000: bit 1 is even parity over positions 2..n-2 in a repeating "2 of 3"
    # pattern, bit n-1 odd parity over the complementary pattern (which includes bit 1), and
    # bit 0 odd parity over everything after it. The pattern's phase differs between 35 and 48 bits.
    last = bits - 1
    skip_even = 1 if bits == 35 else 2
    skip_odd = 0 if bits == 35 else 1
    even = tuple(p for p in range(2, last) if p % 3 != skip_even)
    odd = tuple(p for p in range(1, last) if p % 3 != skip_odd)
    return WiegandFormat(
        name=name,
        bits=bits,
        facility=(2, facility_bits),
        card=(2 + facility_bits, bits - 3 - facility_bits),
        parity=(
            ParityBit(1, "even", even),
            ParityBit(last, "odd", odd),
            ParityBit(0, "odd", tuple(range(1, bits))),
        ),
    )


FORMATS: dict[str, WiegandFormat] = {
    f.name: f
    for f in (
        WiegandFormat(
            "H10301",
            26,
            (1, 8),
            (9, 16),
            (ParityBit(0, "even", tuple(range(1, 13))), ParityBit(25, "odd", tuple(range(13, 25)))),
        ),
        WiegandFormat(
            "H10306",
            34,
            (1, 16),
            (17, 16),
            (ParityBit(0, "even", tuple(range(1, 17))), ParityBit(33, "odd", tuple(range(17, 33)))),
        ),
        _c1000("C1000_35", 35, 12),
        _c1000("C1000_48", 48, 22),
    )
}
BY_LENGTH: dict[int, WiegandFormat] = {f.bits: f for f in FORMATS.values()}
RAW = "raw"


def _bit(value: int, bits: int, position: int) -> int:
    return (value >> (bits - 1 - position)) & 1


def _field(value: int, bits: int, start: int, width: int) -> int:
    return (value >> (bits - start - width)) & ((1 << width) - 1)


def _parity_ok(value: int, bits: int, p: ParityBit) -> bool:
    ones = sum(_bit(value, bits, i) for i in p.covers) + _bit(value, bits, p.position)
    return ones % 2 == (0 if p.kind == "even" else 1)


def bits_from_bytes(data: bytes, length: int, *, reverse: bool = False) -> int:
    """The first `length` bits of `data` (MSB-first) as an integer; `reverse` for OSDP direction 1."""
    if length <= 0 or length > len(data) * 8:
        raise WiegandError(f"{length} bits do not fit in {len(data)} bytes")
    value = int.from_bytes(data, "big") >> (len(data) * 8 - length)
    if reverse:
        value = int(format(value, f"0{length}b")[::-1], 2)
    return value


def bits_to_bytes(value: int, length: int) -> bytes:
    """Pack `length` bits MSB-first, padding the last byte with zero bits."""
    nbytes = (length + 7) // 8
    return (value << (nbytes * 8 - length)).to_bytes(nbytes, "big")


def decode(value: int, length: int) -> CardRead:
    """Decode a Wiegand read. Raises WiegandParityError for a known format with bad parity."""
    raw_hex = bits_to_bytes(value, length).hex()
    fmt = BY_LENGTH.get(length)
    if fmt is None:
        return CardRead(RAW, length, None, value, raw_hex)
    for p in fmt.parity:
        if not _parity_ok(value, length, p):
            raise WiegandParityError(f"{fmt.name}: parity bit {p.position} does not match")
    return CardRead(
        fmt.name,
        length,
        _field(value, length, *fmt.facility),
        _field(value, length, *fmt.card),
        raw_hex,
    )


def decode_bytes(data: bytes, length: int, *, reverse: bool = False) -> CardRead:
    return decode(bits_from_bytes(data, length, reverse=reverse), length)


def encode(fmt_name: str, facility: int, card: int) -> tuple[int, int]:
    """Build the bits of a card in a named format, parity included. Returns (value, length)."""
    fmt = FORMATS.get(fmt_name)
    if fmt is None:
        raise WiegandError(f"unknown Wiegand format {fmt_name!r}; known: {', '.join(FORMATS)}")
    length = fmt.bits
    value = 0
    for field_value, (start, width), label in ((facility, fmt.facility, "facility"), (card, fmt.card, "card")):
        if not 0 <= field_value < (1 << width):
            raise WiegandError(f"{fmt.name}: {label} {field_value} does not fit in {width} bits")
        value |= field_value << (length - start - width)
    for p in fmt.parity:
        ones = sum(_bit(value, length, i) for i in p.covers)
        if ones % 2 != (0 if p.kind == "even" else 1):
            value |= 1 << (length - 1 - p.position)
    return value, length
