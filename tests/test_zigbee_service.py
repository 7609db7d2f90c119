"""Zigbee in the daemon: a real Controller with `zigbee: {radio: simulated}`, real journal and API."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from drivers.zigbee.driver import ZigbeeCommandError
from edge.daemon import Controller
from edge.zigbee import ZigbeeService
from tests.controller_helpers import (
    base_url,
    bearer,
    cookie_session,
    journaled,
    login,
    running_controller,
    site_yaml,
    wait_event,
)

DOOR = "00:0d:6f:00:00:00:01:01"
SMOKE = "00:0d:6f:00:00:00:01:02"
SIREN = "00:0d:6f:00:00:00:01:03"
RELAY = "00:0d:6f:00:00:00:01:04"
LOCK = "00:0d:6f:00:00:00:01:05"

ZIGBEE = f"""\
zigbee:
  radio: simulated
  permit_join_s: 45
  devices:
    - {{id: flat-12-door, ieee: "{DOOR}", kind: contact, apartment: flat-12}}
    - {{id: flat-12-smoke, ieee: "{SMOKE}", kind: smoke, apartment: flat-12, offline_after_s: 0.5}}
    - {{id: flat-12-siren, ieee: "{SIREN}", kind: siren, apartment: flat-12}}
    - {{id: porch-light, ieee: "{RELAY}", kind: relay}}
    - {{id: flat-12-lock, ieee: "{LOCK}", kind: lock, apartment: flat-12}}
