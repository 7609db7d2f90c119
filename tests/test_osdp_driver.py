"""The OSDP driver against simulated readers, over real OSDP (libosdp at both ends of a pty)."""

from __future__ import annotations

import asyncio
from typing import Any

import osdp_sys
import pytest

from drivers.osdp import CardCredential, Credential, Decision, LedColor, OsdpDriver, PinCredential, ReaderConfig
from drivers.osdp.simulator import INPUT_DPS, INPUT_REX, OUTPUT_LOCK, SimBus, SimReader
from drivers.osdp.testing import EventRecorder, sim_bus
from drivers.osdp.wiegand import bits_to_bytes, encode

PLAIN = ReaderConfig("gate", 1, secure=False)


class Decider:
    """A stand-in for the access rules: records what it was asked, answers as told."""

    def __init__(self, answer: Decision | bool | None = True) -> None:
        self.answer = answer
        self.asked: list[tuple[str, Credential]] = []

    async def __call__(self, reader: str, credential: Credential) -> Decision | bool | None:
        self.asked.append((reader, credential))
        return self.answer


@pytest.mark.parametrize(
    ("fmt", "facility", "card"),
    [("H10301", 17, 51234), ("H10306", 40000, 65000), ("C1000_35", 4000, 1000000), ("C1000_48", 3000000, 8000000)],
)
async def test_card_read_is_decoded_and_offered_for_decision(fmt: str, facility: int, card: int) -> None:
    decider = Decider()
    async with sim_bus([SimReader(1)], [PLAIN], on_credential=decider) as (bus, _driver, events):
        mark = events.mark()
        bus.reader(1).present_card(card, facility, fmt)
        e = await events.wait("reader.card", "gate", since=mark)
        value, length = encode(fmt, facility, card)
        assert e.data == {
            "reader": "gate",
            "address": 1,
            "format": fmt,
            "facility": facility,
            "card": card,
            "bits": length,
            "raw_hex": bits_to_bytes(value, length).hex(),
        }
        await bus.reader(1).wait_for(lambda: 0 in bus.reader(1).leds)  # grant feedback reached the reader
        assert decider.asked[0][0] == "gate"
        credential = decider.asked[0][1]
        assert isinstance(credential, CardCredential)
        assert (credential.read.facility, credential.read.card) == (facility, card)
        assert bus.reader(1).leds[0]["on_color"] == LedColor.GREEN


async def test_raw_and_bad_parity_reads() -> None:
    decider = Decider()
    async with sim_bus([SimReader(1)], [PLAIN], on_credential=decider) as (bus, _driver, events):
        bus.reader(1).present_bits(0x1234567, 37)
        raw = await events.wait("reader.card")
        assert (raw.data["format"], raw.data["card"], raw.data["facility"]) == ("raw", 0x1234567, None)
        value, _ = encode("H10301", 1, 2)
        bus.reader(1).present_bits(value ^ 0b100, 26)  # one data bit flipped: parity fails
        bad = await events.wait("reader.card_error")
        assert bad.data["bits"] == 26 and "parity" in bad.data["error"]
        await asyncio.sleep(0.1)
        assert len(events.of("reader.card")) == 1
        assert len(decider.asked) == 1  # the corrupt read never reached the decision


async def test_keypad_pin_goes_to_the_decision_only() -> None:
    decider = Decider(Decision(granted=False))
    async with sim_bus([SimReader(1)], [PLAIN], on_credential=decider, pin_timeout=0.3) as (bus, _d, events):
        bus.reader(1).press_keys("2468#")
        e = await events.wait("reader.keypad")
        assert e.data == {"reader": "gate", "address": 1, "pin_length": 4}
        await bus.reader(1).wait_for(lambda: 0 in bus.reader(1).leds and bus.reader(1).buzzes)
        assert decider.asked == [("gate", PinCredential("2468"))]
        assert bus.reader(1).leds[0]["on_color"] == LedColor.RED  # denied
        assert [b["rep_count"] for b in bus.reader(1).buzzes] == [3]
        bus.reader(1).press_keys("13")
        abandoned = await events.wait("reader.keypad_abandoned", within=2.0)
        assert abandoned.data["reason"] == "timeout" and abandoned.data["pin_length"] == 2
        assert all("pin" not in e.data and "2468" not in repr(e.data) for e in events.events)
        assert "2468" not in repr(decider.asked[0][1])


