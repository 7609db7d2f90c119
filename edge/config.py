"""The site file: one YAML document, validated with pydantic, errors pointing at file:line:col.

Sections that later features fill (doors, zones, cameras, rules) are already part of the schema so
a site file written today keeps validating; unknown keys are always errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drivers.modbus.config import ModbusSection
from drivers.serial_port import SerialPort
from drivers.zigbee.config import ZigbeeSection
from edge.events import Priority
from edge.intercom_config import IntercomSection
from edge.vision_config import VisionSiteSection
from edge.yamlfile import ConfigError, ConfigIssue, read_yaml
from rules.alarm.config import AlarmSection

if TYPE_CHECKING:
    from rules.door import DoorSettings

Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="lower-case id: a-z 0-9 _ -")]


def _not_reserved(value: str) -> str:
    if value == "controller":
        raise ValueError("'controller' is reserved for the controller itself")
    return value


# A device's id names its MQTT state topic, where `controller` is the controller's own.
DeviceId = Annotated[Ident, AfterValidator(_not_reserved)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteSection(Strict):
    id: Ident
    name: str = ""
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class ControllerSection(Strict):
    id: Ident
    name: str = ""


class TlsSection(Strict):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(False, description="skip hostname verification (testing only)")

    @model_validator(mode="after")
    def _cert_and_key(self) -> TlsSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class BackoffSection(Strict):
    initial_s: float = Field(0.5, gt=0)
    max_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> BackoffSection:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be at least initial_s")
        return self


class CommandsSection(Strict):
    hmac_key_file: Path | None = Field(None, description="file with the shared HMAC-SHA256 key")
    ed25519_public_keys: list[str] = Field(default_factory=list, description="base64 raw public keys")
    max_skew_s: float = Field(30.0, gt=0, le=600)
    max_bytes: int = Field(16384, ge=256, le=1_048_576)


class UplinkSection(Strict):
    enabled: bool = True
    broker: str | None = Field(None, pattern=r"^mqtts?://[^/\s]+$", description="mqtt://host:port or mqtts://host:port")
    username: str | None = None
    password_file: Path | None = None
    client_id: str | None = None
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    keepalive_s: int = Field(30, ge=5, le=3600)
    tls: TlsSection | None = None
    inflight: int = Field(100, ge=1, le=1000)
    backoff: BackoffSection = BackoffSection()
    commands: CommandsSection = CommandsSection()


class HomeAssistantSection(Strict):
    enabled: bool = True
    discovery_prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_-]+$")


class ApiSection(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    session_ttl_s: int = Field(12 * 3600, ge=60)


class ZeroconfSection(Strict):
    enabled: bool = True


class JournalSection(Strict):
    file: Path = Path("journal.db")
    budget_mb: float = Field(512, gt=0)
    max_age_days: dict[Literal["telemetry", "normal", "security"], float] = Field(
        default_factory=lambda: {"telemetry": 7, "normal": 90, "security": 365}
    )
    linger_ms: float = Field(0, ge=0, le=20, description="extra wait to grow commit batches")

    def max_age_s(self) -> dict[Priority, float]:
        return {Priority[k.upper()]: v * 86400 for k, v in self.max_age_days.items()}


class UserConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    role: Literal["resident", "installer", "manager", "admin"]
    password_hash: str = Field(pattern=r"^\$argon2(id|i|d)\$", description="argon2 hash: `linli hash-password`")
    apartment: str | None = None


class DeviceConfig(Strict):
    id: DeviceId
    name: str = ""
    kind: str = Field(description="device family, e.g. reader, io_module, sensor, siren, panel")
    driver: str = Field(description="driver that talks to it, e.g. simulated, osdp, modbus, zigbee")


class _DoorIoRef(Strict):
    """Where a door's relay or sensor is wired: an OSDP reader's, or a Modbus I/O module's."""

    reader: Ident | None = Field(None, description="an OSDP reader (osdp: buses: readers:)")
    module: Ident | None = Field(None, description="a Modbus I/O module (modbus: buses: modules:)")

    @model_validator(mode="after")
    def _one_device(self) -> Self:
        if (self.reader is None) == (self.module is None):
            raise ValueError("give either reader (OSDP) or module (Modbus), not both")
        return self

    @property
    def device(self) -> str:
        device = self.reader or self.module
        assert device is not None
        return device


class DoorOutputRef(_DoorIoRef):
    """The lock relay: a reader output, or a module's coil (do<N>)."""

    output: int = Field(0, ge=0, le=15, description="the output (coil) number, from 0")

    @property
    def point(self) -> str:
        return f"do{self.output}"


