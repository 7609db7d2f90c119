"""The MQTT uplink: drains the outbox to the platform's broker, keeps retained state, serves commands.

One connection at a time, made by `run()` and remade after any failure with jittered exponential
backoff (aiomqtt does not reconnect by itself). Each connection:

- announces `online` on the status topic (the last will says `offline`);
- publishes the outbox in journal order with up to `uplink.inflight` QoS 1 publishes in flight,
  acking each entry in the journal only once the broker's PUBACK arrived. Every connection starts
  again from the oldest unacked entry: the outbox is the truth and consumers de-duplicate by id;
- publishes retained device state (latest per device) and the controller's own state;
- receives signed commands (edge/commands.py) and Home Assistant's status (discovery replay).

The topic tree and payloads are documented in edge/schema/mqtt.json; tests hold this module to it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from aiomqtt import MqttCodeError, MqttError, ProtocolVersion
from paho.mqtt.client import MQTT_ERR_SUCCESS
from paho.mqtt.reasoncodes import ReasonCode

from edge import __version__
from edge.bus import Subscription
from edge.commands import (
    Command,
    CommandRejected,
    CommandRouter,
    CommandVerifier,
    load_hmac_key,
    parse_ed25519_public_key,
    register_builtin_commands,
)
from edge.config import SiteConfig, UplinkSection
from edge.events import Event, Severity
from edge.homeassistant import (
    Discovery,
    Entity,
    controller_entities,
    forwards_to_ha,
    ha_event_payload,
)
from edge.journal import OutboxEntry
from edge.topics import SEGMENT_RE, Topics

log = logging.getLogger(__name__)

SOURCE = "controller"
READ_BATCH = 500  # outbox rows per SQLite read
STATE_INTERVAL_S = 10.0
STALL_CHECK_S = 5.0
COMMAND_QUEUE = 64
MAX_IMAGE_BYTES = 2 * 1024 * 1024  # a snapshot JPEG; HA keeps the latest in memory
MAX_REFUSED = 100_000  # refused outbox entries remembered (and skipped) at most
STABLE_S = 10.0  # a connection that lasted this long resets the reconnect backoff
CALL_TIMEOUT_S = 10.0  # CONNACK, SUBACK and the PUBACK of control messages
V5_PROBE_TIMEOUT_S = 5.0
# CONNACK codes meaning "I do not speak this protocol version": MQTT 5 0x84, MQTT 3.1.1 1.
_PROTOCOL_REFUSED = frozenset({0x84, 1})


class _Restart(Exception):
    """The connection settings changed: reconnect now, without backoff."""


class _ClosedBeforeConnack(MqttError):
    """The broker dropped the connection instead of answering CONNECT (what some 3.1.1-only
    brokers do with an MQTT 5 CONNECT)."""


class UplinkStalled(MqttError):
    """Publishes are in flight but no PUBACK arrived for too long while the socket looks alive."""


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Delay before reconnect attempt `attempt` (0-based): full jitter over [initial_s, ceiling],
    the ceiling doubling from 2 x initial_s up to max_s, so a fleet that lost the same broker does
    not come back in lock-step."""
    ceiling = min(max_s, initial_s * 2 ** min(attempt + 1, 32))
    return (rng or random).uniform(initial_s, max(initial_s, ceiling))


