"""Wiegand formats: known vectors, round trips, parity checks (a misread is never a card)."""

from __future__ import annotations

import random

import pytest

from drivers.osdp.wiegand import (
    FORMATS,
    WiegandError,
    WiegandParityError,
    bits_from_bytes,
    bits_to_bytes,
    decode,
    decode_bytes,
    encode,
)


def test_h10301_known_vector() -> None:
    # Facility 90, card 324: a published example of the 26-bit format.
    value, length = encode("H10301", 90, 324)
    assert (length, format(value, "026b")) == (26, "00101101000000001010001000")
    read = decode(value, length)
    assert (read.format, read.facility, read.card, read.bits) == ("H10301", 90, 324, 26)


@pytest.mark.parametrize(
    ("fmt", "bits", "facility_bits", "card_bits"),
    [("H10301", 26, 8, 16), ("H10306", 34, 16, 16), ("C1000_35", 35, 12, 20), ("C1000_48", 48, 22, 23)],
)
def test_round_trip_including_extremes(fmt: str, bits: int, facility_bits: int, card_bits: int) -> None:
    rng = random.Random(fmt)
    cases = [(0, 0), ((1 << facility_bits) - 1, (1 << card_bits) - 1)]
    cases += [(rng.randrange(1 << facility_bits), rng.randrange(1 << card_bits)) for _ in range(200)]
    for facility, card in cases:
        value, length = encode(fmt, facility, card)
        assert length == bits
        read = decode_bytes(bits_to_bytes(value, length), length)
        assert (read.format, read.facility, read.card) == (fmt, facility, card)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_single_bit_error_is_rejected(fmt: str) -> None:
    value, length = encode(fmt, 123, 4567)
    for position in range(length):
        corrupted = value ^ (1 << position)
        with pytest.raises(WiegandParityError):
            decode(corrupted, length)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_parity_bit_is_checked(fmt: str) -> None:
    value, length = encode(fmt, 1, 2)
    for p in FORMATS[fmt].parity:
        with pytest.raises(WiegandParityError, match=f"bit {p.position}"):
            decode(value ^ (1 << (length - 1 - p.position)), length)


def test_unknown_lengths_decode_as_raw() -> None:
    read = decode(0x1ABCDEF01, 37)
    assert (read.format, read.facility, read.card, read.bits) == ("raw", None, 0x1ABCDEF01, 37)
    assert read.raw_hex == bits_to_bytes(0x1ABCDEF01, 37).hex()


def test_bytes_are_msb_first_and_direction_reverses() -> None:
    assert bits_from_bytes(bytes([0b10110000]), 4) == 0b1011
    assert bits_from_bytes(bytes([0b10110000]), 4, reverse=True) == 0b1101
    value, _ = encode("H10301", 7, 42)
    backwards = int(format(value, "026b")[::-1], 2)
    assert decode_bytes(bits_to_bytes(backwards, 26), 26, reverse=True).card == 42
    with pytest.raises(WiegandError):
        bits_from_bytes(b"\x00", 9)


def test_fields_that_do_not_fit_are_refused() -> None:
    with pytest.raises(WiegandError, match="facility 256"):
        encode("H10301", 256, 1)
    with pytest.raises(WiegandError, match="card 65536"):
        encode("H10301", 1, 65536)
    with pytest.raises(WiegandError, match="unknown Wiegand format"):
        encode("H99999", 1, 1)
