"""Load firmware profiles (firmware_profiles/<model>.yaml) and validate them, with errors an installer can act on.

A profile is plain YAML, one file per device model. Every problem is reported as
`file:line:col: field.path: message`, all of them at once, and unknown keys are errors: a typo in a
profile must not silently drop an expectation from a commissioning run.

    profile = load_profile(Path("firmware_profiles/generic-osdp-reader.yaml"))

As a program, for profile authors and CI: `python -m hil_tests.profiles [FILE ...]` validates the
given profiles, or every one in firmware_profiles/; exit status 1 if any is invalid.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from drivers.intercom.profile import IntercomProfile
from drivers.modbus.profile import ModbusIoProfile
from edge.yamlfile import ConfigError, ConfigIssue, Loc, read_yaml
from hil_tests.osdp_profile import OsdpReaderProfile

PROFILES_DIR = Path(__file__).resolve().parent.parent / "firmware_profiles"
DEFAULT_OSDP_PROFILE = PROFILES_DIR / "generic-osdp-reader.yaml"

# Device kinds a profile can describe, by its `kind` field. Modbus I/O modules, Zigbee devices and
# door panels join here with their drivers.
Profile = OsdpReaderProfile | ModbusIoProfile | IntercomProfile | BaseModel
KINDS: dict[str, type[Profile]] = {"osdp_reader": OsdpReaderProfile, "modbus_io_module": ModbusIoProfile}
KINDS["intercom_panel"] = KINDS["intercom_indoor_unit"] = IntercomProfile
try:
    from drivers.zigbee.profile import ZigbeeDeviceProfile
except ImportError:  # zigpy comes with the optional `zigbee` extra; without it those profiles can't be checked
    pass
else:
    KINDS["zigbee_device"] = ZigbeeDeviceProfile

# A profile's problems are reported like the site file's: file:line:col: field: message.
ProfileIssue = ConfigIssue
ProfileError = ConfigError


@dataclass(frozen=True)
class LoadedProfile:
    path: Path
    sha256: str  # of the file as read: the report names exactly which profile a device was tested against
    profile: Profile


def _parse_loc(field: str) -> Loc:
    """ "checks[2].check" -> ("checks", 2, "check")."""
    loc: list[str | int] = []
    for part in field.split("."):
        name, *indexes = part.replace("]", "").split("[")
        loc.append(name)
        loc.extend(int(i) for i in indexes)
    return tuple(loc)


def _rewrite(err: ErrorDetails, loc: Loc, message: str) -> tuple[Loc, str]:
    message = message.removeprefix("Value error, ")
    if message.startswith("@"):  # osdp_profile.at(): the validator named its field
        field, _, message = message[1:].partition(": ")
        loc = (*loc, *_parse_loc(field))
    if err["type"] == "literal_error":
        message = message.replace("True, False", "true, false")  # as they are written in YAML
    return loc, message


def parse_profile(text: str, filename: str = "<profile>", expected_id: str | None = None) -> Profile:
    """Validate a profile's text. `expected_id`: the file's stem, which the profile's id must equal."""
    doc = read_yaml(text, filename, "a profile")
    kind = doc.data.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(KINDS)
        raise ProfileError([doc.issue(("kind",), f"unknown device kind {kind!r}; known: {known}")])
    try:
        profile = model.model_validate(doc.data)
    except ValidationError as exc:
        raise ProfileError(
            doc.issues(exc, "unknown key (not part of the profile schema; check the spelling)", _rewrite)
        ) from None
    if expected_id is not None and profile.id != expected_id:
        message = f"id {profile.id!r} must match the file name ({expected_id}.yaml): one file per model, named by id"
        raise ProfileError([doc.issue(("id",), message)])
    return profile


def load_profile(path: str | Path) -> LoadedProfile:
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError([ProfileIssue(str(path), 1, 1, "(file)", f"cannot read: {exc}")]) from None
    profile = parse_profile(text, str(path), expected_id=path.stem)
    return LoadedProfile(path, hashlib.sha256(raw).hexdigest(), profile)


def main(argv: list[str] | None = None) -> int:
    paths = [Path(a) for a in (sys.argv[1:] if argv is None else argv)] or sorted(PROFILES_DIR.glob("*.yaml"))
    bad = 0
    for path in paths:
        try:
            loaded = load_profile(path)
        except ProfileError as exc:
            bad += 1
            print(exc, file=sys.stderr)
        else:
            print(f"{path}: ok ({loaded.profile.kind}, {loaded.profile.vendor} {loaded.profile.model})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
