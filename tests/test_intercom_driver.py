"""The intercom bus master against simulated panels and indoor units over a pseudo-terminal (and over
TCP, as through ser2net): polling, heartbeats, retries with the same sequence, supervision."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from drivers.intercom import (
    BusOffline,
    BusOnline,
    DeviceKind,
    DeviceOffline,
    DeviceOnline,
    DeviceSpec,
    IntercomBus,
    Timing,
)
from drivers.intercom.protocol import Answer, CallRequest, CallState, KeypadCode, Message, QrToken, Tamper
from drivers.intercom.simulator import SimDevice, SimIndoorUnit, SimIntercomBus, SimPanel

FAST = Timing(reply_timeout_s=0.08, retries=2, poll_interval_s=0.01, heartbeat_s=0.3, offline_probe_s=0.1,
              reconnect_s=0.1)
SPECS = [
    DeviceSpec("gate", 1, DeviceKind.PANEL),
    DeviceSpec("side", 2, DeviceKind.PANEL),
    DeviceSpec("u1203", 10, DeviceKind.INDOOR_UNIT),
]


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Message, float]] = []

    def __call__(self, device: str, msg: Message) -> None:
        self.seen.append((device, msg, time.monotonic()))

    def of(self, kind: type[Message], device: str | None = None) -> list[Message]:
        return [m for d, m, _ in self.seen if isinstance(m, kind) and (device is None or d == device)]

    def mark(self) -> int:
        return len(self.seen)

    async def wait(
        self, kind: type[Message], device: str | None = None, *, since: int = 0, within: float = 3.0,
        where: Callable[[Message], bool] | None = None,
    ) -> Message:
        deadline = time.monotonic() + within
        while True:
            for d, m, _ in self.seen[since:]:
                if isinstance(m, kind) and (device is None or d == device) and (where is None or where(m)):
                    return m
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind.__name__} from {device or 'any'}; saw {self.seen[since:]}")
            await asyncio.sleep(0.005)


@asynccontextmanager
async def bus_with(
    sims: Sequence[SimDevice] | None = None, specs: Sequence[DeviceSpec] = SPECS
) -> AsyncIterator[tuple[SimIntercomBus, IntercomBus, Recorder]]:
    sims = sims if sims is not None else [SimPanel(1), SimPanel(2), SimIndoorUnit(10)]
    recorder = Recorder()
    async with SimIntercomBus(sims) as sim:
        driver = IntercomBus(sim.port, specs, recorder, timing=FAST)
        await driver.start()
        try:
            for spec in specs:
                await recorder.wait(DeviceOnline, spec.id)
            yield sim, driver, recorder
        finally:
            await driver.stop()


async def test_devices_come_online_with_their_status_and_events_arrive_by_poll() -> None:
    async with bus_with() as (sim, _driver, rec):
        online = rec.of(DeviceOnline, "u1203")[0]
        assert isinstance(online, DeviceOnline) and online.status is not None
        assert online.status.kind is DeviceKind.INDOOR_UNIT
        assert rec.of(BusOnline)
        since = rec.mark()
        sim.device(1).call("1203")
        sim.device(2).enter_code("4711")
        sim.device(2).scan_qr(b"tok")
        sim.device(10).answer()
        assert await rec.wait(CallRequest, "gate", since=since) == CallRequest(apartment="1203")
        assert await rec.wait(KeypadCode, "side", since=since) == KeypadCode("4711")
        assert await rec.wait(QrToken, "side", since=since) == QrToken(b"tok")
        assert isinstance(await rec.wait(Answer, "u1203", since=since), Answer)
        # Each event is reported once (a poll reply is consumed, not re-read).
        await asyncio.sleep(0.1)
        assert len(rec.of(CallRequest)) == 1 and len(rec.of(KeypadCode)) == 1


async def test_commands_reach_the_right_device() -> None:
    async with bus_with() as (sim, driver, _rec):
        assert await driver.ring("u1203", 7, 1)
        assert sim.device(10).ringing == 7 and sim.device(10).panel == 1
        assert await driver.call_state("gate", 7, CallState.RINGING)
        assert sim.device(1).call_state == (7, CallState.RINGING)
        assert await driver.display("side", "Welcome", 1)
        assert sim.device(2).display_lines == {1: "Welcome"}
        assert await driver.unlock("gate", 0.3)
        assert sim.device(1).relay_activations == 1 and sim.device(2).relay_activations == 0
        assert not await driver.unlock("gate", 0.3, relay=5)  # a relay the panel lacks: NAK
        assert driver.stats.naks == 1
        assert not await driver.ring("gate", 7, 1)  # a panel does not ring: NAK, nothing done


async def test_heartbeat_carries_the_device_state() -> None:
    async with bus_with() as (sim, driver, rec):
        sim.device(1).tamper = True  # the enclosure opened, no TAMPER event queued: only STATUS says so
        deadline = time.monotonic() + 3
        while not (driver.status("gate") and driver.status("gate").tamper):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "heartbeat never refreshed the status"
            await asyncio.sleep(0.02)
        sim.device(2).set_tamper(True)
        assert await rec.wait(Tamper, "side") == Tamper(True)


async def test_a_lost_reply_is_retried_with_the_same_sequence_and_the_relay_pulses_once() -> None:
    async with bus_with() as (sim, driver, _rec):
        gate = sim.device(1)
        gate.drop_replies = 2  # the panel acts, but its ACK is lost twice
        assert await driver.unlock("gate", 0.5)
        assert gate.relay_activations == 1
        assert gate.endpoint.stats.retransmits == 2
        assert driver.stats.retries == 2
        assert driver.is_online("gate")


async def test_a_corrupted_reply_is_dropped_counted_and_retried() -> None:
    async with bus_with() as (sim, driver, _rec):
        gate = sim.device(1)
        gate.corrupt_replies = 1
        assert await driver.unlock("gate", 0.5)
        assert gate.relay_activations == 1
        stats = driver.decoder.stats
        assert stats.bad_crc + stats.bad_length + stats.noise_bytes >= 1
        assert driver.stats.timeouts >= 1 and driver.stats.retries >= 1


async def test_noise_on_the_bus_is_ignored_with_counters() -> None:
    async with bus_with() as (sim, driver, rec):
        since = rec.mark()
        for _ in range(20):
            sim.inject(b"\xa5\x81\x01\xff\x00\x13\x37" + bytes(range(0, 256, 7)))
            await asyncio.sleep(0.005)
        sim.device(1).call("1204")
        assert await rec.wait(CallRequest, "gate", since=since) == CallRequest(apartment="1204")
        stats = driver.decoder.stats
        assert stats.noise_bytes + stats.bad_length + stats.bad_crc > 0
        assert not rec.of(DeviceOffline)


async def test_device_offline_mid_call_and_back() -> None:
    async with bus_with() as (sim, driver, rec):
        unit = sim.device(10)
        since = rec.mark()
        unit.mute = True
        offline = await rec.wait(DeviceOffline, "u1203", since=since)
        assert isinstance(offline, DeviceOffline) and offline.reason == "no_reply"
        assert not driver.is_online("u1203")
        started = time.monotonic()
        assert not await driver.ring("u1203", 9, 1)  # fails at once, never delivered late
        assert time.monotonic() - started < 0.05
        assert driver.is_online("gate")  # the others are still polled
        unit.mute = False
        await rec.wait(DeviceOnline, "u1203", since=since)
        assert unit.rings == 0
        assert await driver.ring("u1203", 9, 1)
        assert unit.rings == 1


async def test_unplugged_bus_goes_offline_and_comes_back() -> None:
    async with bus_with() as (sim, driver, rec):
        since = rec.mark()
        sim.unplug()
        await rec.wait(BusOffline, since=since)
        for spec in SPECS:
            await rec.wait(DeviceOffline, spec.id, since=since)
        assert not await driver.unlock("gate")
        sim.replug()
        await rec.wait(BusOnline, since=since)
        for spec in SPECS:
            await rec.wait(DeviceOnline, spec.id, since=since)
        assert await driver.unlock("gate", 0.2)


async def test_socket_port_as_through_ser2net() -> None:
    panel = SimPanel(3)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                writer.write(panel.on_bytes(data))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    recorder = Recorder()
    driver = IntercomBus(f"socket://127.0.0.1:{port}", [DeviceSpec("lobby", 3, DeviceKind.PANEL)], recorder,
                         timing=FAST)
    await driver.start()
    try:
        await recorder.wait(DeviceOnline, "lobby")
        panel.call("0101")
        assert await recorder.wait(CallRequest, "lobby") == CallRequest(apartment="0101")
        assert await driver.unlock("lobby", 0.2)
        assert panel.relay_activations == 1
    finally:
        await driver.stop()
        server.close()


async def test_a_missing_port_is_reported_and_retried() -> None:
    recorder = Recorder()
    driver = IntercomBus("/nonexistent/intercom-bus", SPECS, recorder, timing=FAST)
    await driver.start()
    try:
        offline = await recorder.wait(BusOffline)
        assert isinstance(offline, BusOffline) and offline.error
        assert not await driver.unlock("gate")
    finally:
        await driver.stop()


def test_specs_are_checked() -> None:
    import pytest

    dup = [DeviceSpec("a", 1, DeviceKind.PANEL), DeviceSpec("b", 1, DeviceKind.PANEL)]
    with pytest.raises(ValueError, match="share"):
        IntercomBus("/dev/null", dup, lambda d, m: None)
    with pytest.raises(ValueError, match="0-126"):
        IntercomBus("/dev/null", [DeviceSpec("a", 127, DeviceKind.PANEL)], lambda d, m: None)




async def test_the_simulator_program_is_driven_by_stdin_lines(tmp_path: Path) -> None:
    link = tmp_path / "bus"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "drivers.intercom.simulator", "--link", str(link), "--panel", "1", "--unit", "10",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None

    async def line() -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))  # type: ignore[union-attr]

    async def send(text: str) -> None:
        proc.stdin.write(text.encode() + b"\n")  # type: ignore[union-attr]
        await proc.stdin.drain()  # type: ignore[union-attr]

    try:
        assert (await line())["event"] == "ready"
        recorder = Recorder()
        specs = [DeviceSpec("gate", 1, DeviceKind.PANEL), DeviceSpec("u1203", 10, DeviceKind.INDOOR_UNIT)]
        driver = IntercomBus(str(link), specs, recorder, timing=FAST)
        await driver.start()
        try:
            await recorder.wait(DeviceOnline, "gate")
            await send("call 1 1203")
            assert await recorder.wait(CallRequest, "gate") == CallRequest(apartment="1203")
            assert await driver.unlock("gate", 0.2)
            relay = await line()
            assert relay["event"] == "relay" and relay["address"] == 1 and relay["activations"] == 1
            await send("frobnicate 1")
            assert (await line())["event"] == "error"
        finally:
            await driver.stop()
        await send("quit")
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
