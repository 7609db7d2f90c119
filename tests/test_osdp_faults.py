"""Faults on the bus, over real OSDP: unplugged readers, NAKs, silence, noise, floods.

libosdp parks a reader for 300 s after a NAK, a corrupt reply or ~8 s of silence; every test here
checks that the driver brings it back in about a second and says what happened.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from drivers.osdp import Credential, Decision, KeyStore, ReaderConfig
from drivers.osdp.cp import CREDENTIAL_BACKLOG
from drivers.osdp.simulator import SimReader
from drivers.osdp.testing import eventually, sim_bus

PLAIN = ReaderConfig("gate", 1, secure=False)


async def test_unplugged_bus_goes_offline_and_comes_back_within_two_seconds() -> None:
    async with sim_bus([SimReader(1)], [PLAIN]) as (bus, driver, events):
        bus.unplug()
        offline = await events.wait("device.offline", "gate")
        assert offline.data["reason"] == "port_lost"
        assert events.of("bus.offline")
        assert not await driver.output("gate", 0, True)  # nothing queued for later
        await asyncio.sleep(1.5)  # the driver keeps trying to reopen the port meanwhile
        mark = events.mark()
        bus.replug()
        plugged = time.monotonic()
        online = await events.wait("device.online", "gate", since=mark, within=2.0)
        assert online.at - plugged < 2.0
        bus.reader(1).present_card(1, 1)
        await events.wait("reader.card", since=mark)
        assert not bus.reader(1).outputs[0].on  # the unlock refused while unplugged never arrives


async def test_nak_does_not_park_the_reader_for_300_seconds(tmp_path: Path) -> None:
    # Firmware that claims a display but NAKs TEXT: libosdp would take it offline for 300 s.
    keys = KeyStore(tmp_path / "keys.json")
    keys.generate("gate")
    for secure in (False, True):
        sims = [SimReader(1, display=True, reject={"text"}, key=keys.get("gate") if secure else None)]
        config = [ReaderConfig("gate", 1, secure=secure)]
        async with sim_bus(sims, config, keys=keys) as (bus, driver, events):
            started = time.monotonic()
            assert not await driver.text("gate", "Hello")  # NAK'd
            reset = await events.wait("reader.link_reset", "gate", within=2.0)
            assert reset.data["reason"] == "nak"
            assert reset.at - started < (1.0 if secure else 0.5)
            assert driver.is_online("gate") and not events.of("device.offline")  # too short to report
            mark = events.mark()
            bus.reader(1).present_card(3, 3)
            await events.wait("reader.card", since=mark)
            assert await driver.output("gate", 0, True, duration_ms=200)


async def test_corrupt_reply_is_recovered_quickly() -> None:
    async with sim_bus([SimReader(1)], [PLAIN]) as (bus, _driver, events):
        bus.reader(1).corrupt_replies = 1  # libosdp drops the reader on a bad CRC
        reset = await events.wait("reader.link_reset", "gate", within=2.0)
        assert reset.data["reason"] == "protocol_error" and reset.data["down_ms"] < 1000


async def test_silent_reader_is_reported_and_recovered_after_libosdp_gives_up() -> None:
    async with sim_bus([SimReader(1)], [PLAIN]) as (bus, _driver, events):
        bus.reader(1).mute = True  # disconnected from a live bus: no replies at all
        muted = time.monotonic()
        offline = await events.wait("device.offline", "gate", within=4.0)
        assert offline.data["reason"] == "no_reply" and offline.at - muted < 3.5
        # libosdp retries for ~8 s and then parks the reader for 300 s; wait that out.
        await asyncio.sleep(max(0.0, 9.0 - (time.monotonic() - muted)))
        mark = events.mark()
        bus.reader(1).mute = False
        back = time.monotonic()
        online = await events.wait("device.online", "gate", since=mark, within=2.0)
        assert online.at - back < 2.0


async def test_noise_on_the_bus_never_makes_a_card() -> None:
    decider_calls: list[Credential] = []

    async def decide(reader: str, credential: Credential) -> Decision:
        decider_calls.append(credential)
        return Decision(granted=False)

    rng = random.Random(60839)
    presented: set[int] = set()
    async with sim_bus([SimReader(1)], [PLAIN], on_credential=decide) as (bus, driver, events):
        sim = bus.reader(1)
        for i in range(60):
            noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 48)))
            if i % 5 == 0:
                noise = b"\x53\x81" + noise  # looks like the start of a reply from the reader
            bus.inject(noise)
            if i % 7 == 0:
                sim.corrupt_replies += 1
            if i % 4 == 0:
                card = 1000 + i
                presented.add(card)
                sim.present_card(card, 42)
            await asyncio.sleep(rng.uniform(0.005, 0.04))
        await asyncio.sleep(1.5)  # let the link settle after the last burst
        mark = events.mark()
        sim.present_card(4242, 42)
        await events.wait("reader.card", where=lambda d: d["card"] == 4242, since=mark, within=3.0)
        cards = events.of("reader.card")
        assert cards, "no card got through at all"
        for e in cards:
            assert e.data["facility"] == 42 and e.data["card"] in presented | {4242}
        assert len(decider_calls) == len(cards)
        stats = driver.stats()
        assert stats["bad_frames"] + stats["discarded_bytes"] > 0
        assert driver.is_online("gate")


async def test_queues_stay_bounded_and_drain() -> None:
    release = asyncio.Event()
    decided: list[Credential] = []

    async def slow_decision(reader: str, credential: Credential) -> Decision:
        await release.wait()
        decided.append(credential)
        return Decision(granted=True, feedback_ms=100)

    async with sim_bus([SimReader(1)], [PLAIN], on_credential=slow_decision) as (bus, driver, events):
        sim = bus.reader(1)
        for n in range(20):
            sim.present_card(n, 1)
        # One read per poll reply: 20 reads take about a second to cross the bus.
        await events.wait("reader.card", where=lambda d: d["card"] == 19, within=3.0)
        assert [e.data["card"] for e in events.of("reader.card")] == list(range(20))  # all reported, in order
        assert driver.reader_state("gate")["queued_credentials"] == CREDENTIAL_BACKLOG
        assert events.of("reader.credential_dropped")
        release.set()
        await eventually(lambda: driver.reader_state("gate")["queued_credentials"] == 0)
        await asyncio.sleep(0.3)
        dropped = len(events.of("reader.credential_dropped"))
        assert len(decided) + dropped == 20 and len(decided) >= CREDENTIAL_BACKLOG
        assert driver.reader_state("gate")["queued_commands"] == 0
        stats = driver.stats()
        assert stats["pending_events"] == 0 and stats["pending_completions"] == 0
