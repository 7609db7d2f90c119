"""The Modbus RTU driver against simulated I/O modules: pymodbus's server on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import serial
from pymodbus.framer import FramerRTU

from drivers.modbus import EolThresholds, ModbusDriver, ModuleSpec, OutputError, poll_floor
from drivers.modbus.simulator import SimBus, SimModule, ser2net

Event = tuple[str, str, dict[str, Any]]


@dataclass
class Recorder:
    """The driver's report callback: keeps every report, in order."""

    events: list[Event] = field(default_factory=list)

    def __call__(self, type: str, source: str, data: dict[str, Any], severity: str) -> None:
        self.events.append((type, source, data))

    def mark(self) -> int:
        return len(self.events)

    def since(self, mark: int, type: str | None = None, source: str | None = None) -> list[Event]:
        return [e for e in self.events[mark:] if (type is None or e[0] == type) and (source is None or e[1] == source)]

    async def wait(self, pred: Callable[[Event], bool], *, after: int = 0, within: float = 3.0) -> Event:
        deadline = time.monotonic() + within
        while True:
            for e in self.events[after:]:
                if pred(e):
                    return e
            if time.monotonic() > deadline:
                raise TimeoutError(f"no matching report within {within}s; got {self.events[after:][-5:]}")
            await asyncio.sleep(0.01)


def is_(type: str, source: str, **data: Any) -> Callable[[Event], bool]:
    return lambda e: e[0] == type and e[1] == source and all(e[2].get(k) == v for k, v in data.items())


@pytest.fixture
async def bus() -> AsyncIterator[SimBus]:
    async with SimBus([SimModule(1), SimModule(2, coils=4)]) as b:
        yield b


def specs(*units: int, **kw: Any) -> list[ModuleSpec]:
    return [ModuleSpec(f"io{u}", u, **kw) for u in units]


async def wait_online(rec: Recorder, *ids: str) -> None:
    for i in ids:
        await rec.wait(is_("device.online", i))


# ---- polling and inputs ------------------------------------------------------------------------------


async def test_first_contact_reports_every_point_then_only_changes(bus: SimBus) -> None:
    rec = Recorder()
    async with ModbusDriver(bus.port, specs(1, 2, coils=4), rec, timeout_s=0.05):
        await wait_online(rec, "io1", "io2")
        await rec.wait(is_("input.changed", "io2", point="di15"))
        first = [e for e in rec.events if e[0] == "input.changed"]
        assert sorted((e[1], e[2]["point"]) for e in first) == sorted(
            (m, f"di{i}") for m in ("io1", "io2") for i in range(16)
        )
        assert all(e[2]["state"] == "normal" for e in first)

        mark = rec.mark()
        bus.module(2).set_input(7, True)
        await rec.wait(is_("input.changed", "io2", point="di7", state="active"), after=mark)
        bus.module(2).set_input(7, False)
        await rec.wait(is_("input.changed", "io2", point="di7", state="normal"), after=mark + 1)
        await asyncio.sleep(0.2)  # several more cycles: nothing else changed, nothing else reported
        assert [(e[1], e[2]["point"], e[2]["state"]) for e in rec.since(mark)] == [
            ("io2", "di7", "active"),
            ("io2", "di7", "normal"),
        ]


async def test_end_of_line_supervision_classifies_the_loop() -> None:
    analog = {0: EolThresholds(), 1: EolThresholds(short_state="fault")}
    async with SimBus([SimModule(5, inputs=0, analog=2)]) as bus:
        rec = Recorder()
        async with ModbusDriver(bus.port, [ModuleSpec("fence", 5, inputs=0, analog=analog)], rec, timeout_s=0.05):
            await rec.wait(is_("input.changed", "fence", point="ai1"))
            assert {e[2]["point"]: e[2]["state"] for e in rec.since(0, "input.changed")} == {
                "ai0": "normal",
                "ai1": "normal",
            }
            module = bus.module(5)
            for value, state, detail in [
                (2200, "active", "value=2200"),  # EOL + alarm resistor: the contact opened
                (60000, "tamper", "cut"),
                (120, "tamper", "short"),
                (1000, "normal", "value=1000"),
            ]:
                mark = rec.mark()
                module.set_analog(0, value)
                e = await rec.wait(is_("input.changed", "fence", point="ai0"), after=mark)
                assert (e[2]["state"], e[2]["detail"]) == (state, detail)
            mark = rec.mark()
            module.set_analog(1, 0)
            e = await rec.wait(is_("input.changed", "fence", point="ai1"), after=mark)
            assert (e[2]["state"], e[2]["detail"]) == ("fault", "short")
            # A new value in the same band is no change.
            mark = rec.mark()
            module.set_analog(0, 1100)
            await asyncio.sleep(0.2)
            assert rec.since(mark) == []


