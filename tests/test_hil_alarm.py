"""The alarm installer tools (hil_tests.zone_walk, siren_test, zigbee_pairing) against the drivers'
simulators: real Modbus RTU over a pty (pymodbus server), real zigpy over the fake radio and over
MT frames on a socket (znp_sim), and modules / devices with the faults an installer meets."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from zigpy.zcl.clusters.closures import DoorLock
from zigpy.zcl.clusters.general import Basic, Identify, PowerConfiguration

from drivers.modbus.simulator import SimBus, SimModule
from drivers.zigbee.simulator import SimDevice, SimNetwork
from drivers.zigbee.znp_sim import ZStackServer
from hil_tests import siren_test, zigbee_pairing, zone_walk
from hil_tests.alarm_common import Console
from hil_tests.alarm_demo import run_alarm_tools
from hil_tests.installer import NobodyThere
from hil_tests.report import CheckSkipped

ROOT = Path(__file__).resolve().parents[1]
REAL = ["--baud", "115200", "--timeout-ms", "1000"]  # a SimBus as the real port: its baud, time for a loaded CI
T = TypeVar("T")


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["checks"]}


def check(report: dict[str, Any], check_id: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["id"] == check_id)


# -- zone walk ---------------------------------------------------------------------------------------


def test_zone_walk_against_the_simulator_lists_every_zone_with_its_changes(tmp_path: Path) -> None:
    path = tmp_path / "walk.json"
    out = io.StringIO()
    assert zone_walk.main(["--inputs", "0-3,7", "--analog", "0-1", "--report", str(path)], out=out) == 0
    report = json.loads(path.read_text())
    assert report["report"] == "linli.commissioning.zone_walk" and report["result"] == "pass"
    assert report["tool"]["name"] == "hil_tests.zone_walk" and report["tool"]["pymodbus"]
    assert report["profile"]["id"] == "generic-modbus-io-16" and len(report["profile"]["sha256"]) == 64
    assert statuses(report) == {"identify": "pass", "inputs": "pass", "analog": "pass"}
    ident = check(report, "identify")["details"]
    assert (ident["discrete_inputs"], ident["analog_inputs"], ident["coils"]) == (16, 16, 8)

    inputs = check(report, "inputs")["details"]
    assert [z["zone"] for z in inputs["zones"]] == ["di0", "di1", "di2", "di3", "di7"]
    assert inputs["never_seen"] == [] and inputs["incomplete"] == {}
    for zone in inputs["zones"]:
        assert zone["initial"] == "normal" and [c["state"] for c in zone["changes"]] == ["active", "normal"]
        times = [c["t_s"] for c in zone["changes"]]
        assert times == sorted(times) and all(c["at"].endswith("Z") for c in zone["changes"])
    analog = check(report, "analog")["details"]
    for zone in analog["zones"]:
        assert zone["type"] == "eol"
        assert [c["state"] for c in zone["changes"]] == ["active", "normal", "cut", "normal", "short", "normal"]
    text = out.getvalue()
    assert "[2/3] inputs ... " in text and "-> di7: active at" in text and "result: PASS" in text


class DeadInputModule(SimModule):
    """A module whose input 2 is broken (or its sensor unwired): it never changes."""

    def set_input(self, no: int, active: bool) -> None:
        if no != 2:
            super().set_input(no, active)


class NoShortModule(SimModule):
    """A loop wired single-EOL by mistake: a short never reads as one (the value stays put)."""

    def set_analog(self, no: int, value: int) -> None:
        if not (no == 1 and value < 500):
            super().set_analog(no, value)


def test_a_dead_input_fails_the_walk_and_is_named(tmp_path: Path) -> None:
    path = tmp_path / "walk.json"
    out = io.StringIO()
    argv = ["--inputs", "0-3", "--analog", "none", "--walk-timeout", "15", "--report", str(path)]
    assert zone_walk.main(argv, out=out, sim_module=DeadInputModule) == 1
    report = json.loads(path.read_text())
    inputs = check(report, "inputs")
    assert inputs["status"] == "fail" and report["result"] == "fail"
    assert inputs["message"].startswith("3 of 4 zones done; never seen: di2")
    assert inputs["details"]["never_seen"] == ["di2"]
    assert {z["zone"]: z["complete"] for z in inputs["details"]["zones"]} == {
        "di0": True, "di1": True, "di2": False, "di3": True}
    assert check(report, "analog")["status"] == "skipped"  # --analog none
    assert "inputs (required) fail: 3 of 4 zones done; never seen: di2" in out.getvalue()


def test_a_loop_that_never_shows_a_short_fails_the_optional_analog_check(tmp_path: Path) -> None:
    path = tmp_path / "walk.json"
    argv = ["--inputs", "0", "--analog", "0-1", "--walk-timeout", "15", "--report", str(path)]
    assert zone_walk.main(argv, out=io.StringIO(), sim_module=NoShortModule) == 0  # analog is optional
    report = json.loads(path.read_text())
    analog = check(report, "analog")
    assert analog["status"] == "fail" and analog["required"] is False
    assert analog["details"]["incomplete"] == {"ai1": "short not seen"}
    assert analog["details"]["never_seen"] == []
    assert report["result"] == "pass" and statuses(report)["inputs"] == "pass"


class ScriptedInstaller:
    """A person at a real module's zones: does `act` when asked, then waits like TerminalInstaller."""

    def __init__(self, act: Any) -> None:
        self.act = act
        self.asked: list[str] = []

    @property
    def absent_reason(self) -> str | None:
        return None

    async def ask(self, instruction: str, until: Coroutine[Any, Any, T], within: float) -> T:
        self.asked.append(instruction)
        task = asyncio.ensure_future(self.act())
        try:
            async with asyncio.timeout(within):
                return await until
        finally:
            await task