class DoorInputRef(_DoorIoRef):
    """A sensor (door position switch, exit button): a reader input, or a module's discrete input (di<N>)."""

    input: int = Field(ge=0, le=15, description="the input number, from 0")

    @property
    def point(self) -> str:
        return f"di{self.input}" if self.module is not None else f"input{self.input}"


class DoorConfig(Strict):
    """A door: its lock mode, where its lock relay, DPS and REX are wired, and its timings.

    The timing fields are those of rules.door.DoorSettings and are checked by it (e.g. the pre-alarm
    must come before the held-open alarm).
    """

    id: Ident
    name: str = ""
    lock_mode: Literal["fail_safe", "fail_secure"] = "fail_secure"
    lock: DoorOutputRef | None = Field(None, description="the lock relay's reader output")
    dps: DoorInputRef | None = Field(None, description="door position switch (active = open)")
    rex: DoorInputRef | None = Field(None, description="request-to-exit button (active = pressed)")
    strike_s: float = Field(5.0, gt=0, le=600)
    extended_unlock_s: float = Field(15.0, gt=0, le=600)
    held_open_s: float = Field(30.0, gt=0, le=86_400)
    extended_held_open_s: float = Field(60.0, gt=0, le=86_400)
    held_open_pre_alarm_s: float = Field(10.0, ge=0, le=86_400)
    rex_action: Literal["unlock", "shunt"] = "unlock"
    relock_on_close: bool = True
    lock_lease_s: float = Field(
        3.0,
        ge=0,
        le=25.5,
        description="a powered lock relay is held as a reader-timed pulse renewed every third of this, so "
        "if Linli dies or the bus is cut the reader unpowers it (the lock mode's safe state) within this time. "
        "0: hold it with a permanent command (only for readers whose outputs have no timer).",
    )
    remote_unlock: list[Literal["platform", "api", "home_assistant", "intercom", "vision"]] = Field(
        default_factory=list,
        description="who may unlock this door from afar: platform (signed MQTT command door/unlock), api "
        "(managers in the web UI), home_assistant (its lock entity; HA cannot sign, so only the broker's ACL "
        "guards it), intercom (a resident answering a call at this door's panel), vision (a plate on the parking "
        "allow-list at a gate camera). Default: nobody.",
    )

    @model_validator(mode="after")
    def _timings(self) -> DoorConfig:
        self.settings()  # DoorSettings' own consistency rules; its ValueError names the field
        return self

    def settings(self) -> DoorSettings:
        from rules.door import DoorSettings

        return DoorSettings(
            door_id=self.id,
            lock_mode=self.lock_mode,
            strike_s=self.strike_s,
            extended_unlock_s=self.extended_unlock_s,
            held_open_s=self.held_open_s,
            extended_held_open_s=self.extended_held_open_s,
            held_open_pre_alarm_s=self.held_open_pre_alarm_s,
            rex_action=self.rex_action,
            relock_on_close=self.relock_on_close,
        )


class OsdpReaderConfig(Strict):
    id: DeviceId
    address: int = Field(ge=0, le=126, description="OSDP address (127 is broadcast)")
    door: Ident = Field(description="the door this reader stands at")
    direction: Literal["in", "out"] = Field("in", description="in: from the door's area_from into its area_to")
    secure: bool = True
    install_mode: bool = Field(False, description="commissioning: accept SCBK-D once and give the reader its key")
    alarm_partition: Ident | None = Field(
        None,
        description="the alarm partition this reader's keypad controls: *1 CODE # arms away, *2 home, *3 night, "
        "*0 CODE # disarms (CODE: an alarm user code)",
    )


class OsdpBusConfig(Strict):
    port: SerialPort
    baudrate: Literal[9600, 19200, 38400, 57600, 115200, 230400] = 9600
    key_file: Path = Field(Path("osdp-keys.json"), description="secure channel keys (mode 0600); relative to data_dir")
    readers: list[OsdpReaderConfig] = Field(min_length=1, max_length=32)

    @model_validator(mode="after")
    def _addresses_unique(self) -> OsdpBusConfig:
        addresses = [r.address for r in self.readers]
        dupes = sorted({a for a in addresses if addresses.count(a) > 1})
        if dupes:
            raise ValueError(f"readers: OSDP address {dupes[0]} is used twice on this bus")
        return self


