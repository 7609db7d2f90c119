"""Property tests (hypothesis) for rules/door: random input sequences against a reference model of
the door's rules, and the schedule-change search against a minute-by-minute scan.

Kept apart so the rest of the door tests run where hypothesis is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge.events import Severity
from rules.access import (
    AccessIndex,
    AccessState,
    Door,
    HolidayGroup,
    Schedule,
    ScheduleInterval,
    SiteSettings,
    Snapshot,
    TimeInterval,
    Weekday,
    may_start_scheduled_unlock,
)
from rules.door import (
    AccessGranted,
    ControllerStarted,
    DoorClosed,
    DoorMachine,
    DoorOpened,
    DoorOutput,
    DoorSettings,
    FaultCleared,
    FaultKind,
    FaultRaised,
    LockdownEnded,
    LockdownStarted,
    LockMode,
    RelayState,
    RemoteUnlock,
    RexAction,
    RexPressed,
    ScheduleWindowEnded,
    ScheduleWindowStarted,
    Tick,
    schedule_window_input,
)
from rules.door.schedule import boundary_seconds, next_change
from tests.access_helpers import HASHER
from tests.door_helpers import DOOR, T0, TIMES, safe_for

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LOCKED, UNLOCKED = RelayState.LOCKED, RelayState.UNLOCKED
STRIKE_S, EXTENDED_S, HELD_OPEN_S = TIMES["strike_s"], TIMES["extended_unlock_s"], TIMES["held_open_s"]

SEVERITY = {
    "door.unlocked": Severity.INFO,
    "door.locked": Severity.INFO,
    "door.opened": Severity.INFO,
    "door.closed": Severity.INFO,
    "door.rex": Severity.INFO,
    "door.forced_open": Severity.ALARM,
    "door.restored": Severity.INFO,
    "door.safe_state_cleared": Severity.INFO,
    "door.unlock_refused": Severity.WARNING,
}


# --- the reference model: the door rules, written plainly ------------------------------------------------


@dataclass
class Reference:
    """What the door must do, tracked from the inputs and the commands alone (not the machine's state)."""

    settings: DoorSettings
    started: bool = False
    faults: set[tuple[FaultKind, str]] = field(default_factory=set)
    lockdown: bool = False
    schedule_until: datetime | None = None  # in force while now < this
    schedule_open_ended: bool = False  # ScheduleWindowStarted(ends_at=None): in force until ended
    momentary_until: datetime | None = None
    momentary_extended: bool = False
    passage_until: datetime | None = None
    passage_extended: bool = False
    door_open: bool | None = None
    opened_at: datetime | None = None
    held_from: datetime | None = None  # held-open time counts from here (None: not supervised)
    held_limit_s: float = HELD_OPEN_S
    alarms_this_opening: set[str] = field(default_factory=set)
    # The relay as the driver holds it, from the commands.
    relay: RelayState = LOCKED
    relay_until: datetime | None = None

    @property
    def free_passage(self) -> bool:
        return self.relay is UNLOCKED and self.relay_until is None

    @property
    def operational(self) -> bool:
        return self.started and not self.faults

    def schedule_in_force(self, now: datetime) -> bool:
        return self.schedule_open_ended or (self.schedule_until is not None and now < self.schedule_until)

    def expected_relay(self, now: datetime) -> tuple[RelayState, datetime | None]:
        if not self.operational:
            return safe_for(self.settings.lock_mode), None
        if self.schedule_in_force(now) and not self.lockdown:
            return UNLOCKED, None
        if self.momentary_until is not None and now < self.momentary_until:
            return UNLOCKED, self.momentary_until
        return LOCKED, None

    def authorise(self, now: datetime, extended: bool, *, unlock: bool) -> None:
        """A passage (and, with ``unlock``, an unlock) for the strike or extended time; the longest one counts."""
        until = now + timedelta(seconds=EXTENDED_S if extended else STRIKE_S)
        if self.passage_until is None or until >= self.passage_until:
            self.passage_until, self.passage_extended = until, extended
        if unlock and (self.momentary_until is None or until >= self.momentary_until):
            self.momentary_until, self.momentary_extended = until, extended

    def opening_is_extended(self, now: datetime) -> bool:
        unlocked = self.momentary_until is not None and now < self.momentary_until and self.momentary_extended
        shunted = self.passage_until is not None and now < self.passage_until and self.passage_extended
        return unlocked or shunted

    def cancel(self) -> None:
        self.momentary_until = None
        self.passage_until = None

    def forced_if_opened(self, now: datetime) -> bool:
        """An opening of a closed door now is forced: the relay is (due to be) locked and nothing shunts the DPS."""
        self.expire(now)
        shunted = self.passage_until is not None and now < self.passage_until
        return self.door_open is False and self.expected_relay(now)[0] is LOCKED and not shunted

    def feed(self, event: Any, now: datetime) -> None:
        """Update the rules' state for ``event`` (after the checks that need the state before it)."""
        match event:
            case ControllerStarted(door_open=door_open):
                if not self.started:
                    self.started = True
                    if door_open is not None and self.door_open is None:
                        self.door_open = door_open
                        self.opened_at = now if door_open else None
            case AccessGranted(extended=extended) if self.operational:
                self.authorise(now, extended, unlock=True)
            case RemoteUnlock(extended=extended, override_lockdown=override) if self.operational:
                if override or not self.lockdown:
                    self.authorise(now, extended, unlock=True)
            case RexPressed():
                unlock = self.settings.rex_action is RexAction.UNLOCK and self.operational
                self.authorise(now, False, unlock=unlock)
            case DoorOpened() if self.door_open is not True:
                self.door_open, self.opened_at = True, now
                self.alarms_this_opening = set()
                extended = self.opening_is_extended(now)
                self.held_limit_s = self.settings.extended_held_open_s if extended else HELD_OPEN_S
            case DoorClosed() if self.door_open is not False:
                opening_seen = self.door_open is True
                self.door_open, self.opened_at = False, None
                self.passage_until = None
                if opening_seen and self.settings.relock_on_close:
                    self.momentary_until = None
            case ScheduleWindowStarted(ends_at=ends_at):
                self.schedule_open_ended = ends_at is None
                self.schedule_until = ends_at
            case ScheduleWindowEnded():
                self.schedule_open_ended, self.schedule_until = False, None
            case LockdownStarted() if not self.lockdown:
                self.lockdown = True
                self.cancel()
            case LockdownEnded():
                self.lockdown = False
            case FaultRaised(kind=kind, source=source):
                self.faults.add((kind, source))
                self.cancel()
            case FaultCleared(kind=kind, source=source):
                self.faults.discard((kind, source))

    def expire(self, now: datetime) -> None:
        if self.momentary_until is not None and now >= self.momentary_until:
            self.momentary_until = None
        if self.passage_until is not None and now >= self.passage_until:
            self.passage_until = None


# --- random inputs ------------------------------------------------------------------------------------------------

# Two kinds and two sources, so clears often match raises; door activity is drawn more often than the rest.
FAULT_KINDS = (FaultKind.BUS_LOST, FaultKind.READER_OFFLINE)
FAULT_SOURCES = ("bus-a", "reader-b")
door_activity = st.one_of(
    st.builds(AccessGranted, extended=st.booleans()),
    st.just(RexPressed()),
    st.just(DoorOpened()),
    st.just(DoorClosed()),
    st.just("tick_at_deadline"),
)
everything_else = st.one_of(
    st.builds(RemoteUnlock, extended=st.booleans(), override_lockdown=st.booleans()),
    st.just(Tick()),
    st.just(LockdownStarted()),
    st.just(LockdownEnded()),
    st.builds(FaultRaised, kind=st.sampled_from(FAULT_KINDS), source=st.sampled_from(FAULT_SOURCES)),
    st.builds(FaultCleared, kind=st.sampled_from(FAULT_KINDS), source=st.sampled_from(FAULT_SOURCES)),
    st.tuples(st.just("schedule_start"), st.sampled_from([None, 0, 1, 10, 60])),
    st.tuples(st.just("schedule_end"), st.sampled_from([None, 30])),
)
gaps_s = st.one_of(st.sampled_from([0, 0.5, 1, 2.5]), st.sampled_from([4.9, 5, 10, 15, 20, 35, 90]))
single_input = st.tuples(gaps_s, st.one_of(door_activity, door_activity, everything_else)).map(lambda step: [step])
# Whole scenes, so that multi-step rules (relock on close, reopening, a fault coming and going
# during an unlock) are met often rather than by luck.
openers = st.sampled_from([AccessGranted(), AccessGranted(extended=True), RexPressed(), RemoteUnlock()])
passage = st.tuples(
    openers,
    st.sampled_from([0.5, 4.9, 5, 14.9]),
    st.sampled_from([0.5, 3, 25, 35]),
    st.sampled_from([None, 0.5, 3]),
).map(
    lambda scene: (
        [(0.5, scene[0]), (scene[1], DoorOpened()), (scene[2], DoorClosed())]
        + ([] if scene[3] is None else [(scene[3], DoorOpened())])
    )
)
fault_during_unlock = st.tuples(
    openers, st.sampled_from(FAULT_KINDS), st.sampled_from(FAULT_SOURCES), st.sampled_from([0, 1, 3, 10])
).map(
    lambda scene: [
        (0.5, scene[0]),
        (0.5, FaultRaised(scene[1], scene[2])),
        (scene[3], FaultCleared(scene[1], scene[2])),
        (0.5, DoorOpened()),
    ]
)
opening_during_a_fault = st.tuples(openers, st.sampled_from(FAULT_KINDS), st.sampled_from([0.5, 4.9, 5])).map(
    lambda scene: [
        (0.5, FaultRaised(scene[1])),
        (0.5, scene[0]),
        (scene[2], DoorOpened()),
        (1, FaultCleared(scene[1])),
    ]
)
schedule_renewed_at_its_end = st.sampled_from([1, 10]).map(
    lambda length: [(0.5, ("schedule_start", length)), (length, ("schedule_start", 60))]
)
under_lockdown = st.tuples(
    st.sampled_from([*openers.elements, RemoteUnlock(override_lockdown=True)]), st.sampled_from([0.5, 6])
).map(
    lambda scene: [
        (0.5, LockdownStarted()),
        (0.5, scene[0]),
        (scene[1], DoorOpened()),
        (1, DoorClosed()),
        (1, LockdownEnded()),
    ]
)
scenes = st.one_of(
    under_lockdown,
    single_input,
    single_input,
    single_input,
    passage,
    fault_during_unlock,
    opening_during_a_fault,
    schedule_renewed_at_its_end,
)
door_settings_strategy = st.builds(
    DoorSettings,
    door_id=st.just(DOOR),
    lock_mode=st.sampled_from(list(LockMode)),
    rex_action=st.sampled_from(list(RexAction)),
    relock_on_close=st.booleans(),
    held_open_pre_alarm_s=st.sampled_from([0, 10]),
    **{name: st.just(value) for name, value in TIMES.items() if name != "held_open_pre_alarm_s"},
)


def concrete(step: Any, now: datetime, last: DoorOutput | None) -> tuple[Any, datetime]:
    """The input and its time; the schedule inputs get instants relative to now."""
    if step == "tick_at_deadline":
        deadline = last.next_deadline if last is not None else None
        return Tick(), max(now, deadline) if deadline is not None else now
    if isinstance(step, tuple) and step[0] == "schedule_start":
        ends = None if step[1] is None else now + timedelta(seconds=step[1])
        return ScheduleWindowStarted(ends_at=ends), now
    if isinstance(step, tuple):
        recheck = None if step[1] is None else now + timedelta(seconds=step[1])
        return ScheduleWindowEnded(recheck_at=recheck), now
    return step, now


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    door_settings_strategy,
    st.sampled_from([True, True, True, False]),  # mostly started, sometimes inputs before the start
    st.lists(scenes, min_size=2, max_size=40).map(lambda chunks: [step for chunk in chunks for step in chunk]),
)
def test_random_sequences_keep_the_door_rules(door: DoorSettings, start_first: bool, steps: list[Any]) -> None:
    machine = DoorMachine(door)
    model = Reference(door, relay=safe_for(door.lock_mode))
    now = T0
    last: DoorOutput | None = None
    if start_first:
        steps = [(0, ControllerStarted(door_open=False)), *steps]
    for gap, step in steps:
        event, now = concrete(step, now + timedelta(seconds=gap), last)
        expect_forced = isinstance(event, DoorOpened) and model.forced_if_opened(now)
        out = machine.apply(event, now)
        check_output(model, event, now, out, expect_forced)
        status = machine.status
        assert (status.relay, status.relay_until) == (model.relay, model.relay_until)
        assert status.faults == tuple(sorted(model.faults))
        last = out


