"""Secure channel: per-reader keys, commissioning in install mode, and wrong keys as security faults."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.osdp import KeyStore, ReaderConfig
from drivers.osdp.simulator import SimReader
from drivers.osdp.testing import sim_bus


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    store = KeyStore(tmp_path / "osdp-keys.json")
    store.generate("gate")
    return store


async def test_right_key_brings_the_reader_online_secure(keys: KeyStore) -> None:
    sims = [SimReader(1, key=keys.get("gate"))]
    async with sim_bus(sims, [ReaderConfig("gate", 1)], keys=keys) as (bus, driver, events):
        online = events.of("device.online", "gate")[0]
        assert online.data["secure"] is True and bus.reader(1).sc_active
        bus.reader(1).present_card(77, 7)
        assert (await events.wait("reader.card")).data["card"] == 77
        assert await driver.output("gate", 0, True, duration_ms=500)


async def test_wrong_key_is_a_security_fault_not_a_plaintext_reader(keys: KeyStore) -> None:
    wrong = bytes(16)
    sims = [SimReader(1, key=wrong)]
    async with sim_bus(sims, [ReaderConfig("gate", 1)], keys=keys, wait_online=False, security_retry=0.3) as (
        bus,
        driver,
        events,
    ):
        fault = await events.wait("reader.security_fault", "gate")
        assert fault.data == {"reader": "gate", "address": 1, "reason": "key_mismatch"}
        assert fault.severity == "alarm"
        assert (await events.wait("device.offline", "gate")).data["reason"] == "security_fault"
        bus.reader(1).present_card(66, 6)
        await asyncio.sleep(1.0)  # several retries with the wrong key
        assert not events.of("device.online") and not events.of("reader.card")
        assert len(events.of("reader.security_fault")) == 1  # one fault, not one per retry
        assert not await driver.output("gate", 0, True)
        assert not bus.reader(1).outputs[0].on
        # The installer puts the right key in the reader: it is back on the next retry.
        bus.reader(1).key = keys.get("gate")
        bus.reader(1).power_cycle()
        online = await events.wait("device.online", "gate", within=3.0)
        assert online.data["secure"] is True


async def test_install_mode_commissions_the_reader_with_its_own_key(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")  # empty: the driver generates the reader's key
    sims = [SimReader(1, install_mode=True)]
    config = [ReaderConfig("gate", 1, install_mode=True)]
    async with sim_bus(sims, config, keys=store) as (bus, _driver, events):
        await events.wait("reader.commissioned", "gate")
        assert bus.reader(1).key == store.get("gate") and bus.reader(1).sc_active
        assert KeyStore(store.path).get("gate") == store.get("gate")  # persisted for the next start
        assert events.of("device.online")[0].data["secure"] is True
        # Power-cycled, the reader now proves the new key; no second commissioning.
        bus.reader(1).power_cycle()
        mark = events.mark()
        bus.reader(1).present_card(9, 9)
        await events.wait("reader.card", since=mark, within=3.0)
        assert len(events.of("reader.commissioned")) == 1


async def test_reader_in_install_mode_is_not_commissioned_unless_configured(keys: KeyStore) -> None:
    # A factory-fresh (or swapped-in) reader offering the default key is refused in operation.
    sims = [SimReader(1, install_mode=True)]
    async with sim_bus(sims, [ReaderConfig("gate", 1)], keys=keys, wait_online=False) as (bus, _d, events):
        fault = await events.wait("reader.security_fault", "gate")
        assert fault.data["reason"] == "key_mismatch"
        assert bus.reader(1).key is None  # our key never went to it
        await asyncio.sleep(0.3)
        assert not events.of("device.online")
