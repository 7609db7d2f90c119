"""The alarm panel in the daemon: bus events -> rules.alarm Panel -> events, sirens, state, Home Assistant.

Edge wires the parts (the panel itself does no I/O):

- inputs: a lossless bus subscription to the drivers' reports for the devices the `alarm:` section
  names (the shared driver contract): `input.changed` {point, state}, OSDP `reader.input`
  {input, active} as point `input<n>`, `device.offline`/`device.online` (supervision),
  `device.tamper`/`reader.tamper` {active}, `device.battery` {low}.
- one panel step at a time (a lock): inputs, timer ticks at the panel's next deadline, and requests
  (API, signed MQTT commands, Home Assistant) all go through `_step`.
- each step's output: sirens are switched first (in order per siren, through `controller.modbus` /
  `controller.zigbee`; a missing or failing output is an `alarm.trouble`, never a crash), the
  panel's state is written through to `data_dir/alarm.db` (SQLite) and the events are journaled.
  A restarted daemon comes back in the persisted state; sirens sound again only if the alarm is
  still within its siren time.
- the retained state `state/alarm.<partition>` (state, zones, memory, troubles) and
  `state/alarm.sirens`, and Home Assistant entities: an `alarm_control_panel` per partition (code
  checked here: HA sends it with `code: REMOTE_CODE`), a `binary_sensor` per zone, a `siren` per siren.

Home Assistant cannot sign its commands, so they arrive unsigned on `ha/cmd/alarm.<partition>`
(the uplink's `ha_commands`): they are only as trusted as the broker's ACL, and every one still
needs a valid user code, subject to the same lockout as a keypad. Commands to HA's siren entities
are refused (journaled): sirens follow the panel, and silencing one takes a disarm with a code.

User codes are checked against keyed hashes under the site's PIN key (`data_dir/pin.key`, the one
access control uses): `PinHasher.pin_only(code)` gives the `code_hash` for the site file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.access_store import AccessStoreError, load_pin_key
from edge.commands import BadArgs, CommandRejected, CommandRouter
from edge.events import Event, Severity
from edge.homeassistant import Entity
from edge.topics import Topics
from rules.access import PinHasher
from rules.alarm import ARM_MODES, AlarmSection, Output, Panel, Result, SirenConfig, SirenRequest

if TYPE_CHECKING:
    from edge.daemon import Controller

log = logging.getLogger(__name__)

SOURCE = "alarm"
INPUT_TYPES = frozenset({
    "input.changed", "reader.input", "device.online", "device.offline", "device.tamper", "reader.tamper",
    "device.battery",
})
COMMANDS = ("alarm/arm", "alarm/disarm", "alarm/bypass")
HA_ACTIONS = {"ARM_AWAY": "away", "ARM_HOME": "home", "ARM_NIGHT": "night", "ARM_VACATION": "vacation"}
SIRENS_STATE = "alarm.sirens"
MAX_CODE_CHARS = 16
SIREN_TIMEOUT_S = 10.0


def hash_code(data_dir: Path, code: str) -> str:
    """A user code's `code_hash` for the site file, under this box's PIN key (created if missing).
    Raises ValueError unless the code is 4-8 digits. (For a `linli hash-code` command.)"""
    return PinHasher(load_pin_key(data_dir / "pin.key")).pin_only(code)


def partition_state_key(partition: str) -> str:
    """The partition's `state/<key>` level (device ids have no dots, so none can take it)."""
    return f"alarm.{partition}"


