"""The site file's `zigbee:` section, and the network secrets kept beside the data.

The network key, extended PAN id and (unless the site file fixes it) PAN id are generated on the
first start and kept in `network_file` (data dir, mode 0600); they never appear in the site file,
in logs or in events. A file others can read is refused, like ssh refuses a private key.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.zigbee.kinds import DEFAULT_OFFLINE_AFTER_S, Kind

_IDENT = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # edge.config.Ident's pattern (drivers do not import edge)


def _not_reserved(value: str) -> str:
    if value == "controller":
        raise ValueError("'controller' is reserved for the controller itself")
    return value


def _ieee(value: str) -> str:
    text = value.strip().lower()
    if re.fullmatch(r"[0-9a-f]{16}", text):
        text = ":".join(text[i:i + 2] for i in range(0, 16, 2))
    if not re.fullmatch(r"([0-9a-f]{2}:){7}[0-9a-f]{2}", text):
        raise ValueError("an IEEE address is 8 bytes in hex, e.g. 00:0d:6f:00:0a:1b:2c:3d")
    if text in ("00:00:00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff:ff:ff"):
        raise ValueError("not a device's IEEE address")
    return text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ZigbeeDeviceConfig(_Strict):
    id: Annotated[str, Field(pattern=_IDENT), AfterValidator(_not_reserved)]
    ieee: Annotated[str, AfterValidator(_ieee)]
    kind: Kind
    name: str = ""
    apartment: str | None = Field(None, pattern=_IDENT, description="the resident's apartment (home security)")
    offline_after_s: float | None = Field(None, gt=0, le=7 * 86400,
                                          description="silence before offline; default by kind")

    @property
    def offline_after(self) -> float:
        return self.offline_after_s or DEFAULT_OFFLINE_AFTER_S[self.kind]


class ZigbeeSection(_Strict):
    enabled: bool = True
    radio: Literal["znp", "ezsp", "deconz", "simulated"] = Field(
        description="znp: TI Z-Stack (zigpy-znp), ezsp: Silicon Labs (bellows), deconz: ConBee/RaspBee, "
                    "simulated: the fake radio of drivers/zigbee/simulator.py")
    port: str | None = Field(None, description="serial device path, or socket://host:port")
    baudrate: int = Field(115200, ge=9600, le=1_000_000)
    flow_control: Literal["hardware", "software"] | None = None
    channel: int = Field(15, ge=11, le=26)
    pan_id: int | None = Field(None, ge=0x0001, le=0xFFFE, description="fixed PAN id; default generated once")
    network_file: Path = Field(Path("zigbee-network.json"), description="network key etc. (mode 0600); in data_dir")
    database_file: Path = Field(Path("zigbee.db"), description="zigpy's device database; in data_dir")
    backup_file: Path = Field(Path("zigbee-backup.json"), description="network backup; in data_dir")
    permit_join_s: int = Field(60, ge=1, le=254, description="permit-join window when none is given")
    devices: list[ZigbeeDeviceConfig] = Field(default_factory=list)

    @field_validator("port")
    @classmethod
    def _port_form(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith("socket://"):
            if not re.fullmatch(r"socket://[^/\s:]+:\d{1,5}", value):
                raise ValueError("a network port is socket://host:port")
        elif not value.startswith("/"):
            raise ValueError("a serial port is an absolute path (e.g. /dev/ttyUSB0) or socket://host:port")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ZigbeeSection:
        if self.radio != "simulated" and self.port is None:
            raise ValueError(f"port: radio {self.radio} needs a serial port")
        for attr in ("id", "ieee"):
            values = [getattr(d, attr) for d in self.devices]
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"devices: {attr} {dupes[0]!r} is used twice")
        return self

    def path(self, data_dir: Path, name: Path) -> Path:
        return name if name.is_absolute() else data_dir / name


class NetworkFileError(Exception):
    """The network secrets file is unsafe or malformed; the message says which (never its content)."""


@dataclass(frozen=True)
class NetworkSecrets:
    pan_id: int
    extended_pan_id: bytes
    network_key: bytes

    def __repr__(self) -> str:
        return f"NetworkSecrets(pan_id=0x{self.pan_id:04x}, key=<hidden>)"


def load_or_create_secrets(path: Path, pan_id: int | None = None) -> NetworkSecrets:
    """Read the network secrets, creating them (random, mode 0600) on the first start."""
    if path.exists():
        secrets_ = _read(path)
        if pan_id is not None and pan_id != secrets_.pan_id:
            raise NetworkFileError(f"{path}: the site file's pan_id 0x{pan_id:04x} differs from the formed "
                                   f"network's; restore a backup or remove the file to form a new network")
        return secrets_
    created = NetworkSecrets(
        pan_id=pan_id if pan_id is not None else secrets.randbelow(0xFFFE) + 1,
        extended_pan_id=secrets.token_bytes(8),
        network_key=secrets.token_bytes(16),
    )
    write_secrets(path, created)
    return created


def write_secrets(path: Path, value: NetworkSecrets) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    doc = {"version": 1, "pan_id": value.pan_id, "extended_pan_id": value.extended_pan_id.hex(),
           "network_key": value.network_key.hex()}
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read(path: Path) -> NetworkSecrets:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise NetworkFileError(f"cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
            raise NetworkFileError(f"{path} is not a regular file of mode 0600; run: chmod 600 {path}")
        raw = f.read()
    try:
        doc = json.loads(raw)
        secrets_ = NetworkSecrets(int(doc["pan_id"]), bytes.fromhex(doc["extended_pan_id"]),
                                  bytes.fromhex(doc["network_key"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise NetworkFileError(f"{path} is not a valid Zigbee network file") from None  # never quote it
    if not (0 < secrets_.pan_id < 0xFFFF and len(secrets_.extended_pan_id) == 8 and len(secrets_.network_key) == 16):
        raise NetworkFileError(f"{path} is not a valid Zigbee network file")
    return secrets_
