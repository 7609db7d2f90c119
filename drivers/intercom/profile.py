"""The schema of an intercom device's firmware profile (kind: intercom_panel or intercom_indoor_unit).

A profile says how the device sits on the bus (baud, addresses, turnaround), what it can do
(keypad, call buttons, QR scanner, display lines, relays; DND switch) and the commissioning plan
that hil_tests/intercom.py runs against it. Validator messages start with `@field:` (as
hil_tests.osdp_profile.at() makes them) so that hil_tests.profiles points at the line to fix.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Text = Annotated[str, Field(min_length=1, max_length=2000)]
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="lower-case id: a-z 0-9 -")]
Baud = Literal[9600, 19200, 38400, 57600, 115200]
PanelCheck = Literal["heartbeat", "display", "keypad", "qr", "call", "unlock", "retry", "tamper"]
UnitCheck = Literal["heartbeat", "ring", "answer", "unlock_request", "dnd", "retry", "tamper"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Addresses(_Strict):
    min: int = Field(0, ge=0, le=126)
    max: int = Field(126, ge=0, le=126)
    default: int = Field(1, ge=0, le=126)

    @model_validator(mode="after")
    def _inside(self) -> Addresses:
        if not self.min <= self.default <= self.max:
            raise ValueError(f"@default: default address {self.default} is outside {self.min}-{self.max}")
        return self


class Transport(_Strict):
    medium: Literal["rs485"]
    duplex: Literal["half"] = "half"
    baud: Baud = 115200
    allowed_bauds: list[Baud] = Field(min_length=1)
    framing: Literal["8N1"] = "8N1"
    addresses: Addresses = Field(default_factory=Addresses)
    turnaround_ms: float = Field(5.0, gt=0, le=100, description="the longest the device takes to start a reply")

    @model_validator(mode="after")
    def _baud_allowed(self) -> Transport:
        if self.baud not in self.allowed_bauds:
            raise ValueError(f"@baud: {self.baud} is not among allowed_bauds")
        return self


class Protocol(_Strict):
    name: Literal["linli-intercom"]
    version: Literal[1] = 1
    document: str = "docs/intercom-protocol.md"


class Capabilities(_Strict):
    keypad: bool = False
    call_buttons: int = Field(0, ge=0, le=1024)
    qr_scanner: bool = False
    display_lines: int = Field(0, ge=0, le=4)
    relays: int = Field(0, ge=0, le=8)
    tamper: bool = True
    dnd_switch: bool = False


class Firmware(_Strict):
    version_min: str | None = Field(None, pattern=r"^\d+\.\d+$")
    flashing: Text = "with the vendor's tool; the protocol has no firmware transfer"


class Check(_Strict):
    check: str
    required: bool = True
    timeout_s: float = Field(30.0, gt=0, le=600)


class IntercomProfile(_Strict):
    kind: Literal["intercom_panel", "intercom_indoor_unit"]
    id: Ident
    vendor: Text
    model: Text
    description: Text = "intercom device"
    transport: Transport
    protocol: Protocol
    capabilities: Capabilities = Field(default_factory=Capabilities)
    firmware: Firmware = Field(default_factory=Firmware)
    checks: list[Check] = Field(min_length=1)

    @model_validator(mode="after")
    def _plan_fits(self) -> IntercomProfile:
        allowed = PanelCheck.__args__ if self.kind == "intercom_panel" else UnitCheck.__args__  # type: ignore[attr-defined]
        caps = self.capabilities
        needs = {
            "display": caps.display_lines > 0,
            "keypad": caps.keypad,
            "qr": caps.qr_scanner,
            "unlock": caps.relays > 0,
            "tamper": caps.tamper,
            "dnd": caps.dnd_switch,
        }
        for i, item in enumerate(self.checks):
            if item.check not in allowed:
                choices = ", ".join(allowed)
                raise ValueError(f"@checks[{i}].check: {item.check!r} is not a check for {self.kind} ({choices})")
            if not needs.get(item.check, True):
                raise ValueError(f"@checks[{i}].check: {item.check!r} tests something the capabilities say is absent")
        return self