def check_output(model: Reference, event: Any, now: datetime, out: DoorOutput, expect_forced: bool) -> None:
    types = [e.type for e in out.events]
    faulted_before, free_before = bool(model.faults), model.free_passage
    follow_relay(model, now, out)
    # Timers run out before the input is handled: held-open alarms belong to the door as it was.
    model.expire(now)
    for e in out.events:
        if e.type == "door.held_open":
            check_held_open(model, e, now)
    model.feed(event, now)
    check_forced_and_restored(model, event, types, expect_forced)
    follow_supervision(model, event, now, free_before, expect_forced)
    check_held_open_complete(model, now)

    # The relay is what the rules say, at every step.
    assert (model.relay, model.relay_until) == model.expected_relay(now), (event, types, out.commands)
    # After any fault the relay is the lock mode's safe state, commanded afresh for a new fault and
    # again once the last one clears (the relay may have been reset meanwhile).
    safe = safe_for(model.settings.lock_mode)
    if model.faults:
        assert model.relay is safe
    if isinstance(event, FaultRaised) and "door.safe_state" in types:
        assert out.commands and out.commands[-1].state is safe
        assert [e.data["relay"] for e in out.events if e.type == "door.safe_state"] == [safe.value]
    if isinstance(event, FaultCleared) and "door.safe_state_cleared" in types:
        assert out.commands and out.commands[-1].state is model.relay
    if faulted_before and model.faults:  # nothing but the safe state while faulted
        assert all(c.state is safe for c in out.commands)
    # A schedule window renewed while in force never blips the lock.
    if isinstance(event, ScheduleWindowStarted) and model.schedule_in_force(now):
        assert not any(c.reason == "schedule_end" for c in out.commands)
    # Never left unlocked past its deadline: the deadline comes no later than the relock.
    if model.relay is UNLOCKED and model.relay_until is not None:
        assert model.relay_until > now
        assert out.next_deadline is not None and out.next_deadline <= model.relay_until
    assert out.next_deadline is None or out.next_deadline > now
    for e in out.events:
        assert e.source == DOOR and e.data["door"] == DOOR
        assert e.type not in SEVERITY or e.severity is SEVERITY[e.type], e


