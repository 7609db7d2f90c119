"""The OSDP driver's vocabulary: reader configuration, credentials, decisions, callbacks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import osdp_sys

from drivers.osdp.wiegand import CardRead

# Severity values understood by edge's event model (edge.events.Severity is a StrEnum of these);
# drivers do not import edge, so they pass the plain strings.
Severity = Literal["debug", "info", "warning", "alarm", "critical"]
ReportCallback = Callable[[str, str, dict[str, Any], Severity], None]

MAX_ADDRESS = 126  # 127 is the broadcast address
MAX_READERS_PER_BUS = 32  # RS-485 unit loads; also the width of the binding's status bitmask


@dataclass(frozen=True)
class ReaderConfig:
    """One reader on a bus.

    id: the name events carry (`reader`, and the event source).
    secure: require the secure channel (with this reader's SCBK from the key store).
    install_mode: commissioning: let the reader join with the default key SCBK-D and then give it
        its own key (generated if the key store has none). Turn off once commissioned; while off,
        a reader that cannot prove the right key is a security fault, never let on in plaintext.
    """

    id: str
    address: int
    secure: bool = True
    install_mode: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.address <= MAX_ADDRESS:
            raise ValueError(f"reader {self.id!r}: OSDP address {self.address} is outside 0-{MAX_ADDRESS}")
        if not self.id:
            raise ValueError("reader id must not be empty")


@dataclass(frozen=True)
class CardCredential:
    read: CardRead
    kind: Literal["card"] = "card"


@dataclass(frozen=True)
class PinCredential:
    pin: str = field(repr=False)  # the digits reach the decision callback only, never an event or a log
    kind: Literal["pin"] = "pin"


@dataclass(frozen=True)
class KeypadFunction:
    """`*` FUNCTION CODE `#` at the keypad (e.g. arming an alarm partition): the code is as secret as a PIN."""

    function: str  # one digit
    code: str = field(repr=False)
    kind: Literal["function"] = "function"


Credential = CardCredential | PinCredential | KeypadFunction


@dataclass(frozen=True)
class Decision:
    """What the access decision wants the reader to show. The driver picks LED colours and beeps."""

    granted: bool
    text: str | None = None  # shown only on readers that report a display
    feedback_ms: int = 3000


CredentialCallback = Callable[[str, Credential], Awaitable[Decision | bool | None]]


class LedColor:
    OFF = osdp_sys.LED_COLOR_NONE
    RED = osdp_sys.LED_COLOR_RED
    GREEN = osdp_sys.LED_COLOR_GREEN
    AMBER = osdp_sys.LED_COLOR_AMBER
    BLUE = osdp_sys.LED_COLOR_BLUE


# PD capability function codes (OSDP table 5.3), by the names the driver reports them under.
CAPABILITIES: dict[str, int] = {
    "contact_status": osdp_sys.CAP_CONTACT_STATUS_MONITORING,
    "output_control": osdp_sys.CAP_OUTPUT_CONTROL,
    "card_format": osdp_sys.CAP_CARD_DATA_FORMAT,
    "led": osdp_sys.CAP_READER_LED_CONTROL,
    "audible": osdp_sys.CAP_READER_AUDIBLE_OUTPUT,
    "text": osdp_sys.CAP_READER_TEXT_OUTPUT,
    "time_keeping": osdp_sys.CAP_TIME_KEEPING,
    "check_character": osdp_sys.CAP_CHECK_CHARACTER_SUPPORT,
    "security": osdp_sys.CAP_COMMUNICATION_SECURITY,
    "receive_buffer": osdp_sys.CAP_RECEIVE_BUFFERSIZE,
    "combined_message": osdp_sys.CAP_LARGEST_COMBINED_MESSAGE_SIZE,
    "smart_card": osdp_sys.CAP_SMART_CARD_SUPPORT,
    "readers": osdp_sys.CAP_READERS,
    "biometrics": osdp_sys.CAP_BIOMETRICS,
}


@dataclass(frozen=True)
class Capability:
    compliance: int
    items: int

    @property
    def present(self) -> bool:
        return self.compliance > 0 or self.items > 0
