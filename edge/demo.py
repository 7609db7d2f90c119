"""`linli demo`: the daemon with simulated devices, an embedded broker and the live web page."""

from __future__ import annotations

import logging
import os
import secrets
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path
from zoneinfo import ZoneInfo

from argon2 import PasswordHasher

from edge.alarm import hash_code
from edge.demo_devices import ALARM_CODES, INTERCOM_PORT_NAME, MODBUS_PORT_NAME, intercom_section

log = logging.getLogger(__name__)

# The camera's clip, beside the demo site in the package (edge/demo_media/PROVENANCE says where it is from).
DEMO_CLIP = Path(str(files("edge").joinpath("demo_media", "vtest-80.mp4")))
CAMERA = "pavement"  # the camera of edge.vision.demo_section
CAMERA_FPS = 2  # detections a second: light on a 2-core box beside everything else the demo runs
SITE_TIMEZONE = "Asia/Shanghai"  # edge/demo_site.yaml's: the patrol round starts in local time


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "linli" / "demo"


def write_demo_site(
    data_dir: Path,
    broker_url: str,
    http_port: int,
    admin_password: str,
    zeroconf: bool,
    protocol: str = "auto",
    osdp_port: str | None = None,
    modbus_port: str | None = None,
    *,
    intercom_port: str | None = None,
    camera: bool = False,
    exit_delay_s: float = 10,
    entry_delay_s: float = 15,
    siren_s: float = 30,
) -> Path:
    """Render the embedded demo site file into `data_dir` and make the command key if missing.

    The resident li-wei gets the admin's password. The alarm codes (edge.demo_devices.ALARM_CODES)
    are hashed under the box's PIN key, which this creates on the first start. The intercom bus's
    panel and indoor units are at `intercom_port` (edge.demo_devices.DemoDevices.intercom_port); with
    `camera`, the pedestrian clip is a camera (edge.vision.demo_section) with a guard patrol round."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key = data_dir / "command.key"
    if not key.exists():
        key.touch(mode=0o600)
        key.write_text(secrets.token_hex(32))
    template = files("edge").joinpath("demo_site.yaml").read_text(encoding="utf-8")
    text = template.format(
        broker=broker_url,
        protocol=protocol,
        http_port=http_port,
        zeroconf="true" if zeroconf else "false",
        admin_hash=PasswordHasher().hash(admin_password),
        resident_hash=PasswordHasher().hash(admin_password),
        osdp_port=osdp_port or str(data_dir / "osdp-bus"),
        modbus_port=modbus_port or str(data_dir / MODBUS_PORT_NAME),
        exit_delay=exit_delay_s,
        entry_delay=entry_delay_s,
        siren_s=siren_s,
        alarm_codes="\n".join(
            f'    - {{user: {c.user}, code_hash: "{hash_code(data_dir, c.code)}", '
            f"partitions: [{', '.join(c.partitions)}], duress: {'true' if c.duress else 'false'}}}"
            for c in ALARM_CODES
        ),
    )
    text += intercom_section(intercom_port or str(data_dir / INTERCOM_PORT_NAME))
    if camera and DEMO_CLIP.is_file():
        text += camera_section(ZoneInfo(SITE_TIMEZONE))
    elif camera:  # an install without the package data: the rest of the demo still runs
        log.warning("demo: no camera, its clip %s is missing", DEMO_CLIP)
    path = data_dir / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def camera_section(tz: ZoneInfo, now: datetime | None = None) -> str:
    """The demo camera: the pavement clip looping at `CAMERA_FPS`, a zone people walk through, and a
    guard round whose checkpoint is that zone, started a minute ago (so `patrol.*` events come soon)."""
    from edge.vision import demo_section

    start = ((now or datetime.now(tz)).astimezone(tz) - timedelta(minutes=1)).strftime("%H:%M")
    # A low frame rate: the demo shares 2 cores with the rest of the daemon.
    return demo_section(DEMO_CLIP, patrol_start=start, fps=CAMERA_FPS)