def follow_relay(model: Reference, now: datetime, out: DoorOutput) -> None:
    """Carry out the commands like a driver; each change of the relay has its event, in order."""
    changes: list[str] = []
    for command in out.commands:
        assert command.door_id == DOOR
        assert command.duration_s is None or command.duration_s > 0
        if command.state is not model.relay:
            changes.append("door.unlocked" if command.state is UNLOCKED else "door.locked")
        model.relay = command.state
        model.relay_until = None if command.duration_s is None else now + timedelta(seconds=command.duration_s)
    assert [e.type for e in out.events if e.type in ("door.unlocked", "door.locked")] == changes


def check_forced_and_restored(model: Reference, event: Any, types: list[str], expect_forced: bool) -> None:
    # Never forced while unlocked or shunted; always forced when neither (a closed door opening).
    assert ("door.forced_open" in types) is expect_forced, (event, types)
    if expect_forced:
        model.alarms_this_opening.add("forced")
    if isinstance(event, DoorClosed) and "door.closed" in types:
        assert ("door.restored" in types) is bool(model.alarms_this_opening)
        model.alarms_this_opening = set()
    else:
        assert "door.restored" not in types


def follow_supervision(model: Reference, event: Any, now: datetime, free_before: bool, forced: bool) -> None:
    """Held-open time counts from an authorised opening, or from the end of free passage while open."""
    if model.door_open is not True or "forced" in model.alarms_this_opening or model.free_passage:
        model.held_from = None
    elif isinstance(event, DoorOpened | ControllerStarted) and model.opened_at == now and not forced:
        model.held_from = now
    elif free_before:
        model.held_from, model.held_limit_s = now, HELD_OPEN_S