async def test_output_command_switches_the_lock_relay() -> None:
    async with sim_bus([SimReader(1)], [PLAIN]) as (bus, driver, _events):
        sim = bus.reader(1)
        assert await driver.output("gate", OUTPUT_LOCK, True, duration_ms=300)
        assert sim.outputs[OUTPUT_LOCK].on
        await sim.wait_output(OUTPUT_LOCK, False, within=1.0)  # the reader relocks by itself
        assert await driver.output("gate", OUTPUT_LOCK, True)
        assert sim.outputs[OUTPUT_LOCK].on
        assert await driver.output("gate", OUTPUT_LOCK, False)
        assert not sim.outputs[OUTPUT_LOCK].on
        assert not await driver.output("gate", 5, True)  # the reader has one output
        with pytest.raises(ValueError, match="unknown reader"):
            await driver.output("nope", 0, True)


async def test_a_leased_output_is_renewed_and_an_off_is_never_undone_by_a_renewal() -> None:
    async with sim_bus([SimReader(1)], [PLAIN]) as (bus, driver, _events):
        sim = bus.reader(1)
        assert await driver.output("gate", OUTPUT_LOCK, True, lease_ms=600)
        await asyncio.sleep(1.5)  # 2.5 leases: only renewals keep it on
        assert sim.outputs[OUTPUT_LOCK].on and sim.outputs[OUTPUT_LOCK].timer is not None  # a timed pulse
        assert [on for _, _, on in sim.output_log] == [True]  # renewals never blinked it off

        # An off right behind a lease still in flight: the lease's ack must not schedule a renewal.
        leased = asyncio.ensure_future(driver.output("gate", OUTPUT_LOCK, True, lease_ms=600))
        await asyncio.sleep(0)  # the lease is queued to the reader
        assert await driver.output("gate", OUTPUT_LOCK, False)
        assert await leased
        await asyncio.sleep(1.0)
        assert not sim.outputs[OUTPUT_LOCK].on

        # The controller goes quiet while the output is held: the reader drops it by itself.
        assert await driver.output("gate", OUTPUT_LOCK, True, lease_ms=600)
        await driver.stop()
        await sim.wait_output(OUTPUT_LOCK, False, within=1.5)


async def test_several_readers_share_one_bus() -> None:
    readers = [ReaderConfig("north", 1, secure=False), ReaderConfig("south", 2, secure=False)]
    decider = Decider()
    async with sim_bus([SimReader(1), SimReader(2)], readers, on_credential=decider) as (bus, driver, events):
        bus.reader(2).present_card(222, 2)
        bus.reader(1).present_card(111, 1)
        north = await events.wait("reader.card", "north")
        south = await events.wait("reader.card", "south")
        assert (north.data["card"], north.data["address"]) == (111, 1)
        assert (south.data["card"], south.data["address"]) == (222, 2)
        assert await driver.output("south", 0, True)
        assert bus.reader(2).outputs[0].on and not bus.reader(1).outputs[0].on
        assert sorted(r for r, _ in decider.asked) == ["north", "south"]


