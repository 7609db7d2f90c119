"""Visitor passes in the daemon, over real parts: a Controller with its API and SQLite journal,
simulated OSDP readers (libosdp at both ends of a pty), and a real Mosquitto for platform commands.

Doors: ``side`` (card_or_pin in the access data, so a PIN alone is a credential; strike on reader
side-r) and ``gate`` (card only; strike on gate-r). Users: alice (resident of 3-201, whose holder
reaches side and gate), frank (resident of 2-202), a manager and an installer. The access data is
tests/access_helpers.py's compound.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

from drivers.osdp.simulator import OUTPUT_LOCK, SimBus, SimReader
from edge.commands import sign_command
from edge.daemon import Controller
from edge.topics import Topics
from tests.access_helpers import standard_snapshot
from tests.controller_helpers import base_url, bearer, hash_password, running_controller
from tests.mosquitto import Mosquitto
from tests.mqtt_helpers import Collector, TopicTree
from tests.test_access_service import journaled, mark, seed_store, wait_event, wait_ready

PLATFORM_KEY = b"platform-hmac-key-0123456789abcdef"
TOPICS = Topics("maple-court", "gate-1")
TREE = TopicTree()
STRIKE_S = 0.3
USERS = {  # name -> (role, password, apartment)
    "alice": ("resident", "alice-secret-1", "3-201"),
    "frank": ("resident", "frank-secret-2", "2-202"),
    "nobody": ("resident", "nobody-secret-3", None),
    "manager": ("manager", "manager-secret-4", None),
    "installer": ("installer", "installer-secret-5", None),
}


def site_text(port: str, uplink: str = "uplink: {enabled: false}") -> str:
    users = "\n".join(
        f'  - {{name: {name}, role: {role}, password_hash: "{hash_password(pw)}"'
        + (f", apartment: '{apt}'" if apt else "")
        + "}"
        for name, (role, pw, apt) in USERS.items()
    )
    return f"""\
site: {{id: maple-court, name: Maple Court}}
controller: {{id: gate-1}}
data_dir: data
{uplink}
zeroconf: {{enabled: false}}
api: {{host: 127.0.0.1, port: 0}}
users:
{users}
doors:
  - id: side
    lock_mode: fail_secure
    lock: {{reader: side-r, output: 0}}
    strike_s: {STRIKE_S}
  - id: gate
    lock_mode: fail_secure
    lock: {{reader: gate-r, output: 0}}
    strike_s: {STRIKE_S}
osdp:
  buses:
    - port: {port}
      baudrate: 115200
      readers:
        - {{id: side-r, address: 1, door: side, secure: false}}
        - {{id: gate-r, address: 2, door: gate, secure: false}}