class OsdpSection(Strict):
    buses: list[OsdpBusConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> OsdpSection:
        ports = [b.port for b in self.buses]
        if len(set(ports)) != len(ports):
            raise ValueError("buses: the same port is configured twice")
        ids = [r.id for b in self.buses for r in b.readers]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"readers: duplicate reader id {dupes[0]!r}")
        return self

    def readers(self) -> dict[str, OsdpReaderConfig]:
        return {r.id: r for b in self.buses for r in b.readers}


class RuleConfig(Strict):
    id: Ident
    name: str = ""
    enabled: bool = True


class SiteConfig(Strict):
    """A Linli site file."""

    site: SiteSection
    controller: ControllerSection
    data_dir: Path = Field(Path("linli-data"), description="journal and keys; relative to this file")
    uplink: UplinkSection = UplinkSection()
    homeassistant: HomeAssistantSection = HomeAssistantSection()
    api: ApiSection = ApiSection()
    zeroconf: ZeroconfSection = ZeroconfSection()
    journal: JournalSection = JournalSection()
    users: list[UserConfig] = Field(default_factory=list)
    devices: list[DeviceConfig] = Field(default_factory=list)
    doors: list[DoorConfig] = Field(default_factory=list)
    vision: VisionSiteSection | None = Field(None, description="cameras, model, zones, patrol, parking")
    rules: list[RuleConfig] = Field(default_factory=list)
    osdp: OsdpSection = OsdpSection()
    modbus: ModbusSection = ModbusSection()
    zigbee: ZigbeeSection | None = Field(None, description="Zigbee coordinator and devices (drivers/zigbee/config.py)")
    alarm: AlarmSection = AlarmSection()
    intercom: IntercomSection = IntercomSection()

    @model_validator(mode="after")
    def _unique_ids(self) -> SiteConfig:
        for section in ("users", "devices", "doors", "rules"):
            seen: set[str] = set()
            for item in getattr(self, section):
                key = item.name if section == "users" else item.id
                if key in seen:
                    raise ValueError(f"{section}: duplicate {'name' if section == 'users' else 'id'} {key!r}")
                seen.add(key)
        return self

    def wiring_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-references between readers and doors, each with the path of the field at fault.

        Checked by parse_config (not a validator) so that each problem points at its own line.
        """
        problems: list[tuple[tuple[str | int, ...], str]] = []
        doors = {d.id for d in self.doors}
        readers = self.osdp.readers()
        for b, bus in enumerate(self.osdp.buses):
            for r, reader in enumerate(bus.readers):
                if reader.door not in doors:
                    problems.append((("osdp", "buses", b, "readers", r, "door"), f"no door {reader.door!r} in doors"))
                partition = reader.alarm_partition
                if partition is not None and partition not in {p.id for p in self.alarm.partitions}:
                    loc = ("osdp", "buses", b, "readers", r, "alarm_partition")
                    problems.append((loc, f"no alarm partition {partition!r}"))
        modules = {m.id: m for bus in self.modbus.buses for m in bus.modules}
        for d, door in enumerate(self.doors):
            for field in ("lock", "dps", "rex"):
                ref = getattr(door, field)
                if ref is None:
                    continue
                if ref.reader is not None and ref.reader not in readers:
                    problems.append((("doors", d, field, "reader"), f"no OSDP reader {ref.reader!r}"))
                elif ref.module is not None:
                    module = modules.get(ref.module)
                    if module is None:
                        problems.append((("doors", d, field, "module"), f"no Modbus module {ref.module!r}"))
                        continue
                    what, count, number = (
                        ("coils", module.coils, ref.output) if field == "lock" else ("inputs", module.inputs, ref.input)
                    )
                    if number >= count:
                        problems.append((("doors", d, field), f"module {ref.module!r} has {count} {what}"))
            dps, rex = door.dps, door.rex
            if dps is not None and rex is not None and (dps.device, dps.point) == (rex.device, rex.point):
                problems.append((("doors", d, "rex"), "dps and rex are wired to the same input"))
        devices = {d.id for d in self.device_configs()}
        problems += [(("alarm", *loc), message) for loc, message in self.alarm.problems(devices)]
        if self.vision is not None:
            problems += self.vision.wiring_problems(set(readers), {d.id: list(d.remote_unlock) for d in self.doors})
        return problems

    def device_configs(self) -> list[DeviceConfig]:
        """The devices section plus one device per OSDP reader (kind reader, driver osdp)."""
        listed = {d.id for d in self.devices}
        readers = [
            DeviceConfig(id=r.id, name=r.id, kind="reader", driver="osdp")
            for r in self.osdp.readers().values()
            if r.id not in listed
        ]
        modules = [
            DeviceConfig(id=m.id, name=m.name or m.id, kind="io_module", driver="modbus")
            for m in self.modbus.modules().values()
            if m.id not in listed
        ]
        intercom = [
            DeviceConfig(id=d.id, name=d.name or d.id, kind=kind, driver="intercom")
            for kind, group in (("panel", self.intercom.panels()), ("indoor_unit", self.intercom.indoor_units()))
            for d in group
            if d.id not in listed
        ]
        cameras = [
            DeviceConfig(id=c.id, name=c.name or c.id, kind="camera", driver="vision")
            for c in (self.vision.cameras if self.vision else [])
            if c.id not in listed
        ]
        zigbee = [
            DeviceConfig(id=d.id, name=d.name or d.id, kind=d.kind, driver="zigbee")
            for d in (self.zigbee.devices if self.zigbee else [])
            if d.id not in listed
        ]
        return [*self.devices, *readers, *modules, *intercom, *cameras, *zigbee]

    def osdp_key_file(self, bus: OsdpBusConfig) -> Path:
        return bus.key_file if bus.key_file.is_absolute() else self.data_dir / bus.key_file

    def resolve(self, base: Path) -> SiteConfig:
        """Make the relative paths in the file relative to the file's own folder."""
        data_dir = self.data_dir if self.data_dir.is_absolute() else base / self.data_dir
        vision = self.vision.resolve(base) if self.vision else None
        return self.model_copy(update={"data_dir": data_dir.resolve(), "vision": vision})

    @property
    def journal_path(self) -> Path:
        return self.journal.file if self.journal.file.is_absolute() else self.data_dir / self.journal.file


