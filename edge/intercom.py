"""Intercom in the daemon: panel/indoor-unit buses (drivers.intercom) <-> call routing (rules.intercom).

- one IntercomBus per configured bus. Its callback only queues (it runs inside the driver's read
  path); one worker feeds the messages to the CallRouter in order. Platform commands and timers go
  through the same lock, so the router sees one input at a time.
- the router's events are committed to the journal *before* its actions run: an unlock that is
  not on the audit trail never opens anything, and the platform hears of every step over MQTT.
- actions become driver commands, spawned in order (the bus queue is FIFO, so a panel is told
  "ringing" before the units ring). A command the device does not acknowledge is journaled
  (`intercom.command_not_delivered`), never delivered late.
- the unlock: a panel whose config names an access `door` asks access control
  (`controller.access.remote_unlock(door, origin="intercom", actor=...)`), which journals it and
  pulses the door through its state machine (the door must list `intercom` in `remote_unlock`);
  a panel without a door pulses its own relay (`intercom.unlock_s`).
- remote answer/reject/unlock from the platform are signed MQTT commands (`intercom/answer`,
  `intercom/reject`, `intercom/unlock`) naming the call id and the apartment they act for; the
  uplink verifies signature and replay, the router decides, the result says what happened.
  Arguments: `{"call_id": ..., "apartment": ..., "actor": ...}` (the resident the platform acts
  for), plus for an unlock an optional `request_id` (a repeated one is refused `replayed`). The
  result is `{"call_id", "done"}`, or reason `failed` with the router's refusal in `issues`
  (no_call, wrong_apartment, not_ringing, grace_expired, replayed, already_unlocked, ...).
- Home Assistant: each panel is an `event` entity (device class doorbell) fed with its calls'
  events (ringing, call, answered, missed, unlock, ended); a panel with `home_assistant_unlock`
  also gets an unlock `button` (HA cannot sign: only the broker's ACL guards it, so it is off by
  default, and it opens only during a call at that panel or its grace window). Each panel's
  current call is its retained device state.
- visitor passes are not decided here: a keypad code or QR token at a panel is an event
  (`intercom.code_entered` with its length only, `intercom.qr_scanned` with its length and a hash
  prefix) and is handed to `credential_handlers`, which access control can join.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drivers.intercom import BusOffline, BusOnline, DeviceKind, DeviceOffline, DeviceOnline, DeviceSpec, IntercomBus
from drivers.intercom import CallState as WireState
from drivers.intercom.config import PanelConfig
from drivers.intercom.model import Timing
from drivers.intercom.protocol import (
    Answer,
    CallCancel,
    CallRequest,
    Dnd,
    HangUp,
    KeypadCode,
    Message,
    QrToken,
    Tamper,
    UnlockRequest,
)
from edge.commands import BadArgs, CommandRejected, CommandRouter
from edge.events import Event, Severity, new_event_id
from edge.intercom_config import IntercomSection
from rules.intercom import (
    Action,
    AppAnswer,
    AppHangUp,
    AppUnlock,
    CallCancelled,
    CallRequested,
    CallRouter,
    DeviceDown,
    DeviceUp,
    Input,
    Output,
    PanelState,
    PanelUnlock,
    Ring,
    ShowState,
    StopRing,
    Tick,
    UnitAnswer,
    UnitDnd,
    UnitHangUp,
    UnitUnlock,
    UnlockDoor,
)

if TYPE_CHECKING:
    from edge.daemon import Controller

log = logging.getLogger(__name__)

SOURCE = "intercom"
INBOX = 10_000
COMMANDS = ("intercom/answer", "intercom/reject", "intercom/unlock")
HA_EVENT_TYPES = ("ringing", "call", "answered", "missed", "unlock", "ended")

_WIRE = {
    PanelState.RINGING: WireState.RINGING,
    PanelState.ANSWERED: WireState.ANSWERED,
    PanelState.BUSY: WireState.BUSY,
    PanelState.REJECTED: WireState.REJECTED,
    PanelState.TIMED_OUT: WireState.TIMED_OUT,
    PanelState.ENDED: WireState.ENDED,
}

CredentialHandler = Callable[[str, str, str | bytes], Awaitable[None]]  # (panel, "code"|"qr", value)


def utcnow() -> datetime:
    return datetime.now(UTC)


class IntercomService:
    """Started by the Controller (supervised task `intercom`) when the site file has intercom buses."""

    def __init__(self, controller: Controller, *, timing: Timing | None = None) -> None:
        self.controller = controller
        self.section: IntercomSection = controller.config.intercom
        routing = self.section.routing(controller.config.site.timezone)
        uplink = controller.config.uplink
        if not (uplink.enabled and uplink.broker):
            # No platform to ring the resident's app: the call goes from the units to the guard.
            routing = dataclasses.replace(routing, app_ring_s=0.0)
        self.router = CallRouter(routing, new_id=new_event_id)
        self.timing = timing
        self.buses: list[IntercomBus] = []
        self.panels: dict[str, PanelConfig] = {p.id: p for p in self.section.panels()}
        self._bus_of: dict[str, IntercomBus] = {}
        self._address: dict[str, int] = {}
        self._inbox: asyncio.Queue[tuple[str, Message] | Input] = asyncio.Queue(INBOX)
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.dropped = 0
        # Who gets a keypad code or QR token typed at a panel; visitor passes by default.
        self.credential_handlers: list[CredentialHandler] = [self._visitor_pass]
        self.ready = asyncio.Event()
        self._ha_entities: list[Any] = []
        self._ha_commands: list[str] = []

    # ---- lifecycle ----------------------------------------------------------------------------------

    async def run(self) -> None:
        for bus_cfg in self.section.buses:
            specs = [DeviceSpec(p.id, p.address, DeviceKind.PANEL) for p in bus_cfg.panels]
            specs += [DeviceSpec(u.id, u.address, DeviceKind.INDOOR_UNIT) for u in bus_cfg.indoor_units]
            bus = IntercomBus(bus_cfg.port, specs, self._on_message, baudrate=bus_cfg.baudrate, timing=self.timing)
            self.buses.append(bus)
            for spec in specs:
                self._bus_of[spec.id] = bus
                self._address[spec.id] = spec.address
        worker = asyncio.create_task(self._worker())
        try:
            await self._report_config_problems()
            for bus in self.buses:
                await bus.start()
            register_intercom_commands(self.controller.commands, self)
            self._announce_to_home_assistant()
            self.ready.set()
            await asyncio.Event().wait()
        finally:
            self.ready.clear()
            unregister_intercom_commands(self.controller.commands)
            self._withdraw_from_home_assistant()
            if self._timer is not None:
                self._timer.cancel()
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            for bus in self.buses:
                await bus.stop()
            for task in list(self._tasks):
                task.cancel()

    async def _report_config_problems(self) -> None:
        doors = {d.id for d in self.controller.config.doors}
        missing = sorted(p.id for p in self.panels.values() if p.door is not None and p.door not in doors)
        if missing:
            await self.controller.bus.emit(
                "intercom.config_problem",
                SOURCE,
                {"problem": "no_such_door", "panels": missing, "effect": "unlock at these panels is refused"},
                Severity.WARNING,
            )

    # ---- driver side ----------------------------------------------------------------------------------

    def _on_message(self, device_id: str, msg: Message) -> None:
        """Runs in the driver's read path: queue and return."""
        try:
            self._inbox.put_nowait((device_id, msg))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("intercom inbox full; dropped %s from %s", type(msg).__name__, device_id)

    async def _worker(self) -> None:
        while True:
            item = await self._inbox.get()
            try:
                if isinstance(item, tuple):
                    await self._device_message(*item)
                else:
                    await self.step(item)
            except Exception:
                log.exception("intercom: handling %r failed", item)

    async def _device_message(self, device: str, msg: Message) -> None:
        bus = self.controller.bus
        if isinstance(msg, BusOnline | BusOffline):
            online = isinstance(msg, BusOnline)
            data = {} if online else {"error": msg.error}
            await bus.emit("bus.online" if online else "bus.offline", device, data,
                           Severity.INFO if online else Severity.WARNING)
        elif isinstance(msg, DeviceOnline):
            self.controller.devices.seen(device)
            status: dict[str, Any] = {}
            if msg.status is not None:
                major, minor = msg.status.version
                status = {"kind": msg.status.kind.name.lower(), "version": f"{major}.{minor}"}
            await bus.emit("device.online", device, status)
            await self.step(DeviceUp(device))
            if msg.status is not None and msg.status.kind is DeviceKind.INDOOR_UNIT:
                await self.step(UnitDnd(device, msg.status.dnd))
            self._publish_state(device)
        elif isinstance(msg, DeviceOffline):
            registered = self.controller.devices.get(device)
            if registered is not None:
                registered.online = False
            await bus.emit("device.offline", device, {"reason": msg.reason}, Severity.WARNING)
            await self.step(DeviceDown(device, msg.reason))
            self._publish_state(device)
        elif isinstance(msg, CallRequest):
            await self.step(CallRequested(device, msg.apartment, msg.entry))
        elif isinstance(msg, CallCancel):
            await self.step(CallCancelled(device))
        elif isinstance(msg, Answer):
            await self.step(UnitAnswer(device, msg.call))
        elif isinstance(msg, HangUp):
            await self.step(UnitHangUp(device, msg.call))
        elif isinstance(msg, UnlockRequest):
            await self.step(UnitUnlock(device, msg.call))
        elif isinstance(msg, Dnd):
            await bus.emit("intercom.dnd", device, {"on": msg.on})
            await self.step(UnitDnd(device, msg.on))
            self._publish_state(device)
        elif isinstance(msg, Tamper):
            await bus.emit("intercom.tamper", device, {"active": msg.active},
                           Severity.ALARM if msg.active else Severity.INFO)
        elif isinstance(msg, KeypadCode):
            # A code may be a visitor PIN: only its length goes on the record.
            await bus.emit("intercom.code_entered", device, {"panel": device, "length": len(msg.digits)})
            await self._hand_over(device, "code", msg.digits)
        elif isinstance(msg, QrToken):
            digest = hashlib.sha256(msg.token).hexdigest()[:16]
            await bus.emit("intercom.qr_scanned", device, {"panel": device, "length": len(msg.token), "sha256": digest})
            await self._hand_over(device, "qr", msg.token)

    async def _visitor_pass(self, panel_id: str, kind: str, value: str | bytes) -> None:
        """A visitor pass's PIN or QR token at a panel that opens an access door: access control
        decides (and rate-limits per panel); the panel's display says how it went."""
        door = self.panels[panel_id].door
        access = self.controller.access
        if door is None or access is None:
            return
        secret = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        granted = await access.use_pass(door, secret, via=f"intercom:{panel_id}")
        bus = self._bus_of.get(panel_id)
        if bus is not None:
            self._command(panel_id, "display", bus.display(panel_id, "Welcome" if granted else "Not valid"))

    async def _hand_over(self, panel: str, kind: str, value: str | bytes) -> None:
        for handler in list(self.credential_handlers):
            try:
                await handler(panel, kind, value)
            except Exception:
                log.exception("intercom: credential handler failed for %s at %s", kind, panel)

    # ---- the router ----------------------------------------------------------------------------------

    async def step(self, inp: Input) -> Output:
        """One input to the router: journal its events (committed), then carry out its actions."""
        async with self._lock:
            now = utcnow()
            out = self.router.apply(inp, now)
            await self._journal(out)
            for action in out.actions:
                self._carry_out(action)
            self._arm(out, now)
            self._publish_panel_states(out)
            return out

    async def _journal(self, out: Output) -> None:
        bus = self.controller.bus
        make = self.controller.factory
        futures = [await bus.submit(make(e.type, e.source, dict(e.data), e.severity)) for e in out.events]
        if futures:
            await asyncio.gather(*futures)

    def _arm(self, out: Output, now: datetime) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if out.next_deadline is not None:
            delay = max(0.0, (out.next_deadline - now).total_seconds())
            self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self._inbox.put_nowait(Tick())
        except asyncio.QueueFull:
            self.dropped += 1

    def _carry_out(self, action: Action) -> None:
        if isinstance(action, Ring):
            panel_address = self._address.get(action.panel, 0)
            for unit in action.units:
                self._command(unit, "ring", self._bus_of[unit].ring(unit, action.call_no, panel_address))
        elif isinstance(action, StopRing):
            state = _WIRE[action.state]
            for unit in action.units:
                self._command(unit, "ring_stop", self._bus_of[unit].ring_stop(unit, action.call_no, state))
        elif isinstance(action, ShowState):
            bus = self._bus_of[action.panel]
            self._command(action.panel, "call_state", bus.call_state(action.panel, action.call_no, _WIRE[action.state]))
        elif isinstance(action, UnlockDoor):
            self._spawn(self._unlock(action))

    def _command(self, device: str, what: str, send: Awaitable[bool]) -> None:
        async def run() -> None:
            if not await send:
                await self.controller.bus.emit(
                    "intercom.command_not_delivered", device, {"command": what}, Severity.WARNING
                )

        self._spawn(run())

    async def _unlock(self, action: UnlockDoor) -> None:
        panel = self.panels[action.panel]
        actor = f"{action.origin}:{action.by}"
        data: dict[str, Any] = {"call_id": action.call_id, "panel": panel.id, "apartment": action.apartment}
        ok = False
        if panel.door is not None:
            data["door"] = panel.door
            access = getattr(self.controller, "access", None)
            remote_unlock = getattr(access, "remote_unlock", None)
            if remote_unlock is None:
                data["error"] = "access control is not running"
            else:
                try:
                    ok = bool(await remote_unlock(panel.door, origin="intercom", actor=actor))
                except Exception as exc:  # RemoteUnlockRefused (not allowed, unknown door, stopped) or worse
                    data["error"] = str(exc)
                    data["reason"] = getattr(exc, "reason", type(exc).__name__)
        else:
            data["relay"] = panel.relay
            ok = await self._bus_of[panel.id].unlock(panel.id, self.section.unlock_s, panel.relay)
            if not ok:
                data["error"] = "the panel did not acknowledge the unlock"
        if not ok:
            await self.controller.bus.emit("intercom.unlock_failed", panel.id, data, Severity.WARNING)

    # ---- platform commands -----------------------------------------------------------------------------

    async def command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if not self.ready.is_set():
            raise CommandRejected("failed", "intercom is not running")
        call_id, apartment, actor = _arg(args, "call_id"), _arg(args, "apartment"), _arg(args, "actor")
        extra = set(args) - {"call_id", "apartment", "actor", "request_id"}
        if extra:
            raise BadArgs(f"unknown arguments: {sorted(extra)}")
        inp: Input
        if name == "intercom/answer":
            inp = AppAnswer(call_id, apartment, actor)
        elif name == "intercom/reject":
            inp = AppHangUp(call_id, apartment, actor)
        else:
            request_id = args.get("request_id", uuid.uuid4().hex)
            if not isinstance(request_id, str) or not 1 <= len(request_id) <= 64:
                raise BadArgs("request_id: a string of 1-64 characters")
            inp = AppUnlock(call_id, apartment, actor, request_id)
        out = await self.step(inp)
        if out.refused is not None:
            raise CommandRejected("failed", f"refused: {out.refused}", issues=[out.refused])
        return {"call_id": call_id, "done": name.rsplit("/", 1)[1]}

    # ---- Home Assistant and device state ----------------------------------------------------------------

    def _announce_to_home_assistant(self) -> None:
        """Each panel: an `event` entity (device class doorbell) fed with its calls' events and, where
        the panel allows it, an unlock `button`. Uses the uplink's `ha_event_routes` and
        `ha_commands` (an older uplink without them gets the entities only)."""
        uplink = self.controller.uplink
        if uplink is None:
            return
        from edge.homeassistant import Entity

        topics = uplink.topics
        routes = getattr(uplink, "ha_event_routes", None)
        commands = getattr(uplink, "ha_commands", None)
        for panel in self.panels.values():
            name = panel.name or panel.id
            object_id = panel.id.replace("-", "_")  # discovery object ids are [a-z0-9_]
            self._ha_entities.append(
                Entity(
                    "event",
                    f"intercom_{object_id}_doorbell",
                    f"{name} doorbell",
                    {
                        "state_topic": topics.ha_entity_event(ha_key(panel.id)),
                        "event_types": list(HA_EVENT_TYPES),
                        "device_class": "doorbell",
                    },
                )
            )
            if panel.home_assistant_unlock and commands is not None:
                topic = topics.ha_command(ha_key(panel.id))
                self._ha_entities.append(
                    Entity("button", f"intercom_{object_id}_unlock", f"{name} unlock",
                           {"command_topic": topic, "payload_press": "PRESS"})
                )
                commands[topic] = self._ha_button(panel.id)
                self._ha_commands.append(topic)
        uplink.ha_entities.extend(self._ha_entities)
        if routes is not None:
            routes.append(self._ha_route)
        uplink.request_discovery()

    def _withdraw_from_home_assistant(self) -> None:
        uplink = self.controller.uplink
        if uplink is None:
            return
        uplink.ha_entities[:] = [e for e in uplink.ha_entities if e not in self._ha_entities]
        commands = getattr(uplink, "ha_commands", {})
        for topic in self._ha_commands:
            commands.pop(topic, None)
        routes = getattr(uplink, "ha_event_routes", [])
        if self._ha_route in routes:
            routes.remove(self._ha_route)
        self._ha_entities, self._ha_commands = [], []

    def _ha_route(self, event: Event) -> tuple[str, dict[str, Any]] | None:
        """A panel's call events as its doorbell entity's events (HA fires on each)."""
        if not event.type.startswith("intercom.") or event.source not in self.panels:
            return None
        short = event.type.removeprefix("intercom.")
        if short not in HA_EVENT_TYPES:
            return None
        # The entity-event payload schema (edge/schema/mqtt.json) allows event_type, event_id and
        # reason; the call's details are in the journaled event on `events/intercom.*`.
        payload: dict[str, Any] = {"event_type": short, "event_id": event.id}
        if isinstance(event.data.get("reason"), str):
            payload["reason"] = event.data["reason"]
        return self.controller.uplink.topics.ha_entity_event(ha_key(event.source)), payload

    def _ha_button(self, panel_id: str) -> Callable[[bytes], Awaitable[None]]:
        async def pressed(payload: bytes) -> None:
            if payload.strip().upper() != b"PRESS":
                log.info("intercom: ignored Home Assistant payload on %s's unlock button", panel_id)
                return
            await self.step(PanelUnlock(panel_id, "button"))

        return pressed

    def _publish_panel_states(self, out: Output) -> None:
        for panel in {e.source for e in out.events if e.source in self.panels}:
            self._publish_state(panel)

    def _publish_state(self, device: str) -> None:
        """Retained device state: a panel's online flag and current call, a unit's online and DND."""
        uplink = self.controller.uplink
        if uplink is None or device not in self._bus_of:
            return
        state: dict[str, Any] = {"online": self._bus_of[device].is_online(device)}
        if device in self.panels:
            call = self.router.active.get(device)
            state["call"] = None
            if call is not None:
                state["call"] = {"call_id": call.id, "apartment": call.apartment, "stage": call.stage.value}
        else:
            state["dnd"] = device in self.router.dnd_units
        self._spawn(uplink.publish_state(device, state))

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def ha_key(panel_id: str) -> str:
    """A panel's key under `ha/event/` and `ha/cmd/` (as `door.<id>` is a door's)."""
    return f"intercom.{panel_id}"


def _arg(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= 128:
        raise BadArgs(f"{key}: a string of 1-128 characters is required")
    return value


def register_intercom_commands(router: CommandRouter, service: IntercomService) -> None:
    for name in COMMANDS:

        async def handler(args: dict[str, Any], name: str = name) -> dict[str, Any]:
            return await service.command(name, args)

        router.register(name, handler, replace=True)


def unregister_intercom_commands(router: CommandRouter) -> None:
    for name in COMMANDS:
        router.unregister(name)
