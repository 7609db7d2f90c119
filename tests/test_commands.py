"""Signed remote commands: the verifier and router alone, then hostile traffic over real Mosquitto."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.commands import (
    REASONS,
    BadArgs,
    Command,
    CommandRejected,
    CommandRouter,
    CommandVerifier,
    NonceCache,
    load_hmac_key,
    parse_ed25519_public_key,
    sign_command,
)
from tests.mosquitto import Mosquitto
from tests.mqtt_helpers import BASE, Collector, TopicTree, running_uplink, wait_until

PREFIX = f"{BASE}/cmd/"
NOW = 1_800_000_000.0
KEY = b"0123456789abcdef0123456789abcdef-shared"
SIGNER = Ed25519PrivateKey.generate()


def public_b64(private: Ed25519PrivateKey) -> str:
    return base64.b64encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def verifier(**kwargs: Any) -> CommandVerifier:
    kwargs.setdefault("hmac_key", KEY)
    kwargs.setdefault("ed25519_keys", [SIGNER.public_key()])
    return CommandVerifier(PREFIX, clock=lambda: NOW, max_skew_s=30, max_bytes=4096, **kwargs)


def envelope(name: str = "ping", *, cid: str = "c1", ts: float = NOW, args: Any = None, key: Any = KEY) -> bytes:
    return sign_command(PREFIX + name, command_id=cid, args=args, key=key, ts=ts)


def raw_envelope(name: str, body: str, *, key: bytes = KEY, alg: str = "hmac-sha256") -> bytes:
    """Sign an arbitrary body text (sign_command only makes well-formed ones)."""
    sig = hmac.new(key, (PREFIX + name).encode() + b"\n" + body.encode(), hashlib.sha256).digest()
    return json.dumps({"body": body, "alg": alg, "sig": base64.b64encode(sig).decode()}).encode()


def reject(v: CommandVerifier, payload: bytes, name: str = "ping") -> CommandRejected:
    with pytest.raises(CommandRejected) as info:
        v.verify(PREFIX + name, payload)
    assert info.value.reason in REASONS
    return info.value


# ---- the verifier on its own -----------------------------------------------------------------


def test_valid_hmac_and_ed25519_commands() -> None:
    v = verifier()
    cmd = v.verify(PREFIX + "door/unlock", envelope("door/unlock", cid="a1", args={"door": "main"}))
    assert cmd == Command("door/unlock", "a1", NOW, {"door": "main"}, "hmac-sha256", "hmac")
    cmd = v.verify(PREFIX + "ping", envelope(cid="a2", key=SIGNER))
    assert cmd.alg == "ed25519" and cmd.signer.startswith("ed25519:") and cmd.id == "a2"


def test_second_ed25519_key_is_accepted() -> None:
    other = Ed25519PrivateKey.generate()
    v = verifier(ed25519_keys=[SIGNER.public_key(), other.public_key()])
    assert v.verify(PREFIX + "ping", envelope(key=other)).alg == "ed25519"


def test_oversized_is_rejected_before_parsing() -> None:
    v = verifier()
    assert reject(v, b"[" * 5000).reason == "oversized"  # would be malformed if it were parsed
    big = envelope(args={"pad": "x" * 5000})
    assert reject(v, big).reason == "oversized"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"alg": "hmac-sha256", "sig": "AAAA"}',
        b'{"body": 5, "alg": "hmac-sha256", "sig": "AAAA"}',
        b"[" * 3000,  # nesting deep enough to blow the parser's recursion, yet within the limit
        b'{"body": "{\\"id\\": \\"x\\"}", "alg": "hmac-sha256", "sig": "AAAA", "extra": 1}',
        b'{"body": "\\ud800", "alg": "hmac-sha256", "sig": "AAAA"}',  # not encodable: unsignable
        b'{"body": "{}", "alg": 1, "sig": "AAAA"}',
    ],
)
def test_malformed_envelopes(payload: bytes) -> None:
    assert reject(verifier(), payload).reason == "malformed"


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"id": "ok", "ts": 1800000000}garbage',
        '{"id": "../../status", "ts": 1800000000}',
        '{"id": "", "ts": 1800000000}',
        '{"id": "x", "ts": "1800000000"}',
        '{"id": "x", "ts": true}',
        '{"id": "x", "ts": NaN}',
        '{"id": "x"}',
        '{"ts": 1800000000}',
        '{"id": "x", "ts": 1800000000, "args": {}, "sudo": true}',
        '{"id": "' + "a" * 65 + '", "ts": 1800000000}',
    ],
)
def test_malformed_bodies_even_when_signed(body: str) -> None:
    assert reject(verifier(), raw_envelope("ping", body)).reason == "malformed"


def test_unsigned() -> None:
    v = verifier()
    body = json.dumps({"id": "u1", "ts": NOW, "args": {}})
    for env in (
        {"body": body},
        {"body": body, "alg": "hmac-sha256"},
        {"body": body, "sig": "AAAA"},
        {"body": body, "alg": "none", "sig": ""},
        {"body": body, "alg": "HS256", "sig": "AAAA"},
    ):
        rejected = reject(v, json.dumps(env).encode())
        assert rejected.reason == "unsigned"
        assert rejected.command_id == "u1"  # labelled for the audit trail, never trusted
    assert reject(verifier(hmac_key=None), envelope()).reason == "unsigned"
    assert reject(verifier(ed25519_keys=[]), envelope(key=SIGNER)).reason == "unsigned"


def test_bad_signatures() -> None:
    v = verifier()
    wrong_key = envelope(key=b"another key that is long enough!!")
    assert reject(v, wrong_key).reason == "bad_signature"
    assert reject(v, envelope(key=Ed25519PrivateKey.generate())).reason == "bad_signature"
    # Signed for ping, delivered as config/reload: the topic is part of what is signed.
    assert reject(v, envelope("ping"), name="config/reload").reason == "bad_signature"
    # Signed for another controller.
    other = sign_command("linli/s1/gate-2/cmd/ping", command_id="c1", key=KEY, ts=NOW)
    assert reject(v, other).reason == "bad_signature"
    # Body edited after signing.
    env = json.loads(envelope(args={"door": "side"}))
    env["body"] = env["body"].replace("side", "main")
    assert reject(v, json.dumps(env).encode()).reason == "bad_signature"
    for sig in ("not base64!", "", base64.b64encode(b"short").decode()):
        env = json.loads(envelope())
        env["sig"] = sig
        assert reject(v, json.dumps(env).encode()).reason == "bad_signature"
    env = json.loads(envelope(key=SIGNER))
    env["sig"] = env["sig"][:-8] + "AAAAAAA="
    assert reject(v, json.dumps(env).encode()).reason == "bad_signature"


def test_hostile_id_is_never_kept_for_a_topic() -> None:
    body = json.dumps({"id": "x/../#", "ts": NOW})
    rejected = reject(verifier(), json.dumps({"body": body, "alg": "hmac-sha256", "sig": "AAAA"}).encode())
    assert rejected.reason == "bad_signature" and rejected.command_id is None


def test_stale_and_future_commands() -> None:
    v = verifier()
    assert reject(v, envelope(cid="old", ts=NOW - 31)).reason == "stale"
    assert reject(v, envelope(cid="future", ts=NOW + 31)).reason == "stale"
    assert v.verify(PREFIX + "ping", envelope(cid="edge", ts=NOW - 29)).id == "edge"


def test_replay_is_rejected_and_nonce_cache_expires() -> None:
    now = [NOW]
    v = CommandVerifier(PREFIX, hmac_key=KEY, clock=lambda: now[0], max_skew_s=30)
    payload = envelope(cid="once")
    v.verify(PREFIX + "ping", payload)
    assert reject(v, payload).reason == "replayed"
    # Same id, freshly signed: still a replay of the id.
    assert reject(v, envelope(cid="once", ts=NOW + 1)).reason == "replayed"
    # Stale commands do not consume their id.
    now[0] = NOW + 100
    assert reject(v, payload).reason == "stale"
    # After 2 x max skew the entry has expired: the id is usable again, and the cache is empty
    # but for it.
    v.verify(PREFIX + "ping", envelope(cid="once", ts=now[0]))
    assert len(v.nonces) == 1


def test_nonce_cache_is_bounded_without_reopening_replays() -> None:
    cache = NonceCache(ttl_s=60, max_entries=3)
    for i in range(3):
        assert cache.add(f"id{i}", NOW + i, NOW)
    assert cache.add("id3", NOW + 3, NOW)
    assert len(cache) == 3
    # id0 was evicted; replaying it (with its signed ts) must still fail.
    assert not cache.add("id0", NOW, NOW)
    assert cache.add("id4", NOW + 4, NOW)


def test_unknown_command_names_and_bad_args() -> None:
    v = verifier()
    for i, name in enumerate(("Ping", "a//b", "x" * 65, "door/../unlock", "")):
        assert reject(v, envelope(name, cid=f"n{i}"), name=name).reason == "unknown_command"
    assert reject(v, envelope(cid="b1", args=[1, 2])).reason == "bad_args"
    assert reject(v, envelope(cid="b2", args="open")).reason == "bad_args"


def test_keys() -> None:
    with pytest.raises(ValueError):
        parse_ed25519_public_key("not base64!")
    with pytest.raises(ValueError):
        parse_ed25519_public_key(base64.b64encode(b"x" * 31).decode())
    assert parse_ed25519_public_key(public_b64(SIGNER))
    with pytest.raises(ValueError):
        CommandVerifier(PREFIX, hmac_key=b"short")


def test_load_hmac_key(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(KEY + b"\n")
    assert load_hmac_key(path) == KEY
    path.write_bytes(b"too short\n")
    with pytest.raises(ValueError, match="at least 32"):
        load_hmac_key(path)


# ---- the router ------------------------------------------------------------------------------


async def test_router() -> None:
    router = CommandRouter(timeout_s=0.2)
    calls: list[dict] = []

    async def unlock(args: dict) -> dict:
        if set(args) != {"door"}:
            raise BadArgs("needs 'door'")
        calls.append(args)
        return {"unlocked": args["door"]}

    async def broken(args: dict) -> dict:
        raise RuntimeError("relay bus down")

    async def slow(args: dict) -> dict:
        await asyncio.sleep(5)
        return {}

    async def odd(args: dict) -> Any:
        return [1]

    router.register("door/unlock", unlock)
    for name, handler in (("broken", broken), ("slow", slow), ("odd", odd)):
        router.register(name, handler)
    with pytest.raises(ValueError):
        router.register("door/unlock", unlock)
    with pytest.raises(ValueError):
        router.register("Bad Name", unlock)

    def cmd(name: str, args: dict) -> Command:
        return Command(name, "r1", NOW, args)

    assert await router.execute(cmd("door/unlock", {"door": "main"})) == {"unlocked": "main"}
    for name, args, reason in (
        ("door/unlock", {"gate": 1}, "bad_args"),
        ("broken", {}, "failed"),
        ("slow", {}, "failed"),
        ("odd", {}, "failed"),
        ("nope", {}, "unknown_command"),
    ):
        with pytest.raises(CommandRejected) as info:
            await router.execute(cmd(name, args))
        assert info.value.reason == reason, name
    assert calls == [{"door": "main"}]


# ---- over MQTT, against the real broker ---------------------------------------------------------


def _command_config(tmp_path: Path, broker: str) -> tuple[dict, Path]:
    key_file = tmp_path / "hmac.key"
    key_file.write_bytes(KEY + b"\n")
    data = {
        "site": {"id": "s1"},
        "controller": {"id": "gate-1"},
        "data_dir": str(tmp_path / "data"),
        "uplink": {
            "broker": broker,
            "backoff": {"initial_s": 0.05, "max_s": 0.5},
            "commands": {
                "hmac_key_file": str(key_file),
                "ed25519_public_keys": [public_b64(SIGNER)],
                "max_bytes": 4096,
            },
        },
        "zeroconf": {"enabled": False},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return data, path


async def test_hostile_commands_over_mqtt_change_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    from edge.config import load_config

    tree = TopicTree()
    _, path = _command_config(tmp_path, mosquitto.url)
    config = load_config(path)
    effects: list[dict] = []

    async def mark(args: dict) -> dict:
        effects.append(args)
        return {"marked": args.get("n")}

    def now_env(name: str, cid: str, *, key: Any = KEY, args: Any = None, ts: float | None = None) -> bytes:
        return sign_command(PREFIX + name, command_id=cid, args=args, key=key, ts=ts)

    t = time.time()
    good_hmac = now_env("test/mark", "good-hmac", args={"n": 1})
    hostile: list[tuple[str, bytes, str, str | None]] = [
        ("test/mark", b"{not json", "malformed", None),
        ("test/mark", json.dumps({"body": json.dumps({"id": "h-unsigned", "ts": t, "args": {"n": 9}})}).encode(),
         "unsigned", "h-unsigned"),
        ("test/mark", now_env("test/mark", "h-wrongkey", key=b"z" * 40, args={"n": 9}), "bad_signature", "h-wrongkey"),
        ("test/mark", now_env("test/mark", "h-wrong-ed", key=Ed25519PrivateKey.generate(), args={"n": 9}),
         "bad_signature", "h-wrong-ed"),
        ("test/mark", now_env("ping", "h-othertopic", args={"n": 9}), "bad_signature", "h-othertopic"),
        ("test/mark", now_env("test/mark", "h-old", ts=t - 300, args={"n": 9}), "stale", "h-old"),
        ("test/mark", now_env("test/mark", "h-future", ts=t + 300, args={"n": 9}), "stale", "h-future"),
        ("test/mark", now_env("test/mark", "h-big", args={"n": 9, "pad": "x" * 5000}), "oversized", None),
        ("no/such", now_env("no/such", "h-unknown", args={"n": 9}), "unknown_command", "h-unknown"),
        ("test/mark", now_env("test/mark", "h-args", args=[9]), "bad_args", "h-args"),
        ("test/mark", good_hmac, "replayed", "good-hmac"),  # sent after the original below
    ]
    async with (
        Collector(mosquitto.port, [f"{BASE}/#"]) as seen,
        running_uplink(config, path) as (controller, uplink),
    ):
        controller.commands.register("test/mark", mark)
        await wait_until(lambda: uplink.state == "connected")
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
            await platform.publish(PREFIX + "test/mark", good_hmac, qos=1)
            good_ed = now_env("test/mark", "good-ed", key=SIGNER, args={"n": 2})
            await platform.publish(PREFIX + "test/mark", good_ed, qos=1)
            for name, payload, _, _ in hostile:
                await platform.publish(PREFIX + name, payload, qos=1)
            await platform.publish(PREFIX + "ping", now_env("ping", "good-ping"), qos=1)

        async def command_events() -> list:
            rows = await controller.journal.query(types=["command.*"], limit=100, after_seq=0)
            return [r.event for r in rows]

        events: list = []

        async def poll() -> None:
            nonlocal events
            while len(events) < 3 + len(hostile):
                events = await command_events()
                await asyncio.sleep(0.05)

        await asyncio.wait_for(poll(), 10)
        executed = [e for e in events if e.type == "command.executed"]
        rejected = [e for e in events if e.type == "command.rejected"]
        assert sorted(e.data["id"] for e in executed) == ["good-ed", "good-hmac", "good-ping"]
        assert {e.data["signer"][:7] for e in executed} == {"hmac", "ed25519"}
        assert effects == [{"n": 1}, {"n": 2}]  # no hostile command had any effect
        assert [(e.data["reason"], e.data.get("id")) for e in rejected] == [(r, i) for _, _, r, i in hostile]
        for event in rejected:
            assert event.severity == "warning" and event.source == "controller"
            assert event.data["topic"].startswith(PREFIX)

        # Results: ok for the good ones, an error for each rejection with a usable id.
        await seen.wait_for(lambda _: len(seen.matching(r"/cmd_result/")) >= 3 + 8, what="results")
        await asyncio.sleep(0.2)
        by_id: dict[str, list[dict]] = {}
        for m in seen.matching(r"/cmd_result/"):
            by_id.setdefault(m.topic.rsplit("/", 1)[1], []).append(m.json())
        assert all(len(v) == 1 for v in by_id.values()), "one result per command id (none for a replay)"
        results = {k: v[0] for k, v in by_id.items()}
        assert results["good-hmac"] == {"id": "good-hmac", "ok": True, "result": {"marked": 1}}
        assert results["good-ping"]["result"]["pong"] is True
        for _, _, reason, cid in hostile:
            if cid is not None and reason != "replayed":
                assert results[cid]["ok"] is False and results[cid]["error"]["reason"] == reason
        for message in seen.messages:
            if not message.topic.startswith(PREFIX):  # the hostile input itself is not ours to check
                tree.check(message.topic, message.payload)


def reload_command(cid: str) -> bytes:
    return sign_command(PREFIX + "config/reload", command_id=cid, key=KEY)


async def test_config_reload_command(mosquitto: Mosquitto, tmp_path: Path) -> None:
    from edge.config import load_config

    data, path = _command_config(tmp_path, mosquitto.url)
    config = load_config(path)
    async with (
        Collector(mosquitto.port, [f"{BASE}/cmd_result/#"]) as seen,
        running_uplink(config, path) as (controller, uplink),
    ):
        await wait_until(lambda: uplink.state == "connected")
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
            data["site"]["name"] = "Renamed"
            path.write_text(yaml.safe_dump(data))
            await platform.publish(PREFIX + "config/reload", reload_command("r1"), qos=1)
            await seen.wait_for(lambda m: len(m) == 1, what="first result")
            assert seen.messages[0].json() == {"id": "r1", "ok": True, "result": {"reloaded": True}}
            assert controller.config.site.name == "Renamed"

            path.write_text(path.read_text() + "\nnot_a_key: 1\n")
            await platform.publish(PREFIX + "config/reload", reload_command("r2"), qos=1)
            await seen.wait_for(lambda m: len(m) == 2, what="second result")
            result = seen.messages[1].json()
            assert result["ok"] is False and result["error"]["reason"] == "failed"
            assert any("not_a_key" in issue for issue in result["error"]["issues"])
            assert controller.config.site.name == "Renamed"  # the running config is kept
        # The reload kept the connection: command keys are swapped without reconnecting.
        assert uplink.reconnects == 0
