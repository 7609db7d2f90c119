from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.cli import main
from edge.config import ConfigError, load_config, parse_config

HASH = "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"

VALID = f"""\
site:
  id: maple-court
  name: Maple Court
  timezone: Asia/Shanghai
controller:
  id: gate-1
uplink:
  broker: mqtt://127.0.0.1:1883
users:
  - name: admin
    role: admin
    password_hash: "{HASH}"
devices:
  - id: reader-1
    kind: reader
    driver: osdp
doors:
  - id: door-1
    lock_mode: fail_safe
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def issues(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    return [str(i) for i in exc.value.issues]


def test_valid_file_loads_and_resolves_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert config.site.id == "maple-court"
    assert config.doors[0].lock_mode == "fail_safe"
    assert config.data_dir == (tmp_path / "linli-data").resolve()
    assert config.journal_path == config.data_dir / "journal.db"


def test_unknown_key_is_an_error_with_its_position(tmp_path: Path) -> None:
    text = VALID.replace("  name: Maple Court\n", "  name: Maple Court\n  colour: blue\n")
    found = issues(tmp_path, text)
    assert found == [
        f"{tmp_path / 'site.yaml'}:4:3: site.colour: unknown key (not part of the schema; check the spelling)"
    ]


def test_wrong_type_names_line_and_dotted_path(tmp_path: Path) -> None:
    text = VALID.replace("lock_mode: fail_safe", "lock_mode: sometimes")
    (found,) = issues(tmp_path, text)
    assert found.startswith(f"{tmp_path / 'site.yaml'}:19:16: doors[0].lock_mode: ")
    assert "fail_safe" in found


def test_missing_field_points_at_its_parent(tmp_path: Path) -> None:
    text = VALID.replace("    kind: reader\n", "")
    (found,) = issues(tmp_path, text)
    assert ":14:5: devices[0].kind: Field required" in found


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    text = VALID.replace("id: gate-1", "id: Gate 1").replace("timezone: Asia/Shanghai", "timezone: Mars/Olympus")
    found = issues(tmp_path, text)
    assert len(found) == 2
    assert any("controller.id" in f for f in found)
    assert any("site.timezone" in f and "unknown time zone" in f for f in found)


def test_yaml_syntax_error_has_position(tmp_path: Path) -> None:
    text = VALID.replace("  id: gate-1\n", "  id: [gate-1\n")
    (found,) = issues(tmp_path, text)
    assert found.startswith(f"{tmp_path / 'site.yaml'}:")
    assert "YAML syntax" in found


def test_duplicate_keys_and_ids_are_errors(tmp_path: Path) -> None:
    (found,) = issues(
        tmp_path, VALID.replace("controller:\n  id: gate-1\n", "controller:\n  id: gate-1\n  id: gate-2\n")
    )
    assert "duplicate key 'id'" in found and ":7:3:" in found
    dup = VALID + "  - id: door-1\n"
    (found,) = issues(tmp_path, dup)
    assert "duplicate id 'door-1'" in found


def test_not_a_mapping_and_unreadable_file(tmp_path: Path) -> None:
    assert "must be a YAML mapping" in issues(tmp_path, "- just\n- a list\n")[0]
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "missing.yaml")
    assert "cannot read" in str(exc.value)


def test_hostile_values_are_refused(tmp_path: Path) -> None:
    # Ids become MQTT topic levels: wildcards and separators must never get in.
    for bad in ("gate/#", "gate+1", "", "x" * 65):
        with pytest.raises(ConfigError):
            parse_config(VALID.replace("id: gate-1", f"id: {json.dumps(bad)}"))
    with pytest.raises(ConfigError):
        parse_config(VALID.replace(HASH, "plaintext-password"))
    with pytest.raises(ConfigError, match="reserved"):
        parse_config(VALID.replace("id: reader-1", "id: controller"))


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, VALID)
    assert main(["check-config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "maple-court" in out and "doors 1" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("role: admin", "role: superuser"))
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:11:11: users[0].role: " in err


def test_config_schema_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config-schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False
    sections = {"site", "controller", "uplink", "users", "devices", "doors", "rules", "osdp", "modbus", "zigbee"}
    assert sections | {"alarm", "intercom", "vision"} <= set(schema["properties"])


# ---- the osdp section and door wiring ---------------------------------------------------------

OSDP = """\
    lock: {reader: reader-1, output: 0}
    dps: {reader: reader-1, input: 0}
    rex: {reader: reader-1, input: 1}
    strike_s: 3
    held_open_s: 20
    held_open_pre_alarm_s: 5