async def test_zone_walk_on_a_real_port_waits_for_the_installer_and_shows_progress(tmp_path: Path) -> None:
    async with SimBus([SimModule(4)]) as bus:
        module = bus.module(4)

        async def walk() -> None:  # the installer, in their own order
            for no in (1, 0):
                await asyncio.sleep(0.1)
                module.set_input(no, True)
                await asyncio.sleep(0.1)
                module.set_input(no, False)

        person = ScriptedInstaller(walk)
        args = zone_walk.parser().parse_args([*REAL, "--port", bus.port, "--unit", "4", "--inputs",
                                              "0-1", "--analog", "none", "--walk-timeout", "10",
                                              "--report", str(tmp_path / "r.json")])
        plan = zone_walk.plan_from_args(args)
        assert plan.sim is None
        out = io.StringIO()
        report = await zone_walk.run(plan, Console(out), person)
    assert report.result == "pass", out.getvalue()
    assert "di0, di1" in person.asked[0]
    zones = {z["zone"]: z for z in next(c for c in report.checks if c.id == "inputs").details["zones"]}
    assert zones["di1"]["changes"][0]["t_s"] < zones["di0"]["changes"][0]["t_s"]  # seen in the walked order
    assert "-> di1: active at" in out.getvalue() and "done (2/2)" in out.getvalue()


async def test_a_module_that_drops_out_during_the_walk_fails_with_what_was_seen() -> None:
    async with SimBus([SimModule(1)]) as bus:
        module = bus.module(1)

        async def walk() -> None:
            module.set_input(0, True)
            await asyncio.sleep(0.1)
            module.set_input(0, False)
            await asyncio.sleep(0.1)
            module.present = False  # its power supply fails

        args = zone_walk.parser().parse_args([*REAL, "--port", bus.port, "--inputs", "0-1",
                                              "--analog", "none", "--walk-timeout", "20"])
        report = await zone_walk.run(zone_walk.plan_from_args(args), Console(io.StringIO()), ScriptedInstaller(walk))
    inputs = next(c for c in report.checks if c.id == "inputs")
    assert report.result == "fail" and inputs.status == "fail"
    assert "the module stopped answering (no answer)" in inputs.message and "never seen: di1" in inputs.message
    assert inputs.details["zones"][0]["complete"] is True
    assert inputs.duration_s < 10  # it did not wait out the walk for a module that is gone


class EnterAfterOne(ScriptedInstaller):
    """The installer trips one zone, then presses Enter to end the walk."""

    async def ask(self, instruction: str, until: Coroutine[Any, Any, T], within: float) -> T:
        task = asyncio.ensure_future(until)
        await self.act()
        await asyncio.sleep(0.2)
        task.cancel()
        raise CheckSkipped("skipped by the installer")


