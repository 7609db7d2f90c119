"""The access-control slice in the daemon, over real OSDP (libosdp at both ends of a pty).

A Controller with an `osdp` section runs AccessService; simulated readers stand at two doors:
``gate`` (card, fail_secure strike on reader gate-r output 0, DPS input 0, REX input 1) and
``office`` (card_and_pin, fail_safe maglock on reader office-r). The access data is the fixed
compound of tests/access_helpers.py, stored before start under that module's PIN key.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from drivers.osdp import KeyStore
from drivers.osdp.simulator import INPUT_DPS, INPUT_REX, OUTPUT_LOCK, SimBus, SimReader
from edge.access_store import AccessStore
from edge.daemon import Controller
from edge.journal import Journal
from rules.access import AccessDataError, Delta, StaleDeltaError
from tests.access_helpers import FACILITY, standard_snapshot
from tests.controller_helpers import journaled, mark, running_controller, site_yaml, wait_event

PIN_KEY = b"test-pin-key-0123456789abcdef"  # the key tests/access_helpers.HASHER hashes PINs with
STRIKE_S = 0.5


def access_yaml(port: str) -> str:
    return f"""\
doors:
  - id: gate
    lock_mode: fail_secure
    lock: {{reader: gate-r, output: 0}}
    dps: {{reader: gate-r, input: {INPUT_DPS}}}
    rex: {{reader: gate-r, input: {INPUT_REX}}}
    strike_s: {STRIKE_S}
    extended_unlock_s: 1
    held_open_s: 5
    held_open_pre_alarm_s: 1
  - id: office
    lock_mode: fail_safe
    lock: {{reader: office-r, output: 0}}
    strike_s: {STRIKE_S}
osdp:
  buses:
    - port: {port}
      baudrate: 115200
      readers:
        - {{id: gate-r, address: 1, door: gate, secure: false}}
        - {{id: office-r, address: 2, door: office, secure: false}}
