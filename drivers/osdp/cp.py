"""OSDP Control Panel driver: libosdp's ControlPanel, refreshed from the asyncio event loop.

Why not libosdp's own `osdp.ControlPanel`: it refreshes from a thread that sleeps a fixed 20 ms
(each exchange then costs several of those sleeps), it queues every event in an unbounded
`queue.Queue` nobody drains, and its lock turns a `submit_command` from an event callback into a
deadlock. Here the low-level `osdp_sys.ControlPanel` is refreshed by the event loop: at once when
bytes arrive, when a reader's next poll is due (libosdp polls each reader 50 ms after its last
reply), and otherwise every 50 ms. libosdp's callbacks only append to bounded deques; everything
else - decoding, events, commands - happens after `refresh()` returns.

libosdp behaviours the driver works around (see docs/osdp.md):
- after any NAK, corrupt reply or ~8 s without replies the CP parks the reader offline for 300 s:
  the driver restarts it at once (disable_pd + enable_pd) and reports only outages that last;
- with the secure channel enforced, a wrong key looks like any other drop: the bus watcher
  (`frames.LinkMonitor`) tells whether the reader took part in the handshake, so the driver can
  report a security fault rather than "offline";
- a status query to a reader can come back without its report: the driver never queries and
  relies on the unsolicited status reports readers send in their poll replies.

The driver knows no rules. It reports through `report(type, source, data, severity)` and asks
`on_credential(reader_id, credential)` what to show the person at the reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import osdp_sys
import serial

from drivers.osdp import commands
from drivers.osdp.channel import BusChannel
from drivers.osdp.frames import REPLY_CCRYPT, REPLY_NAK, REPLY_PDCAP, REPLY_RMAC_I, LinkMonitor
from drivers.osdp.keypad import PinCollector
from drivers.osdp.keys import KeyStore
from drivers.osdp.model import (
    CAPABILITIES,
    MAX_READERS_PER_BUS,
    Capability,
    CardCredential,
    Credential,
    CredentialCallback,
    Decision,
    KeypadFunction,
    LedColor,
    PinCredential,
    ReaderConfig,
    ReportCallback,
    Severity,
)
from drivers.osdp.wiegand import WiegandError, decode_bytes

log = logging.getLogger(__name__)

POLL_DUE = 0.0515  # libosdp polls a reader once more than 50 whole ms have passed since its reply
EVENT_BACKLOG = 1024  # libosdp events between two refreshes; more means the loop is stalled
COMMAND_BACKLOG = 32  # per reader, not yet handed to libosdp
INFLIGHT_MAX = 4  # libosdp's per-reader command pool
CREDENTIAL_BACKLOG = 8  # per reader, awaiting a decision
LONG_OUTPUT_REARM = 20.0  # s; see output()

NOTIFY_COMMAND = osdp_sys.EVENT_NOTIFICATION_COMMAND
NOTIFY_SC = osdp_sys.EVENT_NOTIFICATION_SC_STATUS
NOTIFY_PD = osdp_sys.EVENT_NOTIFICATION_PD_STATUS


@dataclass
class _Command:
    payload: dict[str, Any]
    future: asyncio.Future[bool]


@dataclass
class _Reader:
    cfg: ReaderConfig
    idx: int
    pins: PinCollector
    credentials: asyncio.Queue[Credential] = field(default_factory=lambda: asyncio.Queue(CREDENTIAL_BACKLOG))
    # What was last reported: None before the first report, then True (online) / False (offline).
    reported_online: bool | None = None
    osdp_online: bool = False  # libosdp's view, from its status bitmask
    sc_active: bool = False
    caps: dict[str, Capability] = field(default_factory=dict)
    pd_id: dict[str, int] = field(default_factory=dict)
    # Restart bookkeeping: "parked" while the port is gone, "waiting" until restart_at, then
    # "enabling" until libosdp brings it online or drops it again.
    phase: str | None = None
    restart_at: float = 0.0
    attempt_started: float = 0.0
    dropped_at: float | None = None
    drop_reason: str = ""
    drops: deque[float] = field(default_factory=lambda: deque(maxlen=8))
    security_fault: str | None = None
    online_this_attempt: bool = False
    saw_scbk_d: bool = False
    commissioned: bool = False
    queued: deque[_Command] = field(default_factory=deque)
    inflight: deque[_Command] = field(default_factory=deque)
    inputs: dict[int, bool] = field(default_factory=dict)
    outputs: dict[int, bool] = field(default_factory=dict)
    tamper: bool | None = None
    power_ok: bool | None = None
    rearm: dict[int, asyncio.TimerHandle] = field(default_factory=dict)
    # Counts output() calls per output: a renewal is scheduled only by the latest command, so an
    # off sent while an older on was awaiting its ack is never undone by that on's renewal.
    output_calls: dict[int, int] = field(default_factory=dict)
    dropped_events: int = 0


class OsdpDriver:
    """One RS-485 bus (or ser2net socket, or pseudo-terminal) with up to 32 readers on it."""

    def __init__(
        self,
        port: str,
        readers: Sequence[ReaderConfig],
        report: ReportCallback,
        *,
        on_credential: CredentialCallback | None = None,
        keys: KeyStore | None = None,
        baudrate: int = 9600,
        name: str | None = None,
        pin_timeout: float = 5.0,
        pin_max_digits: int = 12,
        offline_after: float = 2.5,
        offline_grace: float = 1.0,
        idle_interval: float = 0.05,
        busy_interval: float = 0.005,
        command_timeout: float = 2.0,
        decision_timeout: float = 5.0,
        security_retry: float = 5.0,
        libosdp_log_level: int = osdp_sys.LOG_ERROR,
    ) -> None:
        if not readers:
            raise ValueError("an OSDP bus needs at least one reader")
        if len(readers) > MAX_READERS_PER_BUS:
            raise ValueError(f"at most {MAX_READERS_PER_BUS} readers per bus, got {len(readers)}")
        for attr in ("address", "id"):
            values = [getattr(r, attr) for r in readers]
            dupes = sorted({str(v) for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate reader {attr}: {', '.join(dupes)}")
        self.port = port
        self.name = name or f"osdp:{port}"
        self._report_cb = report
        self._on_credential = on_credential
        self._offline_after = offline_after
        self._offline_grace = offline_grace
        self._idle = idle_interval
        self._busy = busy_interval
        self._command_timeout = command_timeout
        self._decision_timeout = decision_timeout
        self._security_retry = security_retry
        self._readers = {r.id: _Reader(r, i, PinCollector(pin_timeout, pin_max_digits)) for i, r in enumerate(readers)}
        self._by_idx = list(self._readers.values())
        self._monitor = LinkMonitor(frozenset(r.address for r in readers), baudrate)
        self._channel = BusChannel(port, baudrate, self._monitor, self._wake, self._port_lost)
        self._events: deque[tuple[int, dict[str, Any]]] = deque(maxlen=EVENT_BACKLOG)
        self._completions: deque[tuple[int, dict[str, Any], int]] = deque(maxlen=EVENT_BACKLOG)
        osdp_sys.set_loglevel(libosdp_log_level)
        infos = [self._pd_info(r, keys, baudrate) for r in readers]
        for info in infos:
            info["channel"] = self._channel  # one bus, one channel: libosdp takes turns on it
        self._cp = osdp_sys.ControlPanel(infos)
        self._cp.set_event_callback(self._on_event)
        self._cp.set_command_completion_callback(self._on_completion)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._wake_pending = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconnecting: asyncio.Task[None] | None = None
        self._running = False
        self.refreshes = 0

    @staticmethod
    def _pd_info(r: ReaderConfig, keys: KeyStore | None, baudrate: int) -> dict[str, Any]:
        flags = osdp_sys.FLAG_ENABLE_NOTIFICATION
        scbk = None
        if r.secure:
            if keys is None:
                raise ValueError(f"reader {r.id!r} uses the secure channel but no key store was given")
            if keys.get(r.id) is None:
                if not r.install_mode:
                    raise ValueError(
                        f"reader {r.id!r} has no key in {keys.path}: add one, or commission it in install mode"
                    )
                keys.generate(r.id)
            scbk = keys.get(r.id)
            if not r.install_mode:
                # Without this, libosdp falls back to the well-known SCBK-D and then to plaintext
                # when the key does not match: an impostor reader would simply be let in.
                flags |= osdp_sys.FLAG_ENFORCE_SECURE
        return {
            "name": r.id[:15],
            "address": r.address,
            "flags": flags,
            "scbk": scbk,
            "channel": None,
            "baud_rate": baudrate,
            "version": 0,
            "model": 0,
            "vendor_code": 0,
            "serial_number": 0,
            "firmware_version": 0,
        }

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        now = time.monotonic()
        for r in self._by_idx:
            r.attempt_started = now
            self._spawn(self._credential_worker(r))
        try:
            await self._channel.open()
        except (OSError, serial.SerialException) as exc:
            self._port_lost(exc)
        else:
            self._report("bus.online", self.name, {"port": self.port}, "info")
        self._schedule(0.0)

    async def stop(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for r in self._by_idx:
            for handle in r.rearm.values():
                handle.cancel()
            self._fail_commands(r)
        tasks = list(self._tasks)
        if self._reconnecting is not None:
            tasks.append(self._reconnecting)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._channel.close()

    async def __aenter__(self) -> OsdpDriver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- public commands -------------------------------------------------------------------------

    def readers(self) -> list[str]:
        return list(self._readers)

    def is_online(self, reader_id: str) -> bool:
        return self._reader(reader_id).reported_online is True

    def capabilities(self, reader_id: str) -> dict[str, Capability]:
        return dict(self._reader(reader_id).caps)

    def reader_state(self, reader_id: str) -> dict[str, Any]:
        r = self._reader(reader_id)
        peer = self._monitor.peers[r.cfg.address]
        return {
            "reader": r.cfg.id,
            "address": r.cfg.address,
            "online": r.reported_online is True,
            "secure": r.sc_active,
            "security_fault": r.security_fault,
            "capabilities": {k: [c.compliance, c.items] for k, c in r.caps.items()},
            "inputs": dict(r.inputs),
            "tamper": r.tamper,
            "power_ok": r.power_ok,
            "replies": peer.replies,
            "naks": peer.naks,
            "queued_commands": len(r.queued) + len(r.inflight),
            "queued_credentials": r.credentials.qsize(),
        }

    def stats(self) -> dict[str, int]:
        s = self._monitor.stats
        return {
            "refreshes": self.refreshes,
            "frames": s.frames,
            "bad_frames": s.bad_frames,
            "discarded_bytes": s.discarded_bytes,
            "pending_events": len(self._events),
            "pending_completions": len(self._completions),
            "rx_overflows": self._channel.rx_overflows,
        }

    async def output(
        self, reader_id: str, output_no: int, on: bool, duration_ms: int = 0, *, lease_ms: int = 0
    ) -> bool:
        """Switch a reader output (the lock relay). True once the reader acknowledged it.

        The reader times a pulse itself, so the door relocks even if this process dies. The OSDP
        binding limits that timer to 25.5 s; longer pulses are re-armed every 20 s for the rest of
        the duration, so a crash still relocks within 25.5 s.

        With `lease_ms`, an output switched on until further notice (no duration) is held as a
        timed pulse of `lease_ms`, renewed every third of it: if this process dies or the bus is
        cut, the reader switches the output off by itself within `lease_ms`. Off is the relay's
        unpowered state, which is every lock mode's safe state (a maglock releases, a strike locks).
        """
        r = self._reader(reader_id)
        if not self._has(r, "output_control", output_no + 1):
            return False
        old = r.rearm.pop(output_no, None)
        if old is not None:
            old.cancel()
        call = r.output_calls[output_no] = r.output_calls.get(output_no, 0) + 1
        max_ms = commands.MAX_TIMER_UNITS * 100
        assert self._loop is not None
        if on and not duration_ms and lease_ms:
            pulse_ms = min(lease_ms, max_ms)
            ok = await self._command(r, commands.output(output_no, True, pulse_ms))
            if ok and r.output_calls[output_no] == call:
                r.rearm[output_no] = self._loop.call_later(
                    pulse_ms / 3000, self._renew_lease, reader_id, output_no, pulse_ms
                )
            return ok
        pulse_ms = min(duration_ms, max_ms) if on else 0
        ok = await self._command(r, commands.output(output_no, on, pulse_ms))
        if ok and on and duration_ms > max_ms and r.output_calls[output_no] == call:
            remaining = int(duration_ms - LONG_OUTPUT_REARM * 1000)
            r.rearm[output_no] = self._loop.call_later(
                LONG_OUTPUT_REARM, self._rearm_output, reader_id, output_no, remaining
            )
        return ok

    def _rearm_output(self, reader_id: str, output_no: int, remaining_ms: int) -> None:
        self._readers[reader_id].rearm.pop(output_no, None)
        self._spawn(self.output(reader_id, output_no, True, remaining_ms))

    def _renew_lease(self, reader_id: str, output_no: int, lease_ms: int) -> None:
        self._readers[reader_id].rearm.pop(output_no, None)
        self._spawn(self.output(reader_id, output_no, True, lease_ms=lease_ms))

    async def led(
        self, reader_id: str, color: int, *, duration_ms: int = 0, flash_ms: int = 0, led_number: int = 0
    ) -> bool:
        r = self._reader(reader_id)
        if not self._has(r, "led", led_number + 1):
            return False
        return await self._command(
            r, commands.led(color, duration_ms=duration_ms, flash_ms=flash_ms, led_number=led_number)
        )

    async def buzzer(self, reader_id: str, *, on_ms: int = 100, off_ms: int = 100, repeat: int = 1) -> bool:
        r = self._reader(reader_id)
        if not self._has(r, "audible"):
            return False
        return await self._command(r, commands.buzzer(on_ms, off_ms, repeat))

    async def text(self, reader_id: str, message: str, *, row: int = 1, col: int = 1, duration_s: int = 0) -> bool:
        """Show text on a reader's display. False, and nothing sent, for a reader without one:
        a TEXT command to such a reader is NAK'd, and a NAK takes it offline."""
        r = self._reader(reader_id)
        payload = commands.text(message, row=row, col=col, duration_s=duration_s)
        if not self._has(r, "text"):
            return False
        return await self._command(r, payload)

    def _reader(self, reader_id: str) -> _Reader:
        try:
            return self._readers[reader_id]
        except KeyError:
            raise ValueError(f"unknown reader {reader_id!r} on {self.name}") from None

    def _has(self, r: _Reader, capability: str, items: int = 1) -> bool:
        cap = r.caps.get(capability)
        if cap is None or cap.compliance == 0:
            log.debug("reader %s: no %s capability; command not sent", r.cfg.id, capability)
            return False
        return capability in ("text", "audible") or cap.items >= items

    async def _command(self, r: _Reader, payload: dict[str, Any]) -> bool:
        if not self._ready(r):
            return False
        fut = self._enqueue(r, payload)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self._command_timeout)
        except TimeoutError:
            if not fut.done():
                fut.set_result(False)  # skipped if still queued; libosdp may still send it if inflight
            return False

    def _enqueue(self, r: _Reader, payload: dict[str, Any]) -> asyncio.Future[bool]:
        assert self._loop is not None
        fut: asyncio.Future[bool] = self._loop.create_future()
        if len(r.queued) >= COMMAND_BACKLOG:
            fut.set_result(False)
            return fut
        r.queued.append(_Command(payload, fut))
        self._wake()
        return fut

    def _ready(self, r: _Reader) -> bool:
        return self._running and r.osdp_online and r.phase is None and (r.sc_active or not r.cfg.secure)

    # -- libosdp callbacks: called from inside refresh(); only record, never call back in ------------

    def _on_event(self, idx: int, event: dict[str, Any]) -> int:
        self._events.append((idx, event))
        return 0

    def _on_completion(self, idx: int, command: dict[str, Any], status: int) -> None:
        self._completions.append((idx, command, status))

    # -- the refresh tick ----------------------------------------------------------------------------

    def _wake(self) -> None:
        """Bytes arrived or a command was queued: refresh on the next loop iteration."""
        if self._running and not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            self._loop.call_soon(self._tick)

    def _schedule(self, delay: float) -> None:
        assert self._loop is not None
        when = self._loop.time() + delay
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._tick)
        self._timer_at = when

    def _tick(self) -> None:
        self._wake_pending = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = float("inf")
        if not self._running:
            return
        now = time.monotonic()
        try:
            self._submit_commands()
            # libosdp advances one step per refresh: one call processes a reply or picks the next
            # command, the second one sends it. Two back to back save a whole tick of latency.
            self._cp.refresh()
            self._cp.refresh()
            self.refreshes += 2
            self._monitor.poll(now)
            self._drain_callbacks(now)
            self._supervise(now)
        except Exception:
            log.exception("OSDP driver tick failed on %s", self.name)
        self._schedule(self._next_delay(now))

    def _next_delay(self, now: float) -> float:
        delay = self._idle
        for r in self._by_idx:
            if r.queued or r.inflight:
                delay = min(delay, self._busy)
            if r.phase == "waiting":
                delay = min(delay, max(0.0, r.restart_at - now))
            if r.osdp_online:
                peer = self._monitor.peers[r.cfg.address]
                if peer.last_reply_at is not None and peer.unanswered_since is None:
                    # Be there when libosdp wants to poll this reader again, not up to 50 ms later.
                    due = peer.last_reply_at + POLL_DUE - now
                    delay = min(delay, due if due > 0 else 0.001)
        return delay

    def _submit_commands(self) -> None:
        for r in self._by_idx:
            while r.queued and len(r.inflight) < INFLIGHT_MAX and self._ready(r):
                cmd = r.queued[0]
                if cmd.future.done():  # timed out while queued
                    r.queued.popleft()
                    continue
                if not self._cp.submit_command(r.idx, cmd.payload):
                    break  # libosdp's pool is full; retry after this refresh
                r.queued.popleft()
                r.inflight.append(cmd)

    def _drain_callbacks(self, now: float) -> None:
        while self._completions:
            idx, command, status = self._completions.popleft()
            r = self._by_idx[idx]
            # libosdp completes a reader's commands in order; anything else is its own (KEYSET).
            if r.inflight and r.inflight[0].payload["command"] == command.get("command"):
                cmd = r.inflight.popleft()
                if not cmd.future.done():
                    cmd.future.set_result(status == osdp_sys.COMPLETION_OK)
        while self._events:
            idx, event = self._events.popleft()
            try:
                self._handle_event(self._by_idx[idx], event, now)
            except Exception:
                log.exception("OSDP event from reader %s could not be handled", self._by_idx[idx].cfg.id)

    # -- events from readers ---------------------------------------------------------------------

    def _handle_event(self, r: _Reader, event: dict[str, Any], now: float) -> None:
        kind = event.get("event")
        if kind == osdp_sys.EVENT_NOTIFICATION:
            self._handle_notification(r, event, now)
            return
        if r.cfg.secure and not r.sc_active:
            # Only in install mode can libosdp let a reader talk in plaintext; nothing it says
            # then is trusted.
            r.dropped_events += 1
            return
        if kind == osdp_sys.EVENT_CARDREAD:
            self._handle_card(r, event)
        elif kind == osdp_sys.EVENT_KEYPRESS:
            for outcome in r.pins.feed(bytes(event.get("data", b"")), now):
                self._handle_pin(r, outcome)
        elif kind == osdp_sys.EVENT_STATUS:
            self._handle_status(r, event)

    def _handle_notification(self, r: _Reader, event: dict[str, Any], now: float) -> None:
        kind, arg0, arg1 = event.get("type"), event.get("arg0"), event.get("arg1")
        if kind == NOTIFY_SC and arg0 and arg1:
            r.saw_scbk_d = True  # install mode: the reader joined with SCBK-D; libosdp sends our key next
        elif kind == NOTIFY_PD and not arg0 and r.phase not in ("waiting", "parked"):
            # libosdp has parked the reader (300 s): NAK, corrupt reply, silence, failed handshake.
            self._dropped(r, now)

    def _handle_card(self, r: _Reader, event: dict[str, Any]) -> None:
        data = bytes(event.get("data", b""))
        length = int(event.get("length", len(data) * 8))
        base = {"reader": r.cfg.id, "address": r.cfg.address}
        try:
            read = decode_bytes(data, length, reverse=event.get("direction") == 1)
        except WiegandError as exc:
            self._report("reader.card_error", r.cfg.id, {**base, "bits": length, "error": str(exc)}, "warning")
            return
        self._report("reader.card", r.cfg.id, {**base, **read.as_data()}, "info")
        self._offer(r, CardCredential(read))

    def _handle_pin(self, r: _Reader, outcome: tuple[Any, ...]) -> None:
        base = {"reader": r.cfg.id, "address": r.cfg.address}
        if outcome[0] == "pin":
            pin = outcome[1]
            self._report("reader.keypad", r.cfg.id, {**base, "pin_length": len(pin)}, "info")
            self._offer(r, PinCredential(pin))
        elif outcome[0] == "function":
            function, code = outcome[1][:1], outcome[1][1:]
            data = {**base, "function": function, "code_length": len(code)}
            self._report("reader.keypad_function", r.cfg.id, data, "info")
            self._offer(r, KeypadFunction(function, code))
        else:
            data = {**base, "reason": outcome[1], "pin_length": outcome[2]}
            self._report("reader.keypad_abandoned", r.cfg.id, data, "info")

    def _handle_status(self, r: _Reader, event: dict[str, Any]) -> None:
        report = bytes(event.get("report", b""))
        kind = event.get("type")
        base = {"reader": r.cfg.id, "address": r.cfg.address}
        if kind in (osdp_sys.STATUS_REPORT_LOCAL, osdp_sys.STATUS_REPORT_REMOTE) and report:
            tamper = bool(report[0])
            if tamper != r.tamper:
                r.tamper = tamper
                self._report("reader.tamper", r.cfg.id, {**base, "active": tamper}, "alarm" if tamper else "info")
            if len(report) > 1:
                power_ok = not report[1]
                if power_ok != r.power_ok:
                    r.power_ok = power_ok
                    self._report("reader.power", r.cfg.id, {**base, "ok": power_ok}, "info" if power_ok else "warning")
        elif kind in (osdp_sys.STATUS_REPORT_INPUT, osdp_sys.STATUS_REPORT_OUTPUT):
            states, name = (r.inputs, "input") if kind == osdp_sys.STATUS_REPORT_INPUT else (r.outputs, "output")
            for no, value in enumerate(report):
                active = bool(value)
                if states.get(no) != active:
                    states[no] = active
                    self._report(f"reader.{name}", r.cfg.id, {**base, name: no, "active": active}, "info")

    def _offer(self, r: _Reader, credential: Credential) -> None:
        if self._on_credential is None:
            return
        try:
            r.credentials.put_nowait(credential)
        except asyncio.QueueFull:
            data = {"reader": r.cfg.id, "address": r.cfg.address, "kind": credential.kind}
            self._report("reader.credential_dropped", r.cfg.id, data, "warning")

    async def _credential_worker(self, r: _Reader) -> None:
        """One decision at a time per reader, in the order people presented their credentials."""
        while True:
            credential = await r.credentials.get()
            decision: Decision | bool | None
            try:
                assert self._on_credential is not None
                async with asyncio.timeout(self._decision_timeout):
                    decision = await self._on_credential(r.cfg.id, credential)
            except Exception:
                log.exception("access decision failed for reader %s", r.cfg.id)
                decision = Decision(granted=False)  # the door stays shut; tell the person
            if isinstance(decision, bool):
                decision = Decision(granted=decision)
            if decision is not None:
                self._spawn(self._feedback(r, decision))

    async def _feedback(self, r: _Reader, decision: Decision) -> None:
        if not self._ready(r):
            return
        ms = decision.feedback_ms
        if decision.granted:
            jobs = [self.led(r.cfg.id, LedColor.GREEN, duration_ms=ms), self.buzzer(r.cfg.id, on_ms=200, repeat=1)]
        else:
            jobs = [
                self.led(r.cfg.id, LedColor.RED, duration_ms=ms, flash_ms=200),
                self.buzzer(r.cfg.id, on_ms=100, off_ms=100, repeat=3),
            ]
        if decision.text:
            jobs.append(self.text(r.cfg.id, decision.text[: commands.MAX_TEXT], duration_s=max(1, ms // 1000)))
        await asyncio.gather(*jobs)

    # -- supervision: online/offline, restarts, security -------------------------------------------

    def _supervise(self, now: float) -> None:
        online_mask = self._cp.status()
        sc_mask = self._cp.sc_status()
        for r in self._by_idx:
            online = bool(online_mask >> r.idx & 1)
            r.sc_active = bool(sc_mask >> r.idx & 1)
            self._advance_restart(r, now)
            if r.phase in ("waiting", "parked"):
                # We disabled it; libosdp's bit lags until the disable lands after an exchange.
                online = False
            if online and not r.osdp_online:
                r.osdp_online = True
                self._came_online(r, now)
            elif not online and r.osdp_online:
                r.osdp_online = False
                if r.phase not in ("waiting", "parked"):  # not our own disable_pd
                    self._dropped(r, now)
            if r.dropped_at is not None and now - r.dropped_at > self._offline_grace and not r.osdp_online:
                r.dropped_at = None
                self._set_offline(r, r.drop_reason)
            silent = self._monitor.silent_for(r.cfg.address, now)
            if silent > self._offline_after and r.reported_online is not False and r.phase != "parked":
                self._set_offline(r, "no_reply")
            elif (
                r.reported_online is False
                and r.osdp_online
                and silent == 0.0
                and r.phase is None
                and r.security_fault is None
            ):
                # libosdp's own retries got through before it gave up: the reader is back.
                self._set_online(r)
            outcome = r.pins.expire(now)
            if outcome is not None:
                self._handle_pin(r, outcome)

    def _came_online(self, r: _Reader, now: float) -> None:
        if r.phase == "enabling":
            r.phase = None
        r.online_this_attempt = True
        if r.cfg.secure and not r.sc_active:
            # Only possible in install mode: even SCBK-D failed and libosdp went on in plaintext.
            self._security(r, "sc_failed", now)
            return
        for name, code in CAPABILITIES.items():
            with contextlib.suppress(ValueError):
                compliance, items = self._cp.check_capability(r.idx, code)
                r.caps[name] = Capability(compliance, items)
        with contextlib.suppress(ValueError):
            r.pd_id = dict(self._cp.get_pd_id(r.idx) or {})
        if r.saw_scbk_d and r.sc_active and not r.commissioned:
            r.commissioned = True
            # From now on the reader must prove its new key; never fall back to SCBK-D again.
            self._cp.set_flag(r.idx, osdp_sys.FLAG_ENFORCE_SECURE)
            self._report("reader.commissioned", r.cfg.id, {"reader": r.cfg.id, "address": r.cfg.address}, "info")
        r.saw_scbk_d = False
        r.security_fault = None
        if r.dropped_at is not None and r.reported_online:
            down_ms = round((now - r.dropped_at) * 1000)
            data = {"reader": r.cfg.id, "address": r.cfg.address, "reason": r.drop_reason, "down_ms": down_ms}
            self._report("reader.link_reset", r.cfg.id, data, "info")
        r.dropped_at = None
        if self._monitor.silent_for(r.cfg.address, now) <= self._offline_after:
            self._set_online(r)

    def _dropped(self, r: _Reader, now: float) -> None:
        """libosdp gave up on the reader. Work out why, report what lasts, and bring it back."""
        peer = self._monitor.peers[r.cfg.address]
        fresh = peer.last_reply_at is not None and peer.last_reply_at >= r.attempt_started
        code = peer.last_reply_code if fresh else None
        # Dropped before ever getting online, right after a valid handshake reply that left nothing
        # unanswered (a corrupt or missing reply would): the reader is there, but the secure
        # channel cannot be set up with the key we hold.
        answered = peer.unanswered_since is None
        security = None
        if r.cfg.secure and answered and not r.online_this_attempt:
            if code in (REPLY_CCRYPT, REPLY_RMAC_I):
                security = "key_mismatch"
            elif code == REPLY_NAK:
                security = "sc_refused"
            elif code == REPLY_PDCAP and not self._sc_capable(r):
                security = "sc_unsupported"
        self._fail_commands(r)
        r.osdp_online = False
        if security is not None:
            self._security(r, security, now)
            return
        if not fresh or self._monitor.silent_for(r.cfg.address, now) > 0.5:
            reason = "no_reply"
        elif code == REPLY_NAK:
            reason = "nak"
        else:
            reason = "protocol_error"  # e.g. a reply that failed its CRC
        if r.dropped_at is None:
            r.dropped_at, r.drop_reason = now, reason
        r.drops.append(now)
        recent = sum(1 for t in r.drops if now - t < 30.0)
        # A reader that keeps NAK'ing is not hammered; a silent one is probed (about once a second,
        # by libosdp's own retries) so it is back within a second of being plugged in again.
        delay = 0.0 if reason == "no_reply" or recent <= 3 else min(30.0, 2.0 ** (recent - 3))
        self._restart(r, now, delay)

    def _sc_capable(self, r: _Reader) -> bool:
        try:
            compliance, _ = self._cp.check_capability(r.idx, osdp_sys.CAP_COMMUNICATION_SECURITY)
        except ValueError:
            return True
        return compliance > 0

    def _security(self, r: _Reader, reason: str, now: float) -> None:
        if r.security_fault is None:
            data = {"reader": r.cfg.id, "address": r.cfg.address, "reason": reason}
            self._report("reader.security_fault", r.cfg.id, data, "alarm")
            r.drops.clear()
        r.security_fault = reason
        r.drops.append(now)
        self._set_offline(r, "security_fault")
        # Retry slowly: the key may be fixed (or the reader replaced) without restarting the daemon.
        self._restart(r, now, min(60.0, self._security_retry * len(r.drops)))

    def _restart(self, r: _Reader, now: float, delay: float) -> None:
        self._cp.disable_pd(r.idx)  # takes effect on the next refresh
        r.phase = "waiting"
        r.restart_at = now + delay

    def _advance_restart(self, r: _Reader, now: float) -> None:
        if r.phase == "waiting" and now >= r.restart_at and not self._cp.is_pd_enabled(r.idx):
            if self._cp.enable_pd(r.idx):
                r.phase = "enabling"
                r.attempt_started = now
                r.online_this_attempt = False
                self._wake()
        elif r.phase == "enabling" and now - r.attempt_started > 15.0:
            r.phase = None  # libosdp is probing on its own schedule; a drop restarts it again

    def _set_online(self, r: _Reader) -> None:
        if r.reported_online is True:
            return
        r.reported_online = True
        data = {
            "reader": r.cfg.id,
            "address": r.cfg.address,
            "secure": r.sc_active,
            "capabilities": {k: [c.compliance, c.items] for k, c in r.caps.items() if c.present},
            "id": r.pd_id,
        }
        self._report("device.online", r.cfg.id, data, "info")

    def _set_offline(self, r: _Reader, reason: str) -> None:
        if r.reported_online is False:
            return
        r.reported_online = False
        data = {"reader": r.cfg.id, "address": r.cfg.address, "reason": reason}
        self._report("device.offline", r.cfg.id, data, "warning")

    def _fail_commands(self, r: _Reader) -> None:
        # A queued unlock must never reach the reader minutes later: drop everything pending, and
        # stop re-arming long unlocks (the reader's own timer relocks the door).
        for handle in r.rearm.values():
            handle.cancel()
        r.rearm.clear()
        if self._cp is not None and r.inflight:
            self._cp.flush_commands(r.idx)
        for cmd in (*r.queued, *r.inflight):
            if not cmd.future.done():
                cmd.future.set_result(False)
        r.queued.clear()
        r.inflight.clear()

    # -- the port ----------------------------------------------------------------------------------

    def _port_lost(self, exc: Exception | None) -> None:
        if not self._running:
            return
        self._report("bus.offline", self.name, {"port": self.port, "error": str(exc) if exc else "closed"}, "warning")
        for r in self._by_idx:
            self._fail_commands(r)
            self._cp.disable_pd(r.idx)
            r.phase = "parked"
            r.osdp_online = False
            r.dropped_at = None
            self._set_offline(r, "port_lost")
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        while self._running:
            await asyncio.sleep(delay)
            try:
                await self._channel.open()
            except (OSError, serial.SerialException):
                delay = min(1.0, delay * 2)  # a replugged adapter is found within a second
                continue
            self._report("bus.online", self.name, {"port": self.port}, "info")
            now = time.monotonic()
            for r in self._by_idx:
                if r.phase == "parked":
                    r.phase, r.restart_at = "waiting", now
            self._wake()
            return

    def _report(self, type: str, source: str, data: dict[str, Any], severity: Severity) -> None:
        try:
            self._report_cb(type, source, data, severity)
        except Exception:
            log.exception("report callback failed for %s", type)