class AlarmStore:
    """The panel's persisted state: one JSON document in SQLite, replaced on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._executor is not None, "the alarm store is not open"
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> dict[str, Any] | None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="alarm-store")
        return await self._run(self._open_sync)  # type: ignore[no-any-return]

    def _open_sync(self) -> dict[str, Any] | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # an armed panel must come back armed after a power cut
        db.execute("CREATE TABLE IF NOT EXISTS alarm_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db = db
        row = db.execute("SELECT value FROM alarm_state WHERE key = 'panel'").fetchone()
        if row is None:
            return None
        try:
            state = json.loads(row[0])
        except ValueError:
            log.error("alarm state in %s is unreadable; starting disarmed", self.path)
            return None
        return state if isinstance(state, dict) else None

    async def save(self, state: dict[str, Any]) -> None:
        await self._run(self._save_sync, json.dumps(state, separators=(",", ":")))

    def _save_sync(self, text: str) -> None:
        assert self._db is not None
        self._db.execute("INSERT OR REPLACE INTO alarm_state (key, value) VALUES ('panel', ?)", (text,))

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)
        self._executor = None


class AlarmService:
    """Started by the Controller (supervised task `alarm`) when the site file has alarm partitions."""

    def __init__(self, controller: Controller, *, clock: Callable[[], float] = time.time) -> None:
        self.controller = controller
        self.config: AlarmSection = controller.config.alarm
        self.clock = clock
        self.store = AlarmStore(controller.config.data_dir / "alarm.db")
        self.panel: Panel | None = None
        self.ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self._siren_locks: dict[str, asyncio.Lock] = {s.id: asyncio.Lock() for s in self.config.sirens}
        self._sirens = {s.id: s for s in self.config.sirens}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._devices = {z.source.device for z in self.config.zones} | {
            s.output.device if s.output is not None else str(s.zigbee) for s in self.config.sirens
        }
        self._ha_topics: list[str] = []
        self._entities: list[Any] = []

    # ---- lifecycle ---------------------------------------------------------------------------------

    async def run(self) -> None:
        data_dir = self.controller.config.data_dir
        try:
            key = await asyncio.to_thread(load_pin_key, data_dir / "pin.key")
        except (AccessStoreError, OSError) as exc:
            # Restarting cannot fix an unsafe or unreadable key: say so once instead of crash-looping.
            log.error("alarm panel cannot check codes: %s", exc)
            await self.controller.bus.emit("alarm.config_problem", SOURCE, {
                "problem": "pin_key_unusable", "error": str(exc),
                "effect": "the alarm panel does not run until this is fixed and Linli is restarted",
            }, Severity.ALARM)
            await asyncio.Event().wait()
        self.panel = Panel(self.config, PinHasher(key).lookup_key)
        events = self.controller.bus.subscribe("alarm", maxsize=1000, lossless=True, accept=self._wanted)
        try:
            saved = await self.store.open()
            async with self._lock:
                out = self.panel.restore(saved, self.clock()) if saved is not None else Output(changed=True)
                await self._apply(out, every_partition=True)
            self._register()
            self.ready.set()
            async for stored in events:
                await self._on_event(stored.event)
        finally:
            self.ready.clear()
            events.close()
            self._unregister()
            if self._timer is not None:
                self._timer.cancel()
            for task in list(self._tasks):
                task.cancel()
            await self.store.close()

    def _wanted(self, event: Event) -> bool:
        return event.type in INPUT_TYPES and event.source in self._devices

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- inputs -------------------------------------------------------------------------------------

    async def _on_event(self, event: Event) -> None:
        data, source, panel = event.data, event.source, self.panel
        assert panel is not None
        now = self.clock()
        async with self._lock:
            match event.type:
                case "input.changed":
                    point, state = data.get("point"), data.get("state")
                    if not isinstance(point, str) or not isinstance(state, str):
                        return
                    detail = data.get("detail")
                    out = panel.input_changed(source, point, state, now, detail if isinstance(detail, str) else "")
                case "reader.input":
                    number = data.get("input")
                    if not isinstance(number, int) or isinstance(number, bool):
                        return
                    out = panel.input_changed(source, f"input{number}", "active" if data.get("active") else "normal",
                                              now)
                case "device.offline" | "device.online":
                    out = panel.device_trouble(source, "offline", event.type == "device.offline", now,
                                               str(data.get("reason", ""))[:200])
                    if event.type == "device.online":
                        self._resend_sirens(source)
                case "device.tamper" | "reader.tamper":
                    out = panel.device_trouble(source, "tamper", bool(data.get("active")), now)
                case "device.battery":
                    out = panel.device_trouble(source, "battery", bool(data.get("low")), now)
                case _:
                    return
            await self._apply(out)

    def _tick(self) -> None:
        self._timer = None
        self._spawn(self._tick_now())

    async def _tick_now(self) -> None:
        assert self.panel is not None
        async with self._lock:
            await self._apply(self.panel.tick(self.clock()))

    # ---- requests (API, MQTT, Home Assistant) ---------------------------------------------------------

    async def arm(self, partition: str, mode: str, code: str, *, force: bool = False, origin: str) -> Result:
        assert self.panel is not None
        async with self._lock:
            result = self.panel.arm(partition, mode, code, self.clock(), force=force, origin=origin)
            await self._apply(result.output, partitions={partition})
        return result

    async def disarm(self, partition: str, code: str, *, origin: str) -> Result:
        assert self.panel is not None
        async with self._lock:
            result = self.panel.disarm(partition, code, self.clock(), origin=origin)
            await self._apply(result.output, partitions={partition})
        return result

    async def bypass(self, partition: str, zone: str, code: str, *, on: bool = True, origin: str) -> Result:
        assert self.panel is not None
        async with self._lock:
            result = self.panel.bypass(partition, zone, code, self.clock(), on=on, origin=origin)
            await self._apply(result.output, partitions={partition})
        return result

    async def refuse(self, partition: str, reason: str, origin: str, **detail: Any) -> None:
        """A request stopped before the panel (wrong role, someone else's apartment): on the record too."""
        data: dict[str, Any] = {"partition": partition, "reason": reason, "origin": origin, **detail}
        part = self.panel.partitions.get(partition) if self.panel is not None else None
        if part is not None and part.apartment is not None:
            data["apartment"] = part.apartment
        await self.controller.bus.emit("alarm.request_refused", partition if part else SOURCE, data,
                                       Severity.WARNING)

    # ---- output -------------------------------------------------------------------------------------

    async def _apply(self, out: Output, *, partitions: set[str] | None = None, every_partition: bool = False) -> None:
        """Carry out one panel step: sirens first, then persist and journal, then publish. Runs under the lock."""
        assert self.panel is not None
        for request in out.sirens:
            self._spawn(self._drive_siren(request))
        bus, make = self.controller.bus, self.controller.factory
        futures = [await bus.submit(make(e.type, e.source, dict(e.data), e.severity)) for e in out.events]
        if out.changed:
            await self.store.save(self.panel.to_state())
        if futures:
            await asyncio.gather(*futures)
        self._squawk(out)
        touched = set(self.panel.partitions) if every_partition else {e.data["partition"] for e in out.events}
        touched |= (partitions or set()) & set(self.panel.partitions)
        await self._publish(touched, sirens=bool(out.sirens) or every_partition)
        self._schedule()

    def _schedule(self) -> None:
        assert self.panel is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.panel.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - self.clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    async def _drive_siren(self, request: SirenRequest) -> None:
        """One siren request, in order per siren; the outcome (ok or failed) goes back to the panel."""
        siren = self._sirens[request.siren]
        async with self._siren_locks[request.siren]:
            error = None
            try:
                async with asyncio.timeout(SIREN_TIMEOUT_S):  # a hung transport must not hold the siren's queue
                    await self._switch(siren, request.on, request.duration_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a module offline, a transport not configured: a trouble, not a crash
                error = f"{type(exc).__name__}: {exc}"
                log.warning("siren %s not switched %s: %s", siren.id, "on" if request.on else "off", error)
        assert self.panel is not None
        async with self._lock:
            await self._apply(self.panel.siren_result(request.siren, error, self.clock()))

    async def _switch(self, siren: SirenConfig, on: bool, duration_s: float) -> None:
        if siren.output is not None:
            modbus = getattr(self.controller, "modbus", None)
            if modbus is None:
                raise RuntimeError("no Modbus service is running (modbus: section)")
            await modbus.set_output(siren.output.device, siren.output.point, on)
        else:
            zigbee = getattr(self.controller, "zigbee", None)
            if zigbee is None:
                raise RuntimeError("no Zigbee service is running (zigbee: section)")
            await zigbee.siren(str(siren.zigbee), on, duration_s if on else 0)

    def _resend_sirens(self, device: str) -> None:
        """A siren's device is back: it may have lost its output state, so say it again."""
        assert self.panel is not None
        for siren in self.config.sirens:
            if (siren.output.device if siren.output is not None else siren.zigbee) == device:
                remaining = self.panel.siren_remaining(siren, self.clock())
                self._spawn(self._drive_siren(SirenRequest(siren.id, remaining is not None, remaining or 0.0)))

    def _squawk(self, out: Output) -> None:
        """Zigbee sirens chirp on arming and disarming, as residents expect of a home panel."""
        zigbee = getattr(self.controller, "zigbee", None)
        if zigbee is None:
            return
        for event in out.events:
            if event.type not in ("alarm.armed", "alarm.disarmed"):
                continue
            for siren in self.config.sirens:
                if siren.zigbee is not None and siren.sounds_for(event.data["partition"]):
                    self._spawn(_quietly(zigbee.squawk(siren.zigbee, event.type == "alarm.armed")))

    # ---- state for the platform and Home Assistant --------------------------------------------------

    def partition_state(self, partition: str) -> dict[str, Any]:
        assert self.panel is not None
        status = self.panel.partition_status(partition)
        status["zones"] = {z.cfg.id: {"state": z.state, "bypassed": z.bypassed, "type": z.cfg.type}
                           for z in self.panel.zones_of(partition)}
        return status

    def sirens_state(self) -> dict[str, str]:
        assert self.panel is not None
        return {s.id: "ON" if s.id in self.panel.sirens_on else "OFF" for s in self.config.sirens}

    async def _publish(self, partitions: set[str], *, sirens: bool) -> None:
        uplink = self.controller.uplink
        if uplink is None:
            return
        for pid in sorted(partitions):
            await uplink.publish_state(partition_state_key(pid), self.partition_state(pid))
        if sirens and self.config.sirens:
            await uplink.publish_state(SIRENS_STATE, self.sirens_state())

    def _register(self) -> None:
        register_alarm_commands(self.controller.commands, self)
        uplink = self.controller.uplink
        if uplink is None or not self.controller.config.homeassistant.enabled:
            return
        self._entities = alarm_entities(uplink.topics, self.config)
        uplink.ha_entities.extend(self._entities)
        handlers = getattr(uplink, "ha_commands", None)
        if handlers is not None:
            for p in self.config.partitions:
                topic = uplink.topics.ha_command(partition_state_key(p.id))
                handlers[topic] = self._ha_handler(p.id)
                self._ha_topics.append(topic)
            for s in self.config.sirens:
                topic = uplink.topics.ha_command(f"alarm.siren.{s.id}")
                handlers[topic] = self._ha_siren_handler(s.id)
                self._ha_topics.append(topic)
        uplink.request_discovery()

    def _unregister(self) -> None:
        for name in COMMANDS:
            self.controller.commands.unregister(name)
        uplink = self.controller.uplink
        if uplink is None:
            return
        for entity in self._entities:
            with contextlib.suppress(ValueError):
                uplink.ha_entities.remove(entity)
        handlers = getattr(uplink, "ha_commands", {})
        for topic in self._ha_topics:
            handlers.pop(topic, None)
        self._entities, self._ha_topics = [], []

    def _ha_handler(self, partition: str) -> Callable[[bytes], Any]:
        async def handle(payload: bytes) -> None:
            try:
                body = json.loads(payload)
                action, code = body["action"], body["code"]
                if not isinstance(action, str) or not isinstance(code, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                await self.refuse(partition, "malformed", "home_assistant",
                                  payload=payload[:64].decode("utf-8", "replace"))
                return
            code = code[:MAX_CODE_CHARS]
            if action == "DISARM":
                result = await self.disarm(partition, code, origin="home_assistant")
            elif action in HA_ACTIONS:
                result = await self.arm(partition, HA_ACTIONS[action], code, origin="home_assistant")
            else:
                await self.refuse(partition, "unsupported", "home_assistant", action=action[:32])
                return
            if not result.ok:
                await self._publish({partition}, sirens=False)  # HA shows the state it really is in

        return handle

    def _ha_siren_handler(self, siren: str) -> Callable[[bytes], Any]:
        async def handle(payload: bytes) -> None:
            partition = next(p.id for p in self.config.partitions if self._sirens[siren].sounds_for(p.id))
            await self.refuse(partition, "siren_follows_the_panel", "home_assistant", siren=siren,
                              payload=payload[:16].decode("utf-8", "replace"))
            await self._publish(set(), sirens=True)

        return handle


# ---- signed MQTT commands ---------------------------------------------------------------------------


def register_alarm_commands(router: CommandRouter, service: AlarmService) -> None:
    """`alarm/arm` {partition, mode, code, force?}, `alarm/disarm` {partition, code} and `alarm/bypass`
    {partition, zone, code, bypass?}: signed by the platform, and still each needs a user's code."""

    async def arm(args: dict[str, Any]) -> dict[str, Any]:
        a = parse_request(args, mode=True)
        result = await service.arm(a["partition"], a["mode"], a["code"], force=a.get("force", False), origin="mqtt")
        return answer(service, result, a["partition"])

    async def disarm(args: dict[str, Any]) -> dict[str, Any]:
        a = parse_request(args)
        return answer(service, await service.disarm(a["partition"], a["code"], origin="mqtt"), a["partition"])

    async def bypass(args: dict[str, Any]) -> dict[str, Any]:
        a = parse_request(args, zone=True)
        result = await service.bypass(a["partition"], a["zone"], a["code"], on=a.get("bypass", True), origin="mqtt")
        return answer(service, result, a["partition"])

    router.register("alarm/arm", arm, replace=True)
    router.register("alarm/disarm", disarm, replace=True)
    router.register("alarm/bypass", bypass, replace=True)


def answer(service: AlarmService, result: Result, partition: str) -> dict[str, Any]:
    if not result.ok:
        raise CommandRejected("failed", f"refused: {result.reason}",
                              issues=[f"{k}: {v}" for k, v in result.detail.items()])
    return {"partition": partition, "state": service.partition_state(partition)["state"], "user": result.user}


def parse_request(args: dict[str, Any], *, zone: bool = False, mode: bool = False) -> dict[str, Any]:
    """Check an MQTT command's args (raises BadArgs)."""
    allowed = {"partition", "code"} | ({"zone", "bypass"} if zone else set()) | ({"mode", "force"} if mode else set())
    extra = set(args) - allowed
    if extra:
        raise BadArgs(f"unknown args: {sorted(extra)}")
    for key in ("partition", "code", *(["zone"] if zone else []), *(["mode"] if mode else [])):
        if not isinstance(args.get(key), str) or not args[key] or len(args[key]) > 64:
            raise BadArgs(f"'{key}' must be a non-empty string")
    if mode and args["mode"] not in ARM_MODES:
        raise BadArgs(f"'mode' must be one of {list(ARM_MODES)}")
    for key in ("force", "bypass"):
        if key in args and not isinstance(args[key], bool):
            raise BadArgs(f"'{key}' must be true or false")
    return args


# ---- Home Assistant entities ------------------------------------------------------------------------


def _object_id(value: str) -> str:
    return value.replace("-", "_")


def alarm_entities(topics: Topics, config: AlarmSection) -> list[Entity]:
    """An `alarm_control_panel` per partition, a `binary_sensor` per zone, a `siren` per siren."""
    entities: list[Entity] = []
    for p in config.partitions:
        key = partition_state_key(p.id)
        entities.append(Entity("alarm_control_panel", f"alarm_{_object_id(p.id)}", p.name or f"Alarm {p.id}", {
            "state_topic": topics.state(key),
            "value_template": "{{ value_json.state }}",
            "command_topic": topics.ha_command(key),
            # HA asks for the code and sends it along; it is checked here, with the lockout.
            "code": "REMOTE_CODE",
            "code_arm_required": True,
            "code_disarm_required": True,
            "code_trigger_required": True,
            "command_template": '{"action": "{{ action }}", "code": "{{ code }}"}',
            "supported_features": ["arm_home", "arm_away", "arm_night", "arm_vacation"],
        }))
    for z in config.zones:
        entities.append(Entity("binary_sensor", f"zone_{_object_id(z.id)}", z.name or z.id, {
            "state_topic": topics.state(partition_state_key(z.partition)),
            "value_template": f"{{{{ 'OFF' if value_json.zones['{z.id}'].state == 'normal' else 'ON' }}}}",
            "device_class": z.ha_device_class,
            "json_attributes_topic": topics.state(partition_state_key(z.partition)),
            "json_attributes_template": f"{{{{ value_json.zones['{z.id}'] | tojson }}}}",
        }))
    for s in config.sirens:
        entities.append(Entity("siren", f"siren_{_object_id(s.id)}", s.name or s.id, {
            "state_topic": topics.state(SIRENS_STATE),
            "state_value_template": f"{{{{ value_json['{s.id}'] }}}}",
            "command_topic": topics.ha_command(f"alarm.siren.{s.id}"),
            "support_duration": False,
            "support_volume_set": False,
        }))
    return entities


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except Exception as exc:
        log.info("siren squawk failed: %s", exc)
