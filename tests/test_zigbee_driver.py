"""The Zigbee driver on zigpy over the fake radio: real ZDO/ZCL frames, real appdb (SQLite)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from zigpy.zcl.clusters.security import ZoneState, ZoneStatus

from drivers.zigbee.config import NetworkFileError, ZigbeeSection, load_or_create_secrets
from drivers.zigbee.driver import (
    Availability,
    DeviceSpec,
    Enrolled,
    Interviewed,
    Joined,
    LockReport,
    OnOffReport,
    RadioSettings,
    ZigbeeCommandError,
    ZigbeeDriver,
    ZigbeeEvent,
    ZoneReport,
)
from drivers.zigbee.simulator import SimDevice, SimNetwork, app_factory

CONTACT = "00:0d:6f:00:00:00:00:01"
SIREN = "00:0d:6f:00:00:00:00:02"
LOCK = "00:0d:6f:00:00:00:00:03"
RELAY = "00:0d:6f:00:00:00:00:04"


class Recorder:
    def __init__(self) -> None:
        self.events: list[ZigbeeEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: ZigbeeEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type, ieee: str | None = None) -> list:
        return [e for e in self.events if isinstance(e, kind) and (ieee is None or getattr(e, "ieee", None) == ieee)]

    async def wait(self, predicate: Callable[[], object]) -> None:
        async with asyncio.timeout(5.0):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


def settings(tmp_path: Path) -> RadioSettings:
    secrets = load_or_create_secrets(tmp_path / "zigbee-network.json")
    return RadioSettings(radio="simulated", port=None, secrets=secrets, database_path=tmp_path / "zigbee.db")


SPECS = {CONTACT: DeviceSpec("contact", 3600), SIREN: DeviceSpec("siren", 3600), LOCK: DeviceSpec("lock", 3600),
         RELAY: DeviceSpec("relay", 3600)}


@asynccontextmanager
async def running(tmp_path: Path, network: SimNetwork, specs: dict[str, DeviceSpec] = SPECS,
                  **kwargs: object) -> AsyncIterator[tuple[ZigbeeDriver, Recorder]]:
    recorder = Recorder()
    driver = ZigbeeDriver(settings(tmp_path), specs, recorder, app_factory=app_factory(network), **kwargs)
    await driver.start()
    try:
        yield driver, recorder
    finally:
        await driver.stop()


async def pair(driver: ZigbeeDriver, recorder: Recorder, device: SimDevice) -> None:
    await driver.permit_join(60)
    await device.join()
    ieee = str(device.ieee)
    await recorder.wait(lambda: recorder.of(Interviewed, ieee))
    if device.profile.zone_type is not None:
        await recorder.wait(lambda: recorder.of(Enrolled, ieee) and recorder.of(ZoneReport, ieee))


def network_with_all() -> tuple[SimNetwork, dict[str, SimDevice]]:
    network = SimNetwork()
    devices = {"contact": network.add("contact", CONTACT), "siren": network.add("siren", SIREN),
               "lock": network.add("lock", LOCK), "relay": network.add("relay", RELAY)}
    return network, devices


async def test_join_interview_and_enrolment(tmp_path: Path) -> None:
    network, devices = network_with_all()
    async with running(tmp_path, network) as (driver, rec):
        for device in devices.values():
            await pair(driver, rec, device)
        contact = devices["contact"]
        assert rec.of(Joined, CONTACT)[0].nwk == contact.nwk
        interviewed = rec.of(Interviewed, CONTACT)[0]
        assert (interviewed.model, interviewed.manufacturer) == ("sim-contact", "Linli")
        assert 0x0500 in interviewed.clusters and interviewed.missing == ()
        # Enrolment went over the air: the sensor holds our address as CIE and is enrolled.
        assert contact.cie_addr == driver.app.state.node_info.ieee
        assert contact.zone_state == ZoneState.Enrolled
        assert devices["siren"].zone_state == ZoneState.Enrolled
        assert rec.of(ZoneReport, CONTACT)[-1].status == 0
        assert {d["ieee"] for d in driver.devices()} == {CONTACT, SIREN, LOCK, RELAY}


async def test_missing_cluster_is_reported(tmp_path: Path) -> None:
    network = SimNetwork()
    relay_as_lock = network.add("relay", LOCK)  # configured as a lock, but it is a relay
    async with running(tmp_path, network) as (driver, rec):
        await pair(driver, rec, relay_as_lock)
        assert rec.of(Interviewed, LOCK)[0].missing == (0x0101,)


async def test_zone_bits_tamper_battery_and_duplicates(tmp_path: Path) -> None:
    network, devices = network_with_all()
    contact = devices["contact"]
    async with running(tmp_path, network) as (driver, rec):
        await pair(driver, rec, contact)
        before = len(rec.of(ZoneReport, CONTACT))

        contact.notify(ZoneStatus.Alarm_1, tsn=7)
        await rec.wait(lambda: len(rec.of(ZoneReport, CONTACT)) == before + 1)
        contact.notify(contact.zone_status)  # the same status again (a retry): nothing new
        contact.notify(ZoneStatus(0), tsn=8)
        contact.notify(ZoneStatus.Alarm_1, tsn=7)  # byte-identical to the first within 10 s: zigpy drops it
        contact.set_zone(tamper=True, battery_low=True)
        await rec.wait(lambda: len(rec.of(ZoneReport, CONTACT)) == before + 4)
        await asyncio.sleep(0.05)  # any stray extra report would arrive now

        reports = rec.of(ZoneReport, CONTACT)[before:]
        assert [r.alarm for r in reports] == [True, False, True, True]
        assert (reports[-1].tamper, reports[-1].battery_low) == (True, True)
        assert not reports[0].tamper and not reports[0].battery_low
        assert driver.duplicates == 1


async def test_malformed_frames_are_counted_not_fatal(tmp_path: Path) -> None:
    network, devices = network_with_all()
    contact = devices["contact"]
    async with running(tmp_path, network) as (driver, rec):
        await pair(driver, rec, contact)
        contact.send(0x0500, b"\x19\x07\x00\x01")  # a status change notification cut short
        contact.send(0x0500, b"\x18")  # not even a header
        contact.send(0x0001, b"\x18\x08\x0a\x21\x00\x20")  # a report whose value is missing
        contact.set_zone(alarm=True)  # the device keeps working afterwards
        await rec.wait(lambda: rec.of(ZoneReport, CONTACT)[-1].alarm)
        assert driver.malformed == 3


async def test_commands_reach_the_devices_and_are_answered(tmp_path: Path) -> None:
    network, devices = network_with_all()
    async with running(tmp_path, network) as (driver, rec):
        for device in devices.values():
            await pair(driver, rec, device)
        siren, relay = devices["siren"], devices["relay"]

        await driver.siren(SIREN, True, duration_s=90)
        await driver.siren(SIREN, False)
        await driver.squawk(SIREN, armed=True)
        warnings = siren.commands("start_warning")
        assert [w.args["warning_duration"] for w in warnings] == [90, 0]
        assert warnings[0].args["warning"].mode == 1 and warnings[1].args["warning"].mode == 0  # burglar, stop
        assert siren.commands("squawk")[0].args["squawk"].mode == 0  # armed

        await driver.lock(LOCK, locked=False)
        await rec.wait(lambda: rec.of(LockReport, LOCK))
        assert rec.of(LockReport, LOCK)[-1].state == "unlocked"
        await driver.lock(LOCK)
        await rec.wait(lambda: rec.of(LockReport, LOCK)[-1].state == "locked")

        await driver.set_onoff(RELAY, True)
        await rec.wait(lambda: rec.of(OnOffReport, RELAY))
        assert rec.of(OnOffReport, RELAY)[-1].on is True
        assert [r.command for r in relay.received] == ["on"]

        with pytest.raises(ZigbeeCommandError, match="no cluster"):
            await driver.set_onoff(SIREN, True)
        with pytest.raises(ZigbeeCommandError, match="not paired"):
            await driver.set_onoff("00:0d:6f:00:00:00:00:99", True)
        relay.powered = False
        with pytest.raises(ZigbeeCommandError, match="not delivered"):
            await driver.set_onoff(RELAY, False)


async def test_silent_device_goes_offline_and_comes_back(tmp_path: Path) -> None:
    network, devices = network_with_all()
    contact, relay = devices["contact"], devices["relay"]
    specs = {CONTACT: DeviceSpec("contact", 0.3), RELAY: DeviceSpec("relay", 0.6)}
    async with running(tmp_path, network, specs, supervision_s=0.05) as (driver, rec):
        await pair(driver, rec, contact)
        await pair(driver, rec, relay)
        assert rec.of(Availability, CONTACT)[-1].online
        # The relay is mains powered: the driver pings it, so it stays online while it answers.
        await rec.wait(lambda: rec.of(Availability, CONTACT)[-1].online is False)
        assert rec.of(Availability, RELAY)[-1].online
        assert "no check-in" in rec.of(Availability, CONTACT)[-1].reason
        relay.powered = False
        await rec.wait(lambda: rec.of(Availability, RELAY)[-1].online is False)

        contact.check_in()
        await rec.wait(lambda: rec.of(Availability, CONTACT)[-1].online)
        assert [a.online for a in rec.of(Availability, CONTACT)] == [True, False, True]


async def test_device_database_survives_a_restart(tmp_path: Path) -> None:
    network, devices = network_with_all()
    contact = devices["contact"]
    async with running(tmp_path, network) as (driver, rec):
        await pair(driver, rec, contact)
        pan_id = driver.app.state.network_info.pan_id
    async with running(tmp_path, network) as (driver, rec):
        assert driver.app.state.network_info.pan_id == pan_id
        known = {d["ieee"]: d for d in driver.devices()}
        assert known[CONTACT]["model"] == "sim-contact" and known[CONTACT]["initialized"]
        contact.set_zone(alarm=True)  # no new interview needed: the zone is reported at once
        await rec.wait(lambda: rec.of(ZoneReport, CONTACT) and rec.of(ZoneReport, CONTACT)[-1].alarm)
        assert rec.of(Interviewed, CONTACT) == []


async def test_backup_and_restore_onto_a_blank_stick(tmp_path: Path) -> None:
    network, devices = network_with_all()
    backup_file = tmp_path / "backup.json"
    async with running(tmp_path, network) as (driver, rec):
        await pair(driver, rec, devices["contact"])
        backup = await driver.backup(backup_file)
    assert stat.S_IMODE(os.stat(backup_file).st_mode) == 0o600  # it holds the network key
    assert json.loads(backup_file.read_text())["network_info"]["network_key"]["key"]

    # A new, blank stick and a fresh data dir: restoring brings back the same network.
    fresh = tmp_path / "new-box"
    fresh.mkdir()
    blank = SimNetwork()
    recorder = Recorder()
    other_secrets = RadioSettings(radio="simulated", port=None, secrets=load_or_create_secrets(fresh / "net.json"),
                                  database_path=fresh / "zigbee.db")
    driver = ZigbeeDriver(other_secrets, SPECS, recorder, app_factory=app_factory(blank))
    await driver.start(restore_from=backup_file)
    try:
        info = driver.app.state.network_info
        assert info.pan_id == backup.network_info.pan_id
        assert info.network_key.key == backup.network_info.network_key.key
        assert info.extended_pan_id == backup.network_info.extended_pan_id
        assert info.network_key.tx_counter > backup.network_info.network_key.tx_counter  # never reused
    finally:
        await driver.stop()


async def test_a_broken_backup_file_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    from drivers.zigbee.driver import ZigbeeStartError

    broken = tmp_path / "backup.json"
    broken.write_text('{"network_info": {"pan_id": "zz"}}')
    network = SimNetwork()
    driver = ZigbeeDriver(settings(tmp_path), SPECS, Recorder(), app_factory=app_factory(network))
    with pytest.raises(ZigbeeStartError):
        await driver.start(restore_from=broken)
    assert driver.app is None and network.app is None and network.nvram is None  # the stick is untouched


def test_network_secrets_are_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    first = load_or_create_secrets(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secrets(path) == first
    assert first.network_key.hex() not in repr(first)
    os.chmod(path, 0o644)
    with pytest.raises(NetworkFileError, match="chmod 600"):
        load_or_create_secrets(path)
    os.chmod(path, 0o600)
    path.write_text('{"pan_id": 1, "network_key": "secretsecret"}')
    os.chmod(path, 0o600)
    with pytest.raises(NetworkFileError) as info:
        load_or_create_secrets(path)
    assert "secretsecret" not in str(info.value)


@pytest.mark.parametrize(("section", "message"), [
    ({"radio": "znp"}, "needs a serial port"),
    ({"radio": "znp", "port": "ttyUSB0"}, "absolute path"),
    ({"radio": "simulated", "devices": [{"id": "a", "ieee": "00:11", "kind": "contact"}]}, "IEEE address"),
    ({"radio": "simulated", "devices": [{"id": "a", "ieee": CONTACT, "kind": "doorbell"}]}, "kind"),
    ({"radio": "simulated", "devices": [{"id": "a", "ieee": CONTACT, "kind": "contact"},
                                        {"id": "b", "ieee": CONTACT.upper(), "kind": "motion"}]}, "used twice"),
    ({"radio": "simulated", "network_key": "00" * 16}, "Extra inputs"),
    ({"radio": "simulated", "channel": 27}, "less than or equal to 26"),
])
def test_bad_config_is_refused(section: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ZigbeeSection.model_validate(section)


PROFILES = sorted((Path(__file__).resolve().parent.parent / "firmware_profiles").glob("zigbee-*.yaml"))


def test_device_profiles_validate_and_fit_the_simulated_devices() -> None:
    from drivers.zigbee.kinds import KINDS
    from drivers.zigbee.profile import cluster_ids
    from drivers.zigbee.simulator import PROFILES as SIMULATED
    from hil_tests.profiles import load_profile

    loaded = {p.stem: load_profile(p).profile for p in PROFILES}
    assert {p.device_kind for p in loaded.values()} == set(KINDS)  # one profile per kind
    ids = cluster_ids()
    for profile in loaded.values():
        required = {ids[name] for name in profile.clusters.required}
        assert required <= set(SIMULATED[profile.device_kind].in_clusters), profile.id


def test_a_profile_that_asks_too_little_points_at_the_line() -> None:
    from hil_tests.profiles import ProfileError, parse_profile

    original = next(p for p in PROFILES if p.stem == "zigbee-contact").read_text()
    typo = original.replace("[power, identify, poll_control]", "[power, identifyy]")
    with pytest.raises(ProfileError) as info:
        parse_profile(typo, "zigbee-contact.yaml", "zigbee-contact")
    assert [str(i) for i in info.value.issues] == [
        "zigbee-contact.yaml:16:21: clusters.optional[1]: unknown cluster 'identifyy' "
        "(use zigpy's names, e.g. basic, ias_zone, on_off)"]
    too_little = original.replace("required: [basic, ias_zone]", "required: [basic]")
    with pytest.raises(ProfileError, match=r"clusters\.required: a contact needs ias_zone"):
        parse_profile(too_little, "zigbee-contact.yaml", "zigbee-contact")


async def test_the_network_key_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)  # the daemon run with --debug
    network, devices = network_with_all()
    async with running(tmp_path, network) as (driver, rec):
        await pair(driver, rec, devices["contact"])
        await driver.backup(tmp_path / "backup.json")
        key = driver.radio.secrets.network_key
        for name in ("zigbee.db", "zigbee.db-wal"):  # zigpy keeps its backups (the key) in its database
            if (tmp_path / name).exists():
                assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name
    assert driver.app is None and caplog.records  # something was logged
    assert key.hex(":") not in caplog.text.lower() and key.hex() not in caplog.text.lower()


def test_start_errors_do_not_quote_the_key() -> None:
    from drivers.zigbee.driver import redact

    key = bytes(range(16))
    text = f"Radio network settings are not compatible: network_key=Key(key={key.hex(':')}), raw {key.hex().upper()}"
    assert redact(text, key) == "Radio network settings are not compatible: network_key=Key(key=<network key>), " \
                                "raw <network key>"