"""


@asynccontextmanager
async def pass_site(tmp_path: Path, mosquitto: Mosquitto | None = None) -> AsyncIterator[tuple[Controller, SimBus]]:
    uplink = "uplink: {enabled: false}"
    if mosquitto is not None:
        key_file = tmp_path / "platform.key"
        key_file.write_bytes(PLATFORM_KEY)
        uplink = f"uplink: {{broker: '{mosquitto.url}', protocol: '5', commands: {{hmac_key_file: {key_file}}}}}"
    async with SimBus([SimReader(1), SimReader(2)]) as bus:
        if not (tmp_path / "data" / "pin.key").exists():
            await seed_store(tmp_path / "data")
        async with running_controller(tmp_path, site_text(bus.port, uplink)) as controller:
            await wait_ready(controller)
            if mosquitto is not None:
                for _ in range(200):
                    if controller.uplink is not None and controller.uplink.state == "connected":
                        break
                    await asyncio.sleep(0.025)
            yield controller, bus


async def login(http: aiohttp.ClientSession, controller: Controller, name: str) -> str:
    _, password, _ = USERS[name]
    async with http.post(f"{base_url(controller)}/api/login", json={"username": name, "password": password}) as r:
        body = await r.json()
        assert r.status == 200, body
        return str(body["token"])


async def call(http: aiohttp.ClientSession, method: str, controller: Controller, path: str, token: str,
               **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, base_url(controller) + path, headers=bearer(token), **kwargs) as r:
        return r.status, await r.json()


def soon(hours: float = 1.0) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


async def type_at(controller: Controller, reader: SimReader, keys: str, type: str, since: int) -> dict[str, Any]:
    """Type `keys` + '#' at the reader; the journaled decision of `type` that followed."""
    reader.press_keys(keys + "#")
    return dict((await wait_event(controller, type, lambda d: d["reader"] == "side-r", after=since)).event.data)


async def assert_no_secret_journaled(controller: Controller, *secrets: str) -> None:
    everything = await controller.journal.query(limit=100_000)
    assert everything
    for stored in everything:
        text = stored.event.to_json()
        for secret in secrets:
            assert secret not in text, f"{stored.event.type} carries a pass secret"


async def test_resident_issues_a_pin_pass_and_the_visitor_types_it_at_the_reader(tmp_path: Path) -> None:
    async with pass_site(tmp_path) as (controller, bus), aiohttp.ClientSession() as http:
        side = bus.reader(1)
        alice, frank = await login(http, controller, "alice"), await login(http, controller, "frank")
        manager, installer = await login(http, controller, "manager"), await login(http, controller, "installer")
        since = mark(controller)
        status, body = await call(http, "POST", controller, "/api/passes", alice,
                                  json={"visitor": "Uncle Wei", "doors": ["side"], "valid_until": soon(),
                                        "max_uses": 2})
        assert status == 201, body
        pin, issued = body["secret"], body["pass"]
        assert len(pin) == 6 and pin.isdigit()
        assert issued["apartment"] == "3-201" and issued["issued_by"] == "api:alice" and issued["uses"] == 0
        assert "secret_hash" not in issued and pin not in json.dumps(issued)
        event = await wait_event(controller, "visitor_pass.issued", after=since)
        assert event.event.data["pass"] == issued["id"] and event.event.data["apartment"] == "3-201"

        # Who sees it: alice and the manager; not frank (another apartment) nor the installer.
        assert [p["id"] for p in (await call(http, "GET", controller, "/api/passes", alice))[1]["passes"]] == [
            issued["id"]]
        assert (await call(http, "GET", controller, "/api/passes", frank))[1] == {"passes": []}
        assert len((await call(http, "GET", controller, "/api/passes", manager))[1]["passes"]) == 1
        assert (await call(http, "GET", controller, "/api/passes", installer))[0] == 403
        status, _ = await call(http, "DELETE", controller, f"/api/passes/{issued['id']}", frank)
        assert status == 404
        # Frank cannot issue for alice's apartment, nor for doors his levels do not reach.
        status, _ = await call(http, "POST", controller, "/api/passes", frank,
                               json={"visitor": "x", "doors": ["side"], "valid_until": soon(), "apartment": "3-201"})
        assert status == 403
        status, body = await call(http, "POST", controller, "/api/passes", alice,
                                  json={"visitor": "x", "doors": ["vault"], "valid_until": soon()})
        assert status == 422 and "vault" in body["error"]

        # The visitor types the PIN: journaled with the pass and its issuer, then the door opens.
        since = mark(controller)
        granted = await type_at(controller, side, pin, "access.granted", since)
        assert (granted["reason"], granted["pass"], granted["issued_by"], granted["apartment"]) == (
            "visitor_pass", issued["id"], "api:alice", "3-201")
        await side.wait_output(OUTPUT_LOCK, True, within=3.0)
        await side.wait_output(OUTPUT_LOCK, False, within=3.0)

        # A snapshot from the platform replaces the access data, not the residents' passes.
        assert controller.access is not None
        await controller.access.replace_snapshot(standard_snapshot(5), "test")
        assert controller.access.store.passes.by_id[issued["id"]].uses == 1

        since = mark(controller)
        await type_at(controller, side, pin, "access.granted", since)
        await side.wait_output(OUTPUT_LOCK, True, within=3.0)
        await side.wait_output(OUTPUT_LOCK, False, within=3.0)
        since = mark(controller)
        denied = await type_at(controller, side, pin, "access.denied", since)
        assert (denied["reason"], denied["pass"]) == ("used_up", issued["id"])
        await asyncio.sleep(STRIKE_S)
        assert side.outputs[OUTPUT_LOCK].on is False
        status, body = await call(http, "GET", controller, "/api/passes", alice)
        assert body["passes"][0]["uses"] == 2

        # Revoked by its resident: refused at once.
        status, body = await call(http, "POST", controller, "/api/passes", alice,
                                  json={"visitor": "Courier", "doors": ["side"], "valid_until": soon(), "pin": "8642"})
        assert status == 201 and body["secret"] == "8642"
        second = body["pass"]["id"]
        status, body = await call(http, "DELETE", controller, f"/api/passes/{second}", alice)
        assert status == 200 and body["revoked"] is True
        revoked = await wait_event(controller, "visitor_pass.revoked", after=since)
        assert revoked.event.data["revoked_by"] == "api:alice" and revoked.event.data["apartment"] == "3-201"
        since = mark(controller)
        denied = await type_at(controller, side, "8642", "access.denied", since)
        assert (denied["reason"], denied["pass"]) == ("revoked", second)
        await asyncio.sleep(STRIKE_S)
        assert side.outputs[OUTPUT_LOCK].on is False
        # A manager may revoke any apartment's pass; a resident without an apartment gets nothing.
        status, _ = await call(http, "DELETE", controller, f"/api/passes/{issued['id']}", manager)
        assert status == 200
        nobody = await login(http, controller, "nobody")
        assert (await call(http, "GET", controller, "/api/passes", nobody))[0] == 403

        await assert_no_secret_journaled(controller, pin, "8642")


async def test_passes_survive_a_restart_and_hostile_bodies_change_nothing(tmp_path: Path) -> None:
    async with pass_site(tmp_path) as (controller, _bus), aiohttp.ClientSession() as http:
        alice = await login(http, controller, "alice")
        for bad in (
            {"visitor": "x", "doors": ["side"], "valid_until": "2026-12-01T10:00:00"},  # naive
            {"visitor": "x", "doors": ["side"], "valid_until": soon(24 * 40)},  # > 30 days
            {"visitor": "x", "doors": ["side"], "valid_until": soon(-1)},  # past
            {"visitor": "x", "doors": ["side"], "valid_until": soon(), "pin": "12"},
            {"visitor": "x", "doors": ["side"], "valid_until": soon(), "pin": "4711"},  # alice's own PIN
            {"visitor": "x", "doors": ["side"] * 2, "valid_until": soon()},
            {"visitor": "\x1b[31m", "doors": ["side"], "valid_until": soon()},
            {"visitor": "x", "doors": ["side"], "valid_until": soon(), "max_uses": 10**9},
            {"visitor": "x", "doors": ["side"], "valid_until": soon(), "secret_hash": "hs256$" + "0" * 64},
            {"visitor": "x", "doors": ["side"], "valid_until": soon(), "kind": "qr", "pin": "123456"},
        ):
            status, body = await call(http, "POST", controller, "/api/passes", alice, json=bad)
            assert status in (400, 422), (bad, body)
            assert "4711" not in json.dumps(body)
        status, _ = await call(http, "POST", controller, "/api/passes", alice, data=b"\xff" * 100)
        assert status == 400
        assert (await call(http, "GET", controller, "/api/passes", alice))[1] == {"passes": []}
        status, body = await call(http, "POST", controller, "/api/passes", alice,
                                  json={"visitor": "Guest", "kind": "qr", "doors": ["side", "gate"],
                                        "valid_until": soon(), "max_uses": 3})
        assert status == 201
        token, pass_id = body["secret"], body["pass"]["id"]
    async with pass_site(tmp_path) as (controller, bus):
        assert controller.access is not None
        assert controller.access.store.passes.by_id[pass_id].kind == "qr"
        assert await controller.access.use_pass("gate", token, via="intercom:gate-panel") is True
        await bus.reader(2).wait_output(OUTPUT_LOCK, True, within=3.0)
        assert controller.access.store.passes.by_id[pass_id].uses == 1


async def test_brute_force_at_the_keypad_or_a_panel_is_locked_out_and_audited(tmp_path: Path) -> None:
    async with pass_site(tmp_path) as (controller, bus):
        side = bus.reader(1)
        service = controller.access
        assert service is not None
        from rules.access.passes import PassKind, PassOrder

        order = PassOrder(visitor="Guest", kind=PassKind.PIN, doors=("side", "gate"), max_uses=5,
                          valid_until=datetime.now(UTC) + timedelta(hours=1))
        _, pin = await service.passes.issue(order, apartment="3-201", issued_by="api:alice")
        policy = service.store.index.site.pin_lockout_reader  # type: ignore[union-attr]
        since = mark(controller)
        guesses = [f"{n:06d}" for n in range(policy.max_failures + 1) if f"{n:06d}" != pin][: policy.max_failures]
        for n, guess in enumerate(guesses):
            side.press_keys(guess + "#")
            await wait_event(controller, "access.denied", after=since, within=5.0)
            since_denied = await journaled(controller, "access.denied", since)
            while len(since_denied) <= n:
                await asyncio.sleep(0.02)
                since_denied = await journaled(controller, "access.denied", since)
        lockout = await wait_event(controller, "access.lockout", after=since)
        assert lockout.event.data["reader"] == "side-r"
        after_lockout = mark(controller)
        denied = await type_at(controller, side, pin, "access.denied", after_lockout)
        assert denied["reason"] == "locked_out"
        await asyncio.sleep(STRIKE_S)
        assert side.outputs[OUTPUT_LOCK].on is False

        # A panel guessing QR tokens or codes: the same, per panel; other panels are unaffected.
        since = mark(controller)
        for n in range(policy.max_failures):
            assert await service.use_pass("gate", f"guess-{n:04d}-xxxxxxxxxxxxxxxxxxx", via="intercom:p1") is False
        assert (await wait_event(controller, "access.lockout", after=since)).event.data["reader"] == "intercom:p1"
        assert await service.use_pass("gate", pin, via="intercom:p1") is False
        assert (await journaled(controller, "access.denied", since))[-1].event.data["reason"] == "locked_out"
        assert await service.use_pass("gate", pin, via="intercom:p2") is True
        await bus.reader(2).wait_output(OUTPUT_LOCK, True, within=3.0)
        assert service.store.passes.lookup(service.store.pass_hasher.pin(pin)).uses == 1  # type: ignore[union-attr]
        await assert_no_secret_journaled(controller, pin)


async def test_platform_issues_and_revokes_a_qr_pass_with_signed_commands(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with (
        Collector(mosquitto.port, [f"{TOPICS.base}/cmd_result/#"]) as results,
        pass_site(tmp_path, mosquitto) as (controller, bus),
    ):
        service = controller.access
        assert service is not None
        issue_topic, revoke_topic = f"{TOPICS.base}/cmd/pass/issue", f"{TOPICS.base}/cmd/pass/revoke"
        args = {"holder": "alice", "visitor": "Plumber", "kind": "qr", "doors": ["gate"], "valid_until": soon()}
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
            await platform.publish(issue_topic, sign_command(issue_topic, command_id="p1", args=args,
                                                             key=PLATFORM_KEY), qos=1)
            await platform.publish(issue_topic, sign_command(issue_topic, command_id="p2",
                                                             args={**args, "doors": ["office"]}, key=PLATFORM_KEY),
                                   qos=1)
            await platform.publish(issue_topic, sign_command(issue_topic, command_id="p3",
                                                             args={**args, "holder": "frank", "apartment": "3-201"},
                                                             key=PLATFORM_KEY), qos=1)
            await platform.publish(issue_topic, sign_command(issue_topic, command_id="p4",
                                                             args={**args, "secret": "mine"}, key=PLATFORM_KEY),
                                   qos=1)
            await platform.publish(issue_topic, sign_command(issue_topic, command_id="p5", args=args, key=b"forged"),
                                   qos=1)
            await results.wait_for(lambda m: len(m) == 5, what="five results")
            by_id = {m.json()["id"]: m.json() for m in results.messages}
            for message in results.messages:
                TREE.check(message.topic, message.payload)
            assert by_id["p1"]["ok"], by_id["p1"]
            token, issued = by_id["p1"]["result"]["secret"], by_id["p1"]["result"]["pass"]
            assert len(token) >= 22 and issued["apartment"] == "3-201" and issued["issued_by"] == "platform"
            assert issued["on_behalf_of"] == ["alice"] and "secret_hash" not in issued
            assert by_id["p2"]["error"]["reason"] == "failed" and "office" in by_id["p2"]["error"]["message"]
            assert by_id["p3"]["error"]["reason"] == "failed"
            assert by_id["p4"]["error"]["reason"] == "bad_args"
            assert by_id["p5"]["error"]["reason"] == "bad_signature"
            assert len(service.store.passes.by_id) == 1

            # The visitor shows the QR code at an intercom panel at the gate.
            since = mark(controller)
            assert await service.use_pass("gate", token, via="intercom:gate-panel") is True
            await bus.reader(2).wait_output(OUTPUT_LOCK, True, within=3.0)
            granted = await wait_event(controller, "access.granted", after=since)
            assert granted.event.data["pass"] == issued["id"] and granted.event.data["reader"] == "intercom:gate-panel"
            assert service.store.passes.by_id[issued["id"]].uses == 1
            assert await service.use_pass("side", token, via="intercom:gate-panel") is False  # not its door
            assert await service.use_pass("garden", token, via="intercom:gate-panel") is False  # no such door

            await platform.publish(revoke_topic, sign_command(revoke_topic, command_id="r1",
                                                              args={"pass": issued["id"]}, key=PLATFORM_KEY), qos=1)
            await platform.publish(revoke_topic, sign_command(revoke_topic, command_id="r2",
                                                              args={"pass": issued["id"], "apartment": "2-202"},
                                                              key=PLATFORM_KEY), qos=1)
            await results.wait_for(lambda m: len(m) == 7, what="revoke results")
        by_id = {m.json()["id"]: m.json() for m in results.messages}
        assert by_id["r1"]["ok"] and by_id["r1"]["result"]["pass"]["revoked"] is True
        assert token not in json.dumps(by_id["r1"])
        assert by_id["r2"]["error"]["reason"] == "failed"  # another apartment's pass: not found
        since = mark(controller)
        assert await service.use_pass("gate", token, via="intercom:gate-panel") is False
        denied = await wait_event(controller, "access.denied", after=since)
        assert denied.event.data["reason"] == "revoked"
        await assert_no_secret_journaled(controller, token)