async def test_inputs_tamper_and_power_arrive_as_unsolicited_status() -> None:
    async with sim_bus([SimReader(1)], [PLAIN]) as (bus, _driver, events):
        # The reader reports its state on connect; the driver never has to ask.
        await events.wait("reader.input", where=lambda d: d["input"] == INPUT_REX and not d["active"])
        await events.wait("reader.tamper", where=lambda d: not d["active"])
        mark = events.mark()
        bus.reader(1).set_input(INPUT_DPS, True)
        e = await events.wait("reader.input", since=mark)
        assert e.data == {"reader": "gate", "address": 1, "input": INPUT_DPS, "active": True}
        bus.reader(1).set_tamper(True)
        tamper = await events.wait("reader.tamper", since=mark)
        assert tamper.data["active"] and tamper.severity == "alarm"
        bus.reader(1).set_power(False)
        power = await events.wait("reader.power", since=mark)
        assert power.data["ok"] is False and power.severity == "warning"
        # A status query would come back without its report from some readers (libosdp's Python
        # PD among them) and the NAK would park the reader: the driver never asks.
        assert all(c["command"] != osdp_sys.CMD_STATUS for c in bus.reader(1).commands)


async def test_text_only_goes_to_readers_with_a_display() -> None:
    readers = [ReaderConfig("plain", 1, secure=False), ReaderConfig("lcd", 2, secure=False)]
    sims = [SimReader(1), SimReader(2, display=True)]
    async with sim_bus(sims, readers) as (bus, driver, events):
        assert driver.capabilities("lcd")["text"].compliance == 1
        assert await driver.text("lcd", "Welcome home")
        assert list(bus.reader(2).texts) == ["Welcome home"]
        assert not await driver.text("plain", "Welcome home")  # checked against its capabilities
        await asyncio.sleep(0.2)
        assert not bus.reader(1).texts and driver.is_online("plain")
        assert not events.of("device.offline") and not events.of("reader.link_reset")


async def test_commands_from_inside_callbacks_do_not_deadlock() -> None:
    """libosdp's own wrapper deadlocks when a command is submitted from its event callback; here
    callbacks only enqueue and the commands go out after refresh() returns."""
    events = EventRecorder()
    tasks: set[asyncio.Task[bool]] = set()

    async def open_door(reader: str, credential: Credential) -> Decision:
        assert await driver.output(reader, 0, True, duration_ms=1000)
        return Decision(granted=True, text="Hi")

    def report(type: str, source: str, data: dict[str, Any], severity: str) -> None:
        events(type, source, data, severity)
        if type == "reader.card":  # act from inside the driver's callback
            task = asyncio.ensure_future(driver.buzzer(source, repeat=2))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async with SimBus([SimReader(1, display=True)]) as bus:
        driver = OsdpDriver(bus.port, [PLAIN], report, on_credential=open_door, baudrate=115200)
        async with driver:
            await events.wait("device.online")
            bus.reader(1).present_card(5, 5)
            await bus.reader(1).wait_output(0, True)
            await bus.reader(1).wait_for(lambda: len(bus.reader(1).buzzes) >= 2 and list(bus.reader(1).texts) == ["Hi"])


async def test_long_unlock_is_re_armed_so_a_crash_still_relocks(monkeypatch: pytest.MonkeyPatch) -> None:
    # The binding caps a reader-timed pulse at 25.5 s; scaled down here to 0.5 s, re-armed every 0.3 s.
    monkeypatch.setattr("drivers.osdp.commands.MAX_TIMER_UNITS", 5)
    monkeypatch.setattr("drivers.osdp.cp.LONG_OUTPUT_REARM", 0.3)
    async with sim_bus([SimReader(1)], [PLAIN]) as (bus, driver, _events):
        sim = bus.reader(1)
        started = asyncio.get_running_loop().time()
        assert await driver.output("gate", OUTPUT_LOCK, True, duration_ms=1400)
        await asyncio.sleep(1.0)
        assert sim.outputs[OUTPUT_LOCK].on  # past the reader's 0.5 s pulse: re-armed
        await sim.wait_output(OUTPUT_LOCK, False, within=1.5)
        assert 1.2 < asyncio.get_running_loop().time() - started < 2.2
        assert [on for _, _, on in sim.output_log] == [True, False]  # one unbroken unlock
        timers = [c["timer_count"] for c in sim.commands if c["command"] == osdp_sys.CMD_OUTPUT]
        assert max(timers) <= 5
