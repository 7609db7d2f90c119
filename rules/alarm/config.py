"""The site file's `alarm:` section: partitions, zones, sirens, user codes, cross-zone groups.

Pydantic models (extra keys are errors, like the rest of the site file). Cross-references (a zone's
partition exists, a cross-zone group names known zones, ...) are reported by
:meth:`AlarmSection.problems` with the path of the field at fault, so the site-file loader can point
at each one's own line.

User codes are stored as keyed hashes (``hs256$...``, :class:`rules.access.PinHasher`'s PIN-only
form under the site's PIN key in ``data_dir/pin.key``): never as digits.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="lower-case id: a-z 0-9 _ -")]
PointName = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="di0..di15, ai0.., do0.., input0.., zone")
]

ArmMode = Literal["away", "home", "night", "vacation"]
ARM_MODES: tuple[ArmMode, ...] = ("away", "home", "night", "vacation")
ZoneType = Literal["instant", "entry_exit", "follower", "24h", "fire", "tamper", "panic", "perimeter"]
# Zones that are watched whatever the arm mode (even disarmed) and can never be bypassed.
ALWAYS_ARMED: frozenset[str] = frozenset({"24h", "fire", "tamper", "panic"})
# Default per-mode enablement: doors, windows and the fence in every mode; interior motion only
# when nobody is home.
DEFAULT_MODES: dict[str, tuple[ArmMode, ...]] = {
    "instant": ("away", "vacation"),
    "follower": ("away", "vacation"),
    "entry_exit": ARM_MODES,
    "perimeter": ARM_MODES,
}
# Home Assistant binary_sensor device classes a zone may show as.
DeviceClass = Literal[
    "door", "window", "opening", "motion", "occupancy", "smoke", "moisture", "vibration", "tamper", "safety",
    "problem", "gas", "carbon_monoxide", "heat",
]
DEFAULT_DEVICE_CLASS: dict[str, str] = {
    "instant": "motion",
    "follower": "motion",
    "entry_exit": "door",
    "perimeter": "opening",
    "24h": "safety",
    "fire": "smoke",
    "tamper": "tamper",
    "panic": "safety",
}
CodeAction = Literal["arm", "disarm", "bypass"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PointRef(_Strict):
    """A device's input or output point (the shared driver contract: device id + point name)."""

    device: Ident
    point: PointName


class PartitionConfig(_Strict):
    id: Ident
    name: str = ""
    apartment: str | None = Field(None, description="a resident's apartment: residents of it may arm/disarm it")
    entry_delay_s: float = Field(30.0, ge=0, le=600)
    exit_delay_s: float = Field(60.0, ge=0, le=600)
    siren_s: float = Field(180.0, gt=0, le=3600, description="how long the sirens sound per alarm")


class ZoneConfig(_Strict):
    id: Ident
    name: str = ""
    type: ZoneType = "instant"
    partition: Ident
    source: PointRef
    modes: tuple[ArmMode, ...] | None = Field(
        None, description="arm modes the zone is watched in; default by type (24h/fire/tamper/panic: always)"
    )
    silent: bool = Field(False, description="alarm without sirens (e.g. a hold-up button)")
    device_class: DeviceClass | None = Field(None, description="Home Assistant binary_sensor class; default by type")

    @model_validator(mode="after")
    def _modes(self) -> ZoneConfig:
        if self.modes is not None and self.type in ALWAYS_ARMED:
            raise ValueError(f"modes: a {self.type} zone is watched in every mode; remove `modes`")
        return self

    def enabled_in(self, mode: str) -> bool:
        if self.type in ALWAYS_ARMED:
            return True
        modes = self.modes if self.modes is not None else DEFAULT_MODES[self.type]
        return mode in modes

    @property
    def ha_device_class(self) -> str:
        return self.device_class or DEFAULT_DEVICE_CLASS[self.type]


class SirenConfig(_Strict):
    id: Ident
    name: str = ""
    partitions: tuple[Ident, ...] = Field((), description="partitions it sounds for; empty: all")
    output: PointRef | None = Field(None, description="a Modbus coil (device, point do0..)")
    zigbee: Ident | None = Field(None, description="a Zigbee IAS WD siren's device id")

    @model_validator(mode="after")
    def _one_output(self) -> SirenConfig:
        if (self.output is None) == (self.zigbee is None):
            raise ValueError("a siren has exactly one of `output` (Modbus coil) or `zigbee` (device id)")
        return self

    def sounds_for(self, partition: str) -> bool:
        return not self.partitions or partition in self.partitions