def check_held_open_complete(model: Reference, now: datetime) -> None:
    """Each held-open stage has been raised by the first step at or after its time."""
    if model.door_open is not True or model.held_from is None:
        return
    supervised_s = (now - model.held_from).total_seconds()
    lead = model.settings.held_open_pre_alarm_s
    if lead > 0 and supervised_s >= model.held_limit_s - lead:
        assert "pre_alarm" in model.alarms_this_opening, (now, model)
    if supervised_s >= model.held_limit_s:
        assert "alarm" in model.alarms_this_opening, (now, model)


def check_held_open(model: Reference, event: Any, now: datetime) -> None:
    """Held open is an open door's alarm, never before its time, and each stage once, in order."""
    assert model.door_open is True and model.held_from is not None, event
    supervised_s = (now - model.held_from).total_seconds()
    stage = event.data["stage"]
    assert stage not in model.alarms_this_opening
    assert "forced" not in model.alarms_this_opening  # a forced door has its own alarm
    if stage == "alarm":
        assert event.severity is Severity.ALARM and supervised_s >= model.held_limit_s
    else:
        assert event.severity is Severity.WARNING and "alarm" not in model.alarms_this_opening
        assert supervised_s >= model.held_limit_s - model.settings.held_open_pre_alarm_s
    model.alarms_this_opening.add(stage)