def test_eol_thresholds_bands_and_bad_order() -> None:
    t = EolThresholds(short_below=500, normal_below=1500, alarm_below=3000)
    assert [t.classify(v)[0] for v in (0, 499, 500, 1499, 1500, 2999, 3000, 65535)] == [
        "tamper",
        "tamper",
        "normal",
        "normal",
        "active",
        "active",
        "tamper",
        "tamper",
    ]
    with pytest.raises(ValueError, match="must rise"):
        EolThresholds(short_below=1500, normal_below=1500, alarm_below=3000)


# ---- outputs ----------------------------------------------------------------------------------------


async def test_coil_write_reaches_the_module_and_only_that_coil(bus: SimBus) -> None:
    rec = Recorder()
    async with ModbusDriver(bus.port, specs(1) + specs(2, coils=4), rec, timeout_s=0.05) as driver:
        await wait_online(rec, "io1", "io2")
        await driver.set_output("io2", 3, True)  # returns once the module echoed the write
        assert bus.module(2).coils == [False, False, False, True]
        assert bus.module(1).coils == [False] * 8
        assert driver.state("io2")["outputs"] == {"do3": True}
        await driver.set_output("io2", 3, False)
        assert bus.module(2).coils == [False] * 4
        assert driver.stats.writes == 2

        with pytest.raises(OutputError, match="no output do4"):
            await driver.set_output("io2", 4, True)
        with pytest.raises(OutputError, match="no Modbus module 'io9'"):
            await driver.set_output("io9", 0, True)
        assert bus.module(2).coils == [False] * 4


async def test_an_output_only_module_is_supervised_by_reading_its_coils(bus: SimBus) -> None:
    rec = Recorder()
    async with ModbusDriver(bus.port, [ModuleSpec("sirens", 2, inputs=0, coils=4)], rec, timeout_s=0.05) as driver:
        await wait_online(rec, "sirens")
        await driver.set_output("sirens", 2, True)
        await asyncio.sleep(0.1)
        assert driver.state("sirens")["outputs"] == {"do0": False, "do1": False, "do2": True, "do3": False}
        assert rec.since(0, "input.changed") == []
        bus.module(2).present = False
        await rec.wait(is_("device.offline", "sirens"))


async def test_a_write_does_not_wait_for_the_poll_interval() -> None:
    """Coil writes jump the queue: with a 2 s poll interval the write still goes out at once, alone."""
    async with SimBus([SimModule(u) for u in range(1, 9)]) as bus:
        rec = Recorder()
        modules = specs(*range(1, 9))
        async with ModbusDriver(bus.port, modules, rec, timeout_s=0.05, poll_interval_s=2.0) as driver:
            await wait_online(rec, *(m.id for m in modules))
            await asyncio.sleep(0.1)  # the cycle is done; the driver idles until the 2 s interval is up
            polls = sum(m.requests for m in bus.modules.values())
            await asyncio.wait_for(driver.set_output("io8", 0, True), 0.5)
            assert bus.module(8).coil(0)
            assert sum(m.requests for m in bus.modules.values()) == polls + 1  # the write alone


# ---- the shared bus --------------------------------------------------------------------------------------


def _frame(unit: int, pdu: bytes) -> bytes:
    body = bytes([unit]) + pdu
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")


def _ask(port: str, frame: bytes, wait_s: float) -> bytes:
    with serial.Serial(port, 115200, timeout=wait_s) as s:
        s.write(frame)
        return s.read(64)


async def test_a_unit_nobody_has_gets_no_answer_at_all(bus: SimBus) -> None:
    """pymodbus's own server answers exception 4 for an unknown unit; a real bus stays silent."""
    read_16_inputs = bytes([0x02, 0x00, 0x00, 0x00, 0x10])
    answer = await asyncio.to_thread(_ask, bus.port, _frame(1, read_16_inputs), 0.3)
    assert answer == _frame(1, bytes([0x02, 0x02, 0x00, 0x00]))  # unit 1: two bytes of inputs, all off
    assert await asyncio.to_thread(_ask, bus.port, _frame(9, read_16_inputs), 0.3) == b""
    assert await asyncio.to_thread(_ask, bus.port, _frame(0x42, bytes([0x05, 0x00, 0x00, 0xFF, 0x00])), 0.3) == b""


async def test_a_missing_module_is_offline_and_its_neighbours_are_not(bus: SimBus) -> None:
    rec = Recorder()
    modules = specs(1) + specs(2, coils=4) + specs(9)
    async with ModbusDriver(bus.port, modules, rec, timeout_s=0.05, offline_retry_s=0.2) as driver:
        e = await rec.wait(is_("device.offline", "io9"))
        assert e[2]["reason"] == "no answer"
        await wait_online(rec, "io1", "io2")
        await asyncio.sleep(0.5)
        assert driver.is_online("io1") and driver.is_online("io2") and not driver.is_online("io9")
        assert driver.stats.exceptions == 0  # nobody answered for unit 9
        assert len(rec.since(0, "device.offline")) == 1
        assert rec.since(0, "input.changed", "io9") == []
        with pytest.raises(OutputError, match="offline"):
            await driver.set_output("io9", 0, True)


