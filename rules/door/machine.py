"""One door as a pure state machine: ``DoorMachine.apply(input, now) -> DoorOutput``.

No I/O, no clock: ``now`` (aware) comes with every input, and timers come back as
``DoorOutput.next_deadline``, when the caller must ``apply(Tick(), now)`` again. The caller's loop:

1. At boot the driver sets every relay to :func:`boot_relay_command` (the lock mode's safe state);
   the machine starts believing exactly that. ``apply(ControllerStarted(door_open=...), now)`` then
   takes the door over and commands its normal state.
2. Feed every input as it happens; carry out the commands in order; journal the events.
3. At ``next_deadline``: if :meth:`DoorMachine.schedule_update_due`, apply
   ``rules.door.schedule_window_input(...)`` (and after any grant at a first-person-in door, or a
   new access configuration); then ``apply(Tick(), now)``.

The relay follows one rule, re-evaluated after every change (``_desired``):

- not started yet, or any fault raised and not cleared: the lock mode's safe state;
- scheduled free passage, unless in lockdown: unlocked until further notice;
- a momentary unlock (grant, REX, remote) until its end: unlocked;
- otherwise locked.

Relock policy: a momentary unlock ends when its time (strike or extended) runs out, or — with
``relock_on_close`` (the default, common practice) — as soon as the door closes after an opening,
so nobody can follow on the rest of the strike time. Faults and lockdown cancel momentary unlocks:
an unlock must never come back after the condition that stopped it has passed.

Supervision: an opening is *authorised* while the relay is unlocked, or within the passage window
of a grant / REX / remote unlock (REX shunts the DPS even when it does not unlock, and even in a
fault, so people leaving by the mechanical lever raise no alarm). Any other opening of a closed door
is ``door.forced_open``. Held-open time counts from the opening (``held_open_s``, or
``extended_held_open_s`` after an extended grant): ``door.held_open`` stage ``pre_alarm`` (warning)
``held_open_pre_alarm_s`` before, then stage ``alarm``. Free passage (schedule, or a fail-safe
door's safe state) is not supervised; if it ends with the door open, held-open time counts from
then. Closing after either alarm gives ``door.restored``. An opening first seen when the DPS state
was unknown (at start) is not called forced but is supervised as held open.

Lockdown: the door locks and scheduled unlock stops. Grants still unlock it — ``decide()`` grants
only override holders in lockdown, so the door follows them — and REX still works: lockdown keeps
people out, it must never trap them in. A remote unlock needs ``override_lockdown``.

A forced opening raises no held-open alarm on top; its ``door.forced_open`` stands until it closes.
A grant or remote unlock the door cannot carry out (not started, faulted, lockdown without
override) gives ``door.unlock_refused``, so the audit trail explains a "granted" that did not open.

Clock steps: if ``now`` goes below the previous input's time, running timers move back by as much,
so a step back does not stretch an unlock; a forward step ends unlocks early, which errs on the
locked side. A step back hidden inside the gap between two inputs cannot be seen from ``now``
alone: ``RelayCommand.duration_s`` lets hardware that times its own pulses (OSDP outputs) relock on
time regardless. Schedule times are wall-clock and stay as given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from edge.events import Severity
from rules.access.decide import AccessEvent
from rules.door.inputs import (
    AccessGranted,
    ControllerStarted,
    DoorClosed,
    DoorInput,
    DoorOpened,
    FaultCleared,
    FaultKind,
    FaultRaised,
    LockdownEnded,
    LockdownStarted,
    RemoteUnlock,
    RexPressed,
    ScheduleWindowEnded,
    ScheduleWindowStarted,
    Tick,
)
from rules.door.outputs import DoorEventType, DoorOutput, DoorStatus, HeldOpenStage, RelayCommand
from rules.door.settings import DoorSettings, RelayState, RexAction

FaultKey = tuple[FaultKind, str]


@dataclass(slots=True)
class _Unlock:
    """A momentary unlock in force."""

    until: datetime
    reason: str  # grant / rex / remote
    extended: bool
    by: str | None  # holder or requester, for the event


@dataclass(slots=True)
class _Opening:
    """The door's current opening."""

    opened_at: datetime
    forced: bool
    held_from: datetime | None  # held-open time counts from here; None: not supervised now
    held_limit_s: float
    stage: HeldOpenStage = HeldOpenStage.NONE