class UserCode(_Strict):
    user: Ident = Field(description="who the code belongs to (named in the events)")
    code_hash: str = Field(pattern=r"^hs256\$[0-9a-f]{64}$", description="`linli hash-code` under data_dir/pin.key")
    partitions: tuple[Ident, ...] = Field(min_length=1)
    actions: tuple[CodeAction, ...] = ("arm", "disarm", "bypass")
    duress: bool = Field(False, description="disarms as asked and raises a silent alarm.duress")


class CrossZoneGroup(_Strict):
    """Zones that confirm each other: one alone only warns; two within `window_s` are an alarm."""

    id: Ident
    zones: tuple[Ident, ...] = Field(min_length=2)
    window_s: float = Field(30.0, gt=0, le=3600)


class AlarmSection(_Strict):
    partitions: tuple[PartitionConfig, ...] = ()
    zones: tuple[ZoneConfig, ...] = ()
    sirens: tuple[SirenConfig, ...] = ()
    codes: tuple[UserCode, ...] = ()
    cross_zones: tuple[CrossZoneGroup, ...] = ()
    max_code_attempts: int = Field(5, ge=1, le=100, description="wrong codes in a row before the lockout")
    lockout_s: float = Field(300.0, gt=0, le=86_400)

    def problems(self, devices: Collection[str] | None = None) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-references that do not hold, each with its path inside the section. With `devices`
        (the site's device ids), zone sources and siren outputs must name one of them: a misspelt
        device would otherwise be a zone that never trips."""
        out: list[tuple[tuple[str | int, ...], str]] = []
        if devices is not None:
            for i, z in enumerate(self.zones):
                if z.source.device not in devices:
                    out.append((("zones", i, "source", "device"), f"no device {z.source.device!r} in the site file"))
            for i, s in enumerate(self.sirens):
                ref = ("output", "device") if s.output is not None else ("zigbee",)
                device = s.output.device if s.output is not None else str(s.zigbee)
                if device not in devices:
                    out.append((("sirens", i, *ref), f"no device {device!r} in the site file"))
        for section in ("partitions", "zones", "sirens", "cross_zones"):
            seen: set[str] = set()
            for i, item in enumerate(getattr(self, section)):
                if item.id in seen:
                    out.append(((section, i, "id"), f"duplicate id {item.id!r}"))
                seen.add(item.id)
        partitions = {p.id for p in self.partitions}
        zones = {z.id: z for z in self.zones}
        sources: dict[tuple[str, str], str] = {}
        for i, z in enumerate(self.zones):
            if z.partition not in partitions:
                out.append((("zones", i, "partition"), f"no partition {z.partition!r} in alarm.partitions"))
            key = (z.source.device, z.source.point)
            if key in sources and sources[key] != z.id:
                out.append((("zones", i, "source"), f"{key[0]}/{key[1]} is already zone {sources[key]!r}"))
            sources.setdefault(key, z.id)
        outputs: set[tuple[str, str]] = set()
        for i, s in enumerate(self.sirens):
            for j, p in enumerate(s.partitions):
                if p not in partitions:
                    out.append((("sirens", i, "partitions", j), f"no partition {p!r} in alarm.partitions"))
            if s.output is not None:
                key = (s.output.device, s.output.point)
                if key in sources:
                    out.append((("sirens", i, "output"), f"{key[0]}/{key[1]} is zone {sources[key]!r}'s input"))
                if key in outputs:
                    out.append((("sirens", i, "output"), f"{key[0]}/{key[1]} drives another siren"))
                outputs.add(key)
        hashes: set[str] = set()
        for i, c in enumerate(self.codes):
            for j, p in enumerate(c.partitions):
                if p not in partitions:
                    out.append((("codes", i, "partitions", j), f"no partition {p!r} in alarm.partitions"))
            if c.code_hash in hashes:
                # One code for two users could not tell them apart (nor a duress code from a normal one).
                out.append((("codes", i, "code_hash"), "the same code is given twice"))
            hashes.add(c.code_hash)
        grouped: set[str] = set()
        for i, g in enumerate(self.cross_zones):
            for j, zid in enumerate(g.zones):
                zone = zones.get(zid)
                if zone is None:
                    out.append((("cross_zones", i, "zones", j), f"no zone {zid!r} in alarm.zones"))
                elif zone.type in ALWAYS_ARMED:
                    out.append((("cross_zones", i, "zones", j), f"a {zone.type} zone never waits for confirmation"))
                elif zid in grouped:
                    out.append((("cross_zones", i, "zones", j), f"zone {zid!r} is in two cross-zone groups"))
                grouped.add(zid)
        return out
