"""Doors from afar: retained door state, Home Assistant entities and commands, remote unlock by the
platform (signed MQTT), the API and HA — each only where the door's `remote_unlock` allows it.

Over real parts: simulated OSDP readers on a pty (libosdp at both ends), a real Mosquitto, a real
controller with its API.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import aiomqtt

from drivers.osdp.simulator import INPUT_DPS, OUTPUT_LOCK, SimBus, SimReader
from edge.commands import sign_command
from edge.daemon import Controller
from edge.homeassistant import Discovery, door_entities, door_event_payload
from edge.topics import Topics
from tests.access_helpers import FACILITY
from tests.controller_helpers import base_url, bearer, login, running_controller, site_yaml
from tests.mosquitto import Mosquitto
from tests.mqtt_helpers import Collector, TopicTree
from tests.test_access_service import access_yaml, journaled, mark, seed_store, wait_event, wait_ready

SITE, CONTROLLER = "maple-court", "gate-1"
TOPICS = Topics(SITE, CONTROLLER)
TREE = TopicTree()
KEY = b"platform-hmac-key-0123456789abcdef"


def check(topic: str, payload: dict | bytes) -> str:
    return TREE.check(topic, payload if isinstance(payload, bytes) else json.dumps(payload).encode())


# ---- payloads ----------------------------------------------------------------------------------


def test_an_unlockable_door_is_a_lock_and_others_are_read_only() -> None:
    discovery = Discovery("homeassistant", TOPICS, "1.0")
    gate = dict(discovery.messages(door_entities(TOPICS, "gate", "Gate", unlockable=True, has_dps=True,
                                                 tamper_readers=["gate-r"])))
    kinds = {topic: check(topic, payload) for topic, payload in gate.items()}
    assert sorted(kinds.values()) == [
        "ha_discovery_binary_sensor", "ha_discovery_binary_sensor", "ha_discovery_event", "ha_discovery_lock"
    ]
    lock = gate["homeassistant/lock/linli_maple-court_gate-1/door_gate_lock/config"]
    assert lock["command_topic"] == f"{TOPICS.base}/ha/cmd/door.gate"
    assert lock["state_topic"] == f"{TOPICS.base}/state/door.gate"
    assert (lock["payload_unlock"], lock["state_locked"], lock["state_unlocked"]) == ("UNLOCK", "LOCKED", "UNLOCKED")
    dps = gate["homeassistant/binary_sensor/linli_maple-court_gate-1/door_gate_open/config"]
    assert dps["device_class"] == "door"
    tamper = gate["homeassistant/binary_sensor/linli_maple-court_gate-1/reader_gate_r_tamper/config"]
    assert tamper["device_class"] == "tamper" and tamper["state_topic"] == f"{TOPICS.base}/state/gate-r"

    office = dict(discovery.messages(door_entities(TOPICS, "office", "Office", unlockable=False, has_dps=False)))
    assert not any("/lock/" in topic for topic in office)  # nothing HA could unlock with
    read_only = office["homeassistant/binary_sensor/linli_maple-court_gate-1/door_office_lock/config"]
    assert read_only["device_class"] == "lock" and "command_topic" not in read_only
    assert not any("door_office_open" in topic for topic in office)  # no DPS, no door sensor


def test_decision_event_for_ha_carries_no_more_than_the_schema_allows() -> None:
    from edge.events import EventFactory

    event = EventFactory(SITE, CONTROLLER)(
        "access.denied", "gate-r",
        {"door": "gate", "reader": "gate-r", "reason": "expired", "holder": "carol", "credential": "carol.card"},
    )
    payload = door_event_payload(event)
    assert payload == {"event_type": "denied", "event_id": event.id, "reason": "expired", "holder": "carol",
                       "reader": "gate-r"}
    assert check(f"{TOPICS.base}/ha/event/door.gate", payload) == "ha_entity_event"


# ---- live --------------------------------------------------------------------------------------


def remote_yaml(port: str) -> str:
    """The access test site with the gate open to every remote origin and the office to none."""
    text = access_yaml(port)
    return text.replace("    held_open_pre_alarm_s: 1\n",
                        "    held_open_pre_alarm_s: 1\n    remote_unlock: [platform, api, home_assistant]\n", 1)


@asynccontextmanager
async def remote_site(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[tuple[Controller, SimBus]]:
    key_file = tmp_path / "platform.key"
    key_file.write_bytes(KEY)
    async with SimBus([SimReader(1), SimReader(2)]) as bus:
        await seed_store(tmp_path / "data")
        text = site_yaml(extra=remote_yaml(bus.port)).replace(
            "uplink: {enabled: false}\n",
            f"uplink: {{broker: '{mosquitto.url}', protocol: '5', commands: {{hmac_key_file: {key_file}}}}}\n",
        )
        async with running_controller(tmp_path, text) as controller:
            await wait_ready(controller)
            for _ in range(200):
                if controller.uplink is not None and controller.uplink.state == "connected":
                    break
                await asyncio.sleep(0.025)
            yield controller, bus


async def test_home_assistant_sees_doors_and_unlocks_only_where_allowed(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with (
        Collector(mosquitto.port, ["homeassistant/#", f"{TOPICS.base}/#"]) as seen,
        remote_site(tmp_path, mosquitto) as (controller, bus),
    ):
        gate, office = bus.reader(1), bus.reader(2)
        await seen.wait_for(lambda _: bool(seen.matching(r"/lock/.*door_gate_lock/config$")), what="the gate's lock")
        assert not seen.matching(r"/lock/.*door_office_lock/config$")
        await seen.wait_for(lambda _: bool(seen.on(f"{TOPICS.base}/state/door.gate")), what="the gate's state")
        assert seen.on(f"{TOPICS.base}/state/door.gate")[-1].json()["lock"] == "LOCKED"

        # The DPS and a decision reach HA.
        gate.set_input(INPUT_DPS, True)
        await seen.wait_for(lambda _: any(m.json()["open"] is True for m in seen.on(f"{TOPICS.base}/state/door.gate")),
                            what="door open in its state")
        gate.set_input(INPUT_DPS, False)
        gate.present_card(4242, FACILITY)  # unknown card
        await seen.wait_for(lambda _: bool(seen.on(f"{TOPICS.base}/ha/event/door.gate")), what="decision event")
        assert seen.on(f"{TOPICS.base}/ha/event/door.gate")[0].json()["reason"] == "unknown_credential"

        since = mark(controller)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as ha:
            await ha.publish(f"{TOPICS.base}/ha/cmd/door.gate", "UNLOCK", qos=1)
            await gate.wait_output(OUTPUT_LOCK, True, within=3.0)
            await seen.wait_for(
                lambda _: any(m.json()["lock"] == "UNLOCKED" for m in seen.on(f"{TOPICS.base}/state/door.gate")),
                what="the gate unlocked in its state",
            )
            # The office does not allow HA: no handler, nothing moves.
            await ha.publish(f"{TOPICS.base}/ha/cmd/door.office", "UNLOCK", qos=1)
            await ha.publish(f"{TOPICS.base}/ha/cmd/door.gate", "OPEN SESAME " * 100, qos=1)
        remote = await wait_event(controller, "access.remote_unlock", after=since)
        assert remote.event.data == {"door": "gate", "origin": "home_assistant", "actor": "home_assistant"}
        await asyncio.sleep(0.5)
        assert office.outputs[OUTPUT_LOCK].on is True  # fail-safe maglock: energised (locked), never released
        assert len(await journaled(controller, "access.remote_unlock", since)) == 1
        for message in seen.messages:
            if "/ha/cmd/" not in message.topic:  # what the test sent as HA, hostile payload included
                check(message.topic, message.payload)


async def test_platform_unlock_is_signed_journaled_and_refused_where_not_allowed(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with (
        Collector(mosquitto.port, [f"{TOPICS.base}/cmd_result/#"]) as results,
        remote_site(tmp_path, mosquitto) as (controller, bus),
    ):
        topic = f"{TOPICS.base}/cmd/door/unlock"
        since = mark(controller)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
            await platform.publish(topic, sign_command(topic, command_id="u1", args={"door": "gate"}, key=KEY), qos=1)
            await bus.reader(1).wait_output(OUTPUT_LOCK, True, within=3.0)
            await platform.publish(topic, sign_command(topic, command_id="u2", args={"door": "office"}, key=KEY), qos=1)
            await platform.publish(topic, sign_command(topic, command_id="u3", args={"door": "gate"}, key=b"wrong"),
                                   qos=1)
            await platform.publish(topic, sign_command(topic, command_id="u4", args={"door": 7}, key=KEY), qos=1)
        await results.wait_for(lambda m: len(m) == 4, what="four results")
        by_id = {m.json()["id"]: m.json() for m in results.messages}
        assert by_id["u1"] == {"id": "u1", "ok": True, "result": {"door": "gate", "unlocked": True}}
        assert not by_id["u2"]["ok"] and by_id["u2"]["error"]["reason"] == "failed"
        assert not by_id["u3"]["ok"] and by_id["u3"]["error"]["reason"] == "bad_signature"
        assert not by_id["u4"]["ok"] and by_id["u4"]["error"]["reason"] == "bad_args"
        granted = await journaled(controller, "access.remote_unlock", since)
        assert [e.event.data["door"] for e in granted] == ["gate"]
        refused = await wait_event(controller, "access.remote_unlock_refused", after=since)
        assert refused.event.data == {"door": "office", "origin": "platform", "actor": "platform",
                                      "reason": "not_allowed"}
        assert bus.reader(2).outputs[OUTPUT_LOCK].on is True  # the office's maglock stays energised


async def test_api_lists_doors_and_unlocks_for_managers_only(tmp_path: Path) -> None:
    async with SimBus([SimReader(1), SimReader(2)]) as bus:
        await seed_store(tmp_path / "data")
        async with running_controller(tmp_path, site_yaml(extra=remote_yaml(bus.port))) as controller:
            await wait_ready(controller)
            url = base_url(controller)
            async with aiohttp.ClientSession() as http:
                manager = bearer(await login(http, url, "manager"))
                installer = bearer(await login(http, url, "installer"))
                async with http.get(f"{url}/api/doors", headers=installer) as r:
                    doors = {d["id"]: d for d in (await r.json())["doors"]}
                assert doors["gate"]["state"]["lock"] == "LOCKED"
                assert doors["gate"]["remote_unlock"] == ["platform", "api", "home_assistant"]
                assert doors["office"]["remote_unlock"] == []
                since = mark(controller)
                async with http.post(f"{url}/api/doors/gate/unlock", headers=installer) as r:
                    assert r.status == 403  # installers test devices; they don't let people in
                async with http.post(f"{url}/api/doors/office/unlock", headers=manager) as r:
                    assert r.status == 403 and "remote unlock" in (await r.json())["error"]
                async with http.post(f"{url}/api/doors/nowhere/unlock", headers=manager) as r:
                    assert r.status == 404
                async with http.post(f"{url}/api/doors/gate/unlock", headers=manager) as r:
                    assert r.status == 200 and await r.json() == {"door": "gate", "unlocked": True}
                await bus.reader(1).wait_output(OUTPUT_LOCK, True, within=3.0)
                remote = await wait_event(controller, "access.remote_unlock", after=since)
                assert remote.event.data["actor"] == "manager" and remote.event.data["origin"] == "api"
                async with http.get(f"{url}/api/doors", headers=installer) as r:
                    assert {d["id"]: d for d in (await r.json())["doors"]}["gate"]["state"]["lock"] == "UNLOCKED"
