"""Intercom in the daemon: a real Controller, simulated panels and indoor units on a pty, real SQLite,
and for the platform side a real Mosquitto with signed commands.

Bus (address): panel `gate` (1, its own relay), panel `side` (2), indoor units `u1203` (10) and
`u1204` (11), the guard station `guard` (20). Timeouts are short so the fallbacks happen in tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt

from drivers.intercom.protocol import CallState
from drivers.intercom.simulator import SimIndoorUnit, SimIntercomBus, SimPanel
from edge.commands import sign_command
from edge.daemon import Controller
from edge.journal import StoredEvent
from tests.controller_helpers import running_controller, users_yaml, wait_event
from tests.mosquitto import Mosquitto
from tests.mqtt_helpers import Collector, TopicTree, wait_until

KEY = b"intercom-test-hmac-key-0123456789abcdef"
PREFIX = "linli/s1/gate-1/cmd/"


def intercom_yaml(port: str, *, unit_ring_s: float = 0.6, app_ring_s: float = 0.6, talk_s: float = 3.0) -> str:
    return f"""\
intercom:
  buses:
    - port: {port}
      baudrate: 115200
      panels:
        - {{id: gate, address: 1, directory: {{1: "1203"}}}}
        - {{id: side, address: 2}}
      indoor_units:
        - {{id: u1203, address: 10, apartment: "1203"}}
        - {{id: u1204, address: 11, apartment: "1204"}}
        - {{id: guard, address: 20, guard: true}}
  timeouts: {{unit_ring_s: {unit_ring_s}, app_ring_s: {app_ring_s}, guard_ring_s: 0.6, talk_s: {talk_s},
             unlock_grace_s: 1}}
  unlock_s: 0.5