"""


def write_pin_key(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "pin.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(PIN_KEY)


async def seed_store(data_dir: Path) -> None:
    """The PIN key the helpers hash with, and the standard snapshot, before the daemon starts."""
    await asyncio.to_thread(write_pin_key, data_dir)
    store = AccessStore(data_dir)
    await store.open()
    await store.replace_snapshot(standard_snapshot(1))
    await store.close()


@asynccontextmanager
async def access_site(tmp_path: Path, sims: list[SimReader] | None = None) -> AsyncIterator[tuple[Controller, SimBus]]:
    sims = sims if sims is not None else [SimReader(1), SimReader(2)]
    async with SimBus(sims) as bus:
        data_dir = tmp_path / "data"
        if not (data_dir / "pin.key").exists():
            await seed_store(data_dir)
        async with running_controller(tmp_path, site_yaml(extra=access_yaml(bus.port))) as controller:
            await wait_ready(controller)
            yield controller, bus


async def wait_ready(controller: Controller, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while controller.access is None or not controller.access.ready.is_set():
        assert time.monotonic() < deadline, "access service did not start"
        await asyncio.sleep(0.01)


async def test_card_grant_is_journaled_then_unlocks_for_the_strike_time(tmp_path: Path) -> None:
    async with access_site(tmp_path) as (controller, bus):
        gate = bus.reader(1)
        since = mark(controller)
        gate.present_card(1001, FACILITY)  # alice, resident: the gate is in her level
        on_at = await gate.wait_output(OUTPUT_LOCK, True, within=3.0)
        granted = await wait_event(controller, "access.granted", after=since)
        assert granted.event.source == "gate-r"
        assert (granted.event.data["door"], granted.event.data["holder"]) == ("gate", "alice")
        off_at = await gate.wait_output(OUTPUT_LOCK, False, within=3.0)
        assert STRIKE_S * 0.8 <= off_at - on_at <= STRIKE_S + 1.0
        assert await journaled(controller, "door.unlocked", since)


async def test_a_holder_who_needs_more_time_gets_the_extended_unlock(tmp_path: Path) -> None:
    async with access_site(tmp_path) as (controller, bus):
        gate = bus.reader(1)
        since = mark(controller)
        gate.present_card(1020, FACILITY)  # ivy: extended_unlock; the gate's extended time is 1 s
        on_at = await gate.wait_output(OUTPUT_LOCK, True, within=3.0)
        off_at = await gate.wait_output(OUTPUT_LOCK, False, within=3.0)
        assert 0.9 <= off_at - on_at <= 2.0  # not the 0.5 s strike time
        granted = await wait_event(controller, "access.granted", after=since)
        assert granted.event.data["extended_unlock"] is True
        unlocked = await wait_event(controller, "door.unlocked", after=since)
        assert unlocked.event.data.get("extended") is True


async def test_grant_is_committed_before_the_output_switches(tmp_path: Path) -> None:
    seen: list[int] = []
    holder: dict[str, Controller] = {}

    def on_output(_reader: SimReader, no: int, on: bool) -> None:
        if no == OUTPUT_LOCK and on and "c" in holder:
            seen.append(holder["c"].journal.stats.last_seq)  # the highest committed seq right now

    async with access_site(tmp_path, [SimReader(1, on_output=on_output), SimReader(2)]) as (controller, bus):
        holder["c"] = controller
        since = mark(controller)
        bus.reader(1).present_card(1001, FACILITY)
        await bus.reader(1).wait_output(OUTPUT_LOCK, True, within=3.0)
        granted = await wait_event(controller, "access.granted", after=since)
        assert seen, "the lock output never switched on"
        assert granted.seq <= seen[0]  # the grant was in the journal when the door opened


async def test_unknown_card_is_denied_and_nothing_switches(tmp_path: Path) -> None:
    async with access_site(tmp_path) as (controller, bus):
        gate = bus.reader(1)
        since = mark(controller)
        gate.present_card(4242, FACILITY)
        denied = await wait_event(controller, "access.denied", after=since)
        assert denied.event.data["reason"] == "unknown_credential"
        await asyncio.sleep(0.3)
        assert not gate.outputs[OUTPUT_LOCK].on
        assert not await journaled(controller, "access.granted", since)


async def test_card_and_pin_door(tmp_path: Path) -> None:
    async with access_site(tmp_path) as (controller, bus):
        office = bus.reader(2)
        # fail_safe maglock: energised (output on) while locked; a grant releases it (output off).
        await office.wait_output(OUTPUT_LOCK, True, within=3.0)
        since = mark(controller)
        office.present_card(1002, FACILITY)  # bob, staff, PIN 1234
        await asyncio.sleep(0.3)
        assert not await journaled(controller, "access.granted", since)  # waiting for the PIN
        office.press_keys("1111#")
        denied = await wait_event(controller, "access.denied", after=since)
        assert denied.event.data["reason"] == "wrong_pin"
        office.present_card(1002, FACILITY)
        await asyncio.sleep(0.2)
        office.press_keys("1234#")
        await wait_event(controller, "access.granted", after=since)
        await office.wait_output(OUTPUT_LOCK, False, within=3.0)  # released
        await office.wait_output(OUTPUT_LOCK, True, within=3.0)  # and locked again after the strike time

        # A card with no PIN after it is still an attempt on the audit trail.
        assert controller.access is not None
        controller.access.pin_wait_s = 0.3
        since = mark(controller)
        office.present_card(1002, FACILITY)
        denied = await wait_event(controller, "access.denied", after=since)
        assert (denied.event.data["reason"], denied.event.data["holder"]) == ("pin_required", "bob")


async def test_opening_without_grant_is_forced_and_rex_shunts_it(tmp_path: Path) -> None:
    async with access_site(tmp_path) as (controller, bus):
        gate = bus.reader(1)
        since = mark(controller)
        gate.set_input(INPUT_DPS, True)
        forced = await wait_event(controller, "door.forced_open", after=since)
        assert forced.event.severity == "alarm"
        gate.set_input(INPUT_DPS, False)
        await wait_event(controller, "door.closed", after=forced.seq)

        since = mark(controller)
        gate.set_input(INPUT_REX, True)
        await wait_event(controller, "door.rex", after=since)
        gate.set_input(INPUT_REX, False)
        gate.set_input(INPUT_DPS, True)
        await wait_event(controller, "door.opened", after=since)
        gate.set_input(INPUT_DPS, False)
        await wait_event(controller, "door.closed", after=since)
        assert not await journaled(controller, "door.forced_open", since)


async def test_reader_unplugged_puts_doors_in_their_safe_state(tmp_path: Path) -> None:
    async with access_site(tmp_path) as (controller, bus):
        since = mark(controller)
        bus.unplug()
        offline = await wait_event(controller, "device.offline", after=since, within=5.0)
        assert offline.event.source in ("gate-r", "office-r")
        safe = {}
        for door in ("gate", "office"):
            stored = await wait_event(
                controller, "door.safe_state", lambda d, door=door: d["door"] == door, after=since, within=5.0
            )
            safe[door] = stored.event
        # The fail_safe maglock's safe state is unlocked: an alarm (someone must look); the
        # command to release it cannot reach a reader that is gone - the reader's own power loss
        # (maglock unpowered) is what frees the door then.
        assert safe["office"].data["relay"] == "unlocked" and safe["office"].severity == "alarm"
        assert safe["gate"].data["relay"] == "locked" and safe["gate"].severity == "warning"
        device = controller.devices.get("gate-r")
        assert device is not None and device.online is False
        # The driver refuses commands to an offline reader at once and never sends them late: the
        # release is on the record as not delivered.
        undelivered = await wait_event(
            controller, "door.relay_not_delivered", lambda d: d["door"] == "office", after=since, within=3.0
        )
        assert undelivered.event.data["relay"] == "unlocked"

        since = mark(controller)
        bus.replug()
        await wait_event(controller, "door.safe_state_cleared", lambda d: d["door"] == "gate", after=since, within=6.0)
        # Back in service: the maglock is energised again (locked) once the reader is back.
        await bus.reader(2).wait_output(OUTPUT_LOCK, True, within=3.0)
        assert controller.devices.get("gate-r").online is True  # type: ignore[union-attr]


async def test_shutdown_puts_doors_in_safe_state_first(tmp_path: Path) -> None:
    async with SimBus([SimReader(1), SimReader(2)]) as bus:
        await seed_store(tmp_path / "data")
        async with running_controller(tmp_path, site_yaml(extra=access_yaml(bus.port))) as controller:
            await wait_ready(controller)
            await bus.reader(2).wait_output(OUTPUT_LOCK, True, within=3.0)
            since = mark(controller)
        # stopped: the fail_safe maglock was released (its safe state) before the driver stopped
        assert not bus.reader(2).outputs[OUTPUT_LOCK].on
    journal = Journal(tmp_path / "data" / "journal.db")
    await journal.open()
    try:
        rows = await journal.query(types=["door.safe_state"], after_seq=since)
        assert {r.event.data["door"] for r in rows} == {"gate", "office"}
        assert all(r.event.data["reason"] == "shutting_down" for r in rows)
    finally:
        await journal.close()


async def test_credentials_survive_a_restart_and_rejected_deltas_change_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await seed_store(data_dir)
    store = AccessStore(data_dir)
    await store.open()
    try:
        assert store.version == 1
        before = store.snapshot()
        with pytest.raises(StaleDeltaError):
            await store.apply_delta(Delta(base_version=5, version=6))
        # A delta whose data does not hold together: a second credential for bob's card.
        duplicate = Delta.model_validate(
            {
                "base_version": 1,
                "version": 2,
                "upsert": {
                    "credentials": [
                        {
                            "id": "x.card",
                            "holder_id": "alice",
                            "kind": "card",
                            "card": {"format": "h10301", "facility": FACILITY, "number": 1002},
                        }
                    ]
                },
            }
        )
        with pytest.raises(AccessDataError):
            await store.apply_delta(duplicate)
        assert store.version == 1 and store.snapshot() == before
        good = Delta.model_validate(
            {"base_version": store.version, "version": store.version + 1, "delete": {"credentials": ["alice.card"]}}
        )
        await store.apply_delta(good)
        version = store.version
    finally:
        await store.close()

    again = AccessStore(data_dir)
    await again.open()
    try:
        assert again.version == version
        assert "alice.card" not in again.index.credentials  # type: ignore[union-attr]
        assert "bob.card" in again.index.credentials  # type: ignore[union-attr]
    finally:
        await again.close()
    assert oct((data_dir / "pin.key").stat().st_mode & 0o777) == "0o600"


async def test_pin_key_is_created_private(tmp_path: Path) -> None:
    store = AccessStore(tmp_path / "fresh")
    await store.open()
    await store.close()
    key = tmp_path / "fresh" / "pin.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(key.read_bytes()) == 32


async def test_reload_with_new_door_settings_restarts_access_control(tmp_path: Path) -> None:
    async with access_site(tmp_path) as (controller, bus):
        first = controller.access
        text = site_yaml(extra=access_yaml(bus.port).replace(f"strike_s: {STRIKE_S}", "strike_s: 0.7", 1))
        await controller.reload_config(text)
        await wait_ready(controller)
        assert controller.access is not first
        assert controller.access.doors["gate"].machine.settings.strike_s == 0.7  # type: ignore[union-attr]
        bus.reader(1).present_card(1001, FACILITY)
        await bus.reader(1).wait_output(OUTPUT_LOCK, True, within=3.0)
        # An unrelated change leaves the running service alone.
        second = controller.access
        await controller.reload_config(text.replace("name: Maple Court", "name: Maple Court II"))
        assert controller.access is second
        # Without OSDP buses access control stops, and its MQTT commands go with it.
        await controller.reload_config(site_yaml())
        assert controller.access is None and "access/delta" not in controller.commands


async def test_site_door_without_access_data_is_reported_and_denies(tmp_path: Path) -> None:
    async with SimBus([SimReader(1), SimReader(2)]) as bus:
        await seed_store(tmp_path / "data")
        text = access_yaml(bus.port).replace("  - id: office\n", "  - id: annex\n")
        text = text.replace("door: office", "door: annex")
        async with running_controller(tmp_path, site_yaml(extra=text)) as controller:
            await wait_ready(controller)
            problem = await wait_event(controller, "access.config_problem")
            assert problem.event.data["doors"] == ["annex"]
            since = mark(controller)
            bus.reader(2).present_card(1002, FACILITY)  # bob may open every door - but there is no "annex"
            denied = await wait_event(controller, "access.denied", after=since)
            assert denied.event.data["reason"] == "unknown_door"


async def test_rebooted_lock_reader_gets_its_relay_state_back(tmp_path: Path) -> None:
    async with access_site(tmp_path) as (controller, bus):
        office = bus.reader(2)
        await office.wait_output(OUTPUT_LOCK, True, within=3.0)  # maglock energised: locked
        since = mark(controller)
        office.power_cycle()  # the reader reboots: its outputs come up off (maglock released)
        assert not office.outputs[OUTPUT_LOCK].on
        await office.wait_output(OUTPUT_LOCK, True, within=6.0)  # locked again by the controller
        came_back = await wait_event(controller, "reader.link_reset", after=since, within=3.0)
        assert came_back.event.source == "office-r"


async def test_secure_channel_reader_with_its_key_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await seed_store(data_dir)
    keys = await asyncio.to_thread(KeyStore, data_dir / "osdp-keys.json")
    await asyncio.to_thread(keys.generate, "gate-r")
    sims = [SimReader(1, key=keys.get("gate-r")), SimReader(2)]
    async with SimBus(sims) as bus:
        text = access_yaml(bus.port).replace("address: 1, door: gate, secure: false", "address: 1, door: gate")
        async with running_controller(tmp_path, site_yaml(extra=text)) as controller:
            await wait_ready(controller)
            assert bus.reader(1).sc_active
            since = mark(controller)
            bus.reader(1).present_card(1001, FACILITY)
            await bus.reader(1).wait_output(OUTPUT_LOCK, True, within=3.0)
            await wait_event(controller, "access.granted", after=since)


async def test_scheduled_unlock_and_lockdown_follow_the_access_data(tmp_path: Path) -> None:
    async with access_site(tmp_path) as (controller, bus):
        gate = bus.reader(1)
        service = controller.access
        assert service is not None and not gate.outputs[OUTPUT_LOCK].on
        door = service.store.snapshot().doors
        gate_door = next(d for d in door if d.id == "gate")

        def change(**fields: Any) -> Delta:
            version = service.store.version
            upsert = {"doors": [gate_door.model_copy(update=fields).model_dump(mode="json")]}
            return Delta.model_validate({"base_version": version, "version": version + 1, "upsert": upsert})

        # Free passage all day ("always"): the strike is powered (unlocked) until further notice.
        await service.apply_delta(change(unlock_schedule="always"), "test")
        await gate.wait_output(OUTPUT_LOCK, True, within=3.0)
        assert service.doors["gate"].machine.status.free_passage
        # Lockdown overrides the schedule: locked, and only override holders pass.
        await service.apply_delta(change(unlock_schedule="always", lockdown=True), "test")
        await gate.wait_output(OUTPUT_LOCK, False, within=3.0)
        since = mark(controller)
        gate.present_card(1001, FACILITY)  # alice has no lockdown override
        denied = await wait_event(controller, "access.denied", after=since)
        assert denied.event.data["reason"] == "lockdown"
        # Both lifted: back to a normal locked door.
        await service.apply_delta(change(), "test")
        await asyncio.sleep(0.2)
        assert not gate.outputs[OUTPUT_LOCK].on
        assert not service.doors["gate"].machine.status.lockdown


async def test_a_secure_reader_without_a_key_is_one_clear_problem_not_a_crash_loop(tmp_path: Path) -> None:
    async with SimBus([SimReader(1), SimReader(2)]) as bus:
        await seed_store(tmp_path / "data")
        yaml = access_yaml(bus.port).replace(
            "address: 1, door: gate, secure: false", "address: 1, door: gate, secure: true"
        )
        async with running_controller(tmp_path, site_yaml(extra=yaml)) as controller:
            problem = await wait_event(
                controller, "access.config_problem", lambda d: d["problem"] == "readers_unusable"
            )
            assert "gate-r" in problem.event.data["error"]
            assert problem.event.severity == "alarm"
            await asyncio.sleep(1.5)  # longer than the supervisor's first restart backoff
            assert await journaled(controller, "supervisor.task_crashed") == []
            assert len(await journaled(controller, "access.config_problem")) == 1
            assert controller.supervisor.health["access"].running
