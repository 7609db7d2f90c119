"""Test helpers for the MQTT uplink: a controller with a running uplink, a subscriber that records
what it sees, the topic-tree schema as a validator, a TCP proxy that can cut connections, an
amqtt broker (MQTT 3.1.1 only), a fake broker that never PUBACKs events, and TLS certificates."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import re
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.config import SiteConfig
from edge.daemon import Controller
from edge.uplink import Uplink
from tests.mosquitto import free_port

SITE = "s1"
CONTROLLER = "gate-1"
BASE = f"linli/{SITE}/{CONTROLLER}"


def site_config(tmp_path: Path, broker: str | None, *, uplink: dict[str, Any] | None = None, **top: Any) -> SiteConfig:
    data: dict[str, Any] = {
        "site": {"id": SITE},
        "controller": {"id": CONTROLLER, "name": "Gate 1"},
        "data_dir": str(tmp_path / "data"),
        "uplink": {"broker": broker, "backoff": {"initial_s": 0.05, "max_s": 0.5}, **(uplink or {})},
        "zeroconf": {"enabled": False},
        **top,
    }
    return SiteConfig.model_validate(data)


@contextlib.asynccontextmanager
async def running_uplink(
    config: SiteConfig, config_path: Path | None = None, *, start: bool = True
) -> AsyncIterator[tuple[Controller, Uplink]]:
    """The real Controller (journal, bus, reload) without `start()` (which would also start the
    API and zeroconf), with an Uplink running as a task."""
    controller = Controller(config, config_path)
    await controller.journal.open()
    uplink = Uplink(controller)
    uplink.discovery_delay_s = 0.05
    controller.uplink = uplink
    task = asyncio.create_task(uplink.run()) if start else None
    try:
        yield controller, uplink
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await controller.journal.close()


async def wait_until(predicate: Callable[[], bool], limit_s: float = 10.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {limit_s} s waiting for {what}")
        await asyncio.sleep(0.02)


# ---- a recording subscriber ------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """Subscribes (QoS 1) and records every message; reconnects by itself.

    `persistent=True` uses a fixed client id with clean_session False so the broker queues
    messages for it while it is disconnected (and across a broker restart, with persistence).
    """

    def __init__(
        self,
        port: int,
        filters: list[str],
        *,
        host: str = "127.0.0.1",
        client_id: str | None = None,
        persistent: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.filters = filters
        self.client_id = client_id
        self.persistent = persistent
        self.messages: list[Received] = []
        self.connected = asyncio.Event()
        self.connections = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Collector:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.client_id,
                    clean_session=False if self.persistent else None,
                    protocol=aiomqtt.ProtocolVersion.V311,
                    keepalive=5,
                ) as client:
                    client.pending_calls_threshold = 10**9
                    for topic_filter in self.filters:
                        await client.subscribe(topic_filter, qos=1)
                    self.connections += 1
                    self.connected.set()
                    async for message in client.messages:
                        payload = message.payload
                        assert isinstance(payload, bytes | bytearray)
                        self.messages.append(Received(message.topic.value, bytes(payload), message.retain, message.qos))
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.1)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    def matching(self, pattern: str) -> list[Received]:
        rx = re.compile(pattern)
        return [m for m in self.messages if rx.search(m.topic)]

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], limit_s: float = 10.0, what: str = "messages"
    ) -> None:
        await wait_until(lambda: predicate(self.messages), limit_s, what)


async def retained(port: int, topic: str, limit_s: float = 3.0) -> Received | None:
    """What a fresh subscriber gets for `topic` right after subscribing (the retained message)."""
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V311) as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(limit_s):
                async for message in client.messages:
                    payload = message.payload
                    assert isinstance(payload, bytes | bytearray)
                    return Received(message.topic.value, bytes(payload), message.retain, message.qos)
        except TimeoutError:
            return None
    return None


# ---- the documented topic tree -----------------------------------------------------------------


class TopicTree:
    """edge/schema/mqtt.json as a validator: every topic must match exactly one entry and its
    payload must validate against that entry's schema."""

    def __init__(self) -> None:
        self.doc = json.loads(resources.files("edge").joinpath("schema/mqtt.json").read_text())
        jsonschema.Draft202012Validator.check_schema(self.doc)
        self.entries = []
        for entry in self.doc["topics"]:
            schema = {**entry["payload"], "$defs": self.doc["$defs"]}
            validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
            self.entries.append((entry, re.compile(entry["pattern"]), validator))

    def validator(self, name: str) -> jsonschema.Draft202012Validator:
        return next(v for entry, _, v in self.entries if entry["name"] == name)

    def definition(self, name: str) -> jsonschema.Draft202012Validator:
        schema = {"$ref": f"#/$defs/{name}", "$defs": self.doc["$defs"]}
        return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())

    def check(self, topic: str, payload: bytes, retain: bool | None = None) -> str:
        """Validate one message; returns the entry name. Raises AssertionError otherwise."""
        hits = [(entry, validator) for entry, rx, validator in self.entries if rx.match(topic)]
        assert len(hits) == 1, f"{topic!r} matches {[e['name'] for e, _ in hits]} topic entries, expected one"
        entry, validator = hits[0]
        if payload == b"" and entry.get("empty_allowed"):
            return entry["name"]
        text = payload.decode("utf-8")
        value = json.loads(text) if entry["encoding"] == "json" else text
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        assert not errors, f"{topic}: {[f'{list(e.path)}: {e.message}' for e in errors]}"
        if entry["name"] == "event":
            assert topic.rsplit("/", 1)[1] == value["type"], "event topic does not name the event type"
        if entry["name"] == "command_result":
            assert topic.rsplit("/", 1)[1] == value["id"], "result topic does not name the command id"
        return entry["name"]