# ---- loading with positions -----------------------------------------------------------------


def parse_config(text: str, filename: str = "<config>", base: Path | None = None) -> SiteConfig:
    """Validate a site file's text; raise ConfigError listing every problem with its position."""
    doc = read_yaml(text, filename, "the site file")
    try:
        config = SiteConfig.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(doc.issues(exc, "unknown key (not part of the schema; check the spelling)")) from None
    problems = config.wiring_problems()
    if problems:
        raise ConfigError([doc.issue(loc, message) for loc, message in problems])
    config = config.resolve(base or Path.cwd())
    # After resolve: the model path is relative to the site file. Loads the model (cached).
    problems = config.vision.problems() if config.vision else []
    if problems:
        raise ConfigError([doc.issue(loc, message) for loc, message in problems])
    return config


def load_config(path: Path) -> SiteConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(path), 1, 1, "(file)", f"cannot read: {exc}")]) from None
    return parse_config(text, str(path), Path(path).resolve().parent)


def check_live_change(old: SiteConfig, new: SiteConfig, path: Path | None) -> None:
    """Refuse changes to settings that only a restart can apply."""
    fixed = {
        "site.id": (old.site.id, new.site.id),
        "controller.id": (old.controller.id, new.controller.id),
        "data_dir": (old.data_dir, new.data_dir),
        "api": (old.api, new.api),
    }
    issues = [
        ConfigIssue(str(path or "<api>"), 1, 1, field, "cannot change while running; restart the daemon")
        for field, (a, b) in fixed.items()
        if a != b
    ]
    if issues:
        raise ConfigError(issues)


def config_schema() -> str:
    return json.dumps(SiteConfig.model_json_schema(), indent=2)


def summary(config: SiteConfig) -> str:
    broker = config.uplink.broker if config.uplink.enabled and config.uplink.broker else "none (local only)"
    lines = [
        f"site        {config.site.id} {config.site.name!r} ({config.site.timezone})",
        f"controller  {config.controller.id}",
        f"data dir    {config.data_dir}",
        f"uplink      {broker}",
        f"api         http://{config.api.host}:{config.api.port}/",
        f"users       {len(config.users)} ({', '.join(sorted({u.role for u in config.users})) or 'none'})",
        f"devices     {len(config.devices)}   doors {len(config.doors)}"
        f"   cameras {len(config.vision.cameras) if config.vision else 0}   rules {len(config.rules)}",
        f"osdp        {len(config.osdp.buses)} bus(es), {len(config.osdp.readers())} reader(s)",
        f"modbus      {len(config.modbus.buses)} bus(es), {len(config.modbus.modules())} module(s)",
        f"alarm       {len(config.alarm.partitions)} partition(s), {len(config.alarm.zones)} zone(s), "
        f"{len(config.alarm.sirens)} siren(s)",
    ]
    return "\n".join(lines)