def test_two_modules_with_one_unit_id_are_refused() -> None:
    with pytest.raises(ValueError, match="share a unit id"):
        ModbusDriver("/dev/null", [ModuleSpec("a", 3), ModuleSpec("b", 3)], Recorder())
    with pytest.raises(ValueError, match="outside 1-247"):
        ModuleSpec("a", 248)
    with pytest.raises(ValueError, match="nothing to poll"):
        ModuleSpec("a", 1, inputs=0, coils=0)
    with pytest.raises(ValueError, match="at least one module"):
        ModbusDriver("/dev/null", [], Recorder())


# ---- faults -------------------------------------------------------------------------------------------------


async def test_corrupt_answers_are_counted_and_never_become_input_changes(bus: SimBus) -> None:
    rec = Recorder()
    async with ModbusDriver(bus.port, specs(1) + specs(2, coils=4), rec, timeout_s=0.05, offline_after=3) as driver:
        await wait_online(rec, "io1", "io2")
        await rec.wait(is_("input.changed", "io2", point="di15"))
        mark = rec.mark()
        # Fewer than offline_after in a row: counted, not yet trouble.
        bus.module(1).corrupt_replies = 2  # a data byte flipped: the inputs would read as changed
        bus.module(2).garble_replies = 2  # noise ahead of the answer
        await asyncio.sleep(0.4)
        assert driver.stats.crc_errors >= 4
        assert driver.stats.garbage_bytes > 0
        assert rec.since(mark) == []
        # Noise on the line at random moments, between and inside transactions.
        for _ in range(20):
            bus.inject(bytes([0x01, 0x02, 0x02, 0xFF, 0xFF, 0x12, 0x34]))  # looks like "unit 1: all inputs on"
            await asyncio.sleep(0.013)
        await asyncio.sleep(0.2)
        assert rec.since(mark, "input.changed") == []
        # A run of corrupt answers is trouble: offline, then online again - still no input changes.
        bus.module(1).corrupt_replies = 5
        e = await rec.wait(is_("device.offline", "io1"), after=mark)
        assert e[2]["reason"] == "no answer"
        await rec.wait(is_("device.online", "io1", reason="answering again"), after=mark, within=5)
        assert rec.since(mark, "input.changed") == []
        assert rec.since(mark, "device.offline", "io2") == []
        # ...and the bus still works.
        bus.module(1).set_input(0, True)
        await rec.wait(is_("input.changed", "io1", point="di0", state="active"), after=mark)


async def test_module_switched_off_goes_offline_and_comes_back_with_what_changed(bus: SimBus) -> None:
    rec = Recorder()
    async with ModbusDriver(bus.port, specs(1) + specs(2, coils=4), rec, timeout_s=0.05, offline_retry_s=0.1):
        await wait_online(rec, "io1", "io2")
        await rec.wait(is_("input.changed", "io2", point="di15"))
        mark = rec.mark()
        bus.module(2).present = False
        await rec.wait(is_("device.offline", "io2"), after=mark)
        bus.module(2).set_input(4, True)  # changed while nobody could see it
        await asyncio.sleep(0.2)
        assert rec.since(mark, "input.changed") == []
        bus.module(2).present = True
        await rec.wait(is_("device.online", "io2", reason="answering again"), after=mark)
        await rec.wait(is_("input.changed", "io2", point="di4", state="active"), after=mark)
        await asyncio.sleep(0.2)
        assert [e[2]["point"] for e in rec.since(mark, "input.changed")] == ["di4"]
        assert rec.since(mark, source="io1") == []


async def test_bus_unplugged_every_module_offline_then_back(bus: SimBus) -> None:
    rec = Recorder()
    async with ModbusDriver(bus.port, specs(1) + specs(2, coils=4), rec, timeout_s=0.05) as driver:
        await wait_online(rec, "io1", "io2")
        mark = rec.mark()
        bus.unplug()
        for m in ("io1", "io2"):
            e = await rec.wait(is_("device.offline", m), after=mark)
            assert e[2]["reason"].startswith("port:")
        assert not driver.connected
        with pytest.raises(OutputError):
            await driver.set_output("io1", 0, True)
        bus.module(1).set_input(2, True)
        bus.replug()
        for m in ("io1", "io2"):
            await rec.wait(is_("device.online", m), after=mark, within=8)
        await rec.wait(is_("input.changed", "io1", point="di2", state="active"), after=mark)
        await driver.set_output("io1", 0, True)
        assert bus.module(1).coil(0)