"""


@asynccontextmanager
async def zigbee_site(tmp_path: Path) -> AsyncIterator[tuple[Controller, ZigbeeService]]:
    async with running_controller(tmp_path, site_yaml(extra=ZIGBEE)) as controller:
        deadline = time.monotonic() + 5
        while controller.zigbee is None:
            assert time.monotonic() < deadline, "zigbee service did not start"
            await asyncio.sleep(0.01)
        service: ZigbeeService = controller.zigbee
        # Every configured device pairs at start on the simulated network; its sensors are enrolled and
        # their zones read once (the initial `normal`).
        for ieee in (SMOKE, DOOR):
            await wait_event(controller, "input.changed", lambda d, ieee=ieee: d["ieee"] == ieee)
        yield controller, service
    assert controller.zigbee is None


async def test_contact_opening_is_an_input_change_in_the_journal(tmp_path: Path) -> None:
    async with zigbee_site(tmp_path) as (controller, service):
        door = service.sim_device("flat-12-door")
        since = controller.journal.stats.last_seq
        door.set_zone(alarm=True)
        opened = await wait_event(controller, "input.changed", lambda d: d["state"] == "active", after=since)
        assert opened.event.source == "flat-12-door"
        assert opened.event.data == {"point": "zone", "state": "active", "ieee": DOOR, "apartment": "flat-12"}

        door.notify(door.zone_status)  # the same notification repeated: no second event
        door.set_zone(tamper=True)
        tamper = await wait_event(controller, "device.tamper", after=since)
        assert tamper.event.source == "flat-12-door" and tamper.event.data["active"] is True
        door.set_zone(alarm=False, tamper=False, battery_low=True)
        await wait_event(controller, "device.battery", lambda d: d["low"], after=since)
        changes = [e.event.data["state"] for e in await journaled(controller, "input.changed", since)]
        assert changes == ["active", "normal"]
        tampers = [e.event.data["active"] for e in await journaled(controller, "device.tamper", since)]
        assert tampers == [True, False]

        await service.simulate_zone("flat-12-door", True)  # the benchmark's helper: returns once on the bus
        last = (await journaled(controller, "input.changed", since))[-1]
        assert last.event.data["state"] == "active"


async def test_silent_sensor_goes_offline(tmp_path: Path) -> None:
    async with zigbee_site(tmp_path) as (controller, _service):
        offline = await wait_event(controller, "device.offline", lambda d: d["ieee"] == SMOKE)
        assert offline.event.source == "flat-12-smoke"
        assert controller.devices.get("flat-12-smoke").online is False
        assert controller.devices.get("flat-12-smoke").driver == "zigbee"


async def test_outputs_reach_the_devices(tmp_path: Path) -> None:
    async with zigbee_site(tmp_path) as (controller, service):
        assert service.network is not None
        await service.siren("flat-12-siren", True, duration_s=60)
        await service.squawk("flat-12-siren", armed=False)
        siren = service.network.device(SIREN)
        assert [c.command for c in siren.received if c.cluster == 0x0502] == ["start_warning", "squawk"]

        since = controller.journal.stats.last_seq
        await service.set_onoff("porch-light", True)
        changed = await wait_event(controller, "output.changed", lambda d: d["point"] == "onoff", after=since)
        assert changed.event.source == "porch-light" and changed.event.data["on"] is True

        await service.unlock("flat-12-lock")
        state = await wait_event(controller, "lock.state", after=since)
        assert state.event.data["state"] == "unlocked"

        with pytest.raises(ZigbeeCommandError, match="not a siren"):
            await service.siren("porch-light", True)
        with pytest.raises(ZigbeeCommandError, match="no Zigbee device"):
            await service.set_onoff("nope", True)


async def test_permit_join_and_device_list_over_the_api(tmp_path: Path) -> None:
    async with zigbee_site(tmp_path) as (controller, service):
        url = base_url(controller)
        async with cookie_session() as http:
            installer = await login(http, url, "installer")
            resident = await login(http, url, "resident")
            async with http.get(f"{url}/api/zigbee/devices", headers=bearer(installer)) as r:
                assert r.status == 200
                devices = {d["id"]: d for d in (await r.json())["devices"]}
            assert devices["flat-12-door"]["paired"] and devices["flat-12-door"]["model"] == "sim-contact"

            async with http.post(f"{url}/api/zigbee/permit_join", headers=bearer(resident), json={}) as r:
                assert r.status == 403
            async with http.post(f"{url}/api/zigbee/permit_join", headers=bearer(installer),
                                 json={"seconds": 999}) as r:
                assert r.status == 400
            since = controller.journal.stats.last_seq
            async with http.post(f"{url}/api/zigbee/permit_join", headers=bearer(installer), json={}) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["seconds"] == 45
            opened = await wait_event(controller, "zigbee.permit_join", after=since)
            assert opened.event.data["seconds"] == 45

            # A new device pairs through the open window; it shows up, unconfigured, in the list.
            assert service.network is not None
            newcomer = service.network.add("motion", "00:0d:6f:00:00:00:0f:01")
            await newcomer.join()
            await wait_event(controller, "zigbee.interviewed", lambda d: d["ieee"] == "00:0d:6f:00:00:00:0f:01",
                             after=since)
            async with http.get(f"{url}/api/zigbee/devices", headers=bearer(installer)) as r:
                listed = [d for d in (await r.json())["devices"] if d["id"] is None]
            assert [d["ieee"] for d in listed] == ["00:0d:6f:00:00:00:0f:01"]

            async with http.post(f"{url}/api/zigbee/backup", headers=bearer(installer)) as r:
                assert r.status == 200
                backup = Path((await r.json())["file"])
            assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600


async def test_network_secrets_are_kept_private_and_not_logged(tmp_path: Path) -> None:
    async with zigbee_site(tmp_path) as (controller, _service):
        secrets_file = controller.config.data_dir / "zigbee-network.json"
        assert stat.S_IMODE(os.stat(secrets_file).st_mode) == 0o600
        key = __import__("json").loads(secrets_file.read_text())["network_key"]
        for stored in await controller.journal.query(limit=10_000):
            assert key not in stored.event.to_json()


async def test_zigbee_api_is_unavailable_without_the_section(tmp_path: Path) -> None:
    async with running_controller(tmp_path, site_yaml()) as controller:
        assert controller.zigbee is None
        url = base_url(controller)
        async with cookie_session() as http:
            token = await login(http, url, "installer")
            async with http.post(f"{url}/api/zigbee/permit_join", headers=bearer(token), json={}) as r:
                assert r.status == 503


async def test_smoke_alarm_sounds_the_zigbee_siren_through_the_alarm_panel(tmp_path: Path) -> None:
    """The contract end to end: Zigbee input.changed -> the alarm panel -> controller.zigbee.siren."""
    alarm = """\