osdp:
  buses:
    - port: /dev/ttyUSB0
      baudrate: 115200
      readers:
        - {id: reader-1, address: 1, door: door-1, direction: in}
        - {id: reader-2, address: 2, door: door-1, direction: out, secure: false}
"""


def test_osdp_section_and_door_wiring_load(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID + OSDP))
    (bus,) = config.osdp.buses
    assert [r.id for r in bus.readers] == ["reader-1", "reader-2"]
    assert bus.readers[0].secure and not bus.readers[0].install_mode
    assert config.osdp_key_file(bus) == config.data_dir / "osdp-keys.json"
    door = config.doors[0]
    assert door.lock is not None and (door.lock.reader, door.lock.output) == ("reader-1", 0)
    settings = door.settings()
    assert (settings.strike_s, settings.held_open_s, settings.lock_mode) == (3, 20, "fail_safe")
    # Readers are devices too (reader-1 is listed already; reader-2 is added).
    assert [(d.id, d.kind, d.driver) for d in config.device_configs()] == [
        ("reader-1", "reader", "osdp"),
        ("reader-2", "reader", "osdp"),
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("door: door-1, direction: out", "door: door-9, direction: out", "no door 'door-9' in doors"),
        ("address: 2", "address: 1", "OSDP address 1 is used twice on this bus"),
        ("address: 2", "address: 127", "osdp.buses[0].readers[1].address"),
        ("id: reader-2", "id: reader-1", "duplicate reader id 'reader-1'"),
        ("direction: out,", "direction: sideways,", "osdp.buses[0].readers[1].direction"),
        ("secure: false}", "secure: false, colour: red}", "unknown key"),
        ("port: /dev/ttyUSB0", "port: ttyUSB0", "absolute path"),
        ("port: /dev/ttyUSB0", "port: socket://host", "socket://host:port"),
        ("baudrate: 115200", "baudrate: 12345", "osdp.buses[0].baudrate"),
        ("lock: {reader: reader-1", "lock: {reader: reader-7", "doors[0].lock.reader: no OSDP reader 'reader-7'"),
        ("rex: {reader: reader-1, input: 1}", "rex: {reader: reader-1, input: 0}", "same input"),
        ("held_open_pre_alarm_s: 5", "held_open_pre_alarm_s: 25", "held_open_pre_alarm_s must be shorter"),
        ("strike_s: 3", "strike_s: 0", "doors[0].strike_s"),
        ("strike_s: 3", "strike_s: 3\n    rex_action: open", "doors[0].rex_action"),
        ("      readers:\n", "      readers: []\n      spare:\n", "osdp.buses[0].readers: List should have at least 1"),
    ],
)
def test_osdp_and_door_wiring_errors(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = VALID + OSDP
    assert old in text, old
    found = issues(tmp_path, text.replace(old, new, 1))
    assert any(expected in f for f in found), found


def test_osdp_errors_name_the_file_and_line(tmp_path: Path) -> None:
    text = (VALID + OSDP).replace("address: 2", "address: 1")
    (found,) = issues(tmp_path, text)
    assert found.startswith(f"{tmp_path / 'site.yaml'}:")
    assert "osdp.buses[0]" in found
    # Cross-references are placed at the field at fault, each on its own line, all at once.
    text = (VALID + OSDP).replace("door: door-1, direction: out", "door: door-9, direction: out")
    text = text.replace("lock: {reader: reader-1", "lock: {reader: reader-7")
    found = issues(tmp_path, text)
    site = tmp_path / "site.yaml"
    assert f"{site}:20:20: doors[0].lock.reader: no OSDP reader 'reader-7'" in found
    assert any(f.startswith(f"{site}:32:44:") and "osdp.buses[0].readers[1].door: no door 'door-9'" in f for f in found)