async def test_ser2net_socket_port(bus: SimBus) -> None:
    server = await ser2net(bus.port)
    port = server.sockets[0].getsockname()[1]
    try:
        rec = Recorder()
        async with ModbusDriver(f"socket://127.0.0.1:{port}", specs(1), rec, timeout_s=0.1) as driver:
            await wait_online(rec, "io1")
            mark = rec.mark()
            bus.module(1).set_input(9, True)
            await rec.wait(is_("input.changed", "io1", point="di9", state="active"), after=mark)
            await driver.set_output("io1", 5, True)
            assert bus.module(1).coil(5)
    finally:
        server.close()
        await server.wait_closed()


# ---- the wire-time floor -------------------------------------------------------------------------------


def test_poll_floor_for_eight_sixteen_input_modules_at_115200() -> None:
    floor = poll_floor(specs(*range(1, 9)), 115200)
    # per module: FC2 request 8 bytes + answer 7 bytes at 11 bits/byte, plus 2 x 1.75 ms of silence
    per_module = 15 * 11 / 115200 + 2 * 1.75e-3
    assert floor.cycle_s == pytest.approx(8 * per_module)
    assert floor.write_s == pytest.approx(16 * 11 / 115200 + 2 * 1.75e-3)
    assert floor.detect_worst_s == pytest.approx(9 * per_module)
    assert floor.worst_s == pytest.approx(10 * per_module + floor.write_s)  # + the transaction in flight
    assert floor.worst_s < 0.1  # the schedule can meet issue 6's 100 ms p99
    # 9600 baud: the silence is 3.5 characters, not the fixed 1.75 ms
    slow = poll_floor(specs(1), 9600)
    assert slow.cycle_s == pytest.approx(15 * 11 / 9600 + 2 * 3.5 * 11 / 9600)


# ---- the firmware profile -------------------------------------------------------------------------------


def test_generic_profile_matches_what_the_driver_reads() -> None:
    from hil_tests.profiles import PROFILES_DIR, ProfileError, load_profile, parse_profile

    path = PROFILES_DIR / "generic-modbus-io-16.yaml"
    profile = load_profile(path).profile
    assert profile.kind == "modbus_io_module"
    regs = profile.registers
    default = ModuleSpec("x", 1)
    assert (regs.discrete_inputs.address, regs.discrete_inputs.count) == (default.di_address, default.inputs)
    assert (regs.coils.address, regs.coils.count) == (default.coil_address, default.coils)
    eol = EolThresholds()
    assert (profile.eol.short_below, profile.eol.normal_below, profile.eol.alarm_below) == (
        eol.short_below,
        eol.normal_below,
        eol.alarm_below,
    )
    text = path.read_text()
    broken = text.replace("    count: 8\n", "    count: 0\n")  # no coils, yet the plan tests outputs
    with pytest.raises(ProfileError, match="tests outputs"):
        parse_profile(broken, "x.yaml")
    with pytest.raises(ProfileError, match="unknown key"):
        parse_profile(text.replace("turnaround_ms: 5", "turnaround: 5"), "x.yaml")


async def test_the_simulator_program_speaks_modbus_and_takes_commands(tmp_path: Path) -> None:
    import json
    import sys

    link = tmp_path / "bus"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "drivers.modbus.simulator",
        "--module",
        "3",
        "--module",
        "4:8:2",
        "--link",
        str(link),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None

    async def line() -> dict[str, Any]:
        async with asyncio.timeout(10):
            return json.loads(await proc.stdout.readline())  # type: ignore[union-attr]

    async def send(text: str) -> None:
        proc.stdin.write(text.encode() + b"\n")  # type: ignore[union-attr]
        await proc.stdin.drain()  # type: ignore[union-attr]

    try:
        ready = await line()
        assert ready["pty"].startswith("/dev/pts/") and str(link.readlink()) == ready.pop("pty")
        assert ready == {"event": "ready", "port": str(link), "units": [3, 4], "baudrate": 115200}
        rec = Recorder()
        modules = [ModuleSpec("io3", 3), ModuleSpec("io4", 4, inputs=8, coils=2)]
        async with ModbusDriver(str(link), modules, rec, timeout_s=0.1) as driver:
            await wait_online(rec, "io3", "io4")
            mark = rec.mark()
            await send("input 4 6 1")
            await rec.wait(is_("input.changed", "io4", point="di6", state="active"), after=mark)
            await driver.set_output("io4", 1, True)
            coil = await line()
            assert (coil["event"], coil["unit"], coil["coil"], coil["on"]) == ("coil", 4, 1, True)
            await send("coils 4")
            assert await line() == {"event": "coils", "unit": 4, "coils": [False, True]}
            await send("input 9 0 1")
            assert (await line())["event"] == "error"
        await send("quit")
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