alarm:
  partitions:
    - {id: home-12, apartment: flat-12, exit_delay_s: 0, entry_delay_s: 0, siren_s: 60}
  zones:
    - {id: smoke-12, type: fire, partition: home-12, source: {device: flat-12-smoke, point: zone}}
  sirens:
    - {id: hall, zigbee: flat-12-siren}
"""
    text = site_yaml(extra=ZIGBEE.replace(", offline_after_s: 0.5", "") + alarm)
    async with running_controller(tmp_path, text) as controller:
        deadline = time.monotonic() + 5
        while controller.zigbee is None or getattr(controller, "alarm", None) is None:
            assert time.monotonic() < deadline, "zigbee and alarm services did not start"
            await asyncio.sleep(0.01)
        await wait_event(controller, "zigbee.enrolled", lambda d: d["ieee"] == SMOKE)
        service: ZigbeeService = controller.zigbee
        assert service.network is not None
        since = controller.journal.stats.last_seq
        siren = service.network.device(SIREN)
        before = len(siren.commands("start_warning"))  # the panel may silence sirens at its start
        service.network.device(SMOKE).set_zone(alarm=True)
        await wait_event(controller, "alarm.triggered", after=since)
        deadline = time.monotonic() + 5
        while len(siren.commands("start_warning")) == before:
            assert time.monotonic() < deadline, "the siren was never told to sound"
            await asyncio.sleep(0.01)
        warning = siren.commands("start_warning")[before].args
        assert warning["warning"].mode != 0 and warning["warning_duration"] == 60


async def test_a_paired_device_added_to_the_site_file_reports_under_its_id(tmp_path: Path) -> None:
    motion = "00:0d:6f:00:00:00:0f:02"
    async with zigbee_site(tmp_path) as (controller, service):
        assert service.network is not None
        await service.permit_join(30)
        newcomer = service.network.add("motion", motion)
        await newcomer.join()
        await wait_event(controller, "zigbee.enrolled", lambda d: d["ieee"] == motion)
        since = controller.journal.stats.last_seq
        newcomer.set_zone(alarm=True)  # not in the site file yet: nobody's zone
        await asyncio.sleep(0.1)
        assert await journaled(controller, "input.changed", since) == []

        added = ZIGBEE + f'    - {{id: hall-motion, ieee: "{motion}", kind: motion}}\n'
        await controller.reload_config(site_yaml(extra=added))
        deadline = time.monotonic() + 5
        while controller.zigbee is None or controller.zigbee is service:
            assert time.monotonic() < deadline, "zigbee did not restart on the new section"
            await asyncio.sleep(0.01)
        restarted: ZigbeeService = controller.zigbee
        assert "hall-motion" in restarted.by_id and controller.devices.get("hall-motion").driver == "zigbee"
        assert restarted.network is not None
        restarted.network.device(motion).set_zone(alarm=True)  # the same sensor, now known by its id
        changed = await wait_event(controller, "input.changed", lambda d: d["ieee"] == motion, after=since)
        assert changed.event.source == "hall-motion"


async def test_an_unsafe_network_file_is_reported_once_not_retried(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "zigbee-network.json").write_text('{"pan_id": 1, "extended_pan_id": "00", "network_key": "00"}')
    os.chmod(data / "zigbee-network.json", 0o644)
    async with running_controller(tmp_path, site_yaml(extra=ZIGBEE)) as controller:
        problem = await wait_event(controller, "zigbee.config_problem")
        assert "chmod 600" in problem.event.data["error"] and problem.event.severity == "critical"
        await asyncio.sleep(0.2)
        assert len(await journaled(controller, "zigbee.config_problem")) == 1
        assert controller.zigbee is None
