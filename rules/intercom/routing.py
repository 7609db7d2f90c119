"""Intercom call routing as a pure state machine: ``CallRouter.apply(input, now) -> Output``.

No I/O, no clock: ``now`` (aware) comes with every input; timers come back as
``Output.next_deadline``, when the caller applies ``Tick()``. The caller carries out the actions
(ring, stop ringing, show a call state on the panel, unlock) and journals the events.

A call goes through stages, each skipped when it has nobody to ring:

1. ``units`` — the apartment's indoor units ring for ``unit_ring_s`` (skipped while the apartment
   is in do-not-disturb: a schedule in the site's time zone, or the switch on one of its units);
2. ``app`` — the resident's app through the platform (event ``intercom.call``; the platform
   answers, rejects or unlocks with signed commands naming the call id) for ``app_ring_s``
   (skipped when 0, or in do-not-disturb);
3. ``guard`` — the guard station units for ``guard_ring_s``;
4. nobody answered: the call ends (``no_answer``), the panel shows "timed out".

Each stage left unanswered is an ``intercom.missed`` (with its reason: no_answer, dnd, offline,
no_units). An answer (from whoever is being rung in the current stage) starts the talk, which
lasts at most ``talk_s``. A hang-up while ringing is a rejection. One call per panel, and one per
apartment, at a time: another is refused ``busy``.

Unlock: allowed to the called apartment (its indoor units, or the app on its behalf), to a guard
unit once the call reached the guard, and to a trusted operator's control at the panel
(``PanelUnlock``: Home Assistant's button, where the site allows it), while the call runs or
within ``unlock_grace_s`` after it ended; once per call. Anything else is ``intercom.unlock_refused`` with the reason
(no_call, wrong_apartment, grace_expired, replayed, already_unlocked); nothing opens.

Devices start offline: the caller reports ``DeviceUp`` when the driver sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from edge.events import Severity

SOURCE_ROUTER = "intercom"
MAX_CALL_NO = 0xFFFF
RECENT_KEEP_S = 300.0  # how long an ended call is remembered after its unlock grace


# ---- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DndWindow:
    days: frozenset[int]  # 0 = Monday, as datetime.weekday(); the day the window starts
    start: time
    end: time  # at or before start: ends the next day

    def contains(self, local: datetime) -> bool:
        t = local.time().replace(tzinfo=None)
        day = local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= t < self.end
        # Crosses midnight: the evening part belongs to today, the morning to yesterday's window.
        return (day in self.days and t >= self.start) or ((day - 1) % 7 in self.days and t < self.end)


@dataclass(frozen=True)
class RoutingSettings:
    apartments: Mapping[str, tuple[str, ...]]  # apartment -> indoor unit ids
    guard_units: tuple[str, ...] = ()
    directories: Mapping[str, Mapping[int, str]] = field(default_factory=dict)  # panel -> entry -> apartment
    unit_ring_s: float = 20.0
    app_ring_s: float = 30.0
    guard_ring_s: float = 30.0
    talk_s: float = 120.0
    unlock_grace_s: float = 10.0
    dnd: Mapping[str, tuple[DndWindow, ...]] = field(default_factory=dict)
    timezone: str = "UTC"


# ---- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallRequested:
    panel: str
    apartment: str | None = None
    entry: int | None = None


@dataclass(frozen=True)
class CallCancelled:
    panel: str


@dataclass(frozen=True)
class UnitAnswer:
    unit: str
    call_no: int


@dataclass(frozen=True)
class UnitHangUp:
    unit: str
    call_no: int


@dataclass(frozen=True)
class UnitUnlock:
    unit: str
    call_no: int


@dataclass(frozen=True)
class UnitDnd:
    unit: str
    on: bool


@dataclass(frozen=True)
class AppAnswer:
    call_id: str
    apartment: str
    actor: str


@dataclass(frozen=True)
class AppHangUp:
    """The resident declines (while ringing) or ends the call (after answering in the app)."""

    call_id: str
    apartment: str
    actor: str


@dataclass(frozen=True)
class AppUnlock:
    call_id: str
    apartment: str
    actor: str
    request_id: str


@dataclass(frozen=True)
class PanelUnlock:
    """An unlock for whatever call is (or just was) at a panel, from a trusted operator's control
    (Home Assistant's button): no apartment check, but only during the call or its grace window."""

    panel: str
    actor: str
    origin: str = "home_assistant"


@dataclass(frozen=True)
class DeviceUp:
    device: str


@dataclass(frozen=True)
class DeviceDown:
    device: str
    reason: str = "offline"


@dataclass(frozen=True)
class Tick:
    pass


Input = (
    CallRequested | CallCancelled | UnitAnswer | UnitHangUp | UnitUnlock | UnitDnd
    | AppAnswer | AppHangUp | AppUnlock | PanelUnlock | DeviceUp | DeviceDown | Tick
)


# ---- outputs ------------------------------------------------------------------------------------


class PanelState(StrEnum):
    """What the panel is told (the protocol's CALL_STATE values)."""

    RINGING = "ringing"
    ANSWERED = "answered"
    BUSY = "busy"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    ENDED = "ended"


@dataclass(frozen=True)
class IntercomEvent:
    type: str
    source: str
    data: Mapping[str, Any]
    severity: Severity = Severity.INFO


@dataclass(frozen=True)
class Ring:
    units: tuple[str, ...]
    call_no: int
    panel: str


@dataclass(frozen=True)
class StopRing:
    units: tuple[str, ...]
    call_no: int
    state: PanelState


@dataclass(frozen=True)
class ShowState:
    panel: str
    call_no: int
    state: PanelState


@dataclass(frozen=True)
class UnlockDoor:
    panel: str
    call_id: str
    apartment: str
    by: str
    origin: str  # "indoor_unit" | "app" | "guard"


Action = Ring | StopRing | ShowState | UnlockDoor


@dataclass
class Output:
    events: list[IntercomEvent] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    next_deadline: datetime | None = None
    refused: str | None = None  # why the input was not acted on (for a command's result)
    call_id: str | None = None


# ---- the calls ----------------------------------------------------------------------------------


class Stage(StrEnum):
    UNITS = "units"
    APP = "app"
    GUARD = "guard"
    TALK = "talk"
    ENDED = "ended"


_RINGING_STAGES = (Stage.UNITS, Stage.APP, Stage.GUARD)


@dataclass
class Call:
    id: str
    no: int
    panel: str
    apartment: str
    started: datetime
    stage: Stage = Stage.UNITS
    deadline: datetime | None = None
    ringing: tuple[str, ...] = ()
    reached_guard: bool = False
    answered_by: str | None = None
    ended_at: datetime | None = None
    unlocked: bool = False
    unlock_requests: set[str] = field(default_factory=set)

    def base(self) -> dict[str, Any]:
        return {"call_id": self.id, "call_no": self.no, "panel": self.panel, "apartment": self.apartment}


class CallRouter:
    def __init__(self, settings: RoutingSettings, new_id: Callable[[], str] | None = None) -> None:
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)
        self._counter = 0
        self._new_id = new_id or self._default_id
        self.active: dict[str, Call] = {}  # panel -> its call
        self.recent: list[Call] = []  # ended calls still inside the unlock grace window
        self.online: set[str] = set()
        self.dnd_units: set[str] = set()
        self._unit_apartment = {u: a for a, units in settings.apartments.items() for u in units}

    def _default_id(self) -> str:
        return f"call-{self._counter}"

    # ---- queries ----------------------------------------------------------------------------------

    def dnd_active(self, apartment: str, now: datetime) -> bool:
        if any(u in self.dnd_units for u in self.settings.apartments.get(apartment, ())):
            return True
        local = now.astimezone(self.zone)
        return any(w.contains(local) for w in self.settings.dnd.get(apartment, ()))

    def call(self, call_id: str) -> Call | None:
        for c in [*self.active.values(), *self.recent]:
            if c.id == call_id:
                return c
        return None

    def next_deadline(self) -> datetime | None:
        times = [c.deadline for c in self.active.values() if c.deadline is not None]
        return min(times) if times else None

    # ---- the machine ------------------------------------------------------------------------------

    def apply(self, inp: Input, now: datetime) -> Output:
        out = Output()
        self._expire(now, out)
        match inp:
            case CallRequested():
                self._call_requested(inp, now, out)
            case CallCancelled(panel=panel):
                call = self.active.get(panel)
                if call is not None:
                    self._stop_ringing(call, PanelState.ENDED, out)
                    self._end(call, "visitor_cancelled", PanelState.ENDED, now, out)
            case UnitAnswer(unit=unit, call_no=no):
                call = self._by_no(no)
                if call is not None and unit in call.ringing and call.stage in (Stage.UNITS, Stage.GUARD):
                    self._answer(call, unit, "guard" if call.stage is Stage.GUARD else "indoor_unit", now, out)
                else:
                    out.refused = "not_ringing"
            case UnitHangUp(unit=unit, call_no=no):
                call = self._by_no(no)
                if call is None:
                    out.refused = "no_call"
                elif call.stage is Stage.TALK and call.answered_by == unit:
                    self._end(call, "hung_up", PanelState.ENDED, now, out, by=unit)
                elif unit in call.ringing:
                    self._stop_ringing(call, PanelState.REJECTED, out, except_unit=unit)
                    self._end(call, "rejected", PanelState.REJECTED, now, out, by=unit)
                else:
                    out.refused = "not_in_call"
            case UnitUnlock(unit=unit, call_no=no):
                origin = "guard" if unit in self.settings.guard_units else "indoor_unit"
                self._unlock(self._by_no(no, include_recent=True), unit, origin, None, None, now, out)
            case UnitDnd(unit=unit, on=on):
                (self.dnd_units.add if on else self.dnd_units.discard)(unit)
            case AppAnswer(call_id=cid, apartment=apartment, actor=actor):
                call = self._active_by_id(cid)
                if call is None:
                    out.refused = "no_call"
                elif call.apartment != apartment:
                    out.refused = "wrong_apartment"
                elif call.stage is not Stage.APP:
                    out.refused = "not_ringing"
                else:
                    self._answer(call, f"app:{actor}", "app", now, out)
            case AppHangUp(call_id=cid, apartment=apartment, actor=actor):
                call = self._active_by_id(cid)
                if call is None:
                    out.refused = "no_call"
                elif call.apartment != apartment:
                    out.refused = "wrong_apartment"
                elif call.stage is Stage.APP:
                    self._end(call, "rejected", PanelState.REJECTED, now, out, by=f"app:{actor}")
                elif call.stage is Stage.TALK and call.answered_by == f"app:{actor}":
                    self._end(call, "hung_up", PanelState.ENDED, now, out, by=f"app:{actor}")
                else:
                    out.refused = "not_in_call"
            case AppUnlock(call_id=cid, apartment=apartment, actor=actor, request_id=rid):
                self._unlock(self.call(cid), f"app:{actor}", "app", apartment, rid, now, out)
            case PanelUnlock(panel=panel, actor=actor, origin=origin):
                call = self.active.get(panel) or next((c for c in reversed(self.recent) if c.panel == panel), None)
                self._unlock(call, f"{origin}:{actor}", origin, None, None, now, out)
            case DeviceUp(device=device):
                self.online.add(device)
            case DeviceDown(device=device, reason=reason):
                self._device_down(device, reason, now, out)
            case Tick():
                pass
        for call in list(self.active.values()):
            if call.deadline is not None and call.deadline <= now:
                self._timeout(call, now, out)
        out.next_deadline = self.next_deadline()
        return out

    # ---- steps -------------------------------------------------------------------------------------

    def _call_requested(self, inp: CallRequested, now: datetime, out: Output) -> None:
        apartment = inp.apartment
        if apartment is None and inp.entry is not None:
            apartment = self.settings.directories.get(inp.panel, {}).get(inp.entry)
        self._counter += 1
        call = Call(self._new_id(), self._next_no(), inp.panel, apartment or "", now)
        out.call_id = call.id
        refusal: str | None = None
        if apartment is None or apartment not in self.settings.apartments:
            refusal = "unknown_apartment"
        elif inp.panel in self.active or any(c.apartment == apartment for c in self.active.values()):
            refusal = "busy"
        if refusal is not None:
            data = call.base()
            if inp.entry is not None:
                data["entry"] = inp.entry
            out.events.append(IntercomEvent("intercom.ended", inp.panel, {**data, "reason": refusal}))
            shown = PanelState.BUSY if refusal == "busy" else PanelState.REJECTED
            out.actions.append(ShowState(inp.panel, call.no, shown))
            out.refused = refusal
            return
        self.active[inp.panel] = call
        out.actions.append(ShowState(call.panel, call.no, PanelState.RINGING))
        self._enter(call, Stage.UNITS, now, out)

    def _enter(self, call: Call, stage: Stage, now: datetime, out: Output) -> None:
        """Start `stage`, or skip it (with its `intercom.missed`) to the next one that has someone."""
        s = self.settings
        while stage in _RINGING_STAGES:
            if stage is Stage.UNITS:
                targets, ring_s = s.apartments.get(call.apartment, ()), s.unit_ring_s
            elif stage is Stage.APP:
                targets, ring_s = ("app",), s.app_ring_s
            else:
                targets, ring_s = s.guard_units, s.guard_ring_s
            reason = None
            if stage is not Stage.GUARD and self.dnd_active(call.apartment, now):
                reason = "dnd"
            elif not targets or ring_s <= 0:
                reason = "no_units" if stage is not Stage.APP else None
            elif stage is not Stage.APP:
                targets = tuple(t for t in targets if t in self.online)
                if not targets:
                    reason = "offline"
            if reason is None and targets and ring_s > 0:
                call.stage = stage
                call.deadline = now + timedelta(seconds=ring_s)
                call.reached_guard = call.reached_guard or stage is Stage.GUARD
                data = {**call.base(), "stage": stage.value, "answer_within_s": ring_s}
                if stage is Stage.APP:
                    call.ringing = ()
                    out.events.append(IntercomEvent("intercom.call", call.panel, data))
                else:
                    call.ringing = targets
                    out.actions.append(Ring(targets, call.no, call.panel))
                    out.events.append(IntercomEvent("intercom.ringing", call.panel, {**data, "units": list(targets)}))
                return
            if reason is not None:
                out.events.append(_missed(call, stage, reason))
            stage = _RINGING_STAGES[_RINGING_STAGES.index(stage) + 1] if stage is not Stage.GUARD else Stage.ENDED
        self._end(call, "no_answer", PanelState.TIMED_OUT, now, out)

    def _timeout(self, call: Call, now: datetime, out: Output) -> None:
        if call.stage is Stage.TALK:
            self._stop_ringing(call, PanelState.ENDED, out)
            self._end(call, "talk_timeout", PanelState.ENDED, now, out)
            return
        out.events.append(_missed(call, call.stage, "no_answer"))
        self._stop_ringing(call, PanelState.TIMED_OUT, out)
        following = {Stage.UNITS: Stage.APP, Stage.APP: Stage.GUARD, Stage.GUARD: Stage.ENDED}[call.stage]
        self._enter(call, following, now, out)

    def _answer(self, call: Call, by: str, origin: str, now: datetime, out: Output) -> None:
        stage = call.stage
        self._stop_ringing(call, PanelState.ANSWERED, out, except_unit=by)
        call.stage = Stage.TALK
        call.answered_by = by
        call.ringing = (by,) if origin != "app" else ()
        call.deadline = now + timedelta(seconds=self.settings.talk_s)
        out.actions.append(ShowState(call.panel, call.no, PanelState.ANSWERED))
        out.events.append(
            IntercomEvent(
                "intercom.answered",
                call.panel,
                {**call.base(), "by": by, "origin": origin, "stage": stage.value, "talk_s": self.settings.talk_s},
            )
        )

    def _stop_ringing(self, call: Call, state: PanelState, out: Output, except_unit: str | None = None) -> None:
        units = tuple(u for u in call.ringing if u != except_unit and u in self.online)
        if units:
            out.actions.append(StopRing(units, call.no, state))
        call.ringing = tuple(u for u in call.ringing if u == except_unit)

    def _end(
        self, call: Call, reason: str, shown: PanelState | None, now: datetime, out: Output, by: str | None = None
    ) -> None:
        if call.stage is Stage.TALK and call.answered_by in call.ringing and reason != "hung_up":
            self._stop_ringing(call, PanelState.ENDED, out)
        call.stage = Stage.ENDED
        call.deadline = None
        call.ringing = ()
        call.ended_at = now
        self.active.pop(call.panel, None)
        self.recent.append(call)
        if shown is not None and call.panel in self.online:
            out.actions.append(ShowState(call.panel, call.no, shown))
        data = {**call.base(), "reason": reason, "duration_s": round((now - call.started).total_seconds(), 3)}
        if by is not None:
            data["by"] = by
        out.events.append(IntercomEvent("intercom.ended", call.panel, data))

    def _unlock(
        self,
        call: Call | None,
        by: str,
        origin: str,
        apartment: str | None,
        request_id: str | None,
        now: datetime,
        out: Output,
    ) -> None:
        def refuse(reason: str) -> None:
            data: dict[str, Any] = {"by": by, "origin": origin, "reason": reason}
            if call is not None:
                data = {**call.base(), **data}
            out.events.append(
                IntercomEvent("intercom.unlock_refused", call.panel if call else SOURCE_ROUTER, data, Severity.WARNING)
            )
            out.refused = reason

        if call is None:
            return refuse("no_call")
        if request_id is not None and request_id in call.unlock_requests:
            return refuse("replayed")
        if request_id is not None:
            call.unlock_requests.add(request_id)
        if origin == "guard":
            allowed = call.reached_guard
        elif origin == "home_assistant":
            allowed = True  # only registered for panels whose config allows it
        elif origin == "app":
            allowed = apartment == call.apartment
        else:
            allowed = self._unit_apartment.get(by) == call.apartment
        if not allowed:
            return refuse("wrong_apartment")
        if call.ended_at is not None and now > call.ended_at + timedelta(seconds=self.settings.unlock_grace_s):
            return refuse("grace_expired")
        if call.unlocked:
            return refuse("already_unlocked")
        call.unlocked = True
        out.call_id = call.id
        out.actions.append(UnlockDoor(call.panel, call.id, call.apartment, by, origin))
        out.events.append(IntercomEvent("intercom.unlock", call.panel, {**call.base(), "by": by, "origin": origin}))
        return None

    def _device_down(self, device: str, reason: str, now: datetime, out: Output) -> None:
        self.online.discard(device)
        call = self.active.get(device)
        if call is not None:
            self._stop_ringing(call, PanelState.ENDED, out)
            self._end(call, "panel_offline", None, now, out)
            return
        for call in list(self.active.values()):
            if device not in call.ringing:
                continue
            if call.stage is Stage.TALK:
                self._end(call, "unit_offline", PanelState.ENDED, now, out, by=device)
                continue
            call.ringing = tuple(u for u in call.ringing if u != device)
            if not call.ringing:
                out.events.append(_missed(call, call.stage, "offline"))
                following = {Stage.UNITS: Stage.APP, Stage.GUARD: Stage.ENDED}.get(call.stage, Stage.ENDED)
                self._enter(call, following, now, out)

    def _expire(self, now: datetime, out: Output) -> None:
        # Ended calls are kept a while past their grace window, so a late unlock is refused as
        # grace_expired (what happened) rather than no_call.
        keep = timedelta(seconds=self.settings.unlock_grace_s + RECENT_KEEP_S)
        self.recent = [c for c in self.recent if c.ended_at is not None and now <= c.ended_at + keep]

    # ---- lookups -------------------------------------------------------------------------------------

    def _next_no(self) -> int:
        used = {c.no for c in [*self.active.values(), *self.recent]}
        no = (self._counter - 1) % MAX_CALL_NO + 1
        while no in used:
            no = no % MAX_CALL_NO + 1
        return no

    def _by_no(self, no: int, include_recent: bool = False) -> Call | None:
        calls = [*self.active.values(), *(self.recent if include_recent else [])]
        return next((c for c in calls if c.no == no), None)

    def _active_by_id(self, call_id: str) -> Call | None:
        return next((c for c in self.active.values() if c.id == call_id), None)


def _missed(call: Call, stage: Stage, reason: str) -> IntercomEvent:
    return IntercomEvent("intercom.missed", call.panel, {**call.base(), "stage": stage.value, "reason": reason})
