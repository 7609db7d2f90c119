"""The site file's intercom buses: ports, panels and indoor units with their addresses (pydantic,
unknown keys are errors). The routing settings are rules/intercom's; edge/intercom_config.py joins
both into the `intercom:` section."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.serial_port import SerialPort

IdStr = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="lower-case id: a-z 0-9 _ -")]
Apartment = Annotated[str, Field(pattern=r"^[0-9A-Za-z-]{1,16}$", description="apartment number as dialled")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PanelConfig(_Strict):
    id: IdStr
    address: int = Field(ge=0, le=126)
    name: str = ""
    door: IdStr | None = Field(None, description="access-control door it opens; without one, the panel's own relay")
    relay: int = Field(0, ge=0, le=255, description="the panel relay used when no door is named")
    directory: dict[int, Apartment] = Field(default_factory=dict, description="call button -> apartment")
    home_assistant_unlock: bool = Field(
        False,
        description="an unlock button in Home Assistant for this panel's calls "
        "(HA cannot sign: the broker's ACL is all that guards it)",
    )


class IndoorUnitConfig(_Strict):
    id: IdStr
    address: int = Field(ge=0, le=126)
    name: str = ""
    apartment: Apartment | None = None
    guard: bool = Field(False, description="a guard station unit: rung when the apartment does not answer")

    @model_validator(mode="after")
    def _one_role(self) -> IndoorUnitConfig:
        if (self.apartment is None) == (not self.guard):
            raise ValueError("an indoor unit has an apartment, or is a guard station (guard: true), not both")
        return self


class IntercomBusConfig(_Strict):
    port: SerialPort
    baudrate: Literal[9600, 19200, 38400, 57600, 115200] = 115200
    panels: list[PanelConfig] = Field(default_factory=list, max_length=32)
    indoor_units: list[IndoorUnitConfig] = Field(default_factory=list, max_length=126)

    @model_validator(mode="after")
    def _addresses_unique(self) -> IntercomBusConfig:
        addresses = [d.address for d in [*self.panels, *self.indoor_units]]
        dupes = sorted({a for a in addresses if addresses.count(a) > 1})
        if dupes:
            raise ValueError(f"address {dupes[0]} is used twice on this bus")
        return self
