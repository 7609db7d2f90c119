"""The schema of an OSDP reader's firmware profile (kind: osdp_reader). Loaded by hil_tests.profiles."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from drivers.osdp.model import MAX_ADDRESS
from drivers.osdp.wiegand import FORMATS, RAW

CARD_FORMATS = (*FORMATS, RAW)
CheckName = Literal["capabilities", "secure_channel", "led", "buzzer", "display", "card", "keypad", "tamper"]
# true: the reader must have it; false: it must not (a profile for one exact model); optional: either.
Presence = Literal[True, False, "optional"]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="lower-case id: a-z 0-9 -")]


def at(field: str, message: str) -> str:
    """A validator's message that names the field it is about ("checks[2].check"): model-level
    validators have no location of their own, and an error should point at the line to fix."""
    return f"@{field}: {message}"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Count(Strict):
    """How many of something the reader reports. In YAML a number means exactly that many."""

    min: int = Field(0, ge=0, le=255)
    max: int | None = Field(None, ge=0, le=255)

    @model_validator(mode="after")
    def _ordered(self) -> Count:
        if self.max is not None and self.max < self.min:
            raise ValueError(at("max", f"max ({self.max}) is below min ({self.min})"))
        return self

    def allows(self, n: int) -> bool:
        return self.min <= n and (self.max is None or n <= self.max)

    def __str__(self) -> str:
        if self.max == self.min:
            return f"exactly {self.min}"
        if self.max is None:
            return f"at least {self.min}"
        return f"{self.min} to {self.max}"


def _count(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return {"min": value, "max": value}
    return value


CountSpec = Annotated[Count, BeforeValidator(_count)]


class Addresses(Strict):
    min: int = Field(0, ge=0, le=MAX_ADDRESS)
    max: int = Field(MAX_ADDRESS, ge=0, le=MAX_ADDRESS)  # 127 is OSDP's broadcast address
    default: int = Field(0, ge=0, le=MAX_ADDRESS, description="the address the reader ships with")

    @model_validator(mode="after")
    def _inside(self) -> Addresses:
        if self.max < self.min:
            raise ValueError(at("max", f"max ({self.max}) is below min ({self.min})"))
        if not self.min <= self.default <= self.max:
            raise ValueError(at("default", f"default address {self.default} is outside {self.min}-{self.max}"))
        return self


class Transport(Strict):
    medium: Literal["rs485"]
    duplex: Literal["half"] = "half"  # OSDP runs on 2-wire half-duplex RS-485
    baud: int = Field(description="the reader's factory baud rate, used unless --baud says otherwise")
    allowed_bauds: list[Literal[9600, 19200, 38400, 57600, 115200, 230400]] = Field(min_length=1)
    framing: Literal["8N1"] = "8N1"  # the only framing OSDP defines
    addresses: Addresses = Field(default_factory=Addresses)
    notes: Text | None = None

    @model_validator(mode="after")
    def _baud_allowed(self) -> Transport:
        if self.baud not in self.allowed_bauds:
            raise ValueError(at("baud", f"baud {self.baud} is not one of allowed_bauds {self.allowed_bauds}"))
        return self


class Protocol(Strict):
    name: Literal["osdp"]
    version: Literal[2] = Field(description="OSDP major version: 2 (IEC 60839-11-5)")
    stack: Literal["libosdp"] = "libosdp"
    notes: Text | None = None


class Identity(Strict):
    """What the reader's ID report (osdp_PDID) must say; unset fields accept anything."""

    vendor_code: int | None = Field(None, ge=0, le=0xFFFFFF, description="IEEE OUI, e.g. 0x4C494E")
    model: int | None = Field(None, ge=0, le=255)
    firmware_min: str | None = Field(None, pattern=r"^\d{1,3}\.\d{1,3}\.\d{1,3}$")


