"""A door's scheduled unlock, from the access configuration, as the door's next schedule input.

``rules.access.may_start_scheduled_unlock`` says whether free passage is in force at an instant
(schedule, holidays, first-person-in, the door's configured lockdown). The door machine also needs
to know when to look again, so this module finds the next instant at which that answer changes.

It can only change where the site's wall clock crosses a window boundary (a start, an end, or
midnight for holidays and weekdays) or where the clock itself jumps (DST). So instead of stepping
through time, the search splits the horizon into stretches of constant UTC offset, where wall time
and UTC run in step, lists the instants of every boundary reading in each stretch plus each
stretch's start, and asks ``may_start_scheduled_unlock`` at those candidates only, in order.
A window that DST skips is never reported (the answer does not change there); a repeated hour is
judged as rules/access judges it.

First-person-in: after a staff grant at the door the answer can change at once, so the caller asks
again after every grant there (``Decision.state_changed``), and after every new access index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from rules.access.decide import may_start_scheduled_unlock
from rules.access.index import AccessIndex
from rules.access.model import SECONDS_PER_DAY, Schedule, hhmm_to_seconds
from rules.access.state import AccessState
from rules.door.inputs import ScheduleWindowEnded, ScheduleWindowStarted

# Longer than a week, so a weekly schedule always shows its next change; past it the caller just asks again.
DEFAULT_HORIZON = timedelta(days=8)
# Offset changes are looked for at this spacing; zones change offset at most once in any such span.
_OFFSET_PROBE = timedelta(hours=1)


def schedule_window_input(
    index: AccessIndex,
    state: AccessState,
    door_id: str,
    now: datetime,
    horizon: timedelta = DEFAULT_HORIZON,
) -> ScheduleWindowStarted | ScheduleWindowEnded:
    """The schedule input for ``door_id`` at ``now``: the window in force until its end, or not in
    force and when to look again (at the latest ``now + horizon``; ``None`` for a door without a
    scheduled unlock)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    door = index.doors.get(door_id)
    schedule = None if door is None or door.unlock_schedule is None else index.schedules.get(door.unlock_schedule)
    if schedule is None:
        return ScheduleWindowEnded(recheck_at=None)

    def in_force(instant: datetime) -> bool:
        return may_start_scheduled_unlock(index, state, door_id, instant)

    now_in_force = in_force(now)
    change = next_change(in_force, now, now + horizon, index.zone, boundary_seconds(schedule))
    return ScheduleWindowStarted(ends_at=change) if now_in_force else ScheduleWindowEnded(recheck_at=change)


def boundary_seconds(schedule: Schedule) -> tuple[int, ...]:
    """Seconds of the local day at which the schedule can change: its starts and ends (and midnight,
    where weekday and holiday change: redundant today, as a window only turns there if it starts or
    ends there, but cheap insurance against a future rule that keys on the date)."""
    seconds = {0}
    for interval in (*schedule.intervals, *schedule.holiday_intervals):
        seconds.add(hhmm_to_seconds(interval.start) % SECONDS_PER_DAY)
        seconds.add(hhmm_to_seconds(interval.end) % SECONDS_PER_DAY)
    return tuple(sorted(seconds))


def next_change(
    answer: Callable[[datetime], bool],
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    boundaries: Iterable[int],
) -> datetime:
    """The first instant in (start, end) where ``answer`` differs from ``answer(start)``; else ``end``.

    ``answer`` must only change where the wall clock reads one of ``boundaries`` or jumps.
    """
    initial = answer(start)
    for candidate in candidate_instants(start, end, zone, tuple(boundaries)):
        if answer(candidate) != initial:
            return candidate
    return end


def candidate_instants(start: datetime, end: datetime, zone: ZoneInfo, boundaries: tuple[int, ...]) -> list[datetime]:
    """Every instant in (start, end) whose wall-clock reading is a boundary second, and every offset change."""
    found: set[datetime] = set()
    segments = _offset_segments(start, end, zone)
    for number, (segment_start, offset) in enumerate(segments):
        segment_end = segments[number + 1][0] if number + 1 < len(segments) else end
        if number > 0:
            found.add(segment_start)  # the clock jumped here: the reading may have entered or left a window
        wall_start = _naive_utc(segment_start) + offset
        wall_end = _naive_utc(segment_end) + offset
        day = wall_start.date()
        while (midnight := datetime.combine(day, time())) < wall_end:
            for second in boundaries:
                wall = midnight + timedelta(seconds=second)
                if wall_start <= wall < wall_end:
                    found.add((wall - offset).replace(tzinfo=UTC))
            day += timedelta(days=1)
    return sorted(instant for instant in found if start < instant < end)


def _naive_utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None)


def _offset_segments(start: datetime, end: datetime, zone: ZoneInfo) -> list[tuple[datetime, timedelta]]:
    """(first instant, UTC offset) of each stretch of constant offset in [start, end)."""

    def offset(instant: datetime) -> timedelta:
        value = instant.astimezone(zone).utcoffset()
        assert value is not None  # a ZoneInfo always gives one
        return value

    segments = [(start, offset(start))]
    probe = start
    while probe < end:
        step = min(probe + _OFFSET_PROBE, end)
        if (new_offset := offset(step)) != segments[-1][1]:
            segments.append((_first_instant_with_offset(probe, step, new_offset, offset), new_offset))
        probe = step
    return segments


def _first_instant_with_offset(
    before: datetime, at_or_after: datetime, wanted: timedelta, offset: Callable[[datetime], timedelta]
) -> datetime:
    """Bisect to the whole second where the offset becomes ``wanted`` (zones change on whole seconds)."""
    low = int(before.timestamp())  # offset(low) is the old one
    high = int(at_or_after.timestamp())  # offset(high) is the new one (floored: changes fall on whole seconds)
    while high - low > 1:
        middle = (low + high) // 2
        if offset(datetime.fromtimestamp(middle, UTC)) == wanted:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)
