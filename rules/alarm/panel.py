"""The alarm panel: partitions, zones, codes and sirens as a pure state machine over inputs and a clock.

Every method takes the time (`now`, unix seconds) and returns an :class:`Output`: events to emit
and siren requests to carry out. Nothing here reads a clock or does I/O; the caller ticks the
panel (:meth:`Panel.tick`) at :meth:`Panel.next_deadline` and writes :meth:`Panel.to_state` to disk
after every output whose `changed` is set.

States (per partition) are Home Assistant's `alarm_control_panel` states with its manual panel's
transitions:

    disarmed --arm--> arming --exit delay--> armed_<mode>
    armed_<mode> --entry/exit zone--> pending --entry delay--> triggered
    armed_<mode> --instant/perimeter/follower zone--> triggered
    any --24h/fire/panic zone--> triggered
    triggered --siren time--> the state it came from (armed_<mode>, or disarmed after a 24h alarm)
    any --disarm with a code--> disarmed

`disarming` (HA's state for a panel that validates a disarm remotely) is never entered: codes are
checked here, at once. Arming from one armed mode to another goes through `arming` again.

Zone rules: entry/exit and follower zones are the exit route while `arming` and the way to the
keypad while `pending`; instant and perimeter zones trip at once while arming or pending (an alarm
during the exit delay). An entry/exit zone still open when the exit delay ends starts the entry
delay (exit error). A zone restoring during the entry delay does not cancel it: only a code does.
Zones in a cross-zone group trip an alarm only when a second zone of the group follows within the
group's window (`alarm.unconfirmed` for the first). Tamper (a zone input in `tamper`, a tamper zone,
a zone device's enclosure) is an alarm while the partition is armed, a trouble otherwise.

Codes: a user's code (hashed by the injected `hash_code`) may do the actions listed for it on its
partitions. `max_code_attempts` wrong codes in a row lock the partition's code entry out for
`lockout_s`. A duress code does what it is asked, visibly like any code, and raises a silent
`alarm.duress` (critical) for the platform; no siren sounds for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.events import Severity
from rules.alarm.config import ALWAYS_ARMED, ARM_MODES, AlarmSection, CodeAction, SirenConfig, UserCode, ZoneConfig

STATES = (
    "disarmed", "arming", "armed_home", "armed_away", "armed_night", "armed_vacation", "pending", "triggered",
    "disarming",
)
ARMED_STATES = frozenset(f"armed_{m}" for m in ARM_MODES)
ZONE_STATES = ("normal", "active", "tamper", "fault")
TROUBLE_KINDS = ("offline", "battery", "tamper", "supervision", "zone_fault", "siren_output")
STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """An event to emit, as plain data: ``EventFactory(type, source, data, severity)`` makes it real."""

    type: str
    source: str
    data: dict[str, Any]
    severity: Severity


@dataclass(frozen=True, slots=True)
class SirenRequest:
    """Switch a siren. `duration_s` (on only): how long it should sound from now, for outputs that
    time themselves; the panel sends the off request at the end in any case."""

    siren: str
    on: bool
    duration_s: float = 0.0


@dataclass
class Output:
    events: list[AlarmEvent] = field(default_factory=list)
    sirens: list[SirenRequest] = field(default_factory=list)
    changed: bool = False  # the persisted state (to_state) changed: write it through

    def types(self) -> list[str]:
        return [e.type for e in self.events]


@dataclass
class Result:
    """The answer to a request (arm, disarm, bypass): done, or refused with a reason."""

    ok: bool
    output: Output
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    user: str | None = None


@dataclass
class ZoneRuntime:
    cfg: ZoneConfig
    state: str = "normal"
    bypassed: bool = False
    automatic: bool = False  # bypassed by a forced arming, not by hand


@dataclass
class PartitionRuntime:
    id: str
    apartment: str | None
    entry_delay_s: float
    exit_delay_s: float
    siren_s: float
    state: str = "disarmed"
    mode: str | None = None  # the arm mode armed, being armed, or returned to after an alarm
    deadline: float | None = None  # end of the exit delay, the entry delay or the siren time
    return_to: str = "disarmed"  # the state a triggered partition goes back to
    pending_zones: list[str] = field(default_factory=list)
    alarm_zones: list[str] = field(default_factory=list)
    audible: bool = False
    memory: list[dict[str, Any]] = field(default_factory=list)  # alarms since the last arming
    failures: int = 0
    locked_until: float | None = None


class Panel:
    def __init__(self, config: AlarmSection, hash_code: Callable[[str], str | None]) -> None:
        self.config = config
        self.hash_code = hash_code
        self.partitions = {
            p.id: PartitionRuntime(p.id, p.apartment, p.entry_delay_s, p.exit_delay_s, p.siren_s)
            for p in config.partitions
        }
        self.zones = {z.id: ZoneRuntime(z) for z in config.zones}
        self._by_source = {(z.source.device, z.source.point): z.id for z in config.zones}
        self._codes = {c.code_hash: c for c in config.codes}
        self._group_of = {zid: g for g in config.cross_zones for zid in g.zones}
        self._cross: dict[str, tuple[str, float]] = {}  # group -> (first zone, when)
        self.troubles: dict[tuple[str, str], dict[str, Any]] = {}  # (device, kind) -> detail
        self.sirens_on: set[str] = set()

    # ---- views ---------------------------------------------------------------------------------

    def zones_of(self, partition: str) -> list[ZoneRuntime]:
        return [z for z in self.zones.values() if z.cfg.partition == partition]

    def partition_status(self, partition: str) -> dict[str, Any]:
        p = self.partitions[partition]
        zones = self.zones_of(partition)
        devices = {z.cfg.source.device for z in zones}
        return {
            "partition": p.id,
            "apartment": p.apartment,
            "state": p.state,
            "mode": p.mode,
            "deadline": p.deadline,
            "alarm_zones": list(p.alarm_zones),
            "alarm_memory": list(p.memory),
            "open_zones": [z.cfg.id for z in zones if z.state != "normal"],
            "bypassed": [z.cfg.id for z in zones if z.bypassed],
            "troubles": [{"device": d, "kind": k} for (d, k) in sorted(self.troubles) if d in devices],
            "locked_out_until": p.locked_until,
        }

    def zone_status(self, zone: str) -> dict[str, Any]:
        z = self.zones[zone]
        return {
            "zone": z.cfg.id,
            "partition": z.cfg.partition,
            "type": z.cfg.type,
            "state": z.state,
            "bypassed": z.bypassed,
            "device": z.cfg.source.device,
            "point": z.cfg.source.point,
        }

    def next_deadline(self) -> float | None:
        deadlines = [p.deadline for p in self.partitions.values() if p.deadline is not None]
        return min(deadlines) if deadlines else None

    def zone_for(self, device: str, point: str) -> str | None:
        return self._by_source.get((device, point))

    # ---- inputs --------------------------------------------------------------------------------

    def input_changed(self, device: str, point: str, state: str, now: float, detail: str = "") -> Output:
        """A zone input reported a new state (normal / active / tamper / fault)."""
        out = Output()
        zid = self._by_source.get((device, point))
        if zid is None or state not in ZONE_STATES:
            return out
        z = self.zones[zid]
        old = z.state
        if state == old:
            return out  # drivers deduplicate; a repeat must not count twice anyway
        z.state = state
        out.changed = True
        p = self.partitions[z.cfg.partition]
        data = self._zone_data(z, detail)
        if state == "active":
            out.events.append(self._event("zone.opened", z.cfg.id, p, data, Severity.INFO))
        elif state == "normal":
            out.events.append(self._event("zone.closed", z.cfg.id, p, data, Severity.INFO))
        elif state == "tamper":
            out.events.append(self._event("zone.tamper", z.cfg.id, p, data, Severity.WARNING))
        if old == "fault":
            self._trouble(out, device, "zone_fault", False, now, {"zone": zid})
        if old == "tamper" or (old == "active" and z.cfg.type == "tamper"):
            self._trouble(out, device, "tamper", False, now, {"zone": zid}, key_suffix=zid)
        if state == "fault":
            self._trouble(out, device, "zone_fault", True, now, {"zone": zid, "detail": detail})
        if z.bypassed:
            return out
        if state == "tamper" or (state == "active" and z.cfg.type == "tamper"):
            self._tamper(out, p, [zid], now)
        elif state == "active":
            self._tripped(out, z, p, now)
        self._sync_sirens(out, now)
        return out

    def device_trouble(self, device: str, kind: str, active: bool, now: float, detail: str = "") -> Output:
        """A zone or siren device went offline / low battery / tamper (and back)."""
        out = Output()
        if kind not in TROUBLE_KINDS:
            return out
        changed = self._trouble(out, device, kind, active, now, {"detail": detail} if detail else {})
        if changed and kind == "tamper" and active:
            # An opened enclosure on an armed partition's zone device is a tamper alarm.
            for pid in sorted({z.cfg.partition for z in self.zones.values() if z.cfg.source.device == device}):
                p = self.partitions[pid]
                zones = [z.cfg.id for z in self.zones_of(pid) if z.cfg.source.device == device and not z.bypassed]
                if zones and _watching(p):
                    self._trigger(out, p, zones, now, "tamper", silent=False)
        self._sync_sirens(out, now)
        return out

    def siren_result(self, siren: str, error: str | None, now: float) -> Output:
        """What became of a siren request: an output that failed is a trouble until one succeeds."""
        out = Output()
        self._trouble(out, f"siren:{siren}", "siren_output", error is not None, now,
                      {"siren": siren, "error": error} if error else {"siren": siren})
        return out

    def tick(self, now: float) -> Output:
        out = Output()
        for p in self.partitions.values():
            if p.deadline is None or now < p.deadline:
                continue
            if p.state == "arming":
                self._armed(out, p, now)
            elif p.state == "pending":
                self._trigger(out, p, p.pending_zones, now, "intrusion", silent=False)
            elif p.state == "triggered":
                self._alarm_over(out, p, now)
            else:
                p.deadline = None
            out.changed = True
        for group, (_, at) in list(self._cross.items()):
            window = next(g.window_s for g in self.config.cross_zones if g.id == group)
            if now - at > window:
                del self._cross[group]
        self._sync_sirens(out, now)
        return out

    # ---- requests ------------------------------------------------------------------------------

    def arm(self, partition: str, mode: str, code: str, now: float, *, force: bool = False,
            origin: str = "") -> Result:
        out = Output()
        p = self.partitions.get(partition)
        if p is None:
            return Result(False, out, "unknown_partition")
        if mode not in ARM_MODES:
            return Result(False, out, "unknown_mode")
        user, reason = self._authorize(out, p, code, "arm", now, origin)
        if user is None:
            return Result(False, out, reason)
        self._duress(out, p, user, "arm", origin)
        if p.state in ("pending", "triggered"):
            return self._refuse(out, p, user, "in_alarm", {}, origin)
        target = f"armed_{mode}"
        if p.state == target or (p.state == "arming" and p.mode == mode):
            return Result(True, out, user=user.user)
        zones = [z for z in self.zones_of(p.id) if z.cfg.enabled_in(mode) and not z.bypassed]
        open_zones = [z for z in zones if z.state != "normal"]
        devices = {z.cfg.source.device for z in zones}
        troubles = [{"device": d, "kind": k} for (d, k) in sorted(self.troubles) if d in devices]
        if not force:
            if open_zones:
                return self._refuse(out, p, user, "zones_open", {"zones": [z.cfg.id for z in open_zones]}, origin)
            if troubles:
                return self._refuse(out, p, user, "trouble", {"troubles": troubles}, origin)
        fixed = [z.cfg.id for z in open_zones if z.cfg.type in ALWAYS_ARMED]
        if fixed:
            return self._refuse(out, p, user, "not_bypassable", {"zones": fixed}, origin)
        for z in open_zones:
            z.bypassed, z.automatic = True, True
            out.events.append(self._event("zone.bypassed", z.cfg.id, p, {
                **self._zone_data(z), "bypassed": True, "automatic": True, "user": user.user,
                "reason": f"open ({z.state}) at forced arming",
            }, Severity.WARNING))
        p.mode = mode
        p.memory = []
        p.alarm_zones = []
        p.pending_zones = []
        out.changed = True
        data = {"mode": mode, "user": user.user, "origin": origin,
                "bypassed": [z.cfg.id for z in self.zones_of(p.id) if z.bypassed]}
        if force and troubles:
            data["troubles"] = troubles
        if p.exit_delay_s > 0:
            p.state = "arming"
            p.deadline = now + p.exit_delay_s
            out.events.append(self._event("alarm.arming", p.id, p, {**data, "exit_delay_s": p.exit_delay_s},
                                          Severity.INFO))
        else:
            self._armed(out, p, now, data)
        return Result(True, out, user=user.user)

    def disarm(self, partition: str, code: str, now: float, *, origin: str = "") -> Result:
        out = Output()
        p = self.partitions.get(partition)
        if p is None:
            return Result(False, out, "unknown_partition")
        user, reason = self._authorize(out, p, code, "disarm", now, origin)
        if user is None:
            return Result(False, out, reason)
        if p.state == "disarmed":
            self._duress(out, p, user, "disarm", origin)
            return Result(True, out, user=user.user)
        was = p.state
        unbypassed = [z.cfg.id for z in self.zones_of(p.id) if z.bypassed]
        for z in self.zones_of(p.id):
            z.bypassed = z.automatic = False  # a bypass lasts one arming
        p.state, p.mode, p.deadline = "disarmed", None, None
        p.return_to = "disarmed"
        p.audible = False
        p.pending_zones = []
        p.alarm_zones = []
        out.changed = True
        out.events.append(self._event("alarm.disarmed", p.id, p, {
            "user": user.user, "origin": origin, "was": was, "alarm_memory": list(p.memory), "unbypassed": unbypassed,
        }, Severity.INFO))
        self._duress(out, p, user, "disarm", origin)
        self._sync_sirens(out, now)
        return Result(True, out, user=user.user)

    def bypass(self, partition: str, zone: str, code: str, now: float, *, on: bool = True,
               origin: str = "") -> Result:
        out = Output()
        p = self.partitions.get(partition)
        if p is None:
            return Result(False, out, "unknown_partition")
        user, reason = self._authorize(out, p, code, "bypass", now, origin)
        if user is None:
            return Result(False, out, reason)
        self._duress(out, p, user, "bypass", origin)
        z = self.zones.get(zone)
        if z is None or z.cfg.partition != p.id:
            return self._refuse(out, p, user, "unknown_zone", {"zone": zone}, origin)
        if z.cfg.type in ALWAYS_ARMED:
            return self._refuse(out, p, user, "not_bypassable", {"zones": [zone]}, origin)
        if p.state in ("pending", "triggered"):
            return self._refuse(out, p, user, "in_alarm", {"zone": zone}, origin)
        if z.bypassed != on:
            z.bypassed, z.automatic = on, False
            out.changed = True
            out.events.append(self._event("zone.bypassed", z.cfg.id, p, {
                **self._zone_data(z), "bypassed": on, "automatic": False, "user": user.user, "origin": origin,
            }, Severity.WARNING if on else Severity.INFO))
        return Result(True, out, user=user.user)

    # ---- persistence ---------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "partitions": {
                p.id: {
                    "state": p.state, "mode": p.mode, "deadline": p.deadline, "return_to": p.return_to,
                    "pending_zones": p.pending_zones, "alarm_zones": p.alarm_zones, "audible": p.audible,
                    "memory": p.memory, "failures": p.failures, "locked_until": p.locked_until,
                }
                for p in self.partitions.values()
            },
            "zones": {z.cfg.id: {"state": z.state, "bypassed": z.bypassed, "automatic": z.automatic}
                      for z in self.zones.values()},
            "troubles": [{"device": d, "kind": k, "detail": v} for (d, k), v in sorted(self.troubles.items())],
        }

    def restore(self, state: dict[str, Any], now: float) -> Output:
        """Take over a persisted state (after a restart): armed stays armed, an alarm still within
        its siren time sounds again for what is left of it; deadlines that passed while the daemon
        was down are handled as the next tick would have."""
        if state.get("version") != STATE_VERSION:
            return Output()
        for pid, saved in state.get("partitions", {}).items():
            p = self.partitions.get(pid)
            if p is None or saved.get("state") not in STATES:
                continue  # a partition removed from the site file, or a state this version does not know
            p.state, p.mode, p.deadline = saved["state"], saved.get("mode"), saved.get("deadline")
            p.return_to = saved.get("return_to", "disarmed")
            p.pending_zones = [z for z in saved.get("pending_zones", []) if z in self.zones]
            p.alarm_zones = [z for z in saved.get("alarm_zones", []) if z in self.zones]
            p.audible = bool(saved.get("audible"))
            p.memory = list(saved.get("memory", []))
            p.failures = int(saved.get("failures", 0))
            p.locked_until = saved.get("locked_until")
            if p.return_to not in STATES:
                p.return_to = "disarmed"
            if p.state in ("arming", "pending", *ARMED_STATES) and p.mode not in ARM_MODES:
                p.state, p.deadline = "disarmed", None  # inconsistent: never guess an armed mode
        for zid, saved in state.get("zones", {}).items():
            z = self.zones.get(zid)
            if z is not None and saved.get("state") in ZONE_STATES:
                z.state = saved["state"]
                z.bypassed = bool(saved.get("bypassed")) and z.cfg.type not in ALWAYS_ARMED
                z.automatic = bool(saved.get("automatic"))
        for t in state.get("troubles", []):
            self.troubles[(t["device"], t["kind"])] = dict(t.get("detail") or {})
        out = self.tick(now)  # also switches on the sirens of an alarm still within its time
        out.changed = True
        return out

    # ---- internals -----------------------------------------------------------------------------

    def _tripped(self, out: Output, z: ZoneRuntime, p: PartitionRuntime, now: float) -> None:
        t = z.cfg.type
        if t in ("24h", "fire", "panic"):
            self._trigger(out, p, [z.cfg.id], now, t, silent=z.cfg.silent)
            return
        if p.mode is None or not z.cfg.enabled_in(p.mode):
            return
        route = t in ("entry_exit", "follower")
        if p.state == "triggered":
            if z.cfg.id not in p.alarm_zones and p.return_to in ARMED_STATES:
                self._trigger(out, p, [z.cfg.id], now, "intrusion", silent=z.cfg.silent)
        elif p.state == "arming" or p.state == "pending":
            if not route:
                self._confirm(out, z, p, now)
        elif p.state in ARMED_STATES:
            if t == "entry_exit":
                self._pending(out, p, z.cfg.id, now)
            else:
                self._confirm(out, z, p, now)

    def _confirm(self, out: Output, z: ZoneRuntime, p: PartitionRuntime, now: float) -> None:
        """Trigger now, unless the zone needs a second zone of its cross-zone group to agree."""
        group = self._group_of.get(z.cfg.id)
        if group is None:
            self._trigger(out, p, [z.cfg.id], now, "intrusion", silent=z.cfg.silent)
            return
        first = self._cross.get(group.id)
        if first is not None and first[0] != z.cfg.id and now - first[1] <= group.window_s:
            del self._cross[group.id]
            self._trigger(out, p, [first[0], z.cfg.id], now, "intrusion", silent=z.cfg.silent,
                          extra={"cross_zone": group.id})
            return
        self._cross[group.id] = (z.cfg.id, now)
        out.events.append(self._event("alarm.unconfirmed", p.id, p, {
            "zone": z.cfg.id, "cross_zone": group.id, "window_s": group.window_s,
        }, Severity.WARNING))

    def _tamper(self, out: Output, p: PartitionRuntime, zones: list[str], now: float) -> None:
        if _watching(p):
            self._trigger(out, p, zones, now, "tamper", silent=False)
        else:
            for zid in zones:
                device = self.zones[zid].cfg.source.device
                self._trouble(out, device, "tamper", True, now, {"zone": zid}, key_suffix=zid)

    def _pending(self, out: Output, p: PartitionRuntime, zone: str, now: float) -> None:
        if p.entry_delay_s <= 0:
            self._trigger(out, p, [zone], now, "intrusion", silent=False)
            return
        p.return_to = p.state
        p.state = "pending"
        p.deadline = now + p.entry_delay_s
        p.pending_zones = [zone]
        out.changed = True
        out.events.append(self._event("alarm.pending", p.id, p, {
            "mode": p.mode, "zones": [zone], "entry_delay_s": p.entry_delay_s,
        }, Severity.WARNING))

    def _armed(self, out: Output, p: PartitionRuntime, now: float, data: dict[str, Any] | None = None) -> None:
        assert p.mode is not None
        p.state = f"armed_{p.mode}"
        p.deadline = None
        p.return_to = p.state
        out.changed = True
        data = data or {"mode": p.mode, "bypassed": [z.cfg.id for z in self.zones_of(p.id) if z.bypassed]}
        out.events.append(self._event("alarm.armed", p.id, p, data, Severity.INFO))
        # Exit error: the exit route still open when the delay ends starts the entry delay.
        for z in self.zones_of(p.id):
            if z.cfg.type in ("entry_exit", "follower") and z.state == "active" and not z.bypassed \
                    and z.cfg.enabled_in(p.mode):
                self._pending(out, p, z.cfg.id, now)
                break

    def _trigger(self, out: Output, p: PartitionRuntime, zones: list[str], now: float, kind: str, *,
                 silent: bool, extra: dict[str, Any] | None = None) -> None:
        new = [z for z in zones if z not in p.alarm_zones]
        if p.state == "triggered":
            if not new and (silent or p.audible):
                return
        else:
            if p.state in ARMED_STATES:
                p.return_to = p.state
            elif p.state in ("arming", "pending") and p.mode is not None:
                p.return_to = f"armed_{p.mode}"
            else:
                p.return_to = "disarmed"
            p.state = "triggered"
            p.alarm_zones = []
            p.audible = False
        p.alarm_zones += new
        if not silent and not p.audible:
            p.audible = True
        p.deadline = now + p.siren_s
        p.pending_zones = []
        for zid in new:
            p.memory.append({"zone": zid, "kind": kind, "at": now})
        out.changed = True
        severity = Severity.CRITICAL if kind in ("fire", "panic") else Severity.ALARM
        out.events.append(self._event("alarm.triggered", p.id, p, {
            "zones": new or zones, "kind": kind, "mode": p.mode, "silent": silent, **(extra or {}),
        }, severity))

    def _alarm_over(self, out: Output, p: PartitionRuntime, now: float) -> None:
        """The siren time is over: back to the state the alarm came from; the memory stays."""
        zones = list(p.alarm_zones)
        p.state = p.return_to
        p.mode = p.mode if p.state != "disarmed" else None
        p.deadline = None
        p.audible = False
        p.alarm_zones = []
        out.events.append(self._event("alarm.restored", p.id, p, {"zones": zones, "state": p.state}, Severity.INFO))

    def siren_remaining(self, siren: SirenConfig, now: float) -> float | None:
        """How long `siren` should still sound (None: it should be off)."""
        ends = [p.deadline for p in self.partitions.values()
                if p.state == "triggered" and p.audible and p.deadline is not None and siren.sounds_for(p.id)]
        return max(0.0, max(ends) - now) if ends else None

    def _sync_sirens(self, out: Output, now: float) -> None:
        wanted: dict[str, float] = {}
        for s in self.config.sirens:
            remaining = self.siren_remaining(s, now)
            if remaining is not None:
                wanted[s.id] = remaining
        for sid, remaining in wanted.items():
            if sid not in self.sirens_on:
                out.sirens.append(SirenRequest(sid, True, remaining))
        for sid in sorted(self.sirens_on - set(wanted)):
            out.sirens.append(SirenRequest(sid, False))
        self.sirens_on = set(wanted)

    def _authorize(self, out: Output, p: PartitionRuntime, code: str, action: CodeAction, now: float,
                   origin: str) -> tuple[UserCode | None, str | None]:
        base = {"action": action, "origin": origin}
        if p.locked_until is not None:
            if now < p.locked_until:
                out.events.append(self._event("alarm.code_rejected", p.id, p, {
                    **base, "reason": "locked_out", "retry_after_s": round(p.locked_until - now, 1),
                }, Severity.WARNING))
                return None, "locked_out"
            p.locked_until = None
            out.changed = True
        digest = self.hash_code(code) if isinstance(code, str) else None
        user = self._codes.get(digest) if digest is not None else None
        if user is None:
            p.failures += 1
            out.changed = True
            out.events.append(self._event("alarm.code_rejected", p.id, p, {
                **base, "reason": "wrong_code", "attempts": p.failures,
            }, Severity.WARNING))
            if p.failures >= self.config.max_code_attempts:
                p.failures = 0
                p.locked_until = now + self.config.lockout_s
                out.events.append(self._event("alarm.code_lockout", p.id, p, {
                    **base, "attempts": self.config.max_code_attempts, "lockout_s": self.config.lockout_s,
                }, Severity.ALARM))
            return None, "wrong_code"
        if p.id not in user.partitions or action not in user.actions:
            out.events.append(self._event("alarm.code_rejected", p.id, p, {
                **base, "reason": "not_permitted", "user": user.user,
            }, Severity.WARNING))
            return None, "not_permitted"
        if p.failures:
            p.failures = 0
            out.changed = True
        return user, None

    def _duress(self, out: Output, p: PartitionRuntime, user: UserCode, action: str, origin: str) -> None:
        if user.duress:
            out.events.append(self._event("alarm.duress", p.id, p, {
                "user": user.user, "action": action, "origin": origin,
            }, Severity.CRITICAL))

    def _refuse(self, out: Output, p: PartitionRuntime, user: UserCode, reason: str, detail: dict[str, Any],
                origin: str) -> Result:
        out.events.append(self._event("alarm.request_refused", p.id, p, {
            "user": user.user, "origin": origin, "reason": reason, **detail,
        }, Severity.WARNING))
        return Result(False, out, reason, detail, user.user)

    def _trouble(self, out: Output, device: str, kind: str, active: bool, now: float, detail: dict[str, Any],
                 key_suffix: str = "") -> bool:
        key = (device, kind + (f":{key_suffix}" if key_suffix else ""))
        if active == (key in self.troubles):
            return False
        if active:
            self.troubles[key] = {**detail, "since": now}
        else:
            del self.troubles[key]
        out.changed = True
        siren = detail.get("siren")
        partitions: list[str]
        if siren is not None:
            cfg = next(s for s in self.config.sirens if s.id == siren)
            partitions = [pid for pid in self.partitions if cfg.sounds_for(pid)]
        else:
            partitions = sorted({z.cfg.partition for z in self.zones.values() if z.cfg.source.device == device} | {
                pid for s in self.config.sirens if _siren_device(s) == device
                for pid in self.partitions if s.sounds_for(pid)
            })
        for pid in partitions:
            p = self.partitions[pid]
            zones = [z.cfg.id for z in self.zones_of(pid) if z.cfg.source.device == device]
            out.events.append(self._event("alarm.trouble", pid, p, {
                "device": device, "kind": kind, "active": active, "zones": zones, **detail,
            }, Severity.WARNING if active else Severity.INFO))
        return True

    def _zone_data(self, z: ZoneRuntime, detail: str = "") -> dict[str, Any]:
        data: dict[str, Any] = {"zone": z.cfg.id, "zone_type": z.cfg.type, "device": z.cfg.source.device,
                                "point": z.cfg.source.point, "bypassed": z.bypassed}
        if detail:
            data["detail"] = detail
        return data

    def _event(self, type: str, source: str, p: PartitionRuntime, data: dict[str, Any],
               severity: Severity) -> AlarmEvent:
        head: dict[str, Any] = {"partition": p.id}
        if p.apartment is not None:
            head["apartment"] = p.apartment
        return AlarmEvent(type, source, {**head, **data}, severity)


def _watching(p: PartitionRuntime) -> bool:
    """Armed, arming or in alarm: tamper is an alarm, not a trouble."""
    return p.state in ARMED_STATES or p.state in ("arming", "pending", "triggered")


def _siren_device(siren: SirenConfig) -> str:
    return siren.output.device if siren.output is not None else str(siren.zigbee)