@dataclass(slots=True)
class _Collector:
    door_id: str
    commands: list[RelayCommand] = field(default_factory=list)
    events: list[AccessEvent] = field(default_factory=list)

    def event(self, event_type: DoorEventType, severity: Severity, **data: Any) -> None:
        self.events.append(AccessEvent(event_type.value, self.door_id, {"door": self.door_id, **data}, severity))


class DoorMachine:
    def __init__(self, settings: DoorSettings) -> None:
        self.settings = settings
        self._started = False
        self._faults: dict[FaultKey, str] = {}  # -> detail
        self._lockdown = False
        self._schedule_open = False
        self._schedule_ends_at: datetime | None = None
        self._schedule_check_at: datetime | None = None
        self._unlock: _Unlock | None = None
        self._passage_until: datetime | None = None
        self._passage_reason = ""
        self._passage_extended = False
        self._door_open: bool | None = None
        self._opening: _Opening | None = None
        # The driver put the relay in the safe state at boot (boot_relay_command); start from there.
        self._relay = settings.safe_relay_state
        self._relay_until: datetime | None = None
        self._relay_reason = "boot"
        self._last_now: datetime | None = None

    # --- the one entry point ---

    def apply(self, event: DoorInput, now: datetime) -> DoorOutput:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        out = _Collector(self.settings.door_id)
        self._follow_clock(now)
        is_schedule_input = isinstance(event, ScheduleWindowStarted | ScheduleWindowEnded)
        self._advance(now, out, schedule_renewing=is_schedule_input)
        self._handle(event, now, out)
        return DoorOutput(tuple(out.commands), tuple(out.events), self._next_deadline(now))

    def schedule_update_due(self, now: datetime) -> bool:
        """The schedule window has reached the time the last schedule input said to look again."""
        return self._schedule_check_at is not None and now >= self._schedule_check_at

    @property
    def status(self) -> DoorStatus:
        opening = self._opening
        return DoorStatus(
            door_id=self.settings.door_id,
            started=self._started,
            relay=self._relay,
            relay_until=self._relay_until,
            door_open=self._door_open,
            free_passage=self._free_passage,
            passage_until=self._passage_until,
            lockdown=self._lockdown,
            schedule_open=self._schedule_open,
            faults=tuple(sorted(self._faults)),
            forced_open=opening is not None and opening.forced,
            held_open=opening.stage if opening is not None else HeldOpenStage.NONE,
        )

    # --- time ---

    def _follow_clock(self, now: datetime) -> None:
        if self._last_now is not None and now < self._last_now:
            back = self._last_now - now
            if self._unlock is not None:
                self._unlock.until -= back
            if self._passage_until is not None:
                self._passage_until -= back
            if self._relay_until is not None:
                self._relay_until -= back
            if self._opening is not None:
                self._opening.opened_at -= back
                if self._opening.held_from is not None:
                    self._opening.held_from -= back
        self._last_now = now

    def _advance(self, now: datetime, out: _Collector, *, schedule_renewing: bool) -> None:
        """Run out every timer due by ``now``, in the order the later ones depend on."""
        if self._unlock is not None and now >= self._unlock.until:
            self._unlock = None
            self._reconcile(now, out, lock_reason="unlock_timeout")
        if self._passage_until is not None and now >= self._passage_until:
            self._passage_until = None
        # A schedule input arriving at the window's end decides itself (no lock-unlock blip).
        ends_at = self._schedule_ends_at
        if self._schedule_open and ends_at is not None and now >= ends_at and not schedule_renewing:
            self._schedule_open = False
            self._schedule_ends_at = None
            self._schedule_check_at = ends_at
            self._reconcile(now, out, lock_reason="schedule_end")
        self._advance_held_open(now, out)

    def _advance_held_open(self, now: datetime, out: _Collector) -> None:
        opening = self._opening
        if opening is None or opening.held_from is None:
            return
        alarm_at = opening.held_from + timedelta(seconds=opening.held_limit_s)
        lead = self.settings.held_open_pre_alarm_s
        if opening.stage is HeldOpenStage.NONE and lead > 0 and now >= alarm_at - timedelta(seconds=lead):
            self._held_open_stage(now, out, opening, HeldOpenStage.PRE_ALARM, Severity.WARNING)
        if opening.stage is not HeldOpenStage.ALARM and now >= alarm_at:
            self._held_open_stage(now, out, opening, HeldOpenStage.ALARM, Severity.ALARM)

    @staticmethod
    def _held_open_stage(
        now: datetime, out: _Collector, opening: _Opening, stage: HeldOpenStage, severity: Severity
    ) -> None:
        opening.stage = stage
        open_s = (now - opening.opened_at).total_seconds()
        out.event(DoorEventType.HELD_OPEN, severity, stage=stage.value, open_s=open_s, limit_s=opening.held_limit_s)

    def _next_deadline(self, now: datetime) -> datetime | None:
        deadlines: list[datetime] = []
        if self._relay_until is not None:
            deadlines.append(self._relay_until)
        opening = self._opening
        if opening is not None and opening.held_from is not None and opening.stage is not HeldOpenStage.ALARM:
            alarm_at = opening.held_from + timedelta(seconds=opening.held_limit_s)
            lead = self.settings.held_open_pre_alarm_s
            pre_alarm_due = opening.stage is HeldOpenStage.NONE and lead > 0
            deadlines.append(alarm_at - timedelta(seconds=lead) if pre_alarm_due else alarm_at)
        if self._schedule_open and self._schedule_ends_at is not None:
            deadlines.append(self._schedule_ends_at)
        elif self._schedule_check_at is not None and self._schedule_check_at > now:
            deadlines.append(self._schedule_check_at)
        return min(deadlines, default=None)

    # --- inputs ---

    def _handle(self, event: DoorInput, now: datetime, out: _Collector) -> None:
        match event:
            case ControllerStarted(door_open=door_open):
                self._start(now, out, door_open)
            case AccessGranted(holder_id=holder_id, extended=extended):
                self._momentary_unlock(now, out, "grant", extended, holder_id)
            case RemoteUnlock(requested_by=requested_by, extended=extended, override_lockdown=override):
                if self._lockdown and not override and self._operational:
                    out.event(DoorEventType.UNLOCK_REFUSED, Severity.WARNING, request="remote", reason="lockdown")
                else:
                    self._momentary_unlock(now, out, "remote", extended, requested_by)
            case RexPressed():
                self._rex(now, out)
            case DoorOpened():
                self._opened(now, out)
            case DoorClosed():
                self._closed(now, out)
            case Tick():
                pass
            case ScheduleWindowStarted(ends_at=ends_at):
                # A window already over by now (computed earlier, applied late) opens nothing and
                # leaves the schedule due, so the caller asks again.
                stale = ends_at is not None and ends_at <= now
                self._schedule_open = not stale
                self._schedule_ends_at = None if stale else ends_at
                self._schedule_check_at = ends_at
                self._reconcile(now, out, lock_reason="schedule_end")
            case ScheduleWindowEnded(recheck_at=recheck_at):
                self._schedule_open = False
                self._schedule_ends_at = None
                self._schedule_check_at = recheck_at
                self._reconcile(now, out, lock_reason="schedule_end")
            case LockdownStarted():
                if not self._lockdown:
                    self._lockdown = True
                    self._cancel_unlocks()
                    self._reconcile(now, out, lock_reason="lockdown")
            case LockdownEnded():
                self._lockdown = False
                self._reconcile(now, out, lock_reason="lockdown_ended")
            case FaultRaised(kind=kind, source=source, detail=detail):
                self._fault_raised(now, out, (kind, source), detail)
            case FaultCleared(kind=kind, source=source):
                self._fault_cleared(now, out, (kind, source))
            case _:
                raise TypeError(f"not a door input: {event!r}")

    def _start(self, now: datetime, out: _Collector, door_open: bool | None) -> None:
        if self._started:
            return
        self._started = True
        # Always command: the relay's real state is only assumed until the controller has set it.
        self._reconcile(now, out, lock_reason="controller_started", force=True)
        if door_open is True:
            self._opened(now, out)
        elif door_open is False:
            self._closed(now, out)

    def _momentary_unlock(self, now: datetime, out: _Collector, reason: str, extended: bool, by: str | None) -> None:
        if not self._operational:
            # The door stays in its safe state; say so, since the person was told "granted".
            faults = [kind.value for kind, _ in sorted(self._faults)] or ["not_started"]
            out.event(
                DoorEventType.UNLOCK_REFUSED,
                Severity.WARNING,
                request=reason,
                reason="safe_state",
                faults=faults,
                relay=self._relay.value,
            )
            return
        seconds = self.settings.extended_unlock_s if extended else self.settings.strike_s
        until = now + timedelta(seconds=seconds)
        if self._unlock is None or until >= self._unlock.until:
            self._unlock = _Unlock(until, reason, extended, by)
        self._authorise_passage(until, reason, extended)
        self._reconcile(now, out, lock_reason="")

    def _rex(self, now: datetime, out: _Collector) -> None:
        out.event(DoorEventType.REX, Severity.INFO, action=self.settings.rex_action.value)
        until = now + timedelta(seconds=self.settings.strike_s)
        self._authorise_passage(until, "rex", extended=False)
        if self.settings.rex_action is RexAction.UNLOCK and self._operational:
            if self._unlock is None or until >= self._unlock.until:
                self._unlock = _Unlock(until, "rex", False, None)
            self._reconcile(now, out, lock_reason="")

    def _authorise_passage(self, until: datetime, reason: str, extended: bool) -> None:
        if self._passage_until is None or until >= self._passage_until:
            self._passage_until, self._passage_reason, self._passage_extended = until, reason, extended

    def _cancel_unlocks(self) -> None:
        self._unlock = None
        self._passage_until = None

    def _opened(self, now: datetime, out: _Collector) -> None:
        if self._door_open is True:
            return  # a repeated report
        state_was_known = self._door_open is not None
        self._door_open = True
        authorised_by: str | None = None
        extended = False
        if self._relay is RelayState.UNLOCKED:
            authorised_by = self._relay_reason
            extended = self._unlock is not None and self._unlock.extended
        if self._passage_until is not None:
            authorised_by = authorised_by or self._passage_reason
            extended = extended or self._passage_extended
        forced = authorised_by is None and state_was_known
        supervised = not (forced or self._free_passage)
        limit = self.settings.extended_held_open_s if extended else self.settings.held_open_s
        self._opening = _Opening(now, forced, now if supervised else None, limit)
        data: dict[str, Any] = {"authorised_by": authorised_by}
        if not state_was_known:
            data["initial"] = True
        out.event(DoorEventType.OPENED, Severity.INFO, **data)
        if forced:
            out.event(DoorEventType.FORCED_OPEN, Severity.ALARM)

    def _closed(self, now: datetime, out: _Collector) -> None:
        if self._door_open is False:
            return
        opening, self._opening = self._opening, None
        self._door_open = False
        self._passage_until = None  # the passage has been used
        if opening is None:
            out.event(DoorEventType.CLOSED, Severity.INFO, initial=True)
            return
        open_s = (now - opening.opened_at).total_seconds()
        out.event(DoorEventType.CLOSED, Severity.INFO, open_s=open_s)
        if opening.forced or opening.stage is not HeldOpenStage.NONE:
            after = DoorEventType.FORCED_OPEN if opening.forced else DoorEventType.HELD_OPEN
            out.event(DoorEventType.RESTORED, Severity.INFO, after=after.value, open_s=open_s)
        if self.settings.relock_on_close and self._unlock is not None:
            self._unlock = None
            self._reconcile(now, out, lock_reason="door_closed")

    def _fault_raised(self, now: datetime, out: _Collector, key: FaultKey, detail: str) -> None:
        is_new = key not in self._faults
        self._faults[key] = detail
        self._cancel_unlocks()
        if is_new:
            safe = self.settings.safe_relay_state
            kind, source = key
            # An unlocked building because of a failure needs someone to look; a deliberate shutdown less so.
            urgent = safe is RelayState.UNLOCKED and kind is not FaultKind.SHUTTING_DOWN
            out.event(
                DoorEventType.SAFE_STATE,
                Severity.ALARM if urgent else Severity.WARNING,
                reason=kind.value,
                fault_source=source,
                detail=detail,
                lock_mode=self.settings.lock_mode.value,
                relay=safe.value,
            )
        # Re-assert the safe state on every new fault even if the relay is believed there already.
        self._reconcile(now, out, lock_reason="safe_state", force=is_new)

    def _fault_cleared(self, now: datetime, out: _Collector, key: FaultKey) -> None:
        if key not in self._faults:
            return
        del self._faults[key]
        if self._faults:
            return  # still faulted: stay in the safe state
        kind, source = key
        out.event(DoorEventType.SAFE_STATE_CLEARED, Severity.INFO, reason=kind.value, fault_source=source)
        # The relay may have been reset while the bus was away: command it whatever we believe.
        self._reconcile(now, out, lock_reason="fault_cleared", force=True)

    # --- the relay ---

    @property
    def _operational(self) -> bool:
        return self._started and not self._faults

    @property
    def _free_passage(self) -> bool:
        return self._relay is RelayState.UNLOCKED and self._relay_until is None

    def _desired(self) -> tuple[RelayState, datetime | None, str]:
        if not self._operational:
            return self.settings.safe_relay_state, None, "safe_state"
        if self._schedule_open and not self._lockdown:
            return RelayState.UNLOCKED, None, "schedule"
        if self._unlock is not None:
            return RelayState.UNLOCKED, self._unlock.until, self._unlock.reason
        return RelayState.LOCKED, None, ""

    def _reconcile(self, now: datetime, out: _Collector, *, lock_reason: str, force: bool = False) -> None:
        """Command the relay if the desired state differs from the commanded one (or ``force``)."""
        state, until, reason = self._desired()
        if state is RelayState.LOCKED and reason == "":
            reason = lock_reason
        changed = state is not self._relay
        if not (force or changed or until != self._relay_until):
            return
        was_free = self._free_passage
        self._relay, self._relay_until, self._relay_reason = state, until, reason
        duration_s = None if until is None else (until - now).total_seconds()
        out.commands.append(RelayCommand(self.settings.door_id, state, reason, duration_s))
        if changed and state is RelayState.UNLOCKED:
            momentary = self._unlock if until is not None else None
            out.event(
                DoorEventType.UNLOCKED,
                Severity.INFO,
                reason=reason,
                until=None if until is None else until.isoformat(),
                by=None if momentary is None else momentary.by,
                extended=momentary is not None and momentary.extended,
            )
        elif changed:
            out.event(DoorEventType.LOCKED, Severity.INFO, reason=reason)
        self._follow_free_passage(now, was_free)

    def _follow_free_passage(self, now: datetime, was_free: bool) -> None:
        """Free passage is unsupervised; when it ends with the door open, held-open time starts."""
        opening = self._opening
        if opening is None or opening.forced:
            return
        if self._free_passage:
            opening.held_from = None
        elif was_free:
            opening.held_from = now
            opening.held_limit_s = self.settings.held_open_s