# ---- network tools -------------------------------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target. `cut()` aborts every live connection (no MQTT
    DISCONNECT: the broker sees the client vanish); `pause()` stops listening (connection
    refused, like a host whose broker is down) until `resume()`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpProxy:
        await self.resume()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        await self.pause()

    async def resume(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def pause(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


@contextlib.asynccontextmanager
async def amqtt_broker() -> AsyncIterator[int]:
    """amqtt's broker on a free port: it speaks MQTT 3.1.1 only and refuses a v5 CONNECT."""
    from amqtt.broker import Broker

    port = free_port()
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    try:
        yield port
    finally:
        await broker.shutdown()


_EVENT_TOPIC = re.compile(r"^linli/[^/]+/[^/]+/events/")


class SilentBroker:
    """A minimal MQTT 3.1.1 broker that acknowledges everything except event publishes: it shows
    whether the uplink acks outbox entries before the broker does."""

    def __init__(self, *, refuse_v5: bool = False) -> None:
        self.refuse_v5 = refuse_v5
        self.port = 0
        self.connects: list[int] = []  # protocol level of each CONNECT
        self.unacked_events: list[tuple[str, bytes]] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> SilentBroker:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = (await reader.readexactly(1))[0]
                length, shift = 0, 0
                while True:
                    byte = (await reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await reader.readexactly(length)
                kind = header >> 4
                if kind == 1:  # CONNECT: b"\x00\x04MQTT" then the protocol level
                    self.connects.append(body[6])
                    if body[6] != 4 and self.refuse_v5:
                        writer.write(b"\x20\x02\x00\x01")  # 3.1.1: unacceptable protocol version
                        await writer.drain()
                        break
                    writer.write(b"\x20\x02\x00\x00")
                elif kind == 3:  # PUBLISH
                    qos = (header >> 1) & 3
                    (topic_len,) = struct.unpack("!H", body[:2])
                    topic = body[2 : 2 + topic_len].decode()
                    if qos:
                        packet_id = body[2 + topic_len : 4 + topic_len]
                        if _EVENT_TOPIC.match(topic):
                            self.unacked_events.append((topic, body[4 + topic_len :]))
                        else:
                            writer.write(b"\x40\x02" + packet_id)
                elif kind == 8:  # SUBSCRIBE
                    packet_id, rest, granted = body[:2], body[2:], b""
                    while rest:
                        (n,) = struct.unpack("!H", rest[:2])
                        granted += bytes([rest[2 + n]])
                        rest = rest[3 + n :]
                    writer.write(bytes([0x90, 2 + len(granted)]) + packet_id + granted)
                elif kind == 12:  # PINGREQ
                    writer.write(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    break
                await writer.drain()
        writer.close()


# ---- TLS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path, name: str = "test") -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all PEM."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = f"Linli {name} CA"
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    server_key, client_key = _key(), _key()
    server = _cert(
        "127.0.0.1", server_key, ca_name, ca_key,
        san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client = _cert("linli-client", client_key, ca_name, ca_key)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    (folder / "client.pem").write_bytes(client.public_bytes(pem))
    return Pki(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=_write_key(folder / "server.key", server_key),
        client_cert=folder / "client.pem",
        client_key=_write_key(folder / "client.key", client_key),
    )