# --- clock steps ------------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    door_settings_strategy,
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from([0, 0.5, 1, 2.5, 4.9, 5, 10, 20]), st.one_of(door_activity, openers)),
            st.tuples(st.just("clock_back"), st.sampled_from([0.5, 3, 30, 3600])),
        ),
        min_size=2,
        max_size=40,
    ),
)
def test_a_wall_clock_stepping_back_never_stretches_an_unlock(door: DoorSettings, steps: list[Any]) -> None:
    """Unlocks last their time in elapsed seconds when the wall clock steps back between inputs.

    (A step back hidden inside the gap between two inputs cannot be seen from ``now`` alone; the
    relay command's ``duration_s`` lets hardware that times pulses relock on time regardless.)
    """
    machine = DoorMachine(door)
    elapsed, wall = timedelta(0), T0
    relay, relock_by = safe_for(door.lock_mode), None  # relock_by: in elapsed time
    last = machine.apply(ControllerStarted(door_open=False), wall)
    for first, second in steps:
        if first == "clock_back":  # the clock steps back, and an input comes at once
            wall -= timedelta(seconds=second)
            event: Any = Tick()
        else:
            gap, event = first, second
            if event == "tick_at_deadline":
                deadline = last.next_deadline
                gap = gap if deadline is None else max(0.0, (deadline - wall).total_seconds())
                event = Tick()
            elapsed += timedelta(seconds=gap)
            wall += timedelta(seconds=gap)
        last = machine.apply(event, wall)
        for command in last.commands:
            relay = command.state
            relock_by = None if command.duration_s is None else elapsed + timedelta(seconds=command.duration_s)
        if relay is UNLOCKED and relock_by is not None:
            assert relock_by > elapsed  # not unlocked past its time, in elapsed time
            assert last.next_deadline is not None
            assert last.next_deadline - wall <= relock_by - elapsed


