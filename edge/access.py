"""Access control in the daemon: OSDP readers -> rules.access decide() -> rules.door DoorMachine -> relays.

Edge wires the parts; data flows one way (drivers know no rules, rules do no I/O):

- one OsdpDriver per configured bus. Its `report` callback only queues events (it runs right after
  libosdp's refresh and must never block); one worker journals them in order.
- `on_credential` runs decide() on the loop with the store's index and state. Nothing here depends
  on the uplink, so decisions are the same offline. The decision's events are committed to the
  journal *before* the door is told: a grant is journaled or the door never opens for it.
- one DoorMachine per door. Its relay commands become reader output commands, its events go to the
  journal, its next deadline is one asyncio timer per door.
- reader inputs (DPS, REX) and reader/bus supervision become door inputs; a reader or bus the door's
  I/O depends on going away is a fault, which puts the door in its lock mode's safe state.

Which readers a door depends on: the readers its lock, DPS and REX are wired to; a door without any
I/O mapping depends on the readers standing at it.

Access data comes only from the store's snapshot: a site-file door without an access Door of the
same id is reported at start (`access.config_problem`) and every request there is denied
(`unknown_door`), though its hardware side (locking, forced-open supervision) still runs.

Card + PIN: the driver offers the card and the PIN separately. At a card_and_pin door the card is
held (no decision, no feedback) until a PIN comes from the same reader within `pin_wait_s`; the
pair is then decided as one request. A PIN with no card waiting is a PIN-only request; a card with
no PIN in time is decided alone (denied `pin_required`), so the attempt is on the audit trail.

Scheduled unlock and lockdown come from the access Door: applied at start, after every change of
the access data, at the window boundaries the door machine asks for, and after first-person-in
grants.

Relay commands the reader does not acknowledge (offline, bus gone) are journaled as
`door.relay_not_delivered`; the driver never delivers them late. Nothing powered depends on this
process staying alive: momentary unlocks are pulses the reader times, and a relay held powered (a
maglock locked, a strike in free passage) is a lease of `lock_lease_s` the driver renews. A reader
without power, or one cut off from the bus or from a dead daemon, ends with its output off: the
lock mode's safe state (a maglock released, a strike locked). When it is back, the door machine's
current state is commanded again (fault cleared, or `reader.link_reset` after a reboot).

Shutdown: every door gets FaultRaised(shutting_down) and its safe-state command is given up to
SHUTDOWN_DELIVERY_S to reach the reader before the drivers stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drivers.osdp import (
    CardCredential,
    Credential,
    KeyFileError,
    KeypadFunction,
    KeyStore,
    OsdpDriver,
    PinCredential,
    ReaderConfig,
)
from drivers.osdp import Decision as ReaderFeedback
from edge.access_commands import register_access_commands, unregister_access_commands
from edge.access_store import AccessStore
from edge.config import DoorConfig, OsdpBusConfig, SiteConfig
from edge.door_control import DoorPresence, RemoteUnlockRefused
from edge.events import Event, Severity
from edge.passes import PassDesk
from edge.passes_commands import register_pass_commands, unregister_pass_commands
from rules.access import (
    AccessRequest,
    CardRead,
    Delta,
    Direction,
    DoorMode,
    ImportResult,
    Snapshot,
    decide,
    parse_holders_csv,
)
from rules.access.decide import AccessEvent
from rules.door import (
    AccessGranted,
    ControllerStarted,
    DoorClosed,
    DoorInput,
    DoorMachine,
    DoorOpened,
    FaultCleared,
    FaultKind,
    FaultRaised,
    LockdownEnded,
    LockdownStarted,
    RelayCommand,
    RelayState,
    RemoteUnlock,
    RexPressed,
    Tick,
    boot_relay_command,
    lock_powered,
    schedule_window_input,
)

if TYPE_CHECKING:
    from edge.daemon import Controller

log = logging.getLogger(__name__)

SOURCE = "access"
EVENT_QUEUE = 10_000  # driver/door events waiting to be journaled; more means the journal is stuck
STARTUP_WAIT_S = 3.0  # how long start-up waits for readers before it takes the doors over anyway
SHUTDOWN_DELIVERY_S = 1.0  # how long the last safe-state commands may take at shutdown
# `*` DIGIT CODE `#` at a reader with an alarm_partition: what the digit asks of the alarm panel.
KEYPAD_FUNCTIONS = {"0": "disarm", "1": "away", "2": "home", "3": "night"}
# Reader events that change what `state/<reader>` shows.
READER_STATE_EVENTS = frozenset(
    {"device.online", "device.offline", "reader.tamper", "reader.power", "reader.security_fault", "reader.commissioned"}
)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class DoorRuntime:
    cfg: DoorConfig
    machine: DoorMachine
    depends_on: set[str]  # reader ids; any of them offline is a fault
    timer: asyncio.TimerHandle | None = None


@dataclass
class PendingCard:
    read: CardRead
    at: float
    timer: asyncio.TimerHandle | None = None


@dataclass
class BusRuntime:
    cfg: OsdpBusConfig
    driver: OsdpDriver
    readers: list[str] = field(default_factory=list)


class AccessService:
    """Started by the Controller (supervised task `access`) when the site file has OSDP buses."""

    def __init__(
        self, controller: Controller, *, pin_wait_s: float = 10.0, startup_wait_s: float = STARTUP_WAIT_S
    ) -> None:
        self.controller = controller
        self.config: SiteConfig = controller.config
        self.pin_wait_s = pin_wait_s
        self.startup_wait_s = startup_wait_s
        self.store = AccessStore(self.config.data_dir)
        self.doors: dict[str, DoorRuntime] = {}
        self.buses: list[BusRuntime] = []
        self._readers = self.config.osdp.readers()
        self._driver_of: dict[str, OsdpDriver] = {}
        # (device, point) -> (door, "dps"|"rex"); points as in the drivers' events: input<N> on a
        # reader, di<N> on a Modbus module.
        self._inputs: dict[tuple[str, str], tuple[str, str]] = {}
        self._modules: set[str] = set()  # Modbus I/O modules wired to doors
        self._module_inputs: dict[tuple[str, str], bool] = {}  # their inputs' last state (active)
        self._pending_cards: dict[str, PendingCard] = {}
        self._events: asyncio.Queue[Event] = asyncio.Queue(EVENT_QUEUE)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.dropped_events = 0
        self._all_online = asyncio.Event()
        self.ready = asyncio.Event()  # set once the doors are taken over (tests, API)
        self.presence = DoorPresence(controller, self.remote_unlock)
        self.passes = PassDesk(self)  # visitor passes (edge/passes.py), stored beside the access data

    # ---- lifecycle ---------------------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._journal_worker())
        modules: asyncio.Task[None] | None = None
        try:
            await self.store.open()
            try:
                await self._build()
            except (KeyFileError, ValueError) as exc:
                # A key file that is unsafe or lacks a reader's key cannot be fixed by retrying:
                # say so once, clearly, instead of crash-looping.
                await self._give_up(exc)
            await self._report_config_problems()
            if self._modules:
                modules = asyncio.create_task(self._follow_modules())
            for bus in self.buses:
                await bus.driver.start()
            await self._take_over()
            register_access_commands(self.controller.commands, self)
            register_pass_commands(self.controller.commands, self)
            readers_at: dict[str, list[str]] = {}
            for reader in self._readers.values():
                readers_at.setdefault(reader.door, []).append(reader.id)
            self.presence.announce(self.config.doors, readers_at)
            self.ready.set()
            await asyncio.Event().wait()  # runs until cancelled
        finally:
            self.ready.clear()  # the API and MQTT commands see at once that the store is going away
            unregister_access_commands(self.controller.commands)
            unregister_pass_commands(self.controller.commands)
            self.presence.withdraw()
            await self._shutdown()
            if modules is not None:
                modules.cancel()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await self._drain_events()

    async def _build(self) -> None:
        for door in self.config.doors:
            refs = [ref for ref in (door.lock, door.dps, door.rex) if ref is not None]
            depends = {ref.device for ref in refs}
            if not depends:
                depends = {r.id for r in self._readers.values() if r.door == door.id}
            self._modules |= {ref.module for ref in refs if ref.module is not None}
            self.doors[door.id] = DoorRuntime(door, DoorMachine(door.settings()), depends)
            for kind, ref in (("dps", door.dps), ("rex", door.rex)):
                if ref is not None:
                    self._inputs[(ref.device, ref.point)] = (door.id, kind)
        for bus_cfg in self.config.osdp.buses:
            readers = [ReaderConfig(r.id, r.address, r.secure, r.install_mode) for r in bus_cfg.readers]
            keys = None
            if any(r.secure for r in readers):
                keys = await asyncio.to_thread(KeyStore, self.config.osdp_key_file(bus_cfg))  # file I/O: off the loop
            driver = OsdpDriver(
                bus_cfg.port,
                readers,
                self._on_report,
                on_credential=self._on_credential,
                keys=keys,
                baudrate=bus_cfg.baudrate,
            )
            self.buses.append(BusRuntime(bus_cfg, driver, [r.id for r in readers]))
            for r in readers:
                self._driver_of[r.id] = driver

    async def _give_up(self, exc: Exception) -> None:
        # Nothing is driven: there are no doors or buses for the shutdown to hand back.
        self.doors.clear()
        self.buses.clear()
        log.error("access control cannot drive the readers: %s", exc)
        await self.controller.bus.emit(
            "access.config_problem",
            SOURCE,
            {
                "problem": "readers_unusable",
                "error": str(exc),
                "effect": "no reader or door is driven until this is fixed and Linli is restarted",
            },
            Severity.ALARM,
        )
        await asyncio.Event().wait()  # until cancelled (shutdown, or a reload that changes osdp/doors)

    async def _report_config_problems(self) -> None:
        index = self.store.index
        assert index is not None
        missing = [d for d in self.doors if d not in index.doors]
        if missing:
            await self.controller.bus.emit(
                "access.config_problem",
                SOURCE,
                {"problem": "no_access_door", "doors": missing, "effect": "every request at these doors is denied"},
                Severity.WARNING,
            )

    async def _take_over(self) -> None:
        """Boot the relays to the safe state, then hand each door to its machine."""
        if not self._everything_online():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_online.wait(), self.startup_wait_s)
        now = utcnow()
        for door in self.doors.values():
            self._send(boot_relay_command(door.cfg.id, door.machine.settings.lock_mode))
        for door in self.doors.values():
            self._apply(door, ControllerStarted(door_open=self._dps_state(door)), now)
            for device in sorted(door.depends_on):
                if not self._online(device):
                    self._apply(door, FaultRaised(self._offline_fault(device), device, "not online at start"), now)
        self._sync_doors(now)

    async def _shutdown(self) -> None:
        """Doors to their safe state, delivered while the drivers still run; then stop the drivers."""
        now = utcnow()
        sends: list[asyncio.Task[Any]] = []
        for door in self.doors.values():
            sends += self._apply(door, FaultRaised(FaultKind.SHUTTING_DOWN, SOURCE, "controller stopping"), now)
            if door.timer is not None:  # nothing more happens to this door in this process
                door.timer.cancel()
                door.timer = None
        if sends:
            await asyncio.wait(sends, timeout=SHUTDOWN_DELIVERY_S)
        for bus in self.buses:
            await bus.driver.stop()
        for pending in self._pending_cards.values():
            if pending.timer is not None:
                pending.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.store.close()

    # ---- the door side -------------------------------------------------------------------------------

    def _apply(self, door: DoorRuntime, inp: DoorInput, now: datetime) -> list[asyncio.Task[Any]]:
        """One step of the door's machine: queue its events, send its commands, re-arm its timer."""
        out = door.machine.apply(inp, now)
        for ev in out.events:
            self._queue_event(ev.type, ev.source, dict(ev.data), ev.severity)
        sends = [self._send(cmd) for cmd in out.commands]
        if door.timer is not None:
            door.timer.cancel()
            door.timer = None
        if out.next_deadline is not None:
            delay = max(0.0, (out.next_deadline - now).total_seconds())
            loop = asyncio.get_running_loop()
            door.timer = loop.call_later(delay, self._tick, door.cfg.id)
        self.presence.door_changed(door.cfg.id, door.machine.status)
        return [s for s in sends if s is not None]

    def _tick(self, door_id: str) -> None:
        door = self.doors[door_id]
        door.timer = None
        now = utcnow()
        if door.machine.schedule_update_due(now):
            self._sync_schedule(door, now)
        else:
            self._apply(door, Tick(), now)

    def _sync_doors(self, now: datetime) -> None:
        """Bring every door in line with the access data: its lockdown flag and scheduled unlock."""
        index = self.store.index
        assert index is not None
        for door in self.doors.values():
            access_door = index.doors.get(door.cfg.id)
            lockdown = access_door is not None and access_door.lockdown
            if lockdown != door.machine.status.lockdown:
                self._apply(door, LockdownStarted() if lockdown else LockdownEnded(), now)
            self._sync_schedule(door, now)

    def _sync_schedule(self, door: DoorRuntime, now: datetime) -> None:
        """The scheduled-unlock window now in force (or not), and when to look again."""
        index = self.store.index
        assert index is not None
        self._apply(door, schedule_window_input(index, self.store.state, door.cfg.id, now), now)

    def _send(self, cmd: RelayCommand) -> asyncio.Task[Any] | None:
        """The relay command as a reader output command. Tasks start in creation order, so the
        driver queues a door's commands in the order the machine gave them."""
        runtime = self.doors[cmd.door_id]
        door = runtime.cfg
        if door.lock is None:
            return None
        on = lock_powered(runtime.machine.settings.lock_mode, cmd.state)
        if door.lock.module is not None:
            task = self._spawn(self._module_output(door.lock.module, door.lock.point, on))
            task.add_done_callback(lambda t: self._relay_result(t, cmd))
            return task
        reader = door.lock.device
        driver = self._driver_of[reader]
        # Timed pulses only for an energised momentary unlock (a strike): the reader relocks by
        # itself even if this process dies. A maglock's momentary release is a de-energised output,
        # which the OSDP timer cannot time, so the machine's own relock command ends it. Any other
        # powered state (a maglock locked, a strike in free passage) is held on a lease the reader
        # times: if this process dies or the bus is cut, the relay drops to the safe state.
        duration_ms = round(cmd.duration_s * 1000) if (on and cmd.duration_s) else 0
        lease_ms = round(door.lock_lease_s * 1000)
        task = self._spawn(driver.output(reader, door.lock.output, on, duration_ms, lease_ms=lease_ms))
        task.add_done_callback(lambda t: self._relay_result(t, cmd))
        return task

    async def _module_output(self, module: str, point: str, on: bool) -> bool:
        """A Modbus coil has no timer: a momentary unlock ends by the door machine's relock command,
        and what the coil does if this process dies is the module's communication watchdog's."""
        modbus = self.controller.modbus
        if modbus is None:
            raise RuntimeError("the Modbus service is not running")
        await modbus.set_output(module, point, on)  # raises when the module did not confirm
        return True

    def _relay_result(self, task: asyncio.Task[Any], cmd: RelayCommand) -> None:
        """A command the reader did not acknowledge (offline, bus gone, timeout) goes on the record:
        the driver never delivers it late, so the door is in whatever state the reader holds."""
        if task.cancelled():
            return
        if task.exception() is not None or task.result() is not True:
            data = {"door": cmd.door_id, "relay": cmd.state.value, "reason": cmd.reason}
            if task.exception() is not None:
                data["error"] = str(task.exception())
            self._queue_event("door.relay_not_delivered", cmd.door_id, data, Severity.WARNING)

    def _dps_state(self, door: DoorRuntime) -> bool | None:
        dps = door.cfg.dps
        if dps is None:
            return None
        if dps.module is not None:
            return self._module_inputs.get((dps.module, dps.point))
        value = self._driver_of[dps.device].reader_state(dps.device)["inputs"].get(dps.input)
        return None if value is None else bool(value)

    def _doors_of(self, readers: Iterable[str]) -> list[DoorRuntime]:
        wanted = set(readers)
        return [d for d in self.doors.values() if d.depends_on & wanted]

    def _online(self, device: str) -> bool:
        if device in self._modules:
            modbus = self.controller.modbus
            return modbus is not None and bool(modbus.is_online(device))
        return self._driver_of[device].is_online(device)

    def _everything_online(self) -> bool:
        return all(self._online(d) for d in (*self._readers, *self._modules))

    def _offline_fault(self, device: str) -> FaultKind:
        return FaultKind.IO_MODULE_OFFLINE if device in self._modules else FaultKind.READER_OFFLINE

    # ---- driver callbacks ----------------------------------------------------------------------------

    def _on_report(self, type: str, source: str, data: dict[str, Any], severity: str) -> None:
        """Runs synchronously right after libosdp's refresh: queue, update state, never block."""
        self._queue_event(type, source, data, Severity(severity))
        if type == "device.online":
            self.controller.devices.seen(source)
            if self._everything_online():
                self._all_online.set()
        elif type == "device.offline":
            device = self.controller.devices.get(source)
            if device is not None:
                device.online = False
        if source in self._readers and type in READER_STATE_EVENTS:
            self.presence.reader_changed(source, self._driver_of[source].reader_state(source))
        if not self.ready.is_set():
            return  # _take_over reads the readers' state when it starts the doors
        now = utcnow()
        if type == "reader.input":
            self._input_changed(source, f"input{data.get('input')}", bool(data.get("active")), now)
        elif type == "device.online":
            self._device_back(source, now)
        elif type == "reader.link_reset":
            # The reader may have rebooted without ever being reported offline: its outputs are
            # back at their power-on state, which for a maglock (output off) means unlocked.
            for door in self._doors_of([source]):
                self._reassert(door, source, now)
        elif type == "device.offline":
            self._device_lost(source, str(data.get("reason", "")), now)
        elif type in ("bus.offline", "bus.online"):
            bus = next((b for b in self.buses if b.driver.name == source), None)
            if bus is not None:
                for door in self._doors_of(bus.readers):
                    if type == "bus.offline":
                        fault: DoorInput = FaultRaised(FaultKind.BUS_LOST, source, str(data.get("error", "")))
                    else:
                        fault = FaultCleared(FaultKind.BUS_LOST, source)
                    self._apply(door, fault, now)

    def _input_changed(self, device: str, point: str, active: bool, now: datetime) -> None:
        target = self._inputs.get((device, point))
        if target is None:
            return
        door = self.doors[target[0]]
        if target[1] == "dps":
            self._apply(door, DoorOpened() if active else DoorClosed(), now)
        elif active:  # the press, not the release
            self._apply(door, RexPressed(), now)

    def _device_back(self, device: str, now: datetime) -> None:
        for door in self._doors_of([device]):
            if not self._apply(door, FaultCleared(self._offline_fault(device), device), now):
                self._reassert(door, device, now)

    def _device_lost(self, device: str, reason: str, now: datetime) -> None:
        for door in self._doors_of([device]):
            self._apply(door, FaultRaised(self._offline_fault(device), device, reason), now)

    async def _follow_modules(self) -> None:
        """The Modbus I/O modules wired to doors, as their service reports them on the bus."""
        wanted = ("input.changed", "device.online", "device.offline")
        events = self.controller.bus.subscribe(
            "access-modules", maxsize=1000, accept=lambda e: e.source in self._modules and e.type in wanted
        )
        try:
            async for stored in events:
                event = stored.event
                now = utcnow()
                if event.type == "input.changed":
                    point, active = str(event.data.get("point")), event.data.get("state") == "active"
                    self._module_inputs[(event.source, point)] = active
                    if self.ready.is_set():
                        self._input_changed(event.source, point, active, now)
                elif event.type == "device.online":
                    if self._everything_online():
                        self._all_online.set()
                    if self.ready.is_set():
                        self._device_back(event.source, now)
                elif self.ready.is_set():
                    self._device_lost(event.source, str(event.data.get("reason", "")), now)
        finally:
            events.close()

    def _reassert(self, door: DoorRuntime, device: str, now: datetime) -> None:
        """Send the relay state the machine believes in again, to a lock reader or module that came back."""
        if door.cfg.lock is None or door.cfg.lock.device != device:
            return
        status = door.machine.status
        if not status.started:
            return
        duration = None if status.relay_until is None else max(0.001, (status.relay_until - now).total_seconds())
        self._send(RelayCommand(door.cfg.id, status.relay, "reassert", duration))

    async def _on_credential(self, reader_id: str, credential: Credential) -> ReaderFeedback | None:
        if isinstance(credential, KeypadFunction):
            return ReaderFeedback(granted=await self._keypad_function(reader_id, credential))
        reader = self._readers[reader_id]
        door_id = reader.door
        card: CardRead | None = None
        pin: str | None = None
        index = self.store.index
        assert index is not None
        access_door = index.doors.get(door_id)
        if isinstance(credential, CardCredential):
            read = credential.read
            card = CardRead.decoded(read.format, read.facility, read.card or 0)
            if access_door is not None and access_door.mode is DoorMode.CARD_AND_PIN:
                pending = PendingCard(card, time.monotonic())
                old = self._pending_cards.get(reader_id)
                if old is not None and old.timer is not None:
                    old.timer.cancel()
                loop = asyncio.get_running_loop()
                pending.timer = loop.call_later(self.pin_wait_s, self._pin_timed_out, reader_id, pending)
                self._pending_cards[reader_id] = pending
                return None  # wait for the PIN; the reader shows nothing yet
        elif isinstance(credential, PinCredential):
            pin = credential.pin
            held = self._pending_cards.pop(reader_id, None)
            if held is not None:
                if held.timer is not None:
                    held.timer.cancel()
                if time.monotonic() - held.at <= self.pin_wait_s:
                    card = held.read
        granted = await self._decide(reader_id, card, pin)
        return ReaderFeedback(granted=granted)

    async def _keypad_function(self, reader_id: str, entry: KeypadFunction) -> bool:
        """`*` FUNCTION CODE `#` at a reader whose keypad controls an alarm partition. The alarm
        panel checks the code (and counts wrong ones); the reader shows green or red."""
        partition = self._readers[reader_id].alarm_partition
        alarm = self.controller.alarm
        origin = f"keypad:{reader_id}"
        action = KEYPAD_FUNCTIONS.get(entry.function)
        if partition is None or alarm is None or action is None:
            reason = "unknown_function"
            if partition is None:
                reason = "no_partition"
            elif alarm is None:
                reason = "alarm_not_running"
            data = {"reader": reader_id, "function": entry.function, "reason": reason}
            self._queue_event("access.keypad_function_refused", reader_id, data, Severity.WARNING)
            return False
        if action == "disarm":
            result = await alarm.disarm(partition, entry.code, origin=origin)
        else:
            result = await alarm.arm(partition, action, entry.code, origin=origin)
        return bool(result.ok)

    def _pin_timed_out(self, reader_id: str, pending: PendingCard) -> None:
        """No PIN followed the card: decide the card alone, so the audit trail has the attempt
        (`pin_required`). The reader's own feedback is not shown for it (the driver asked no more)."""
        if self._pending_cards.get(reader_id) is pending:
            del self._pending_cards[reader_id]
            self._spawn(self._decide(reader_id, pending.read, None))

    async def _decide(self, reader_id: str, card: CardRead | None, pin: str | None) -> bool:
        """decide() on the loop, journal the outcome (committed), then let the door act on a grant."""
        reader = self._readers[reader_id]
        door_id = reader.door
        index = self.store.index
        assert index is not None
        request = AccessRequest(
            door_id=door_id,
            reader_id=reader_id,
            card=card,
            pin=pin,
            direction=Direction(reader.direction),
            reader_tamper=bool(self._driver_of[reader_id].reader_state(reader_id).get("tamper")),
        )
        if card is None and pin is not None and self._is_pass_pin(pin):
            # A PIN that is no credential's but some visitor pass's: the pass decides (and counts).
            used = await self.passes.use(door_id, pin, via=reader_id, keypad=True, reader_tamper=request.reader_tamper)
            return used.granted
        now = utcnow()
        decision = decide(index, self.store.state, request, now)
        if decision.state_changed:
            self.store.state_changed()
        # Journal the decision and wait for the commit before the door moves: a grant that is not
        # in the audit trail never opens a door.
        await self._journal_now(decision.events)
        door = self.doors.get(door_id)
        if decision.granted and door is not None:
            now = utcnow()
            self._apply(door, AccessGranted(decision.holder_id, reader_id, extended=decision.extended_unlock), now)
            if decision.state_changed:
                self._sync_schedule(door, now)  # a staff grant may have released a first-person-in window
        return decision.granted

    # ---- remote unlock (platform, API, Home Assistant, intercom) ----------------------------------------

    async def remote_unlock(self, door_id: str, *, origin: str, actor: str, extended: bool = False) -> bool:
        """A momentary unlock asked from afar, where the door's `remote_unlock` lists `origin`.

        Journaled (committed) before the door moves, like a grant. True when the door unlocked; False
        when its machine refused (safe state after a fault, lockdown): `door.unlock_refused` says why.
        Raises RemoteUnlockRefused for an unknown door, a disallowed origin, or a service not running.
        """
        if not self.ready.is_set():
            raise RemoteUnlockRefused("not_running", "access control is not running")
        door = self.doors.get(door_id)
        if door is None:
            raise RemoteUnlockRefused("unknown_door", f"no door {door_id!r}")
        data = {"door": door_id, "origin": origin, "actor": actor}
        if origin not in door.cfg.remote_unlock:
            refused_data = {**data, "reason": "not_allowed"}
            refused = AccessEvent("access.remote_unlock_refused", door_id, refused_data, Severity.WARNING)
            await self._journal_now([refused])
            raise RemoteUnlockRefused("not_allowed", f"door {door_id!r} does not allow remote unlock by {origin}")
        await self._journal_now([AccessEvent("access.remote_unlock", door_id, data, Severity.INFO)])
        self._apply(door, RemoteUnlock(requested_by=f"{origin}:{actor}", extended=extended), utcnow())
        return door.machine.status.relay is RelayState.UNLOCKED

    def _is_pass_pin(self, pin: str) -> bool:
        index, hasher = self.store.index, self.store.pass_hasher
        assert index is not None and hasher is not None
        if index.credential_for_pin(pin) is not None:
            return False
        return any(self.store.passes.lookup(key) is not None for key in hasher.lookup_keys(pin))

    async def use_pass(self, door_id: str, secret: str, *, via: str) -> bool:
        """A visitor pass's PIN or QR token presented at ``door_id`` through ``via`` (e.g. an intercom
        panel's keypad or scanner). Attempts matching no pass count towards ``via``'s lockout; every
        attempt is journaled (committed) before the door moves. True when the door was unlocked."""
        if not self.ready.is_set():
            return False
        return (await self.passes.use(door_id, secret, via=via)).granted

    # ---- access data changes (API, MQTT) --------------------------------------------------------------

    async def replace_snapshot(self, snapshot: Snapshot, origin: str, *, allow_older: bool = False) -> int:
        """Store a full snapshot (StaleSnapshotError / AccessDataError: nothing changed)."""
        index = await self.store.replace_snapshot(snapshot, allow_older=allow_older)
        await self._changed(origin, "snapshot")
        return index.version

    async def apply_delta(self, delta: Delta, origin: str) -> int:
        """Apply one delta (StaleDeltaError / AccessDataError: nothing changed)."""
        index = await self.store.apply_delta(delta)
        await self._changed(origin, "delta")
        return index.version

    async def import_csv(self, text: str, origin: str) -> tuple[ImportResult, int]:
        """Parse a holders CSV and apply its valid rows as one local delta; rows with errors change nothing.

        The import makes a new version on the box: the platform learns of it from the
        `access.data_changed` event and should send a fresh snapshot to take the box over again.
        """
        index = self.store.index
        assert index is not None
        # Parsing 10,000 rows hashes PINs and validates models: not on the event loop.
        result = await asyncio.to_thread(parse_holders_csv, text, index)
        if not result.rows:
            return result, index.version
        delta = Delta(base_version=index.version, version=index.version + 1, upsert=result.items())
        version = await self.apply_delta(delta, origin)
        return result, version

    async def _changed(self, origin: str, kind: str) -> None:
        await self.controller.bus.emit(
            "access.data_changed", SOURCE, {"origin": origin, "kind": kind, "version": self.store.version}
        )
        await self._report_config_problems()
        if self.ready.is_set():
            self._sync_doors(utcnow())

    # ---- events to the journal -----------------------------------------------------------------------

    async def _journal_now(self, events: Iterable[AccessEvent]) -> None:
        bus = self.controller.bus
        make = self.controller.factory
        futures = [await bus.submit(make(e.type, e.source, dict(e.data), e.severity)) for e in events]
        if futures:
            await asyncio.gather(*futures)

    def _queue_event(self, type: str, source: str, data: dict[str, Any], severity: Severity) -> None:
        try:
            self._events.put_nowait(self.controller.factory(type, source, data, severity))
        except asyncio.QueueFull:
            self.dropped_events += 1
            log.warning("access event queue full; dropped %s from %s", type, source)

    async def _journal_worker(self) -> None:
        while True:
            event = await self._events.get()
            committed = await self.controller.bus.submit(event)
            committed.add_done_callback(_log_commit_failure)

    async def _drain_events(self) -> None:
        while not self._events.empty():
            await self.controller.bus.publish(self._events.get_nowait())

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _log_commit_failure(future: asyncio.Future[int]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("access event not journaled: %s", future.exception())
