"""Installer parts for OSDP readers: the firmware profile, its validation, and the commissioning run
(hil_tests.osdp_reader) against simulated readers - as the simulator, and as 'hardware' on a pty."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from drivers.osdp import KeyStore
from drivers.osdp.simulator import SimBus, SimReader
from hil_tests import console, osdp_session, profiles
from hil_tests.console import Console
from hil_tests.installer import TerminalInstaller
from hil_tests.osdp_reader import Plan, main, parser, plan_from_args, run
from hil_tests.profiles import DEFAULT_OSDP_PROFILE, ProfileError, load_profile, parse_profile
from hil_tests.report import CheckSkipped

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
GENERIC = DEFAULT_OSDP_PROFILE.read_text()
PERSON_CHECKS = {"card", "keypad", "tamper"}


def make_plan(tmp_path: Path, *argv: str) -> Plan:
    return plan_from_args(parser().parse_args(list(argv)), tmp_path)


def write_profile(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace("id: generic-osdp-reader", f"id: {name}"))
    return path


def statuses(report: dict[str, Any] | Any) -> dict[str, str]:
    checks = report["checks"] if isinstance(report, dict) else [dataclasses.asdict(c) for c in report.checks]
    return {c["id"]: c["status"] for c in checks}


# -- the profile ------------------------------------------------------------------------------------


def test_generic_profile_is_valid_and_honest_about_flashing() -> None:
    loaded = load_profile(DEFAULT_OSDP_PROFILE)
    p = loaded.profile
    assert p.transport.baud == 9600 and p.transport.framing == "8N1"
    assert (p.transport.addresses.min, p.transport.addresses.max) == (0, 126)
    assert p.secure_channel.required and p.secure_channel.commissioning == "install_mode"
    assert not p.firmware.flashing.supported and p.firmware.images == []
    assert "osdp_FILETRANSFER" in p.firmware.flashing.instructions
    assert [c.check for c in p.commissioning.checks][:2] == ["capabilities", "secure_channel"]
    assert len(loaded.sha256) == 64


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        (("  keypad: true\n", "  keypad: true\n  keypda: true\n"), "capabilities.keypda", "unknown key"),
        (("display: optional ", "display: maybe "), "capabilities.display", "'optional'"),
        (("baud: 9600 ", "baud: 4800 "), "transport.baud", "baud 4800 is not one of allowed_bauds"),
        (("max: 126 ", "max: 127 "), "transport.addresses.max", "less than or equal to 126"),
        (("H10301, H10306", "H10301, W99"), "capabilities.card_formats[1]", "H10301"),
        (
            ("  buzzer: true\n", "  buzzer: false\n"),
            "commissioning.checks[3].check",
            "tests buzzer, which capabilities",
        ),
        (
            ("commissioning: install_mode", "commissioning: none"),
            "secure_channel.commissioning",
            "needs a way to get the key in",
        ),
        (("kind: osdp_reader", "kind: modbus_io"), "kind", "unknown device kind 'modbus_io'"),
        (("vendor: any\n", "vendor: any\nvendor: other\n"), "(file)", "duplicate key 'vendor'"),
        (("  leds: {min: 1}", "  leds: {min: 1"), "(file)", "YAML syntax"),
    ],
)
def test_broken_profiles_name_the_file_line_and_field(
    tmp_path: Path, edit: tuple[str, str], field: str, message: str
) -> None:
    assert edit[0] in GENERIC
    path = write_profile(tmp_path, "generic-osdp-reader", GENERIC.replace(edit[0], edit[1], 1))
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:") and re.match(rf"{re.escape(str(path))}:\d+:\d+: ", text)
    assert f": {field}: " in text
    assert message in text


def test_every_shipped_profile_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert profiles.main([]) == 0
    assert "generic-osdp-reader.yaml: ok" in capsys.readouterr().out


def test_profile_errors_point_at_the_line(tmp_path: Path) -> None:
    broken = GENERIC.replace("display: optional ", "display: maybe ")
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "display: maybe" in text)
    with pytest.raises(ProfileError) as caught:
        parse_profile(broken, "x.yaml")
    assert caught.value.issues[0].line == line and caught.value.issues[0].path == "capabilities.display"


def test_profile_id_must_match_its_file_name(tmp_path: Path) -> None:
    path = tmp_path / "acme-r40.yaml"
    path.write_text(GENERIC)
    with pytest.raises(ProfileError, match=r"acme-r40\.yaml:\d+:\d+: id: id 'generic-osdp-reader' must match"):
        load_profile(path)


def test_broken_profile_on_the_command_line_is_exit_2_with_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_profile(tmp_path, "broken", GENERIC.replace("framing: 8N1 ", "framing: 8E1 "))
    assert main(["--profile", str(path)], out=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert "the profile is not valid" in err and f"{path}:" in err and "transport.framing" in err


# -- against the simulator ----------------------------------------------------------------------------


def test_simulator_run_passes_and_writes_the_handover_report(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    report_path = tmp_path / "out" / "report.json"
    out = io.StringIO()
    argv = ["--key-file", str(keys), "--commission", "--reader-id", "gate-in", "--address", "5"]
    assert main([*argv, "--report", str(report_path)], out=out) == 0

    text = out.getvalue()
    assert re.search(r"^\[1/8\] capabilities \.\.\. ok \(\d+\.\d s\)", text, re.M), text
    assert "[8/8] tamper ... ok" in text and "result: PASS" in text and str(report_path) in text
    report = json.loads(report_path.read_text())
    assert report["result"] == "pass"
    assert (
        report["target"] | {"mode": "simulator", "address": 5, "reader": "gate-in", "commission": True}
        == (report["target"])
    )
    assert report["profile"]["id"] == "generic-osdp-reader"
    assert report["profile"]["sha256"] == load_profile(DEFAULT_OSDP_PROFILE).sha256
    assert report["connection"]["commissioned"] and report["connection"]["enforced"]
    assert report["device"]["id"]["vendor_code"] == "0x4C494E" and report["device"]["id"]["firmware"] == "1.0.0"
    assert statuses(report) == {
        "capabilities": "pass",
        "secure_channel": "pass",
        "led": "pass",
        "buzzer": "pass",
        "display": "skipped",  # optional: the simulated reader has no display
        "card": "pass",
        "keypad": "pass",
        "tamper": "pass",
    }
    card = next(c for c in report["checks"] if c["id"] == "card")
    assert [r["format"] for r in card["details"]["reads"]] == ["H10301", "H10306", "C1000_35", "C1000_48"]
    assert all(r["facility"] == 123 and r["card"] == 4567 for r in card["details"]["reads"])
    secure = next(c for c in report["checks"] if c["id"] == "secure_channel")
    assert secure["details"]["reader_holds_key"] and secure["details"]["commissioned_in_this_run"]
    for c in report["checks"]:
        assert c["started_at"].endswith("Z") and c["finished_at"] >= c["started_at"] and c["duration_s"] >= 0
    assert report["summary"] == {"pass": 7, "fail": 0, "skipped": 1, "required_failed": [], "required_skipped": []}
    # The key went into the key file (0600), and nowhere else.
    key = KeyStore(keys).get("gate-in")
    assert key is not None and os.stat(keys).st_mode & 0o777 == 0o600
    assert key.hex() not in report_path.read_text() and key.hex() not in text


def test_the_module_runs_with_no_arguments() -> None:
    # What "anyone can try it" means: no port, no key file, no profile argument.
    proc = subprocess.run(
        [sys.executable, "-m", "hil_tests.osdp_reader"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[1/8] capabilities ... ok" in proc.stdout and "result: PASS" in proc.stdout
    assert proc.stderr == ""  # libosdp's expected install-mode complaints stay off the screen


def test_profile_expecting_a_display_fails_on_a_reader_without_one(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, "display-reader", GENERIC.replace("display: optional ", "display: true "))
    report_path = tmp_path / "r.json"
    out = io.StringIO()
    assert main(["--profile", str(profile), "--report", str(report_path)], out=out) == 1
    report = json.loads(report_path.read_text())
    caps = next(c for c in report["checks"] if c["id"] == "capabilities")
    assert caps["status"] == "fail"
    assert caps["message"] == "display: the profile expects a display, the reader reports none"
    assert caps["details"]["mismatches"] == [caps["message"]] and caps["details"]["reported"]["display"] is False
    assert statuses(report)["card"] == "pass"  # the other checks still ran
    assert report["result"] == "fail" and report["summary"]["required_failed"] == ["capabilities"]
    assert "[1/8] capabilities ... FAIL" in out.getvalue() and "result: FAIL" in out.getvalue()


async def test_wrong_key_fails_the_secure_channel_check(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys.json")
    keys.generate("gate")
    plan = make_plan(tmp_path, "--key-file", str(keys.path), "--reader-id", "gate", "--address", "2")
    # A reader commissioned by some other controller: it holds a key, not ours.
    plan = dataclasses.replace(plan, sim=SimReader(2, key=bytes(range(16))))
    out = io.StringIO()
    report = await run(plan, Console(out))
    secure = next(c for c in report.checks if c.id == "secure_channel")
    assert secure.status == "fail" and secure.message == "security fault: key_mismatch"
    assert "does not hold the key for gate" in secure.details["hint"]
    assert report.result == "fail" and not report.connection["online"]
    blocked = {c.id for c in report.checks if c.status == "skipped"}
    assert blocked == {"capabilities", "led", "buzzer", "display", "card", "keypad", "tamper"}
    assert all("reader is not online" in c.message for c in report.checks if c.id in blocked)
    assert "connect ... FAIL" in out.getvalue() and "hint: the reader answered" in out.getvalue()


# -- against a "real" port: a simulated bus the runner opens like an RS-485 adapter ----------------------


async def _hardware_plan(tmp_path: Path, bus: SimBus, keys: KeyStore, *extra: str) -> Plan:
    plan = make_plan(
        tmp_path, "--port", bus.port, "--address", "3", "--reader-id", "lobby", "--key-file", str(keys.path), *extra
    )
    assert plan.sim is None and plan.report_path is not None and plan.report_path.name.startswith("osdp-lobby-")
    return plan


async def test_real_port_without_a_terminal_skips_the_steps_that_need_a_person(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys.json")
    keys.generate("lobby")
    async with SimBus([SimReader(3, key=keys.get("lobby"))]) as bus:
        plan = await _hardware_plan(tmp_path, bus, keys)
        report = await run(plan, Console(io.StringIO()))  # pytest's stdin is not a terminal
    got = statuses(report)
    assert {k for k, v in got.items() if v == "skipped"} == PERSON_CHECKS | {"display"}
    assert all(got[c] == "pass" for c in ("capabilities", "secure_channel", "led", "buzzer"))
    card = next(c for c in report.checks if c.id == "card")
    assert card.message.startswith("needs a person at the reader: stdin is not a terminal")
    assert report.result == "incomplete" and console.EXIT[report.result] == 3


class ScriptedInstaller:
    """A person at the (simulated) reader who does what each instruction says."""

    def __init__(self, reader: SimReader) -> None:
        self.reader = reader
        self.asked: list[str] = []

    @property
    def absent_reason(self) -> str | None:
        return None

    async def ask(self, instruction: str, until: Coroutine[Any, Any, T], within: float) -> T:
        self.asked.append(instruction)
        if instruction.startswith("Present a card"):
            self.reader.present_card(4242, 17, "H10306")
        elif code := re.match(r"Type (\d+) then #", instruction):
            self.reader.press_keys(code[1] + "#")
        elif instruction.startswith("Open"):
            self.reader.set_tamper(True)
        elif instruction.startswith("Close"):
            self.reader.set_tamper(False)
        return await until


async def test_real_port_with_a_person_commissions_a_factory_fresh_reader(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys.json")  # empty: commissioning generates the reader's key
    reader = SimReader(3, install_mode=True)
    async with SimBus([reader]) as bus:
        plan = await _hardware_plan(tmp_path, bus, keys, "--commission")
        person = ScriptedInstaller(reader)
        report = await run(plan, Console(io.StringIO()), person)
    assert report.result == "pass", [(c.id, c.message) for c in report.checks]
    assert report.connection["commissioned"] and reader.key == KeyStore(keys.path).get("lobby")
    card = next(c for c in report.checks if c.id == "card")
    assert card.details["read"] | {"format": "H10306", "facility": 17, "card": 4242} == card.details["read"]
    assert [a.split(" ")[0] for a in person.asked] == ["Present", "Type", "Open", "Close"]


async def test_unreachable_reader_says_what_to_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(osdp_session, "CONNECT_TIMEOUT_PORT", 1.0)
    keys = KeyStore(tmp_path / "keys.json")
    keys.generate("lobby")
    async with SimBus([SimReader(9, key=keys.get("lobby"))]) as bus:  # nobody at address 3
        report = await run(await _hardware_plan(tmp_path, bus, keys), Console(io.StringIO()))
    assert report.connection["reason"] == "no reply from address 3 at 9600 baud within 1 s"
    assert "address" in report.connection["hint"] and report.result == "fail"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--address", "127"], "address 127 is outside this profile's range 0-126"),
        (["--baud", "4800"], "baud 4800 is not one this reader supports"),
        (["--port", "/dev/null"], "requires the secure channel: give --key-file"),
        (["--key-file", "KEYS"], "has no key for 'reader-0'"),
    ],
)
def test_unusable_arguments_are_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    KeyStore(tmp_path / "keys.json").generate("other")
    argv = [str(tmp_path / "keys.json") if a == "KEYS" else a for a in argv]
    assert main(argv, out=io.StringIO()) == 2
    assert message in capsys.readouterr().err


# -- the terminal prompt ----------------------------------------------------------------------------


async def test_terminal_installer_waits_and_enter_skips() -> None:
    master, slave = os.openpty()
    said: list[str] = []
    person = TerminalInstaller(said.append, fd=slave)

    async def answer() -> str:
        return "card"

    try:
        assert await person.ask("Present a card", answer(), 1.0) == "card"
        assert said == ["Present a card (within 1 s; Enter skips)"]

        async def never() -> None:
            await asyncio.sleep(60)

        with pytest.raises(TimeoutError):
            await person.ask("Open the housing", never(), 0.2)
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, os.write, master, b"\n")
        with pytest.raises(CheckSkipped, match="skipped by the installer"):
            await person.ask("Type 1234 then #", never(), 5.0)
    finally:
        os.close(master)
        os.close(slave)