"""


def site(port: str, *, broker: str | None = None, key_file: Path | None = None, **timeouts: float) -> str:
    uplink = "uplink: {enabled: false}\n"
    if broker is not None:
        uplink = (
            f"uplink: {{broker: {broker}, backoff: {{initial_s: 0.05, max_s: 0.5}},"
            f" commands: {{hmac_key_file: {key_file}}}}}\n"
        )
    return (
        "site: {id: s1, name: Maple Court}\ncontroller: {id: gate-1}\ndata_dir: data\n"
        + uplink
        + "zeroconf: {enabled: false}\napi: {host: 127.0.0.1, port: 0}\n"
        + users_yaml()
        + intercom_yaml(port, **timeouts)
    )


def sims() -> list[Any]:
    return [SimPanel(1), SimPanel(2), SimIndoorUnit(10), SimIndoorUnit(11), SimIndoorUnit(20)]


@asynccontextmanager
async def intercom_site(tmp_path: Path, **kw: Any) -> AsyncIterator[tuple[Controller, SimIntercomBus]]:
    async with SimIntercomBus(sims()) as bus, running_controller(tmp_path, site(bus.port, **kw)) as controller:
        await wait_online(controller, ["gate", "side", "u1203", "u1204", "guard"])
        yield controller, bus


async def wait_online(controller: Controller, devices: list[str], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while True:
        service = controller.intercom
        if service is not None and service.ready.is_set() and all(d in service.router.online for d in devices):
            return
        assert time.monotonic() < deadline, "intercom devices did not come online"
        await asyncio.sleep(0.01)


async def intercom_events(controller: Controller, after: int = 0) -> list[StoredEvent]:
    rows = await controller.journal.query(after_seq=after, limit=1000)
    return [r for r in rows if r.event.type.startswith("intercom.")]


def mark(controller: Controller) -> int:
    return controller.journal.stats.last_seq


async def test_visitor_calls_resident_answers_and_unlocks_from_the_indoor_unit(tmp_path: Path) -> None:
    async with intercom_site(tmp_path, unit_ring_s=5) as (controller, bus):
        gate, unit = bus.device(1), bus.device(10)
        since = mark(controller)
        gate.call("1203")
        call_no = await unit.wait_ringing()
        assert unit.panel == 1
        assert await gate.wait_call_state(CallState.RINGING) == call_no
        unit.answer()
        await gate.wait_call_state(CallState.ANSWERED)
        unit.unlock()
        await gate.wait_relay(1)
        unit.hang_up()
        ended = await wait_event(controller, "intercom.ended", after=since)
        assert ended.event.data["reason"] == "hung_up"
        await gate.wait_call_state(CallState.ENDED)
        events = await intercom_events(controller, since)
        assert [e.event.type for e in events] == [
            "intercom.ringing",
            "intercom.answered",
            "intercom.unlock",
            "intercom.ended",
        ]
        call_ids = {e.event.data["call_id"] for e in events}
        assert len(call_ids) == 1
        unlock = events[2].event
        assert (unlock.source, unlock.data["by"], unlock.data["apartment"]) == ("gate", "u1203", "1203")
        assert gate.relay_activations == 1
        assert bus.device(11).rings == 0  # the other apartment never rang


async def test_no_answer_falls_back_to_the_guard_then_times_out(tmp_path: Path) -> None:
    async with intercom_site(tmp_path) as (controller, bus):
        gate, unit, guard = bus.device(1), bus.device(10), bus.device(20)
        since = mark(controller)
        gate.press_button(1)  # directory entry 1 -> apartment 1203
        await unit.wait_ringing()
        await unit.wait_for(lambda: unit.ringing is None)
        assert unit.stopped[-1][1] is CallState.TIMED_OUT
        await guard.wait_ringing(within=3)
        ended = await wait_event(controller, "intercom.ended", after=since, within=4)
        assert ended.event.data["reason"] == "no_answer"
        await gate.wait_call_state(CallState.TIMED_OUT)
        events = await intercom_events(controller, since)
        missed = [e.event.data["stage"] for e in events if e.event.type == "intercom.missed"]
        # No uplink in this site: there is no app to ring, so the units hand over to the guard.
        assert missed == ["units", "guard"]
        assert not [e for e in events if e.event.type == "intercom.call"]
        assert gate.relay_activations == 0


async def test_busy_panel_and_refused_unlocks_are_audited_and_open_nothing(tmp_path: Path) -> None:
    async with intercom_site(tmp_path, unit_ring_s=5) as (controller, bus):
        gate, side, u1203, u1204 = bus.device(1), bus.device(2), bus.device(10), bus.device(11)
        since = mark(controller)
        gate.call("1203")
        call_no = await u1203.wait_ringing()
        gate.call("1204")
        await gate.wait_call_state(CallState.BUSY)
        side.call("1203")  # the apartment is in a call already
        await side.wait_call_state(CallState.BUSY)
        u1204.unlock(call_no)  # another apartment's unit names this call
        refused = await wait_event(controller, "intercom.unlock_refused", after=since)
        assert refused.event.data["reason"] == "wrong_apartment" and refused.event.data["by"] == "u1204"
        assert refused.event.severity == "warning"
        u1203.hang_up()  # rejected
        await gate.wait_call_state(CallState.REJECTED)
        await asyncio.sleep(1.2)  # past the 1 s grace
        u1203.unlock(call_no)
        late = await wait_event(
            controller, "intercom.unlock_refused", lambda d: d["reason"] == "grace_expired", after=since
        )
        assert late.event.data["call_id"] == refused.event.data["call_id"]
        await asyncio.sleep(0.1)
        assert gate.relay_activations == 0 and side.relay_activations == 0


async def test_panel_offline_mid_call_ends_it_and_it_is_supervised_again(tmp_path: Path) -> None:
    async with intercom_site(tmp_path, unit_ring_s=5) as (controller, bus):
        gate, unit = bus.device(1), bus.device(10)
        since = mark(controller)
        gate.call("1203")
        await unit.wait_ringing()
        gate.mute = True
        offline = await wait_event(controller, "device.offline", lambda d: True, after=since)
        assert offline.event.source == "gate"
        ended = await wait_event(controller, "intercom.ended", after=since)
        assert ended.event.data["reason"] == "panel_offline"
        await unit.wait_for(lambda: unit.ringing is None)  # the unit stops ringing
        gate.mute = False
        back = await wait_event(controller, "device.online", lambda d: True, after=offline.seq)
        assert back.event.source == "gate"
        await wait_online(controller, ["gate"])
        gate.call("1203")  # supervised and routed again
        await wait_event(controller, "intercom.ringing", after=back.seq)


async def test_keypad_code_and_qr_are_events_without_the_secret(tmp_path: Path) -> None:
    async with intercom_site(tmp_path) as (controller, bus):
        handed: list[tuple[str, str, str | bytes]] = []

        async def handler(panel: str, kind: str, value: str | bytes) -> None:
            handed.append((panel, kind, value))

        controller.intercom.credential_handlers.append(handler)
        since = mark(controller)
        bus.device(1).enter_code("482916")
        bus.device(2).scan_qr(b"PASS-7f3a9c0d11e2b4a5")
        code = await wait_event(controller, "intercom.code_entered", after=since)
        qr = await wait_event(controller, "intercom.qr_scanned", after=since)
        assert code.event.data == {"panel": "gate", "length": 6}
        assert qr.event.data["length"] == 21 and len(qr.event.data["sha256"]) == 16
        everything = json.dumps([r.event.model_dump(mode="json") for r in await controller.journal.query(limit=500)])
        assert "482916" not in everything and "PASS-7f3a" not in everything
        await wait_until(lambda: len(handed) == 2, 3)
        assert ("gate", "code", "482916") in handed and ("side", "qr", b"PASS-7f3a9c0d11e2b4a5") in handed


async def test_unlock_goes_through_access_control_when_the_panel_names_a_door(tmp_path: Path) -> None:
    # access control is another service's; here only its documented entry point is stood in for.
    calls: list[tuple[str, str, str]] = []

    class AccessEntry:
        async def remote_unlock(self, door_id: str, *, origin: str, actor: str, extended: bool = False) -> bool:
            calls.append((door_id, origin, actor))
            return True

    async with SimIntercomBus(sims()) as bus:
        text = site(bus.port, unit_ring_s=5).replace("{id: gate, address: 1,", "{id: gate, address: 1, door: gate,")
        text += "doors:\n  - {id: gate}\n"
        async with running_controller(tmp_path, text) as controller:
            await wait_online(controller, ["gate", "u1203"])
            controller.access = AccessEntry()
            gate, unit = bus.device(1), bus.device(10)
            gate.call("1203")
            await unit.wait_ringing()
            unit.unlock()
            await wait_until(lambda: bool(calls), 3)
            assert calls == [("gate", "intercom", "indoor_unit:u1203")]
            await asyncio.sleep(0.2)
            assert gate.relay_activations == 0  # the door's own lock, not the panel relay


async def test_remote_answer_and_unlock_from_the_platform_over_mqtt(mosquitto: Mosquitto, tmp_path: Path) -> None:
    key_file = tmp_path / "hmac.key"
    key_file.write_bytes(KEY)
    async with SimIntercomBus(sims()) as bus:
        text = site(bus.port, broker=mosquitto.url, key_file=key_file, unit_ring_s=0.3, app_ring_s=10)
        async with (
            Collector(mosquitto.port, ["linli/s1/gate-1/#"]) as seen,
            running_controller(tmp_path, text) as controller,
        ):
            await wait_online(controller, ["gate", "u1203"])
            await wait_until(lambda: controller.uplink.state == "connected", 10)
            gate = bus.device(1)
            since = mark(controller)
            gate.call("1203")
            # The platform learns of the call over MQTT and rings the resident's app.
            await seen.wait_for(lambda _: bool(seen.on("linli/s1/gate-1/events/intercom.call")), 5, "intercom.call")
            call = json.loads(seen.on("linli/s1/gate-1/events/intercom.call")[0].payload)
            call_id = call["data"]["call_id"]
            assert call["data"]["apartment"] == "1203" and call["source"] == "gate"

            def envelope(name: str, cid: str, **args: Any) -> bytes:
                return sign_command(PREFIX + name, command_id=cid, args={"call_id": call_id, **args}, key=KEY)

            unlock_wrong = envelope("intercom/unlock", "c-wrong", apartment="1204", actor="mallory")
            answer = envelope("intercom/answer", "c-answer", apartment="1203", actor="alice")
            unlock = envelope("intercom/unlock", "c-unlock", apartment="1203", actor="alice")
            forged = sign_command(
                PREFIX + "intercom/unlock", command_id="c-forged", key=b"x" * 40,
                args={"call_id": call_id, "apartment": "1203", "actor": "alice"},
            )
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
                sends = [("unlock", unlock_wrong), ("unlock", forged), ("answer", answer), ("unlock", unlock)]
                sends.append(("unlock", unlock))  # replayed
                for name, payload in sends:
                    await platform.publish(PREFIX + "intercom/" + name, payload, qos=1)
                    await asyncio.sleep(0.05)
            await gate.wait_call_state(CallState.ANSWERED, within=5)
            await gate.wait_relay(1, within=5)
            await seen.wait_for(lambda _: len(seen.matching(r"/cmd_result/")) >= 4, 5, "results")
            results = {m.topic.rsplit("/", 1)[1]: m.json() for m in seen.matching(r"/cmd_result/")}
            assert results["c-answer"]["ok"] is True
            expected = {"id": "c-unlock", "ok": True, "result": {"call_id": call_id, "done": "unlock"}}
            assert results["c-unlock"] == expected
            assert results["c-wrong"]["ok"] is False and results["c-wrong"]["error"]["issues"] == ["wrong_apartment"]
            assert results["c-forged"]["error"]["reason"] == "bad_signature"
            await wait_event(controller, "command.rejected", lambda d: d["reason"] == "replayed", after=since)
            rejected = await controller.journal.query(types=["command.rejected"], after_seq=since, limit=50)
            assert sorted(r.event.data["reason"] for r in rejected) == ["bad_signature", "failed", "replayed"]
            answered = await wait_event(controller, "intercom.answered", after=since)
            assert answered.event.data["by"] == "app:alice"
            unlocks = await controller.journal.query(types=["intercom.unlock"], after_seq=since, limit=50)
            assert [u.event.data["origin"] for u in unlocks] == ["app"]
            await asyncio.sleep(0.3)
            assert gate.relay_activations == 1  # the replayed command opened nothing
            # Each step went out over MQTT as an event.
            for type in ("intercom.ringing", "intercom.missed", "intercom.answered", "intercom.unlock",
                         "intercom.unlock_refused"):
                await seen.wait_for(lambda _, t=type: bool(seen.on(f"linli/s1/gate-1/events/{t}")), 5, type)
            # The panel's current call is its retained state.
            await seen.wait_for(lambda _: bool(seen.on("linli/s1/gate-1/state/gate")), 5, "panel state")
        tree = TopicTree()  # everything Linli published holds to the documented topic tree
        for message in seen.messages:
            if "/cmd/" not in message.topic:  # the platform's (partly hostile) input
                tree.check(message.topic, message.payload)


async def test_home_assistant_doorbell_events_and_unlock_button(mosquitto: Mosquitto, tmp_path: Path) -> None:
    key_file = tmp_path / "hmac.key"
    key_file.write_bytes(KEY)
    async with SimIntercomBus(sims()) as bus:
        text = site(bus.port, broker=mosquitto.url, key_file=key_file, unit_ring_s=5)
        text = text.replace("{id: side, address: 2}", "{id: side, address: 2, home_assistant_unlock: true}")
        async with (
            Collector(mosquitto.port, ["homeassistant/#", "linli/s1/gate-1/ha/#"]) as ha,
            running_controller(tmp_path, text) as controller,
        ):
            await wait_online(controller, ["gate", "side", "u1204"])
            topic = "homeassistant/event/linli_s1_gate-1/intercom_gate_doorbell/config"
            await ha.wait_for(lambda _: bool(ha.on(topic)), 10, "doorbell discovery")
            doorbell = ha.on(topic)[-1].json()
            assert doorbell["device_class"] == "doorbell"
            assert doorbell["state_topic"] == "linli/s1/gate-1/ha/event/intercom.gate"
            assert "ringing" in doorbell["event_types"]
            button = "homeassistant/button/linli_s1_gate-1/intercom_side_unlock/config"
            await ha.wait_for(lambda _: bool(ha.on(button)), 10, "unlock button discovery")
            assert not ha.on("homeassistant/button/linli_s1_gate-1/intercom_gate_unlock/config")  # not allowed
            command_topic = ha.on(button)[-1].json()["command_topic"]

            side = bus.device(2)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as home_assistant:
                await home_assistant.publish(command_topic, b"PRESS", qos=1)  # no call: refused
                refused = await wait_event(controller, "intercom.unlock_refused")
                assert refused.event.data["reason"] == "no_call"
                side.call("1204")
                doorbell_topic = "linli/s1/gate-1/ha/event/intercom.side"
                await ha.wait_for(lambda _: bool(ha.on(doorbell_topic)), 5, "doorbell event")
                assert ha.on(doorbell_topic)[0].json()["event_type"] == "ringing"
                await home_assistant.publish(command_topic, b"PRESS", qos=1)
                await side.wait_relay(1, within=5)
            unlock = await wait_event(controller, "intercom.unlock")
            assert unlock.event.data["origin"] == "home_assistant"
            assert command_topic == "linli/s1/gate-1/ha/cmd/intercom.side"
        tree = TopicTree()
        for message in ha.messages:
            if message.topic.startswith("linli/") and "/ha/cmd/" not in message.topic:
                tree.check(message.topic, message.payload)


async def test_demo_devices_and_site_section(tmp_path: Path) -> None:
    from drivers.intercom.simulator import command, demo_site_yaml, start_demo_bus

    bus = await start_demo_bus(tmp_path)
    try:
        text = site(bus.port)
        text = text[: text.index("intercom:")] + demo_site_yaml(bus.port)
        async with running_controller(tmp_path, text) as controller:
            await wait_online(controller, ["gate-panel", "unit-1203", "unit-1204", "guard-desk"])
            command(bus, ["button", "1", "2"])  # directory entry 2: apartment 1204
            await bus.device(11).wait_ringing()
            assert bus.device(10).rings == 0  # 1203's unit stays quiet
            command(bus, ["answer", "11"])
            command(bus, ["unlock", "11"])
            await bus.device(1).wait_relay(1)
            unlocked = await wait_event(controller, "intercom.unlock")
            assert unlocked.event.data["apartment"] == "1204"
            ended = mark(controller)
            command(bus, ["hangup", "11"])
            await wait_event(controller, "intercom.ended", after=ended)
            assert bus.device(1).relay_activations == 1
    finally:
        await bus.stop()



async def test_reload_restarts_intercom_on_a_changed_section(tmp_path: Path) -> None:
    async with intercom_site(tmp_path) as (controller, bus):
        old = controller.intercom
        text = site(bus.port, unit_ring_s=7)
        await controller.reload_config(text)
        await wait_until(lambda: controller.intercom is not None and controller.intercom is not old, 5)
        await wait_online(controller, ["gate", "u1203"])
        assert controller.intercom.router.settings.unit_ring_s == 7
        same = controller.intercom
        await controller.reload_config(text)  # nothing changed: the running service stays
        assert controller.intercom is same


def test_a_broken_intercom_section_is_a_clear_config_error(tmp_path: Path) -> None:
    from edge.config import ConfigError, parse_config

    text = site("/dev/ttyUSB1").replace("{id: u1204, address: 11,", "{id: u1204, address: 10,")
    try:
        parse_config(text, "site.yaml", tmp_path)
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError("two units on address 10 were accepted")
    assert "site.yaml:" in message and "intercom" in message and "address 10 is used twice" in message