# --- the schedule-change search against a minute-by-minute scan ----------------------------------------------------

ZONES = ("Europe/Berlin", "America/St_Johns", "Australia/Lord_Howe", "UTC")
# Days just before DST changes (St John's: 03-08 and 11-01; Lord Howe moves by 30 min: 04-05 and 10-04).
DAYS = (
    date(2026, 3, 28),
    date(2026, 10, 24),
    date(2026, 3, 7),
    date(2026, 10, 31),
    date(2026, 4, 4),
    date(2026, 10, 3),
    date(2026, 6, 1),
)


def random_schedule_index(
    zone: str, intervals: list[tuple[int, int, tuple[Weekday, ...]]], holiday: date
) -> AccessIndex:
    def hhmm(minute: int) -> str:
        return f"{minute // 60:02d}:{minute % 60:02d}"

    schedule = Schedule(
        id="s",
        name="random",
        intervals=tuple(ScheduleInterval(days=days, start=hhmm(a), end=hhmm(b)) for a, b, days in intervals),
        holiday_groups=("h",),
        holiday_intervals=(TimeInterval(start="10:00", end="11:30"),),
    )
    return AccessIndex.build(
        Snapshot(
            version=1,
            site=SiteSettings(timezone=zone),
            schedules=(schedule,),
            holiday_groups=(HolidayGroup(id="h", name="h", dates=(holiday,)),),
            doors=(Door(id="d", name="d", unlock_schedule="s"),),
        ),
        HASHER,
    )


def scan_for_changes(answer: Callable[[datetime], bool], now: datetime, end: datetime) -> list[datetime]:
    """Every instant in (now, end) where the answer changes, minute by minute: every schedule boundary
    and every offset change in these zones falls on a whole UTC minute."""
    changes = []
    previous = answer(now)
    instant = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while instant < end:
        if (current := answer(instant)) != previous:
            changes.append(instant)
            previous = current
        instant += timedelta(minutes=1)
    return changes


# Boundaries anywhere on quarter hours, and often in the small hours where clocks change.
minute_of_day = st.one_of(
    st.integers(0, 24 * 4 - 1).map(lambda quarter: quarter * 15),
    st.integers(0, 4 * 4).map(lambda quarter: 60 + quarter * 15),
)
weekdays = st.one_of(st.just(set(Weekday)), st.sets(st.sampled_from(list(Weekday)), min_size=1))
interval = st.tuples(minute_of_day, minute_of_day, weekdays).filter(lambda t: t[0] != t[1])


@settings(max_examples=150, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    day=st.sampled_from(DAYS),
    offset_s=st.integers(0, 2 * 86_400),
    intervals=st.lists(interval, max_size=3),
    holiday_in_days=st.integers(0, 2),
)
def test_next_schedule_change_matches_a_minute_scan(
    zone: str, day: date, offset_s: int, intervals: list[tuple[int, int, set[Weekday]]], holiday_in_days: int
) -> None:
    ordered = [(a, b, tuple(sorted(days, key=lambda d: d.number))) for a, b, days in intervals]
    index = random_schedule_index(zone, ordered, day + timedelta(days=holiday_in_days))
    midnight = datetime.combine(day, datetime.min.time(), ZoneInfo(zone)).astimezone(UTC)
    now = midnight + timedelta(seconds=offset_s)
    horizon = timedelta(days=2)
    state = AccessState()

    def in_force(instant: datetime) -> bool:
        return may_start_scheduled_unlock(index, state, "d", instant)

    # Every change over the horizon, found by searching on from each change found.
    end = now + horizon
    found, instant = [], now
    boundaries = boundary_seconds(index.schedules["s"])
    while (instant := next_change(in_force, instant, end, index.zone, boundaries)) < end:
        found.append(instant)
    assert found == scan_for_changes(in_force, now, end)
    first = found[0] if found else end
    expected = ScheduleWindowStarted(ends_at=first) if in_force(now) else ScheduleWindowEnded(recheck_at=first)
    assert schedule_window_input(index, state, "d", now, horizon) == expected
