"""Schedules on the site's local wall clock, compiled for fast checks, and the DST policy.

DST policy (deliberate; it fails closed and never invents hours):

- A decision converts the request instant (aware) into the site zone and judges the *wall-clock
  reading*: local date, weekday and second of the day. Converting an instant to local time is
  always unique, so no nonexistent or ambiguous local time ever reaches a decision.
- Spring forward (Europe/Berlin 2026-03-29, 02:00 jumps to 03:00): readings 02:00-02:59 never
  occur, so the part of a window inside the gap does not happen. A window lying entirely inside it
  (02:00-03:00) grants nothing that day; a window is never moved to hours the manager did not list.
  A night window 22:00-06:00 is one real hour shorter that night.
- Fall back (Europe/Berlin 2026-10-25, 03:00 goes back to 02:00): readings 02:00-02:59 occur twice
  and both passes are judged alike, so an event at 02:30 gets the same answer each time and a
  window covering that hour lasts one real hour longer that night.
- Local times given as *input* (naive datetimes in a CSV validity column) go through
  :func:`resolve_local`, which rejects nonexistent and ambiguous times so the importer can ask for
  an explicit offset. Only a date-only boundary uses :func:`start_of_local_day`, which takes the
  first instant of that local date: a midnight skipped by DST moves forward to the end of the gap,
  a repeated midnight takes its first occurrence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum
from zoneinfo import ZoneInfo

from rules.access.model import SECONDS_PER_DAY, HolidayGroup, Schedule, TimeInterval, hhmm_to_seconds

_ONE_DAY = timedelta(days=1)

Window = tuple[int, int]  # (start second, end second) of a local day, end exclusive


class Coverage(IntEnum):
    """What a schedule says about an instant. Ordered: across schedules the greatest one wins."""

    OUTSIDE = 0
    HOLIDAY = 1  # outside, but only because a holiday replaced hours that would have covered it
    INSIDE = 2


@dataclass(frozen=True, slots=True)
class WindowOccurrence:
    """One occurrence of a window: the local date it started on and its start second. Identifies
    "this morning's 08:00 window" without converting wall-clock times to instants."""

    day: date
    start_s: int

    def to_json(self) -> str:
        return f"{self.day.isoformat()}@{self.start_s}"

    @classmethod
    def from_json(cls, text: str) -> WindowOccurrence:
        day, start = text.split("@")
        return cls(date.fromisoformat(day), int(start))


@dataclass(frozen=True, slots=True)
class LocalReading:
    """The site's wall clock at one instant."""

    day: date
    yesterday: date
    weekday: int  # Monday 0
    second: int  # of the local day, 0..86399

    @classmethod
    def at(cls, instant: datetime, zone: ZoneInfo) -> LocalReading:
        if instant.tzinfo is None:
            raise ValueError("the decision time must be timezone-aware")
        # Via UTC, so an instant already in ``zone`` but written as a nonexistent wall time
        # (02:30 on a spring-forward day) is read as the real instant it names.
        local = instant.astimezone(UTC).astimezone(zone)
        day = local.date()
        return cls(day, day - _ONE_DAY, local.weekday(), local.hour * 3600 + local.minute * 60 + local.second)


def _split(interval: TimeInterval) -> tuple[Window, Window | None]:
    """The part on the starting day and, for a midnight-crossing interval, the part on the next."""
    start, end = hhmm_to_seconds(interval.start), hhmm_to_seconds(interval.end)
    if end > start:
        return (start, end), None
    return (start, SECONDS_PER_DAY), (start, end)  # the spill keeps its start to name the occurrence