async def test_a_walk_ended_early_is_skipped_but_keeps_what_was_seen() -> None:
    async with SimBus([SimModule(1)]) as bus:
        module = bus.module(1)

        async def trip_one() -> None:
            module.set_input(3, True)
            await asyncio.sleep(0.1)
            module.set_input(3, False)

        args = zone_walk.parser().parse_args([*REAL, "--port", bus.port, "--inputs", "2-3",
                                              "--analog", "none"])
        report = await zone_walk.run(zone_walk.plan_from_args(args), Console(io.StringIO()), EnterAfterOne(trip_one))
    inputs = next(c for c in report.checks if c.id == "inputs")
    assert report.result == "incomplete" and inputs.status == "skipped"
    assert inputs.message == "skipped by the installer after 1 of 2 zones; never seen: di2"
    assert [z["complete"] for z in inputs.details["zones"]] == [False, True]


async def test_zone_walk_with_nobody_at_the_zones_is_incomplete() -> None:
    async with SimBus([SimModule(1)]) as bus:
        args = zone_walk.parser().parse_args([*REAL, "--port", bus.port, "--analog", "none"])
        plan = zone_walk.plan_from_args(args)
        report = await zone_walk.run(plan, Console(io.StringIO()), NobodyThere("no terminal"))
    assert report.result == "incomplete"
    assert {c.id: c.status for c in report.checks} == {"identify": "pass", "inputs": "skipped", "analog": "skipped"}


async def test_a_module_at_another_unit_is_unreachable_with_advice() -> None:
    async with SimBus([SimModule(1)]) as bus:
        args = zone_walk.parser().parse_args(["--port", bus.port, "--unit", "2", "--baud", "115200"])
        out = io.StringIO()
        report = await zone_walk.run(zone_walk.plan_from_args(args), Console(out), NobodyThere("-"))
    assert report.result == "fail" and not report.connection["online"]
    ident = report.checks[0]
    assert ident.status == "fail" and "no answer from unit 2" in ident.message
    assert "hint: check the A/B wiring, the unit id and the baud rate" in out.getvalue()
    assert {c.id: c.status for c in report.checks[1:]} == {"inputs": "skipped", "analog": "skipped"}


