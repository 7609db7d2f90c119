"""The MQTT uplink against a real Mosquitto (and amqtt for the MQTT 3.1.1 fallback)."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import time
from pathlib import Path

import aiomqtt
import pytest

from edge.alarm import alarm_entities
from edge.commands import sign_command
from edge.events import Event
from edge.homeassistant import Entity, door_entities, door_event_payload
from edge.uplink import backoff_delay, parse_broker
from rules.alarm import AlarmSection
from tests.mosquitto import Mosquitto, free_port
from tests.mqtt_helpers import (
    BASE,
    Collector,
    SilentBroker,
    TcpProxy,
    TopicTree,
    amqtt_broker,
    make_pki,
    retained,
    running_uplink,
    site_config,
    wait_until,
)


def events_from(collector: Collector, source: str) -> list[dict]:
    out = []
    for m in collector.matching(rf"^{BASE}/events/"):
        body = m.json()
        if body["source"] == source:
            out.append(body)
    return out


# ---- pure helpers ----------------------------------------------------------------------------


def test_backoff_is_jittered_exponential_and_capped() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        delays = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(200)]
        ceiling = min(30.0, 0.5 * 2 ** (attempt + 1))
        assert all(0.5 <= d <= ceiling for d in delays)
        # Full jitter: spread over the range, not clustered at the ceiling.
        assert max(delays) - min(delays) > 0.5 * (ceiling - 0.5)
    assert backoff_delay(1000, 0.5, 30.0, rng) <= 30.0


def test_parse_broker() -> None:
    assert parse_broker("mqtt://broker.example:1884") == ("broker.example", 1884, False)
    assert parse_broker("mqtts://broker.example") == ("broker.example", 8883, True)
    assert parse_broker("mqtt://10.0.0.2") == ("10.0.0.2", 1883, False)
    with pytest.raises(ValueError):
        parse_broker("http://x")


# ---- delivery --------------------------------------------------------------------------------


async def test_events_published_in_journal_order_and_acked(mosquitto: Mosquitto, tmp_path: Path) -> None:
    tree = TopicTree()
    config = site_config(tmp_path, mosquitto.url)
    async with (
        Collector(mosquitto.port, [f"{BASE}/#"]) as seen,
        running_uplink(config) as (controller, uplink),
    ):
        produced: list[Event] = []
        for i in range(300):
            kind = ("access.granted", "door.forced_open", "zone.alarm")[i % 3]
            produced.append(await controller.bus.emit(kind, f"reader-{i % 2}", {"n": i}))
        await seen.wait_for(lambda _: len(events_from(seen, "reader-0")) + len(events_from(seen, "reader-1")) == 300)
        assert uplink.state == "connected" and uplink.protocol == "5"

        got = [m for m in seen.matching(rf"^{BASE}/events/") if m.json()["source"].startswith("reader-")]
        assert [m.json()["id"] for m in got] == [e.id for e in produced]  # journal order, no gaps
        for message, event in zip(got, produced, strict=True):
            assert message.topic == f"{BASE}/events/{event.type}"
            assert message.payload.decode() == event.to_json()  # the journal body, byte for byte
            assert message.qos == 1 and not message.retain
        # Acked only after PUBACK, then flushed by the journal: the outbox drains to empty.
        await wait_until(lambda: controller.journal.stats.outbox_depth == 0, 5, "outbox to drain")
        assert uplink.published >= 300
        assert seen.on(f"{BASE}/status")[0].payload == b"online"
        for message in seen.messages:
            tree.check(message.topic, message.payload)


async def test_outbox_entry_stays_until_puback(tmp_path: Path) -> None:
    """A broker that takes the publishes but never PUBACKs them: nothing leaves the outbox."""
    async with SilentBroker() as broker:
        config = site_config(tmp_path, f"mqtt://127.0.0.1:{broker.port}", uplink={"protocol": "3.1.1"})
        async with running_uplink(config) as (controller, uplink):
            for i in range(20):
                await controller.bus.emit("access.granted", "reader-1", {"n": i})
            await wait_until(lambda: len([t for t, _ in broker.unacked_events if "access.granted" in t]) == 20)
            await asyncio.sleep(0.5)  # past the journal's 200 ms ack flush
            assert uplink.state == "connected"
            assert uplink.published == 0
            depth = controller.journal.stats.outbox_depth
            assert depth >= 20
            remaining = await controller.journal.outbox_batch(0, 1000)
            assert len(remaining) == depth


async def test_stalled_connection_is_replaced_and_resends_from_oldest(tmp_path: Path) -> None:
    async with SilentBroker() as broker:
        config = site_config(tmp_path, f"mqtt://127.0.0.1:{broker.port}", uplink={"protocol": "3.1.1"})
        async with running_uplink(config) as (controller, uplink):
            uplink.stall_check_s, uplink.stall_timeout_s = 0.1, 0.5
            ids = [(await controller.bus.emit("access.granted", "reader-1", {"n": i})).id for i in range(5)]

            def sent() -> list[str]:
                return [json.loads(body)["id"] for topic, body in broker.unacked_events if "access.granted" in topic]

            await wait_until(lambda: len(sent()) >= 10, 10, "the same events on a second connection")
            assert uplink.reconnects >= 1 and "no PUBACK" in (uplink.last_error or "")
            assert sent()[:5] == ids and sent()[5:10] == ids  # again from the oldest unacked
            assert controller.journal.stats.outbox_depth >= 5


async def test_event_refused_by_broker_acl_stays_in_outbox_and_blocks_nothing(tmp_path: Path) -> None:
    """MQTT 5 PUBACK with an error code: not delivered, so not acked; skipped so that it does
    not block the events behind it (Mosquitto 2.0 also drops the connection after a refusal)."""
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite linli/#\ntopic readwrite homeassistant/#\ntopic deny {BASE}/events/zone.alarm\n")
    broker = Mosquitto(tmp_path / "acl-broker", extra_conf=f"acl_file {acl}\n")
    broker.start()
    try:
        config = site_config(tmp_path, broker.url)
        async with (
            Collector(broker.port, [f"{BASE}/events/#"]) as seen,
            running_uplink(config) as (controller, uplink),
        ):
            await wait_until(lambda: uplink.state == "connected")
            denied = await controller.bus.emit("zone.alarm", "zone-1", {})
            allowed = [await controller.bus.emit("access.granted", "reader-1", {"n": i}) for i in range(3)]
            await seen.wait_for(lambda _: len(events_from(seen, "reader-1")) == 3, 15, "the allowed events")
            assert [e["id"] for e in events_from(seen, "reader-1")] == [e.id for e in allowed]
            assert uplink.refused == 1
            await wait_until(lambda: controller.journal.stats.outbox_depth == 1, 5, "only the refused entry left")
            [left] = await controller.journal.outbox_batch(0, 100)
            assert left.id == denied.id
            reports = await controller.journal.query(types=["uplink.publish_refused"])
            assert [r.event.data["id"] for r in reports] == [denied.id]
            assert not events_from(seen, "zone-1")
    finally:
        broker.stop()


async def test_outbox_kept_while_broker_down_then_delivered(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "late-broker")
    config = site_config(tmp_path, broker.url)
    async with running_uplink(config) as (controller, uplink):
        for i in range(50):
            await controller.bus.emit("access.granted", "reader-1", {"n": i})
        await asyncio.sleep(1.0)
        assert uplink.state in ("backoff", "connecting")
        assert uplink.last_error
        assert controller.journal.stats.outbox_depth >= 50
        await asyncio.to_thread(broker.start)
        try:
            async with Collector(broker.port, [f"{BASE}/events/#"]) as seen:
                await wait_until(lambda: uplink.state == "connected", 10, "reconnect")
                # Everything still in the outbox is published on connect; a subscriber that
                # arrives late misses some, so check the outbox rather than the subscriber here.
                await wait_until(lambda: controller.journal.stats.outbox_depth == 0, 10, "outbox to drain")
                assert uplink.published >= 50
                more = [(await controller.bus.emit("access.granted", "reader-1", {"n": i})).id for i in range(5)]
                await seen.wait_for(lambda _: {e["id"] for e in events_from(seen, "reader-1")} >= set(more))
        finally:
            broker.stop()


async def test_broker_outage_loses_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """200 events/s; the broker is down for 30 s; every event arrives, in order per source."""
    config = site_config(tmp_path, mosquitto.url, uplink={"backoff": {"initial_s": 0.2, "max_s": 1.0}})
    produced: dict[str, list[str]] = {"reader-1": [], "reader-2": []}

    async def produce(controller, seconds: float) -> None:
        # 10 events every 50 ms, alternating sources; not waiting for each commit.
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            tick = time.monotonic()
            for i in range(10):
                source = f"reader-{1 + i % 2}"
                event = controller.factory("access.granted", source, {"i": i})
                await controller.bus.submit(event)
                produced[source].append(event.id)
            await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - tick)))

    async with (
        Collector(mosquitto.port, [f"{BASE}/events/#"], client_id="outage-sub", persistent=True) as seen,
        running_uplink(config) as (controller, uplink),
    ):
        await wait_until(lambda: uplink.state == "connected")
        await produce(controller, 3)
        await asyncio.to_thread(mosquitto.stop)
        outage = asyncio.create_task(produce(controller, 30))
        await wait_until(lambda: uplink.state != "connected", 5, "uplink to notice the outage")
        await asyncio.sleep(5)
        assert controller.journal.stats.outbox_depth > 500  # piling up, not dropped
        await outage
        await asyncio.to_thread(mosquitto.start)
        await produce(controller, 2)
        total = sum(len(v) for v in produced.values())
        assert total > 6000

        def delivered() -> int:
            return len({e["id"] for src in produced for e in events_from(seen, src)})

        await wait_until(lambda: delivered() == total, 40, "every event at the subscriber")
        assert uplink.reconnects >= 1
        for source, ids in produced.items():
            first_seen: list[str] = []
            unique: set[str] = set()
            for body in events_from(seen, source):
                if body["id"] not in unique:
                    unique.add(body["id"])
                    first_seen.append(body["id"])
            assert first_seen == ids, f"{source}: order or completeness broken"
        await wait_until(lambda: controller.journal.stats.outbox_depth == 0, 10, "outbox to drain")


# ---- availability ------------------------------------------------------------------------------


async def test_last_will_on_unclean_drop_and_online_on_reconnect(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with TcpProxy(mosquitto.port) as proxy:
        config = site_config(tmp_path, f"mqtt://127.0.0.1:{proxy.port}")
        async with (
            Collector(mosquitto.port, [f"{BASE}/status"]) as seen,
            running_uplink(config) as (_, uplink),
        ):
            await seen.wait_for(lambda m: [x.payload for x in m] == [b"online"], what="online")
            await proxy.pause()
            proxy.cut()  # the connection vanishes: no DISCONNECT reaches the broker
            await seen.wait_for(lambda m: m[-1].payload == b"offline", what="the last will")
            status = await retained(mosquitto.port, f"{BASE}/status")
            assert status is not None and status.retain and status.payload == b"offline"
            assert uplink.state != "connected"

            await proxy.resume()
            await seen.wait_for(lambda m: m[-1].payload == b"online", what="online again")
            assert uplink.reconnects == 1
            status = await retained(mosquitto.port, f"{BASE}/status")
            assert status is not None and status.payload == b"online"


async def test_clean_shutdown_says_offline(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = site_config(tmp_path, mosquitto.url)
    async with running_uplink(config) as (_, uplink):
        await wait_until(lambda: uplink.state == "connected")
    # running_uplink cancelled the task: a clean DISCONNECT drops the will, so the uplink must
    # have published `offline` itself.
    status = await retained(mosquitto.port, f"{BASE}/status")
    assert status is not None and status.payload == b"offline"


# ---- protocol fallback -------------------------------------------------------------------------


async def test_falls_back_to_mqtt_311_when_v5_is_refused(tmp_path: Path) -> None:
    async with amqtt_broker() as port:
        config = site_config(tmp_path, f"mqtt://127.0.0.1:{port}")
        async with (
            Collector(port, [f"{BASE}/events/#"]) as seen,
            running_uplink(config) as (controller, uplink),
        ):
            await wait_until(lambda: uplink.state == "connected", 10, "connect over 3.1.1")
            assert uplink.protocol == "3.1.1"
            event = await controller.bus.emit("access.granted", "reader-1", {})
            await seen.wait_for(lambda _: any(e["id"] == event.id for e in events_from(seen, "reader-1")))


async def test_forced_mqtt5_does_not_fall_back(tmp_path: Path) -> None:
    async with SilentBroker(refuse_v5=True) as broker:
        config = site_config(tmp_path, f"mqtt://127.0.0.1:{broker.port}", uplink={"protocol": "5"})
        async with running_uplink(config) as (_, uplink):
            await wait_until(lambda: len(broker.connects) >= 3, 10, "several attempts")
            assert set(broker.connects) == {5}
            assert uplink.state != "connected" and uplink.protocol is None
            assert "protocol" in (uplink.last_error or "").lower()


async def test_auto_falls_back_on_a_protocol_refusal_and_remembers(tmp_path: Path) -> None:
    async with SilentBroker(refuse_v5=True) as broker:
        config = site_config(tmp_path, f"mqtt://127.0.0.1:{broker.port}")
        async with running_uplink(config) as (_, uplink):
            await wait_until(lambda: uplink.state == "connected", 10, "a 3.1.1 connection")
            assert broker.connects == [5, 4]
            uplink._restart.set()  # reconnect (as after a settings change)
            await wait_until(lambda: len(broker.connects) == 3 and uplink.state == "connected", 10)
            assert broker.connects[2] == 4  # straight to 3.1.1


# ---- TLS and credentials -----------------------------------------------------------------------


def _password_file(folder: Path, user: str, password: str) -> Path:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    path = folder / "passwd"
    subprocess.run([tool, "-b", "-c", str(path), user, password], check=True, capture_output=True)
    return path


@pytest.fixture
def tls_broker(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    passwd = _password_file(tmp_path, "gate", "s3cret")
    tls_port = free_port()
    broker = Mosquitto(
        tmp_path / "tls-broker",
        extra_conf=(
            f"password_file {passwd}\n"
            f"listener {tls_port} 127.0.0.1\n"
            f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
            "require_certificate true\n"
        ),
    )
    broker.start()
    yield broker, tls_port, pki
    broker.stop()


def _tls_uplink(tmp_path: Path, tls_port: int, pki, password: str = "s3cret", ca: Path | None = None) -> dict:
    secret = tmp_path / "mqtt-password"
    secret.write_text(password + "\n")
    return {
        "username": "gate",
        "password_file": str(secret),
        "tls": {"ca_file": str(ca or pki.ca), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)},
    }


async def test_tls_with_client_certificate_and_password(tls_broker, tmp_path: Path) -> None:
    broker, tls_port, pki = tls_broker
    config = site_config(tmp_path, f"mqtts://127.0.0.1:{tls_port}", uplink=_tls_uplink(tmp_path, tls_port, pki))
    async with (
        Collector(broker.port, [f"{BASE}/events/#"]) as seen,
        running_uplink(config) as (controller, uplink),
    ):
        await wait_until(lambda: uplink.state == "connected", 10, "a TLS connection")
        assert uplink.protocol == "5" and uplink.last_error is None
        event = await controller.bus.emit("access.granted", "reader-1", {})
        await seen.wait_for(lambda _: any(e["id"] == event.id for e in events_from(seen, "reader-1")))
        assert [e["id"] for e in events_from(seen, "reader-1")] == [event.id]


async def test_tls_wrong_password_is_refused(tls_broker, tmp_path: Path) -> None:
    _, tls_port, pki = tls_broker
    uplink_cfg = _tls_uplink(tmp_path, tls_port, pki, password="wrong")
    config = site_config(tmp_path, f"mqtts://127.0.0.1:{tls_port}", uplink=uplink_cfg)
    async with running_uplink(config) as (controller, uplink):
        await controller.bus.emit("access.granted", "reader-1", {})
        await wait_until(lambda: uplink.last_error is not None, 10, "a refusal")
        await asyncio.sleep(0.3)
        assert uplink.state != "connected"
        assert "authori" in uplink.last_error.lower() or "password" in uplink.last_error.lower()
        assert controller.journal.stats.outbox_depth >= 1


async def test_tls_wrong_ca_does_not_connect(tls_broker, tmp_path: Path) -> None:
    _, tls_port, pki = tls_broker
    other = make_pki(tmp_path / "other-pki", "other")
    uplink_cfg = _tls_uplink(tmp_path, tls_port, pki, ca=other.ca)
    config = site_config(tmp_path, f"mqtts://127.0.0.1:{tls_port}", uplink=uplink_cfg)
    async with running_uplink(config) as (_, uplink):
        await wait_until(lambda: uplink.last_error is not None, 10, "a TLS failure")
        await asyncio.sleep(0.5)
        assert uplink.state in ("backoff", "connecting")
        assert uplink.published == 0
        assert "certificate" in uplink.last_error.lower()


async def test_tls_without_client_certificate_is_refused(tls_broker, tmp_path: Path) -> None:
    _, tls_port, pki = tls_broker
    uplink_cfg = _tls_uplink(tmp_path, tls_port, pki)
    uplink_cfg["tls"] = {"ca_file": str(pki.ca)}
    config = site_config(tmp_path, f"mqtts://127.0.0.1:{tls_port}", uplink=uplink_cfg)
    async with running_uplink(config) as (_, uplink):
        await wait_until(lambda: uplink.last_error is not None, 10, "a refusal")
        await asyncio.sleep(0.3)
        assert uplink.state != "connected"


# ---- retained state ------------------------------------------------------------------------------


async def test_device_state_latest_only_while_offline(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with TcpProxy(mosquitto.port) as proxy:
        await proxy.pause()  # the uplink cannot reach the broker yet
        config = site_config(tmp_path, f"mqtt://127.0.0.1:{proxy.port}")
        async with (
            Collector(mosquitto.port, [f"{BASE}/state/#"]) as seen,
            running_uplink(config) as (_, uplink),
        ):
            await uplink.publish_state("door-1", {"open": True, "n": 1})
            await uplink.publish_state("door-1", {"open": False, "n": 2})
            await uplink.publish_state("siren-1", {"on": False})
            with pytest.raises(ValueError):
                await uplink.publish_state("controller", {})
            with pytest.raises(ValueError):
                await uplink.publish_state("a/#", {})
            await asyncio.sleep(0.3)
            assert uplink.state != "connected"
            await proxy.resume()
            await seen.wait_for(lambda m: len({x.topic for x in m}) >= 3, what="three state topics")
            await asyncio.sleep(0.3)
            doors = seen.on(f"{BASE}/state/door-1")
            assert [d.json() for d in doors] == [{"open": False, "n": 2}]  # only the latest
            assert [s.json() for s in seen.on(f"{BASE}/state/siren-1")] == [{"on": False}]
            ctl = seen.on(f"{BASE}/state/controller")[-1].json()
            assert ctl["uplink"] == "connected" and ctl["version"] and ctl["outbox_depth"] >= 0
            # Live updates while connected go out at once and stay retained.
            await uplink.publish_state("door-1", {"open": True, "n": 3})
            await seen.wait_for(lambda _: seen.on(f"{BASE}/state/door-1")[-1].json()["n"] == 3)
        latest = await retained(mosquitto.port, f"{BASE}/state/door-1")
        assert latest is not None and latest.retain and latest.json()["n"] == 3


async def test_controller_state_republished_when_it_changes(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = site_config(tmp_path, mosquitto.url)
    async with (
        Collector(mosquitto.port, [f"{BASE}/state/controller"]) as seen,
        running_uplink(config) as (controller, uplink),
    ):
        uplink.state_interval_s = 0.1
        await seen.wait_for(lambda m: len(m) >= 1)
        for i in range(30):
            await controller.bus.emit("access.granted", "reader-1", {"n": i})
        await seen.wait_for(
            lambda m: m[-1].json()["published"] >= 30 and m[-1].json()["outbox_depth"] == 0,
            what="a newer controller state",
        )
        count = len(seen.messages)
        assert count >= 2
        await asyncio.sleep(0.6)  # nothing changes but the uptime: no new messages
        assert len(seen.messages) == count


# ---- the documented topic tree ------------------------------------------------------------------


async def test_every_message_matches_the_topic_schema(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Drive every kind of traffic and hold each message a subscriber sees to edge/schema/mqtt.json."""
    key = tmp_path / "hmac.key"
    key.write_bytes(b"k" * 32)
    config = site_config(tmp_path, mosquitto.url, uplink={"commands": {"hmac_key_file": str(key)}})
    tree = TopicTree()
    async with (
        Collector(mosquitto.port, ["linli/#", "homeassistant/#"]) as seen,
        running_uplink(config) as (controller, uplink),
    ):
        # A feature's door: its HA entities, its HA command, its decisions routed to its event entity.
        door_topics = door_entities(uplink.topics, "main", "Main", unlockable=True, has_dps=True, tamper_readers=["r1"])
        uplink.ha_entities.extend(door_topics)
        uplink.ha_entities.extend(
            alarm_entities(
                uplink.topics,
                AlarmSection.model_validate(
                    {
                        "partitions": [{"id": "fence"}],
                        "zones": [{"id": "beam", "partition": "fence", "source": {"device": "io-1", "point": "di0"}}],
                        "sirens": [{"id": "yard", "output": {"device": "io-1", "point": "do0"}}],
                    }
                ),
            )
        )
        ha_commands: list[bytes] = []

        async def on_ha_command(payload: bytes) -> None:
            ha_commands.append(payload)

        uplink.ha_commands[uplink.topics.ha_command("door.main")] = on_ha_command
        uplink.ha_event_routes.append(
            lambda e: (uplink.topics.ha_entity_event("door.main"), door_event_payload(e))
            if e.type == "access.granted" else None
        )
        uplink.ha_entities.append(
            Entity("image", "vision_yard_snapshot", "Yard snapshot",
                   {"image_topic": f"{uplink.topics.base}/image/yard", "image_encoding": "b64",
                    "content_type": "image/jpeg"})
        )
        uplink.ha_entities.append(
            Entity("button", "intercom_gate_unlock", "Gate panel unlock",
                   {"command_topic": uplink.topics.ha_command("intercom.gate"), "payload_press": "PRESS"})
        )
        uplink.set_state("parking.north", {"lot": "north", "free": 1, "occupied": 0, "unknown": 0, "total": 1,
                                           "spaces": {"n1": False}})
        uplink.publish_image("yard", b"\xff\xd8\xff\xe0 a JPEG")
        uplink.request_discovery()
        await wait_until(lambda: uplink.state == "connected")
        await controller.bus.emit("door.forced_open", "door-main", {"door": "main"}, "alarm")
        await controller.bus.emit("config.applied", "controller", {"origin": "test"})
        await controller.bus.emit("access.granted", "r1", {"door": "main", "reason": "granted", "holder": "h1"})
        await uplink.publish_state("door-main", {"open": True, "locked": False})
        uplink.set_state("door.main", {"lock": "LOCKED", "open": False, "forced_open": False, "held_open": "none",
                                       "free_passage": False, "lockdown": False, "faults": []})
        entities = len(uplink.ha_entities)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
            for cid, args in (("ok-1", {}), ("bad-1", {"unexpected": 1})):
                topic = f"{BASE}/cmd/ping"
                await platform.publish(topic, sign_command(topic, command_id=cid, args=args, key=b"k" * 32), qos=1)
            await platform.publish("homeassistant/status", "online", qos=1)
            await platform.publish(uplink.topics.ha_command("door.main"), "UNLOCK", qos=1)
        await seen.wait_for(lambda _: len(seen.matching("/cmd_result/")) == 2, what="command results")
        await seen.wait_for(
            lambda _: len(seen.matching("^homeassistant/.*/config$")) >= 2 * entities, what="rediscovery"
        )
        await seen.wait_for(lambda _: len(seen.on(f"{BASE}/ha/event")) >= 2, what="HA events")
        await seen.wait_for(lambda _: bool(seen.on(f"{BASE}/ha/event/door.main")), what="the door's HA event")
        await wait_until(lambda: ha_commands == [b"UNLOCK"], what="the HA command handled")

    kinds = {tree.check(m.topic, m.payload) for m in seen.messages}
    assert kinds == {entry["name"] for entry in tree.doc["topics"]}  # every entry exercised
    results = {m.json()["id"]: m.json() for m in seen.matching("/cmd_result/")}
    assert results["ok-1"]["ok"] is True and results["bad-1"]["error"]["reason"] == "bad_args"