def parse_broker(url: str) -> tuple[str, int, bool]:
    """`mqtt://host:port` / `mqtts://host:port` -> (host, port, tls)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"broker must be mqtt://host[:port] or mqtts://host[:port], not {url!r}")
    tls = parts.scheme == "mqtts"
    return parts.hostname, parts.port or (8883 if tls else 1883), tls


class _TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class Uplink:
    """Construct with the controller (it uses .config, .journal, .bus, .commands) and run `run()`."""

    def __init__(self, controller: Any) -> None:
        self.controller = controller
        config: SiteConfig = controller.config
        self.topics = Topics(config.site.id, config.controller.id)
        # What health() and the controller state report.
        self.state = "connecting"  # connecting | connected | backoff | disabled
        self.protocol: str | None = None  # "5" | "3.1.1" while connected
        self.last_error: str | None = None
        self.published = 0  # events PUBACKed
        self.refused = 0  # event publishes the broker refused (MQTT 5 error code in the PUBACK)
        self.reconnects = 0
        self.connected_since: float | None = None
        self.commands_dropped = 0
        self.rejections_suppressed = 0
        self.key_problems: list[str] = []
        # Tunables (tests shorten them).
        self.state_interval_s = STATE_INTERVAL_S
        self.discovery_delay_s = 1.0
        self.stall_check_s = STALL_CHECK_S
        self.stall_timeout_s = max(60.0, 2.0 * config.uplink.keepalive_s)

        router = getattr(controller, "commands", None)
        if router is None:
            router = CommandRouter()
            controller.commands = router
        self.commands: CommandRouter = router
        register_builtin_commands(router, controller)
        limits = config.uplink.commands
        self.verifier = CommandVerifier(
            self.topics.cmd_prefix, max_skew_s=limits.max_skew_s, max_bytes=limits.max_bytes
        )
        # Home Assistant entities; a feature appends its own and calls request_discovery().
        self.ha_entities: list[Entity] = controller_entities(self.topics)
        # HA commands by topic (under topics.ha_cmd_prefix); a feature registers its handlers.
        self.ha_commands: dict[str, Callable[[bytes], Awaitable[None]]] = {}
        # Events a feature forwards to its own HA `event` entities: event -> (topic, payload) or None.
        self.ha_event_routes: list[Callable[[Event], tuple[str, dict[str, Any]] | None]] = []

        self._client: aiomqtt.Client | None = None
        self._ever_connected = False
        self._v311_only = False  # learnt: this broker refuses MQTT 5
        self._settings: Any = None  # connection-relevant settings of the current attempt
        self._announced: tuple[Discovery, list[Entity]] | None = None
        self._pending_state: dict[str, str] = {}
        self._pending_images: dict[str, bytes] = {}  # image/<key> -> the latest JPEG not yet sent
        self._state_wake = asyncio.Event()
        self._discovery_wake = asyncio.Event()
        self._restart = asyncio.Event()
        self._commands_in: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(COMMAND_QUEUE)
        self._rejections = _TokenBucket(rate=2.0, burst=20)
        self._inflight: dict[int, OutboxEntry] = {}
        self._refused_seqs: set[int] = set()
        self._refusal_reported = False
        self._rng = random.Random()
        listeners = getattr(controller, "reload_listeners", None)
        if listeners is not None:
            listeners.append(self._on_reload)

    # ---- public API ---------------------------------------------------------------------------

    async def publish_state(self, device_id: str, payload: dict[str, Any]) -> None:
        """Retained `state/<device>`. Never waits for the broker: while offline only the latest
        state per device is kept, and it goes out on reconnect."""
        self.set_state(device_id, payload)

    def set_state(self, device_id: str, payload: dict[str, Any]) -> None:
        """`publish_state` for callers that cannot await (driver callbacks)."""
        self.topics.state(device_id)  # validates the id before anything is queued
        if not isinstance(payload, dict):
            raise TypeError("device state must be a JSON object")
        self._pending_state[device_id] = json.dumps(payload, separators=(",", ":"), default=str)
        self._state_wake.set()

    def publish_image(self, key: str, jpeg: bytes) -> None:
        """Retained `image/<key>`: a JPEG, base64 (HA's image entity with `image_encoding: b64`; text
        keeps the topic checkable against its schema). Like set_state, only the latest image per key
        waits while offline. The caller blurs: nothing here looks at the picture."""
        if not SEGMENT_RE.match(key):
            raise ValueError(f"{key!r} cannot be used as a topic level")
        if not isinstance(jpeg, bytes) or not jpeg or len(jpeg) > MAX_IMAGE_BYTES:
            raise ValueError(f"an image must be 1 to {MAX_IMAGE_BYTES} bytes")
        self._pending_images[key] = base64.b64encode(jpeg)
        self._state_wake.set()

    def request_discovery(self) -> None:
        """Publish the Home Assistant discovery messages again (e.g. after adding entities)."""
        self._discovery_wake.set()

    def controller_state(self) -> dict[str, Any]:
        started = float(getattr(self.controller, "started_at", time.time()))
        return {
            "outbox_depth": self.controller.journal.stats.outbox_depth,
            "uplink": self.state,
            "protocol": self.protocol,
            "version": __version__,
            "started_at": round(started, 3),
            "uptime_s": round(max(0.0, time.time() - started), 1),
            "published": self.published,
            "reconnects": self.reconnects,
        }

    # ---- the connection loop --------------------------------------------------------------------

    async def run(self) -> None:
        self._load_keys(self.controller.config)
        commands = asyncio.create_task(self._command_worker(), name="uplink-commands")
        attempt = 0
        try:
            while True:
                config: SiteConfig = self.controller.config
                self._settings = _settings_key(config)
                self._restart.clear()
                if not config.uplink.enabled or not config.uplink.broker:
                    self.state = "disabled"
                    await self._restart.wait()
                    continue
                self.state = "connecting"
                try:
                    await self._session(config)
                except _Restart:
                    attempt = 0
                    continue
                except Exception as exc:
                    self.last_error = _describe(exc)
                    log.warning("uplink: %s", self.last_error)
                if self.connected_since is not None:
                    # A connection that worked for a while starts the backoff over; one dropped
                    # right after connecting (a flapping broker) keeps it growing.
                    if time.time() - self.connected_since >= STABLE_S:
                        attempt = 0
                    self.connected_since = None
                    self._emit("uplink.disconnected", {"error": self.last_error}, Severity.WARNING)
                self.state = "backoff"
                self.protocol = None
                delay = backoff_delay(attempt, config.uplink.backoff.initial_s, config.uplink.backoff.max_s, self._rng)
                attempt += 1
                # A config change cuts the wait short.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._restart.wait(), delay)
        finally:
            commands.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await commands

    async def _session(self, config: SiteConfig) -> None:
        client = await self._connect(config.uplink)
        restart = False
        try:
            self.state = "connected"
            self.connected_since = time.time()
            if self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
            self._inflight = {}
            self._refusal_reported = False
            self._client = client
            await _publish(client, self.topics.status, "online", qos=1, retain=True)
            await client.subscribe(self.topics.cmd_filter, qos=1)
            ha = config.homeassistant
            await self._sync_discovery(client, ha.discovery_prefix if ha.enabled else None)
            if ha.enabled:
                await client.subscribe(f"{ha.discovery_prefix}/status", qos=1)
                await client.subscribe(self.topics.ha_cmd_filter, qos=1)
            log.info("uplink connected to %s (MQTT %s)", config.uplink.broker, self.protocol)
            self._emit(
                "uplink.connected",
                {"broker": config.uplink.broker, "protocol": self.protocol, "reconnects": self.reconnects},
            )
            ha_events: Subscription | None = None
            if ha.enabled:
                ha_events = self.controller.bus.subscribe("uplink-ha", maxsize=256, accept=self._forwards_to_ha)
            try:
                async with asyncio.TaskGroup() as tasks:
                    ha_status = f"{ha.discovery_prefix}/status" if ha.enabled else None
                    tasks.create_task(self._receive(client, ha_status))
                    tasks.create_task(self._drain(client, config.uplink.inflight))
                    tasks.create_task(self._watchdog())
                    tasks.create_task(self._publish_states(client))
                    tasks.create_task(self._publish_controller_state(client))
                    tasks.create_task(self._watch_restart())
                    if ha_events is not None:
                        tasks.create_task(self._republish_discovery(client))
                        tasks.create_task(self._forward_ha_events(client, ha_events))
            except BaseExceptionGroup as group:
                # Report the first real cause rather than the group wrapper.
                raise _leaf(group) from None
            finally:
                if ha_events is not None:
                    ha_events.close()
        except _Restart:
            restart = True
            raise
        finally:
            self._client = None
            await self._close(client, farewell=not restart)

    async def _connect(self, uplink: UplinkSection) -> aiomqtt.Client:
        assert uplink.broker is not None
        host, port, tls = parse_broker(uplink.broker)
        password = None
        if uplink.password_file is not None:
            password = self._resolve(uplink.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        if uplink.protocol == "5":
            versions = [ProtocolVersion.V5]
        elif uplink.protocol == "3.1.1" or self._v311_only:
            versions = [ProtocolVersion.V311]
        else:
            versions = [ProtocolVersion.V5, ProtocolVersion.V311]
        for version in versions:
            probing = version is ProtocolVersion.V5 and len(versions) > 1
            client = self._make_client(uplink, host, port, tls, version, password)
            if probing:
                # A 3.1.1-only broker may refuse MQTT 5, drop the connection, or (amqtt, given a
                # will) wait for bytes that never come: do not wait long for its CONNACK.
                client.timeout = V5_PROBE_TIMEOUT_S
            watch = _ConnectWatch(client)
            try:
                await client.__aenter__()
            except MqttError as exc:
                _abandon(client)
                other_refusal = isinstance(exc, MqttCodeError) and _rc_value(exc.rc) not in _PROTOCOL_REFUSED
                if probing and watch.reached and not other_refusal:
                    log.info("broker %s does not answer MQTT 5 (%s); trying 3.1.1", uplink.broker, exc)
                    continue
                raise
            except BaseException:
                _abandon(client)  # cancelled mid-connect (shutdown): leave no socket behind
                raise
            finally:
                watch.active = False
            client.timeout = CALL_TIMEOUT_S
            if version is ProtocolVersion.V311 and len(versions) > 1:
                self._v311_only = True  # no MQTT 5 attempt on every reconnect
            self.protocol = "5" if version is ProtocolVersion.V5 else "3.1.1"
            return client
        raise MqttError("broker refused every protocol version")

    def _make_client(
        self,
        uplink: UplinkSection,
        host: str,
        port: int,
        tls: bool,
        version: ProtocolVersion,
        password: str | None,
    ) -> aiomqtt.Client:
        tls_params = None
        tls_insecure = None
        if tls or uplink.tls is not None:
            t = uplink.tls
            tls_params = aiomqtt.TLSParameters(
                ca_certs=str(self._resolve(t.ca_file)) if t and t.ca_file else None,
                certfile=str(self._resolve(t.cert_file)) if t and t.cert_file else None,
                keyfile=str(self._resolve(t.key_file)) if t and t.key_file else None,
            )
            tls_insecure = t.insecure if t else None
        client = aiomqtt.Client(
            host,
            port,
            username=uplink.username,
            password=password,
            identifier=uplink.client_id or f"linli-{self.topics.site}-{self.topics.controller}",
            protocol=version,
            will=aiomqtt.Will(self.topics.status, "offline", qos=1, retain=True),
            keepalive=uplink.keepalive_s,
            tls_params=tls_params,
            tls_insecure=tls_insecure,
            # No cap in paho (its default of 20 would queue most of our window, and any cap makes
            # it rescan its queue on every PUBACK): the drain bounds what is in flight.
            max_inflight_messages=0,
            timeout=CALL_TIMEOUT_S,
        )
        # aiomqtt logs a warning on every publish above this many pending calls; a full window
        # is normal here, and logging per message would cost more than the publish itself.
        client.pending_calls_threshold = 10 * uplink.inflight + 100
        return client

    async def _close(self, client: aiomqtt.Client, *, farewell: bool) -> None:
        # The socket may already be gone; none of this may hang a shutdown or a reconnect.
        try:
            async with asyncio.timeout(3):
                if farewell:
                    # A clean DISCONNECT discards the will, so say it ourselves (this fails at
                    # once when the connection is already gone; the broker then sends the will).
                    # Runs during shutdown, cancelled already: a plain publish, not _publish.
                    await client.publish(self.topics.status, "offline", qos=1, retain=True)
                await client.__aexit__(None, None, None)
        except (MqttError, OSError, TimeoutError) as exc:
            log.debug("uplink: disconnect: %s", exc)

    async def _watch_restart(self) -> None:
        await self._restart.wait()
        raise _Restart()

    # ---- outbox -------------------------------------------------------------------------------

    async def _drain(self, client: aiomqtt.Client, window: int) -> None:
        """Publish the outbox in journal order with up to `window` QoS 1 publishes in flight.

        The hot path talks to aiomqtt's paho client directly: one pump hands messages to paho and
        a PUBACK callback acks the journal entry, so there is no coroutine, event or timer per
        message (aiomqtt's `publish` costs about twice as much per message), and the PUBACK's
        MQTT 5 reason code is visible: a refused publish is not acked and stays in the outbox.
        """
        journal = self.controller.journal
        paho = client._client
        prefix = self.topics.events_prefix
        inflight: dict[int, OutboxEntry] = {}  # paho mid -> entry awaiting its PUBACK
        self._inflight = inflight
        room = asyncio.Event()
        aiomqtt_on_publish = paho.on_publish
        ack = journal.ack

        def on_publish(paho_client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
            entry = inflight.pop(mid, None)
            if entry is None:  # one of aiomqtt's own publishes (status, state, results)
                aiomqtt_on_publish(paho_client, userdata, mid, reason, properties)
                return
            if isinstance(reason, ReasonCode) and reason.is_failure:
                self._refused_publish(entry, str(reason))
            else:
                ack(entry.seq)  # PUBACK received: the entry may leave the outbox
                self.published += 1
            room.set()

        paho.on_publish = on_publish
        pending: asyncio.Task[list[OutboxEntry]] | None = None
        try:
            after = 0  # every connection starts from the oldest unacked entry
            while True:
                if pending is not None:
                    batch, pending = await pending, None
                else:
                    # Cleared before reading: a commit during the read sets it again.
                    journal.new_entries.clear()
                    batch = await journal.outbox_batch(after, READ_BATCH)
                if not batch:
                    await journal.new_entries.wait()
                    continue
                after = batch[-1].seq
                if len(batch) == READ_BATCH:
                    # A backlog: read the next batch while this one is sent.
                    journal.new_entries.clear()
                    pending = asyncio.create_task(journal.outbox_batch(after, READ_BATCH))
                for entry in batch:
                    if entry.seq in self._refused_seqs:
                        continue
                    while len(inflight) >= window:
                        room.clear()
                        await room.wait()
                    info = paho.publish(prefix + entry.type, entry.body, 1)
                    if info.rc != MQTT_ERR_SUCCESS:
                        raise MqttCodeError(info.rc, "could not publish")
                    inflight[info.mid] = entry
        finally:
            paho.on_publish = aiomqtt_on_publish
            if pending is not None:
                pending.cancel()

    def _refused_publish(self, entry: OutboxEntry, reason: str) -> None:
        """The broker answered an event with an MQTT 5 error (e.g. not authorised by its ACL).

        Resending cannot help until the broker is reconfigured, and some brokers (Mosquitto 2.0)
        drop the connection after a refusal, so a refused entry would block everything behind it
        on every reconnect. It stays in the outbox (it was not delivered) but is skipped until
        the daemon restarts or the configuration is reloaded.
        """
        self.refused += 1
        self.last_error = f"broker refused event {entry.id} ({entry.type}): {reason}"
        log.error("uplink: %s", self.last_error)
        if len(self._refused_seqs) < MAX_REFUSED:
            self._refused_seqs.add(entry.seq)
        if not self._refusal_reported:  # one event per connection: refusals must not breed events
            self._refusal_reported = True
            self._emit(
                "uplink.publish_refused",
                {"id": entry.id, "type": entry.type, "reason": reason, "refused_total": self.refused},
                Severity.WARNING,
            )

    async def _watchdog(self) -> None:
        """A connection whose socket looks alive but that stopped acknowledging is replaced."""
        last, stalled = -1, 0.0
        while True:
            await asyncio.sleep(self.stall_check_s)
            answered = self.published + self.refused
            if self._inflight and answered == last:
                stalled += self.stall_check_s
                if stalled >= self.stall_timeout_s:
                    raise UplinkStalled(f"no PUBACK for {stalled:.0f} s with {len(self._inflight)} in flight")
            else:
                stalled = 0.0
            last = answered

    # ---- retained state -----------------------------------------------------------------------

    async def _publish_states(self, client: aiomqtt.Client) -> None:
        while True:
            self._state_wake.clear()
            while self._pending_state:
                device_id = next(iter(self._pending_state))
                body = self._pending_state.pop(device_id)
                try:
                    await _publish(client, self.topics.state(device_id), body, qos=1, retain=True)
                except BaseException:
                    self._pending_state.setdefault(device_id, body)  # unless a newer one came
                    raise
            while self._pending_images:
                key = next(iter(self._pending_images))
                jpeg = self._pending_images.pop(key)
                try:
                    await _publish(client, f"{self.topics.base}/image/{key}", jpeg, qos=1, retain=True)
                except BaseException:
                    self._pending_images.setdefault(key, jpeg)
                    raise
            await self._state_wake.wait()

    async def _publish_controller_state(self, client: aiomqtt.Client) -> None:
        last: dict[str, Any] | None = None
        while True:
            state = self.controller_state()
            compare = {k: v for k, v in state.items() if k != "uptime_s"}
            if compare != last:
                await _publish(client, self.topics.controller_state, json.dumps(state), qos=1, retain=True)
                last = compare
            await asyncio.sleep(self.state_interval_s)

    # ---- Home Assistant -----------------------------------------------------------------------

    def _discovery(self, prefix: str) -> Discovery:
        config = self.controller.config
        return Discovery(prefix, self.topics, __version__, config.controller.name)

    async def _sync_discovery(self, client: aiomqtt.Client, prefix: str | None) -> None:
        """Announce under `prefix` (None: HA disabled), first removing what an earlier config
        announced elsewhere so HA does not keep orphaned entities."""
        if self._announced is not None:
            old, entities = self._announced
            if prefix != old.prefix:
                for topic in old.removals(entities):
                    await _publish(client, topic, b"", qos=1, retain=True)
                self._announced = None
        if prefix is not None:
            await self._publish_discovery(client, prefix)

    async def _publish_discovery(self, client: aiomqtt.Client, prefix: str) -> None:
        discovery = self._discovery(prefix)
        entities = list(self.ha_entities)
        for topic, payload in discovery.messages(entities):
            await _publish(client, topic, json.dumps(payload), qos=1, retain=True)
        self._announced = (discovery, entities)

    async def _republish_discovery(self, client: aiomqtt.Client) -> None:
        # The wake is not cleared here: entities a feature added between the announcement on
        # connect and this task's start must still go out (a repeat is harmless; a loss is not).
        while True:
            await self._discovery_wake.wait()
            self._discovery_wake.clear()
            # HA restarts make every device answer at once; a little jitter spreads the burst.
            await asyncio.sleep(self._rng.uniform(0, self.discovery_delay_s))
            if self._announced is not None:
                await self._publish_discovery(client, self._announced[0].prefix)

    def _forwards_to_ha(self, event: Event) -> bool:
        return forwards_to_ha(event) or any(route(event) is not None for route in self.ha_event_routes)

    async def _forward_ha_events(self, client: aiomqtt.Client, events: Subscription) -> None:
        async for stored in events:
            event = stored.event
            if forwards_to_ha(event):
                await _publish(client, self.topics.ha_event, json.dumps(ha_event_payload(event)), qos=1)
            for route in self.ha_event_routes:
                routed = route(event)
                if routed is not None:
                    await _publish(client, routed[0], json.dumps(routed[1]), qos=1)

    # ---- incoming messages and commands ---------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client, ha_status: str | None) -> None:
        cmd_prefix = self.topics.cmd_prefix
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            if topic.startswith(cmd_prefix) or topic.startswith(self.topics.ha_cmd_prefix):
                try:
                    self._commands_in.put_nowait((topic, payload))
                except asyncio.QueueFull:
                    self.commands_dropped += 1
                    log.warning("uplink: command queue full; dropped a command on %.200s", topic)
            elif topic == ha_status and payload == b"online" and not message.retain:
                self._discovery_wake.set()

    async def _command_worker(self) -> None:
        # Commands run here, outside the connection's tasks, so a dropped connection never
        # cancels a handler half way (a door relay, a config switch).
        while True:
            topic, payload = await self._commands_in.get()
            try:
                if topic.startswith(self.topics.ha_cmd_prefix):
                    await self.handle_ha_command(topic, payload)
                else:
                    await self.handle_command(topic, payload)
            except Exception:
                log.exception("uplink: command on %.200s failed unexpectedly", topic)

    async def handle_command(self, topic: str, payload: bytes) -> bool:
        """Verify and run one command message; True when it executed. Public for tests/tools."""
        try:
            command = self.verifier.verify(topic, payload)
        except CommandRejected as rejected:
            await self._rejected(topic, rejected, None)
            return False
        try:
            result = await self.commands.execute(command)
        except CommandRejected as rejected:
            await self._rejected(topic, rejected, command)
            return False
        await self.controller.bus.emit(
            "command.executed",
            SOURCE,
            {"command": command.name, "id": command.id, "alg": command.alg, "signer": command.signer},
        )
        await self._publish_result(command.id, {"id": command.id, "ok": True, "result": result})
        return True

    async def handle_ha_command(self, topic: str, payload: bytes) -> None:
        """One Home Assistant command; a topic nobody registered is ignored (HA may still hold a
        retained command for an entity that is gone)."""
        handler = self.ha_commands.get(topic)
        if handler is None:
            log.info("uplink: no handler for Home Assistant command on %.200s", topic)
            return
        await handler(payload[:256])  # HA's payloads are words like UNLOCK: never more than this

    async def _rejected(self, topic: str, rejected: CommandRejected, command: Command | None) -> None:
        command_id = command.id if command is not None else rejected.command_id
        name = command.name if command is not None else rejected.name
        log.warning("uplink: command rejected (%s): %s on %.200s", rejected.reason, rejected.message, topic)
        # A flood of junk must not flood the journal (these events are kept for a year).
        if not self._rejections.take():
            self.rejections_suppressed += 1
            return
        data: dict[str, Any] = {"reason": rejected.reason, "message": rejected.message, "topic": topic[:200]}
        if command_id is not None:
            data["id"] = command_id
        if name:
            data["command"] = name
        if rejected.issues:
            data["issues"] = rejected.issues
        if self.rejections_suppressed:
            data["suppressed"] = self.rejections_suppressed
            self.rejections_suppressed = 0
        await self.controller.bus.emit("command.rejected", SOURCE, data, Severity.WARNING)
        # A replay gets no result: the original already has one on this id's topic, and a QoS 1
        # redelivery of a command that ran must not read as a failure there.
        if command_id is not None and rejected.reason != "replayed":
            await self._publish_result(command_id, {"id": command_id, "ok": False, "error": rejected.error()})

    async def _publish_result(self, command_id: str, payload: dict[str, Any]) -> None:
        client = self._client
        if client is None:
            log.info("uplink: offline; result of command %s not published", command_id)
            return
        try:
            await _publish(client,
                self.topics.cmd_result(command_id), json.dumps(payload, default=str), qos=1, timeout=10
            )
        except (MqttError, ValueError) as exc:
            log.warning("uplink: result of command %s not published: %s", command_id, exc)

    # ---- configuration ------------------------------------------------------------------------

    def _resolve(self, path: Path) -> Path:
        """Relative key and certificate paths are relative to the site file's folder."""
        config_path = getattr(self.controller, "config_path", None)
        if path.is_absolute() or config_path is None:
            return path
        return Path(config_path).resolve().parent / path

    def _load_keys(self, config: SiteConfig) -> None:
        section = config.uplink.commands
        problems: list[str] = []
        hmac_key = None
        if section.hmac_key_file is not None:
            try:
                hmac_key = load_hmac_key(self._resolve(section.hmac_key_file))
            except (OSError, ValueError) as exc:
                problems.append(f"uplink.commands.hmac_key_file: {exc}")
        keys = []
        for index, text in enumerate(section.ed25519_public_keys):
            try:
                keys.append(parse_ed25519_public_key(text))
            except ValueError as exc:
                problems.append(f"uplink.commands.ed25519_public_keys[{index}]: {exc}")
        # A key that fails to load is dropped, never kept from before: commands fail closed.
        self.verifier.set_keys(hmac_key, keys)
        self.verifier.set_limits(section.max_skew_s, section.max_bytes)
        self.key_problems = problems
        for problem in problems:
            log.error("remote commands: %s", problem)
        if problems:
            self._emit("command.keys_invalid", {"errors": problems}, Severity.WARNING)

    async def _on_reload(self, config: SiteConfig) -> None:
        self._load_keys(config)
        self._refused_seqs.clear()  # an operator action: give refused events another chance
        key = _settings_key(config)
        if key != self._settings:
            if self._settings is None or key[0]["broker"] != self._settings[0]["broker"]:
                self._v311_only = False
            self._restart.set()

    def _emit(self, type: str, data: dict[str, Any], severity: Severity = Severity.INFO) -> None:
        self.controller.bus.emit_soon(type, SOURCE, data, severity)


def _settings_key(config: SiteConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a running connection depends on (command keys are swapped without reconnecting)."""
    return config.uplink.model_dump(exclude={"commands"}), config.homeassistant.model_dump()


class _ConnectWatch:
    """Watches a client's socket while it connects.

    aiomqtt only learns of a connection closed before CONNACK from its own timeout, which would
    add that much to every such attempt; here a closed socket fails the pending connect at once.
    `reached` tells whether the TCP (and TLS) connection was made, i.e. whether a failure came
    from the broker's side of MQTT rather than from the network.
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        self.reached = False
        self.active = True
        loop = asyncio.get_running_loop()
        paho = client._client
        on_open, on_close = paho.on_socket_open, paho.on_socket_close

        def fail() -> None:
            future = client._connected
            if self.active and not future.done():
                future.set_exception(_ClosedBeforeConnack("the broker closed the connection before CONNACK"))

        def on_socket_open(paho_client: Any, userdata: Any, sock: Any) -> None:
            self.reached = True
            if on_open is not None:
                on_open(paho_client, userdata, sock)

        def on_socket_close(paho_client: Any, userdata: Any, sock: Any) -> None:
            if on_close is not None:
                on_close(paho_client, userdata, sock)
            loop.call_soon_threadsafe(fail)  # paho may call this from the connect thread

        paho.on_socket_open = on_socket_open
        paho.on_socket_close = on_socket_close


def _abandon(client: aiomqtt.Client) -> None:
    """Close the socket of a client whose CONNECT failed: aiomqtt leaves it open (and watched by
    the event loop) after a refused or timed-out CONNACK."""
    with contextlib.suppress(Exception):
        client._client._sock_close()


def _rc_value(rc: int | ReasonCode | None) -> int | None:
    if isinstance(rc, ReasonCode):
        return rc.value
    return rc


async def _publish(client: aiomqtt.Client, topic: str, payload: Any, **kwargs: Any) -> None:
    """`client.publish`, re-raising a cancellation that aiomqtt's `asyncio.wait_for` swallowed: on
    Python 3.11 a cancel that lands as the publish completes is lost, and the task (a TaskGroup
    member, so the whole session and the controller's stop) would never end. Compared with the
    count before the call: 3.11's TaskGroup can leave an earlier request counted on its parent."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    await client.publish(topic, payload, **kwargs)
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError


def _leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        exc = _leaf(exc)
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if isinstance(exc, MqttError) and cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    return f"{type(exc).__name__}: {text}"
