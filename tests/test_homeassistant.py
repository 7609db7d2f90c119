"""Home Assistant MQTT discovery: payloads held to HA's platform schemas, and the live behaviour."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import aiomqtt
import pytest
import yaml

from edge.events import EventFactory
from edge.homeassistant import (
    CONTROLLER_EVENT_TYPES,
    Discovery,
    Entity,
    controller_entities,
    forwards_to_ha,
    ha_event_payload,
)
from edge.topics import Topics
from tests.mosquitto import Mosquitto
from tests.mqtt_helpers import BASE, CONTROLLER, SITE, Collector, TopicTree, retained, running_uplink, site_config

TOPICS = Topics(SITE, CONTROLLER)
DISCOVERY = Discovery("homeassistant", TOPICS, "1.2.3", "Gate 1")
TREE = TopicTree()


def messages() -> list[tuple[str, dict]]:
    return DISCOVERY.messages(controller_entities(TOPICS))


def check(topic: str, payload: dict) -> str:
    return TREE.check(topic, json.dumps(payload).encode())


# ---- payloads ----------------------------------------------------------------------------------


def test_default_entities_validate_against_ha_schemas() -> None:
    msgs = dict(messages())
    assert set(msgs) == {
        "homeassistant/binary_sensor/linli_s1_gate-1/status/config",
        "homeassistant/sensor/linli_s1_gate-1/outbox_depth/config",
        "homeassistant/event/linli_s1_gate-1/events/config",
    }
    kinds = {check(topic, payload) for topic, payload in msgs.items()}
    assert kinds == {"ha_discovery_binary_sensor", "ha_discovery_sensor", "ha_discovery_event"}

    status = msgs["homeassistant/binary_sensor/linli_s1_gate-1/status/config"]
    assert status["device_class"] == "connectivity"
    assert (status["state_topic"], status["payload_on"], status["payload_off"]) == (TOPICS.status, "online", "offline")
    backlog = msgs["homeassistant/sensor/linli_s1_gate-1/outbox_depth/config"]
    assert backlog["state_topic"] == TOPICS.controller_state
    assert backlog["state_class"] == "measurement" and backlog["unit_of_measurement"] == "events"
    assert "outbox_depth" in backlog["value_template"]
    events = msgs["homeassistant/event/linli_s1_gate-1/events/config"]
    assert events["state_topic"] == TOPICS.ha_event and events["event_types"] == list(CONTROLLER_EVENT_TYPES)

    unique_ids = [p["unique_id"] for p in msgs.values()]
    assert len(set(unique_ids)) == 3
    for payload in msgs.values():
        assert payload["device"]["identifiers"] == ["linli_s1_gate-1"]
        assert payload["device"]["manufacturer"] == "Linli" and payload["device"]["sw_version"] == "1.2.3"
        assert payload["origin"] == {"name": "Linli", "sw_version": "1.2.3"}
        assert payload["availability"] == [
            {"topic": TOPICS.status, "payload_available": "online", "payload_not_available": "offline"}
        ]


REQUIRED = {
    "binary_sensor": ["name", "unique_id", "device", "origin", "availability", "state_topic"],
    "sensor": ["name", "unique_id", "device", "origin", "availability", "state_topic"],
    "event": ["name", "unique_id", "device", "origin", "availability", "state_topic", "event_types"],
}


@pytest.mark.parametrize("component", sorted(REQUIRED))
def test_schema_catches_missing_and_unknown_keys(component: str) -> None:
    topic, payload = next((t, p) for t, p in messages() if f"/{component}/" in t)
    check(topic, payload)
    for key in REQUIRED[component]:
        broken = copy.deepcopy(payload)
        del broken[key]
        with pytest.raises(AssertionError):
            check(topic, broken)
    for extra in ("state_topik", "payload_on" if component != "binary_sensor" else "command_topic", "platform"):
        broken = copy.deepcopy(payload)
        broken[extra] = "x"
        with pytest.raises(AssertionError):
            check(topic, broken)
    for key in ("manufacturer", "identifiers"):
        broken = copy.deepcopy(payload)
        del broken["device"][key]
        with pytest.raises(AssertionError):
            check(topic, broken)
    broken = copy.deepcopy(payload)
    broken["device"]["firmware"] = "1"
    with pytest.raises(AssertionError):
        check(topic, broken)
    broken = copy.deepcopy(payload)
    broken["availability"][0]["payload"] = "online"
    with pytest.raises(AssertionError):
        check(topic, broken)


def test_schema_checks_values() -> None:
    msgs = dict(messages())
    event_topic = "homeassistant/event/linli_s1_gate-1/events/config"
    for bad in ([], ["x", "x"]):
        payload = copy.deepcopy(msgs[event_topic])
        payload["event_types"] = bad
        with pytest.raises(AssertionError):
            check(event_topic, payload)
    status_topic = "homeassistant/binary_sensor/linli_s1_gate-1/status/config"
    payload = copy.deepcopy(msgs[status_topic])
    payload["device_class"] = "connected"
    with pytest.raises(AssertionError):
        check(status_topic, payload)


def test_features_add_entities_through_the_same_function() -> None:
    door = Entity(
        "binary_sensor", "door_main", "Main door",
        {"state_topic": TOPICS.state("door-main"), "value_template": "{{ value_json.open }}",
         "payload_on": "True", "payload_off": "False", "device_class": "door"},
    )
    [(topic, payload)] = DISCOVERY.messages([door])
    assert topic == "homeassistant/binary_sensor/linli_s1_gate-1/door_main/config"
    assert check(topic, payload) == "ha_discovery_binary_sensor"
    assert payload["unique_id"] == "linli_s1_gate-1_door_main" and payload["device"] == DISCOVERY.device()


def test_ha_event_payload() -> None:
    factory = EventFactory(SITE, CONTROLLER)
    event = factory("config.applied", "controller", {"origin": "mqtt"})
    assert forwards_to_ha(event)
    payload = ha_event_payload(event)
    assert payload == {"event_type": "config.applied", "event_id": event.id, "severity": "info"}
    assert check(TOPICS.ha_event, payload) == "ha_event"
    assert not forwards_to_ha(factory("access.granted", "reader-1"))
    assert not forwards_to_ha(factory("system.unlisted_thing", "controller"))


# ---- live --------------------------------------------------------------------------------------


async def test_discovery_on_connect_and_on_ha_birth(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = site_config(tmp_path, mosquitto.url)
    async with (
        Collector(mosquitto.port, ["homeassistant/#", f"{BASE}/#"]) as seen,
        running_uplink(config) as (controller, uplink),
    ):
        def configs() -> list:
            return seen.matching(r"^homeassistant/.*/config$")

        await seen.wait_for(lambda _: len(configs()) == 3, what="discovery on connect")
        for topic in {m.topic for m in configs()}:
            kept = await retained(mosquitto.port, topic)
            assert kept is not None and kept.retain, f"{topic} is not retained"

        # A controller event reaches HA's event entity; a device's event does not.
        applied = await controller.bus.emit("config.applied", "controller", {"origin": "test"})
        await controller.bus.emit("access.granted", "reader-1", {})
        await seen.wait_for(lambda _: any(m.json()["event_id"] == applied.id for m in seen.on(TOPICS.ha_event)))
        await asyncio.sleep(0.2)
        assert {m.json()["event_type"] for m in seen.on(TOPICS.ha_event)} <= set(CONTROLLER_EVENT_TYPES)

        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as ha:
            await ha.publish("homeassistant/status", "offline", qos=1)
            await asyncio.sleep(0.3)
            assert len(configs()) == 3  # only `online` triggers a replay
            await ha.publish("homeassistant/status", "online", qos=1)
            await seen.wait_for(lambda _: len(configs()) == 6, what="discovery again after HA's birth")

        for message in seen.messages:
            TREE.check(message.topic, message.payload)
        assert uplink.state == "connected"


async def test_discovery_disabled_and_moved(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = site_config(tmp_path, mosquitto.url, homeassistant={"discovery_prefix": "ha1"})
    async with (
        Collector(mosquitto.port, ["ha1/#", "ha2/#"]) as seen,
        running_uplink(config) as (controller, uplink),
    ):
        await seen.wait_for(lambda m: len(m) == 3, what="discovery under ha1")
        data = config.model_dump(mode="json")
        data["homeassistant"] = {"discovery_prefix": "ha2"}
        await controller.reload_config(yaml.safe_dump(data))
        # The old entities are removed (empty retained config), the new ones announced.
        await seen.wait_for(lambda m: len(m) == 9, what="removal under ha1 and discovery under ha2")
        removed = [m for m in seen.messages if m.topic.startswith("ha1/") and m.payload == b""]
        assert len(removed) == 3
        assert len([m for m in seen.messages if m.topic.startswith("ha2/")]) == 3
        assert await retained(mosquitto.port, "ha1/sensor/linli_s1_gate-1/outbox_depth/config", 0.5) is None

        data["homeassistant"] = {"enabled": False, "discovery_prefix": "ha2"}
        await controller.reload_config(yaml.safe_dump(data))
        await seen.wait_for(lambda m: len(m) == 12, what="removal under ha2")
        await asyncio.sleep(0.3)
        assert len(seen.messages) == 12
        assert uplink.state == "connected"
        for message in seen.messages:
            TREE.check(message.topic, message.payload)
