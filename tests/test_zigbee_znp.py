"""The serial level: the real zigpy-znp talks MT frames over socket:// to the Z-Stack stand-in.

Nothing above the byte stream is faked: zigpy-znp probes the stick, detects its Z-Stack version
and struct alignment, forms the network in the stand-in's NVRAM, registers endpoints, starts, and
the driver pairs a simulated sensor whose frames travel as AF/ZDO MT callbacks.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from zigpy.zcl.clusters.security import ZoneState

from drivers.zigbee.config import load_or_create_secrets
from drivers.zigbee.driver import DeviceSpec, Enrolled, Interviewed, RadioSettings, ZigbeeDriver, ZoneReport
from drivers.zigbee.znp_sim import SOF, FrameReader, ZStackServer, encode, fcs
from tests.test_zigbee_driver import Recorder

SENSOR = "00:0d:6f:00:00:00:0a:01"


@pytest.fixture
async def stick() -> AsyncIterator[ZStackServer]:
    server = ZStackServer()
    await server.start()
    yield server
    await server.stop()


def znp_settings(tmp_path: Path, url: str) -> RadioSettings:
    return RadioSettings(radio="znp", port=url, secrets=load_or_create_secrets(tmp_path / "net.json"),
                         database_path=tmp_path / "zigbee.db")


async def test_probe_sees_a_znp_stick(stick: ZStackServer) -> None:
    from zigpy_znp.zigbee.application import ControllerApplication

    assert await ControllerApplication.probe({"path": stick.url})
    assert stick.requests[:3] == ["SYS.Ping.Req", "UTIL.AssocFindDevice.Req", "SYS.NVLength.Req"]


async def test_driver_forms_the_network_and_pairs_a_sensor_over_mt_frames(tmp_path: Path,
                                                                          stick: ZStackServer) -> None:
    settings = znp_settings(tmp_path, stick.url)
    sensor = stick.network.add("contact", SENSOR)
    recorder = Recorder()
    driver = ZigbeeDriver(settings, {SENSOR: DeviceSpec("contact", 3600)}, recorder)
    await driver.start()
    try:
        # Formed with our secrets, written to and read back from the stick's NVRAM over the wire.
        info = driver.app.state.network_info
        assert info.pan_id == settings.secrets.pan_id
        assert info.network_key.key.serialize() == settings.secrets.network_key
        assert info.channel == 15
        assert {"AppConfig.BDBStartCommissioning.Req", "AF.Register.Req"} <= set(stick.requests)

        await driver.permit_join(30)
        await sensor.join()
        await recorder.wait(lambda: recorder.of(Enrolled, SENSOR) and recorder.of(ZoneReport, SENSOR))
        assert recorder.of(Interviewed, SENSOR)[0].model == "sim-contact"
        assert sensor.zone_state == ZoneState.Enrolled and sensor.cie_addr == driver.app.state.node_info.ieee

        sensor.set_zone(alarm=True)
        await recorder.wait(lambda: recorder.of(ZoneReport, SENSOR)[-1].alarm)
    finally:
        await driver.stop()

    # Restarting on the same stick starts the formed network instead of forming a new one.
    again = ZigbeeDriver(settings, {SENSOR: DeviceSpec("contact", 3600)}, Recorder())
    await again.start()
    try:
        assert again.app.state.network_info.pan_id == settings.secrets.pan_id
        assert {d["ieee"] for d in again.devices()} == {SENSOR}
    finally:
        await again.stop()


def test_frames_with_a_bad_checksum_or_noise_are_dropped() -> None:
    from zigpy_znp.commands import SYS

    good = encode(SYS.Ping.Req().to_frame())
    assert good[0] == SOF and good[-1] == fcs(good[1:-1])
    corrupt = good[:-1] + bytes([good[-1] ^ 0xFF])
    reader = FrameReader()
    frames = reader.feed(b"\x00\x13garbage" + corrupt + good[:3])
    frames += reader.feed(good[3:] + bytes([SOF, 0xFF, 0x21, 0x01, 0x00]))  # and a length no frame can have
    assert frames == [(bytes([0x21, 0x01]), b"")]
    assert reader.bad_frames == 2


async def test_garbage_on_the_line_does_not_break_the_stick(stick: ZStackServer) -> None:
    host, port = stick.url.removeprefix("socket://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    from zigpy_znp.commands import SYS

    ping = encode(SYS.Ping.Req().to_frame())
    writer.write(b"\xfe\x05\x21\x01\x00" + bytes(range(40)) + ping)  # a frame cut short, then noise
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(64), 5)
    assert answer[0] == SOF and answer[2:4] == bytes([0x61, 0x01])  # SRSP SYS ping
    writer.close()


async def test_no_stick_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    driver = ZigbeeDriver(znp_settings(tmp_path, f"socket://127.0.0.1:{port}"), {}, Recorder())
    with pytest.raises(OSError):
        await driver.start()
    assert driver.app is None