def test_the_zone_walk_runs_with_no_arguments() -> None:
    proc = subprocess.run([sys.executable, "-m", "hil_tests.zone_walk", "--inputs", "0-1", "--analog", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[1/3] identify ... ok" in proc.stdout and "result: PASS" in proc.stdout


# -- siren test --------------------------------------------------------------------------------------


async def _siren_run(argv: list[str], module: type[SimModule] = SimModule) -> tuple[Any, SimModule, str]:
    plan = siren_test.plan_from_args(siren_test.parser().parse_args(argv), module)
    assert plan.sim is not None
    sim = plan.sim.module(1)
    out = io.StringIO()
    report = await siren_test.run(plan, Console(out))
    return report, sim, out.getvalue()


async def test_siren_test_switches_each_coil_and_confirms_it() -> None:
    report, sim, text = await _siren_run(["--coils", "0,2", "--on-time", "0.1"])
    assert report.result == "pass", text
    assert [c.id for c in report.checks] == ["identify", "do0", "do2"]
    do2 = report.checks[2].details
    assert (do2["on_read_back"], do2["off_read_back"]) == (True, False) and do2["on_for_s"] >= 0.1
    # On the module: exactly those coils, each on then off, none left on.
    assert [(no, on) for _, no, on in sim.coil_log] == [(0, True), (0, False), (2, True), (2, False)]
    assert sim.coils == [False] * 8
    assert report.to_dict()["report"] == "linli.commissioning.siren_test"


def test_siren_test_writes_its_report(tmp_path: Path) -> None:
    path = tmp_path / "sirens.json"
    assert siren_test.main(["--coils", "1", "--on-time", "0.05", "--report", str(path)], out=io.StringIO()) == 0
    report = json.loads(path.read_text())
    assert statuses(report) == {"identify": "pass", "do1": "pass"} and report["target"]["coils"] == ["do1"]


class StuckOffModule(SimModule):
    """Relay do1 is broken: the module takes the write (and echoes it) but the output never comes on."""

    async def _action(self, function_code: int, start: int, address: int, count: int, registers: list[int],
                      values: Any) -> None:
        if function_code == 1:
            registers[0] &= ~(1 << 1)
        await super()._action(function_code, start, address, count, registers, values)


async def test_a_coil_that_does_not_read_back_fails_and_the_others_still_run() -> None:
    report, sim, text = await _siren_run(["--coils", "0-2", "--on-time", "0.05"], StuckOffModule)
    assert report.result == "fail"
    assert {c.id: c.status for c in report.checks} == {"identify": "pass", "do0": "pass", "do1": "fail",
                                                        "do2": "pass"}
    assert report.checks[2].message == "do1 switched on but reads back off"
    assert "hint: the module did not keep the output on" in text
    assert "do1 (required) fail: do1 switched on but reads back off" in text
    assert sim.coils == [False] * 8


class StuckOnModule(SimModule):
    """Relay do0 welded shut: once on, it reads back on whatever is written."""

    welded = False

    async def _action(self, function_code: int, start: int, address: int, count: int, registers: list[int],
                      values: Any) -> None:
        if function_code == 5 and address == 0 and values:
            self.welded = self.welded or bool(values[0])
        if function_code == 1 and self.welded:
            registers[0] |= 1
        await super()._action(function_code, start, address, count, registers, values)


async def test_a_coil_stuck_on_fails_and_the_installer_is_warned() -> None:
    report, _, text = await _siren_run(["--coils", "0-1", "--on-time", "0.05"], StuckOnModule)
    assert {c.id: c.status for c in report.checks} == {"identify": "pass", "do0": "fail", "do1": "pass"}
    assert report.checks[1].message == "do0 switched off but reads back on"
    assert "WARNING: do0 may still be ON" in text and report.device["left_on"] == ["do0"]


class AlreadyOnModule(SimModule):
    """The alarm is sounding on do3 as the test starts (someone else switched it on)."""

    primed = False

    async def _action(self, function_code: int, start: int, address: int, count: int, registers: list[int],
                      values: Any) -> None:
        if function_code == 1 and not self.primed:
            self.primed = True
            registers[0] |= 1 << 3
        await super()._action(function_code, start, address, count, registers, values)


async def test_a_coil_already_on_is_not_tested_and_is_left_alone() -> None:
    report, sim, _ = await _siren_run(["--coils", "3", "--on-time", "0.05"], AlreadyOnModule)
    assert report.result == "fail"
    assert report.checks[1].status == "fail" and "do3 was already on before the test" in report.checks[1].message
    assert list(sim.coil_log) == []  # not written: whoever switched it on decides when it goes off


# -- zigbee pairing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["contact", "motion", "smoke", "water", "vibration", "siren", "lock", "relay"])
def test_zigbee_pairing_passes_for_each_kind_on_the_simulator(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.json"
    assert zigbee_pairing.main(["--kind", kind, "--report", str(path)], out=io.StringIO()) == 0
    report = json.loads(path.read_text())
    assert report["report"] == "linli.commissioning.zigbee_pairing" and report["result"] == "pass"
    assert report["profile"]["id"] == f"zigbee-{kind}" and report["tool"]["zigpy"]
    assert report["connection"]["online"] and report["connection"]["channel"] == 15
    planned = [c["check"] for c in _profile_checks(kind)]
    assert [c["id"] for c in report["checks"]] == planned
    assert all(c["status"] == "pass" for c in report["checks"] if c["id"] != "offline")
    interview = check(report, "interview")["details"]
    assert interview["model"] == f"sim-{kind}" and "basic" in interview["clusters"]


def _profile_checks(kind: str) -> list[dict[str, Any]]:
    doc = yaml.safe_load((ROOT / "firmware_profiles" / f"zigbee-{kind}.yaml").read_text())
    return list(doc["commissioning"]["checks"])


def _keep(devices: list[SimDevice], make: Any = None) -> Any:
    def factory(network: SimNetwork, kind: str) -> SimDevice:
        device = make(network, kind) if make else network.add(kind)  # type: ignore[arg-type]
        devices.append(device)
        return device

    return factory


async def test_zigbee_pairing_drives_the_device_over_the_air() -> None:
    devices: list[SimDevice] = []
    args = zigbee_pairing.parser().parse_args(["--kind", "siren"])
    report = await zigbee_pairing.run(zigbee_pairing.plan_from_args(args, _keep(devices)), Console(io.StringIO()))
    assert report.result == "pass"
    siren = devices[0]
    warnings = siren.commands("start_warning")
    assert len(warnings) == 2 and len(siren.commands("squawk")) == 1  # on, then stop; one squawk

    devices.clear()
    args = zigbee_pairing.parser().parse_args(["--kind", "lock"])
    report = await zigbee_pairing.run(zigbee_pairing.plan_from_args(args, _keep(devices)), Console(io.StringIO()))
    assert report.result == "pass"
    lock = devices[0]
    assert [r.command for r in lock.received if r.cluster == DoorLock.cluster_id] == ["lock_door", "unlock_door"]


def _no_ias_zone(network: SimNetwork, kind: str) -> SimDevice:
    device = network.add(kind)  # type: ignore[arg-type]
    device.profile = replace(device.profile, in_clusters=(Basic.cluster_id, PowerConfiguration.cluster_id,
                                                          Identify.cluster_id))
    return device


def test_a_device_missing_a_required_cluster_fails_its_interview(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    out = io.StringIO()
    code = zigbee_pairing.main(["--kind", "contact", "--report", str(path)], out=out, sim_factory=_no_ias_zone)
    assert code == 1
    report = json.loads(path.read_text())
    interview = check(report, "interview")
    assert interview["status"] == "fail"
    assert interview["message"] == "missing required cluster ias_zone (profile zigbee-contact)"
    assert interview["details"]["missing"] == ["ias_zone"]
    assert statuses(report) == {"join": "pass", "interview": "fail", "enrol": "skipped", "trip": "skipped",
                                "restore": "skipped", "battery": "skipped", "tamper": "skipped"}
    assert "interview (required) fail: missing required cluster ias_zone" in out.getvalue()


def test_without_a_profile_it_is_chosen_from_the_device(tmp_path: Path) -> None:
    path = tmp_path / "r.json"

    def motion(network: SimNetwork, kind: str) -> SimDevice:
        return network.add("motion")

    assert zigbee_pairing.main(["--report", str(path)], out=io.StringIO(), sim_factory=motion) == 0
    report = json.loads(path.read_text())
    assert report["profile"]["id"] == "zigbee-motion" and report["profile"]["chosen"] == "from the device's interview"
    assert len(report["profile"]["sha256"]) == 64
    assert check(report, "enrol")["details"]["zone_type"] == "Motion_Sensor"


def test_a_device_of_another_kind_than_expected_fails(tmp_path: Path) -> None:
    def relay(network: SimNetwork, kind: str) -> SimDevice:
        return network.add("relay")

    path = tmp_path / "r.json"
    assert zigbee_pairing.main(["--kind", "lock", "--report", str(path)], out=io.StringIO(), sim_factory=relay) == 1
    report = json.loads(path.read_text())
    assert check(report, "interview")["message"] == "missing required cluster door_lock (profile zigbee-lock)"


class StickInstaller:
    """The installer beside a real stick (here the Z-Stack stand-in's air): pairs the sensor, trips it."""

    def __init__(self, stick: ZStackServer) -> None:
        self.stick = stick
        self.sensor: SimDevice | None = None

    @property
    def absent_reason(self) -> str | None:
        return None

    async def ask(self, instruction: str, until: Coroutine[Any, Any, T], within: float) -> T:
        if "pairing mode" in instruction:
            self.sensor = self.stick.network.add("contact")
            await self.sensor.join()
        elif self.sensor is not None:
            if instruction.startswith("Trip"):
                self.sensor.set_zone(alarm=True)
            elif instruction.startswith("Let it restore"):
                self.sensor.set_zone(alarm=False)
            elif "cover" in instruction:
                self.sensor.set_zone(tamper=True)
                sensor = self.sensor
                asyncio.get_running_loop().call_later(0.05, lambda: sensor.set_zone(tamper=False))
        async with asyncio.timeout(within):
            return await until


async def test_zigbee_pairing_through_a_znp_stick_over_mt_frames(tmp_path: Path) -> None:
    stick = ZStackServer()
    await stick.start()
    try:
        argv = ["--radio", "znp", "--port", stick.url, "--network-file", str(tmp_path / "net.json"),
                "--profile", "zigbee-contact", "--report", str(tmp_path / "r.json")]
        plan = zigbee_pairing.plan_from_args(zigbee_pairing.parser().parse_args(argv))
        out = io.StringIO()
        report = await zigbee_pairing.run(plan, Console(out), StickInstaller(stick))
        assert report.result == "pass", out.getvalue()
        assert {c.id: c.status for c in report.checks} == {
            "join": "pass", "interview": "pass", "enrol": "pass", "trip": "pass", "restore": "pass",
            "battery": "pass", "tamper": "pass"}
        assert report.target["radio"] == "znp" and report.connection["online"]

        # Nobody at the device: the join is skipped, the rest is not run, the result is incomplete.
        report = await zigbee_pairing.run(plan, Console(io.StringIO()), NobodyThere("stdin is not a terminal"))
        assert report.result == "incomplete"
        assert {c.id: c.status for c in report.checks}["join"] == "skipped"
    finally:
        await stick.stop()


def test_an_unreachable_stick_fails_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    argv = ["--radio", "znp", "--port", "socket://127.0.0.1:9", "--network-file", str(tmp_path / "n.json"),
            "--kind", "contact", "--report", str(path)]
    out = io.StringIO()
    assert zigbee_pairing.main(argv, out=out) == 1
    report = json.loads(path.read_text())
    assert report["connection"]["online"] is False and report["checks"] == []
    assert "coordinator ... FAIL" in out.getvalue() and "daemon is stopped" in out.getvalue()


# -- unusable arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "argv", "message"),
    [
        (zone_walk, ["--inputs", "0-20"], "--inputs: 0-20 is outside 0-15"),
        (zone_walk, ["--analog", "x"], "--analog: 'x' is not a number"),
        (zone_walk, ["--walk-timeout", "0"], "--walk-timeout must be between"),
        (zone_walk, ["--unit", "300"], "unit 300 is outside this profile's range 1-247"),
        (zone_walk, ["--profile", "zigbee-contact"], "describes a zigbee_device, not a modbus_io_module"),
        (zone_walk, ["--profile", "no-such-module"], "the profile is not valid"),
        (zone_walk, ["--port", "/dev/ttyUSB9", "--baud", "4800"], "baud 4800 is not one this module supports"),
        (siren_test, ["--on-time", "11"], "--on-time must be between 0.05 and 10 seconds"),
        (siren_test, ["--port", "/dev/ttyUSB9", "--coils", "0"], "add --yes"),
        (siren_test, ["--port", "/dev/ttyUSB9", "--yes"], "say which relays drive sirens"),
        (siren_test, ["--coils", "8"], "--coils: 8 is outside 0-7"),
        (siren_test, ["--coils", "none"], "--coils names no relay"),
        (zigbee_pairing, ["--port", "/dev/ttyUSB9"], "--port is for a real radio"),
        (zigbee_pairing, ["--radio", "znp"], "radio znp needs --port"),
        (zigbee_pairing, ["--radio", "ezsp", "--port", "/dev/ttyUSB9"], "give the daemon's --network-file"),
        (zigbee_pairing, ["--permit", "300"], "--permit must be 1-254"),
        (zigbee_pairing, ["--kind", "siren", "--profile", "zigbee-contact"], "the profile zigbee-contact is for a "
                                                                             "contact"),
        (zigbee_pairing, ["--profile", "generic-modbus-io-16"], "not a zigbee_device"),
    ],
)
def test_unusable_arguments_are_exit_2(tool: Any, argv: list[str], message: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert tool.main(argv, out=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err


def test_argparse_errors_are_exit_2_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        zigbee_pairing.main(["--radio", "xbee"], out=io.StringIO())
    assert exc.value.code == 2 and "invalid choice: 'xbee'" in capsys.readouterr().err


def test_the_demo_runs_every_tool_against_its_simulator(tmp_path: Path) -> None:
    out = io.StringIO()
    results = asyncio.run(run_alarm_tools(out, tmp_path))
    assert results == {"zone_walk": "pass", "siren_test": "pass", "zigbee_pairing_contact": "pass",
                       "zigbee_pairing_siren": "pass", "zigbee_pairing_lock": "pass", "zigbee_pairing_relay": "pass"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "siren-test.json", "zigbee-pairing-contact.json", "zigbee-pairing-lock.json", "zigbee-pairing-relay.json",
        "zigbee-pairing-siren.json", "zone-walk.json"]