class Capabilities(Strict):
    card_formats: list[Literal[CARD_FORMATS]] = Field(  # type: ignore[valid-type]
        description="Wiegand formats the reader may report; 'raw' lets any other bit length through"
    )
    # OSDP has no capability code for a keypad or for tamper: only the keypad and tamper checks
    # can show them, so these say what the test plan may ask of the reader.
    keypad: bool
    tamper: bool
    leds: CountSpec
    buzzer: Presence
    display: Presence
    inputs: CountSpec
    outputs: CountSpec

    @model_validator(mode="after")
    def _unique_formats(self) -> Capabilities:
        dupes = sorted({f for f in self.card_formats if self.card_formats.count(f) > 1})
        if dupes:
            raise ValueError(at("card_formats", f"lists {', '.join(dupes)} more than once"))
        return self


class SecureChannel(Strict):
    required: bool
    # install_mode: a factory-fresh reader accepts only the default key SCBK-D; commissioning joins
    #   with it and sends the reader its own key (osdp_KEYSET). preset_key: the key is put into the
    #   reader with the vendor's tool and must already be in the key file. none: plaintext only.
    commissioning: Literal["install_mode", "preset_key", "none"]
    notes: Text | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SecureChannel:
        if self.required and self.commissioning == "none":
            message = "a required secure channel needs a way to get the key in: install_mode or preset_key"
            raise ValueError(at("commissioning", message))
        return self


class FirmwareImage(Strict):
    vendor: Text
    model: Text
    version: str = Field(pattern=r"^\d{1,3}\.\d{1,3}\.\d{1,3}$")
    file: Text  # relative to the profile's directory, or the vendor's download name
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int | None = Field(None, gt=0)
    notes: Text | None = None


class Flashing(Strict):
    supported: bool  # can Linli's tools flash this model?
    methods: list[Literal["vendor_tool", "osdp_filetransfer"]] = Field(default_factory=list)
    instructions: Text


class Firmware(Strict):
    images: list[FirmwareImage] = Field(default_factory=list)
    flashing: Flashing

    @model_validator(mode="after")
    def _flashable(self) -> Firmware:
        if self.flashing.supported and not self.images:
            raise ValueError(at("flashing.supported", "true, but no images are listed"))
        return self


class PlannedCheck(Strict):
    check: CheckName
    required: bool = True  # a required check that does not pass fails the commissioning
    timeout_s: float = Field(30.0, gt=0, le=600, description="how long to wait for the installer (real readers)")


class Commissioning(Strict):
    checks: list[PlannedCheck] = Field(min_length=1)


class OsdpReaderProfile(Strict):
    kind: Literal["osdp_reader"]
    id: Ident
    vendor: Text
    model: Text
    description: Text | None = None
    transport: Transport
    protocol: Protocol
    identity: Identity = Field(default_factory=Identity)
    capabilities: Capabilities
    secure_channel: SecureChannel
    firmware: Firmware
    commissioning: Commissioning

    @model_validator(mode="after")
    def _plan_fits_capabilities(self) -> OsdpReaderProfile:
        caps = self.capabilities
        # A plan that tests something the profile says the reader lacks can never pass.
        lacking = {
            "card": not caps.card_formats,
            "keypad": not caps.keypad,
            "tamper": not caps.tamper,
            "buzzer": caps.buzzer is False,
            "display": caps.display is False,
            "led": caps.leds.max == 0,
        }
        seen: set[str] = set()
        for i, planned in enumerate(self.commissioning.checks):
            where = f"commissioning.checks[{i}].check"
            if planned.check in seen:
                raise ValueError(at(where, f"{planned.check} is listed twice"))
            seen.add(planned.check)
            if lacking.get(planned.check):
                message = f"tests {planned.check}, which capabilities say the reader lacks"
                raise ValueError(at(where, message))
        return self

    def planned(self, check: CheckName) -> PlannedCheck | None:
        return next((c for c in self.commissioning.checks if c.check == check), None)
