"""The intercom wire format: the document's worked examples byte for byte, and a fuzzed decoder
(garbage, truncated frames, bad CRCs, wrong lengths are counted and ignored, never acted on)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.intercom.device import DeviceEndpoint
from drivers.intercom.protocol import (
    MAX_PAYLOAD,
    Ack,
    Answer,
    CallCancel,
    CallRequest,
    CallState,
    CallStateMsg,
    DeviceKind,
    Display,
    Dnd,
    Frame,
    FrameDecoder,
    HangUp,
    Heartbeat,
    KeypadCode,
    Message,
    Nak,
    NakReason,
    Poll,
    ProtocolError,
    QrToken,
    Ring,
    RingStop,
    SetDnd,
    Status,
    Tamper,
    Unlock,
    UnlockRequest,
    crc16,
    decode_message,
    next_seq,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "intercom-protocol.md"

# (address, seq, reply, message) for each row of the document's worked examples, in order.
EXAMPLES: list[tuple[int, int, bool, Message]] = [
    (1, 0, False, Poll()),
    (1, 0, True, Ack()),
    (1, 1, False, Heartbeat()),
    (1, 1, True, Status(DeviceKind.PANEL, (1, 2), uptime_s=3600)),
    (1, 2, False, Poll()),
    (1, 2, True, CallRequest(apartment="1203")),
    (1, 3, True, CallRequest(entry=5)),
    (1, 4, False, CallStateMsg(7, CallState.RINGING)),
    (10, 1, False, Ring(7, 1)),
    (10, 2, True, Answer(7)),
    (10, 3, True, UnlockRequest(7)),
    (1, 5, False, Unlock(0, 50)),
    (11, 4, False, RingStop(7, CallState.ANSWERED)),
    (1, 6, False, Display("Welcome", 0)),
    (1, 7, True, KeypadCode("1234")),
    (1, 8, True, QrToken(b"AB12")),
    (1, 9, True, Tamper(True)),
    (10, 4, True, HangUp(7)),
    (10, 5, True, Dnd(True)),
    (10, 6, False, SetDnd(False)),
    (1, 10, True, CallCancel()),
    (1, 11, True, Nak(NakReason.NOT_SUPPORTED)),
]


def doc_examples() -> list[bytes]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## 6. Worked examples") :]
    return [bytes.fromhex(h) for h in re.findall(r"^\| [^|]+ \| `([0-9A-F ]+)` \|$", section, re.M)]


def crc_bitwise(data: bytes) -> int:
    """CRC-16/AUG-CCITT from its definition (poly 0x1021, init 0x1D0F), independent of binascii."""
    crc = 0x1D0F
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def test_crc_is_aug_ccitt() -> None:
    assert crc16(b"123456789") == crc_bitwise(b"123456789") == 0xE5CC


def test_document_examples_byte_for_byte() -> None:
    frames = doc_examples()
    assert len(frames) == len(EXAMPLES)
    for raw, (address, seq, reply, msg) in zip(frames, EXAMPLES, strict=True):
        expected = Frame(address, seq, msg.code, msg.payload(), reply=reply)
        assert expected.encode() == raw, f"{msg!r}: {expected.encode().hex(' ')} != {raw.hex(' ')}"
        # The CRC covers SOM..payload and is sent low byte first.
        assert raw[-2:] == crc_bitwise(raw[:-2]).to_bytes(2, "little")
        assert raw[3] == len(raw) - 7
        decoder = FrameDecoder()
        (frame,) = decoder.feed(raw)
        assert frame == expected
        assert decode_message(frame.code, frame.payload) == msg


def test_the_document_states_the_worked_crc() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "is `0xE2EF`, sent as `EF E2`" in text
    assert crc16(bytes.fromhex("A501000060")) == 0xE2EF


def test_decoder_resynchronises_after_noise_and_inside_a_broken_frame() -> None:
    good = [Frame(1, 2, 0x60).encode(), Frame(10, 3, 0x55, b"\x07\x00", reply=True).encode()]
    broken = bytearray(good[0])
    broken[-1] ^= 0xFF
    decoder = FrameDecoder()
    stream = b"\x00\xff\x13" + bytes(broken) + b"\xa5" + good[0] + b"\x11" + good[1][:4]
    frames = decoder.feed(stream)
    assert frames == [Frame(1, 2, 0x60)]
    assert decoder.feed(good[1][4:]) == [Frame(10, 3, 0x55, b"\x07\x00", reply=True)]
    assert decoder.stats.bad_crc >= 1 and decoder.stats.noise_bytes >= 3


def test_bad_length_and_reserved_bits_are_rejected() -> None:
    decoder = FrameDecoder()
    over = bytes([0xA5, 0x01, 0x01, MAX_PAYLOAD + 1, 0x60])
    reserved = Frame(1, 1, 0x60).encode()
    reserved = reserved[:2] + b"\x31" + reserved[3:]
    assert decoder.feed(over + reserved) == []
    assert decoder.stats.bad_length == 2


@pytest.mark.parametrize(
    ("code", "payload"),
    [
        (0x50, b""),  # CALL_REQUEST without a kind
        (0x50, b"\x00"),  # empty apartment
        (0x50, b"\x00" + b"1" * 17),  # too long
        (0x50, b"\x00\x31\x00"),  # a NUL inside
        (0x50, b"\x01\x05"),  # entry too short
        (0x50, b"\x02\x05\x00"),  # unknown kind
        (0x52, b"12#4"),  # keypad: only digits and *
        (0x53, b""),  # QR: empty
        (0x55, b"\x07"),  # ANSWER: 1 byte for a u16
        (0x54, b"\x02"),  # TAMPER: not a flag
        (0x41, b"\x03\x01\x00\x00\x00\x00\x00\x00"),  # STATUS: unknown kind
        (0x41, b"\x01\x01\x00\x08\x00\x00\x00\x00"),  # STATUS: reserved flag
        (0x62, b"\x00\x00\x00"),  # UNLOCK: pulse 0
        (0x62, b"\x00\x71\x17"),  # UNLOCK: pulse 6001
        (0x63, b"\x04hi"),  # DISPLAY: line 4
        (0x63, b"\x00\xff\xfe"),  # DISPLAY: not UTF-8
        (0x64, b"\x07\x00\x09"),  # CALL_STATE: unknown state
        (0x60, b"\x00"),  # POLL with a payload
        (0x7E, b""),  # unknown code
    ],
)
def test_malformed_payloads_raise(code: int, payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_message(code, payload)


def test_encoding_refuses_what_it_could_not_send() -> None:
    for msg in (CallRequest(), CallRequest(apartment="12 03"), KeypadCode("12a"), Display("x" * 65), Unlock(0, 0)):
        with pytest.raises(ProtocolError):
            msg.payload()
    with pytest.raises(ProtocolError):
        Frame(128, 1, 0x60).encode()
    with pytest.raises(ProtocolError):
        Frame(1, 16, 0x60).encode()


def test_sequence_cycles_1_to_15_and_never_back_to_0() -> None:
    seq, seen = 0, []
    for _ in range(32):
        seq = next_seq(seq)
        seen.append(seq)
    assert 0 not in seen and set(seen) == set(range(1, 16))


class Door:
    """A device endpoint whose only action is counting unlocks."""

    def __init__(self) -> None:
        self.unlocks = 0
        self.endpoint = DeviceEndpoint(1, self.handle)
        self.decoder = FrameDecoder()

    def handle(self, msg: Message) -> Message:
        if isinstance(msg, Unlock):
            self.unlocks += 1
        return Ack()

    def feed(self, data: bytes) -> list[bytes]:
        return [r for f in self.decoder.feed(data) if (r := self.endpoint.on_frame(f)) is not None]


def test_device_answers_a_retry_from_its_cache_and_acts_once() -> None:
    door = Door()
    unlock = Frame(1, 5, Unlock.code, Unlock(0, 50).payload()).encode()
    first = door.feed(unlock)
    again = door.feed(unlock)
    assert first == again == [Frame(1, 5, Ack.code, reply=True).encode()]
    assert door.unlocks == 1 and door.endpoint.stats.retransmits == 1
    door.feed(Frame(1, 6, Unlock.code, Unlock(0, 50).payload()).encode())  # a new sequence is a new command
    assert door.unlocks == 2
    door.feed(Frame(1, 0, Poll.code).encode())  # reset
    door.feed(Frame(1, 6, Unlock.code, Unlock(0, 50).payload()).encode())  # 6 again, but after a reset
    assert door.unlocks == 3


def test_device_ignores_other_addresses_and_replies_and_naks_bad_commands() -> None:
    door = Door()
    assert door.feed(Frame(2, 1, Unlock.code, Unlock(0, 50).payload()).encode()) == []
    assert door.feed(Frame(1, 1, Unlock.code, Unlock(0, 50).payload(), reply=True).encode()) == []
    (nak,) = door.feed(Frame(1, 2, Unlock.code, b"\x00\x00\x00").encode())
    assert nak == Frame(1, 2, Nak.code, bytes([NakReason.BAD_PAYLOAD]), reply=True).encode()
    (nak,) = door.feed(Frame(1, 3, Answer.code, b"\x07\x00").encode())  # a reply code sent as a command
    assert nak[5] == NakReason.UNKNOWN_COMMAND
    assert door.unlocks == 0


# ---- fuzzing -----------------------------------------------------------------------------------

valid_frames = st.builds(
    lambda a, s, c, p, r: Frame(a, s, c, p, r).encode(),
    st.integers(0, 127),
    st.integers(0, 15),
    st.integers(0, 255),
    st.binary(max_size=40),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(valid_frames, st.binary(max_size=60)), max_size=12))
def test_decoder_finds_every_intact_frame_in_any_stream(chunks: list[bytes]) -> None:
    stream = b"".join(chunks)
    decoder = FrameDecoder()
    frames = decoder.feed(stream)
    for frame in frames:
        raw = frame.encode()
        assert raw in stream  # nothing is invented: every frame out was on the wire intact
    assert decoder.pending <= len(stream)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_decoder_output_is_the_same_however_the_bytes_are_split(stream: bytes, step: int) -> None:
    whole = FrameDecoder().feed(stream)
    split = FrameDecoder()
    pieces = [f for i in range(0, len(stream), step) for f in split.feed(stream[i : i + step])]
    assert pieces == whole


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(0, 10_000), st.integers(1, 255))
def test_a_corrupted_unlock_is_never_acted_on(noise: bytes, where: int, flip: int) -> None:
    """Any single corrupted byte, truncation or bad length in an UNLOCK: counted and ignored."""
    door = Door()
    raw = bytearray(Frame(1, 3, Unlock.code, Unlock(0, 50).payload()).encode())
    i = where % len(raw)
    raw[i] ^= flip
    door.feed(noise + bytes(raw) + noise)
    assert door.unlocks == 0
    truncated = Frame(1, 4, Unlock.code, Unlock(0, 50).payload()).encode()[: 1 + where % 9]
    door.feed(truncated)
    wrong_length = bytearray(Frame(1, 5, Unlock.code, Unlock(0, 50).payload()).encode())
    wrong_length[3] = (wrong_length[3] + flip) % 256
    door.feed(bytes(wrong_length))
    assert door.unlocks == 0
    stats = door.decoder.stats
    assert stats.bad_crc + stats.bad_length + stats.noise_bytes > 0 or door.decoder.pending > 0


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=MAX_PAYLOAD))
def test_decode_message_only_raises_protocol_error(code: int, payload: bytes) -> None:
    try:
        msg = decode_message(code, payload)
    except ProtocolError:
        return
    assert decode_message(msg.code, msg.payload()) == msg  # what parses, round-trips