@dataclass(frozen=True, slots=True)
class CompiledSchedule:
    """Per weekday, the windows starting that day, and the spill of those crossing midnight
    (stored under the weekday they *start* on, as ``(start, end on the next day)``)."""

    same_day: tuple[tuple[Window, ...], ...]
    spill: tuple[tuple[Window, ...], ...]
    holiday_same_day: tuple[Window, ...]
    holiday_spill: tuple[Window, ...]
    holiday_dates: frozenset[date]

    def evaluate(self, now: LocalReading) -> tuple[Coverage, WindowOccurrence | None]:
        holidays = self.holiday_dates
        today_is_holiday = now.day in holidays
        yesterday_was_holiday = now.yesterday in holidays
        occurrence = self._covering(now, today_is_holiday, yesterday_was_holiday)
        if occurrence is not None:
            return Coverage.INSIDE, occurrence
        if (today_is_holiday or yesterday_was_holiday) and self._covering(now, False, False) is not None:
            return Coverage.HOLIDAY, None
        return Coverage.OUTSIDE, None

    def _covering(
        self, now: LocalReading, today_is_holiday: bool, yesterday_was_holiday: bool
    ) -> WindowOccurrence | None:
        second = now.second
        for start, end in self.holiday_same_day if today_is_holiday else self.same_day[now.weekday]:
            if start <= second < end:
                return WindowOccurrence(now.day, start)
        # A window that started yesterday and runs past midnight belongs to yesterday.
        for start, end in self.holiday_spill if yesterday_was_holiday else self.spill[(now.weekday - 1) % 7]:
            if second < end:
                return WindowOccurrence(now.yesterday, start)
        return None


def compile_schedule(schedule: Schedule, holiday_groups: Mapping[str, HolidayGroup]) -> CompiledSchedule:
    """Missing holiday groups are skipped (the index reports them as problems)."""
    same_day: list[list[Window]] = [[] for _ in range(7)]
    spill: list[list[Window]] = [[] for _ in range(7)]
    for interval in schedule.intervals:
        first, second = _split(interval)
        for weekday in interval.days:
            same_day[weekday.number].append(first)
            if second is not None:
                spill[weekday.number].append(second)
    holiday_same: list[Window] = []
    holiday_spill: list[Window] = []
    for holiday_interval in schedule.holiday_intervals:
        first, second = _split(holiday_interval)
        holiday_same.append(first)
        if second is not None:
            holiday_spill.append(second)
    dates = frozenset(
        day for group_id in schedule.holiday_groups if (group := holiday_groups.get(group_id)) for day in group.dates
    )
    return CompiledSchedule(
        same_day=tuple(tuple(sorted(windows)) for windows in same_day),
        spill=tuple(tuple(sorted(windows)) for windows in spill),
        holiday_same_day=tuple(sorted(holiday_same)),
        holiday_spill=tuple(sorted(holiday_spill)),
        holiday_dates=dates,
    )


# --- local times given as input ----------------------------------------------------------------


class NonexistentLocalTime(ValueError):
    pass


class AmbiguousLocalTime(ValueError):
    pass


def _reads_as(instant: datetime, zone: ZoneInfo) -> datetime:
    # Via UTC: astimezone() to the instant's own tzinfo returns it unchanged, gap or not.
    return instant.astimezone(UTC).astimezone(zone).replace(tzinfo=None, fold=0)


def resolve_local(naive: datetime, zone: ZoneInfo) -> datetime:
    """The one instant a naive local time names; raise if DST makes it nonexistent or ambiguous."""
    naive = naive.replace(fold=0)
    earlier = naive.replace(tzinfo=zone, fold=0)
    later = naive.replace(tzinfo=zone, fold=1)
    earlier_exists = _reads_as(earlier, zone) == naive
    later_exists = _reads_as(later, zone) == naive
    if not (earlier_exists or later_exists):
        raise NonexistentLocalTime(f"{naive.isoformat()} does not exist in {zone.key} (clocks skip it)")
    if earlier_exists and later_exists and earlier.utcoffset() != later.utcoffset():
        raise AmbiguousLocalTime(f"{naive.isoformat()} happens twice in {zone.key} (clocks go back)")
    return earlier.astimezone(UTC)


def start_of_local_day(day: date, zone: ZoneInfo) -> datetime:
    """The first instant whose local date is ``day`` (see the module's DST policy)."""
    midnight = datetime.combine(day, time(0))
    try:
        return resolve_local(midnight, zone)
    except AmbiguousLocalTime:
        return midnight.replace(tzinfo=zone, fold=0).astimezone(UTC)
    except NonexistentLocalTime:
        pass
    # Midnight falls in a gap: the day starts where the gap ends. Search the gap's real span
    # (between the two readings of midnight) for the first instant already on ``day``.
    low = int(midnight.replace(tzinfo=zone, fold=1).timestamp())
    high = int(midnight.replace(tzinfo=zone, fold=0).timestamp())
    low, high = min(low, high), max(low, high)
    while low < high:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).date() >= day:
            high = middle
        else:
            low = middle + 1
    return datetime.fromtimestamp(low, UTC)
