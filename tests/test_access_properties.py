"""Property tests (hypothesis): snapshot/delta equivalence and CSV fuzzing.

Kept apart so the rest of the access tests run where hypothesis is not installed.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from rules.access import (
    AccessDataError,
    AccessIndex,
    AccessItems,
    AccessLevel,
    AntiPassback,
    Area,
    Card,
    CardFormat,
    Credential,
    CredentialKind,
    DeleteIds,
    Delta,
    Door,
    DoorGroup,
    Holder,
    HolderKind,
    HolidayGroup,
    LevelGrant,
    Schedule,
    ScheduleInterval,
    SiteSettings,
    Snapshot,
    TimeInterval,
    Weekday,
    apply_delta,
    parse_holders_csv,
)
from rules.access.csv_import import COLUMNS
from rules.access.model import COLLECTIONS
from tests.access_helpers import HASHER, standard_index

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

HEADER = ",".join(COLUMNS)

# --- property: any sequence of deltas == a snapshot of the final state --------------------------------------

PINS = ("1111", "2222", "3333")
PIN_ONLY_HASHES = {pin: HASHER.pin_only(pin) for pin in PINS}
CARD_PIN_HASHES = {(f"c{i}", pin): HASHER.for_card(f"c{i}", pin) for i in range(8) for pin in PINS}


def pick(prefix: str, count: int) -> st.SearchStrategy[str]:
    return st.sampled_from([f"{prefix}{i}" for i in range(count)])


def _holder(holder_id: str, levels: list[str], enabled: bool, override: bool) -> Holder:
    return Holder(
        id=holder_id,
        name=f"Holder {holder_id}",
        kind=HolderKind.STAFF,
        access_levels=tuple(dict.fromkeys(levels)),
        enabled=enabled,
        lockdown_override=override,
    )


def _credential(credential_id: str, holder_id: str, kind: CredentialKind, number: int, pin: str) -> Credential:
    has_card = kind is not CredentialKind.PIN
    pin_hash = None
    if kind is CredentialKind.PIN:
        pin_hash = PIN_ONLY_HASHES[pin]
    elif kind is CredentialKind.CARD_AND_PIN:
        pin_hash = CARD_PIN_HASHES[(credential_id, pin)]
    return Credential(
        id=credential_id,
        holder_id=holder_id,
        kind=kind,
        card=Card(format=CardFormat.H10301, facility=1, number=number) if has_card else None,
        pin_hash=pin_hash,
    )


HHMM = st.sampled_from(["00:00", "06:00", "08:00", "18:00", "22:00", "24:00"])
INTERVAL = st.tuples(HHMM, HHMM).filter(lambda pair: pair[0] != pair[1] and pair[0] != "24:00")

ITEM_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "holders": st.builds(_holder, pick("h", 6), st.lists(pick("l", 3), max_size=2), st.booleans(), st.booleans()),
    "credentials": st.builds(
        _credential,
        pick("c", 8),
        pick("h", 6),
        st.sampled_from(list(CredentialKind)),
        st.integers(0, 5),
        st.sampled_from(PINS),
    ),
    "access_levels": st.builds(
        lambda level_id, grants: AccessLevel(
            id=level_id, name=level_id, grants=tuple(LevelGrant(door_group=g, schedule=s) for g, s in grants)
        ),
        pick("l", 3),
        st.lists(st.tuples(pick("g", 3), pick("s", 3)), max_size=3),
    ),
    "door_groups": st.builds(
        lambda group_id, doors: DoorGroup(id=group_id, name=group_id, doors=tuple(dict.fromkeys(doors))),
        pick("g", 3),
        st.lists(pick("d", 4), max_size=4),
    ),
    "schedules": st.builds(
        lambda schedule_id, intervals, holidays, holiday_hours: Schedule(
            id=schedule_id,
            name=schedule_id,
            intervals=tuple(ScheduleInterval(days=tuple(days), start=a, end=b) for (a, b), days in intervals),
            holiday_groups=tuple(dict.fromkeys(holidays)),
            holiday_intervals=tuple(TimeInterval(start=a, end=b) for a, b in holiday_hours),
        ),
        pick("s", 3),
        st.lists(st.tuples(INTERVAL, st.sets(st.sampled_from(list(Weekday)), min_size=1)), max_size=3),
        st.lists(pick("y", 2), max_size=2),
        st.lists(INTERVAL, max_size=2),
    ),
    "holiday_groups": st.builds(
        lambda group_id, dates: HolidayGroup(id=group_id, name=group_id, dates=tuple(sorted(set(dates)))),
        pick("y", 2),
        st.lists(st.dates(date(2026, 1, 1), date(2026, 12, 31)), max_size=3),
    ),
    "doors": st.builds(
        lambda door_id, areas, lockdown: Door(
            id=door_id,
            name=door_id,
            area_from=areas[0] if areas else None,
            area_to=areas[1] if areas else None,
            lockdown=lockdown,
        ),
        pick("d", 4),
        st.none() | st.permutations(["a0", "a1", "a2"]).map(lambda p: (p[0], p[1])),
        st.booleans(),
    ),
    "areas": st.builds(
        lambda area_id, mode: Area(id=area_id, name=area_id, antipassback=mode),
        pick("a", 3),
        st.sampled_from(list(AntiPassback)),
    ),
}
ID_POOLS = {
    "holders": 6,
    "credentials": 8,
    "access_levels": 3,
    "door_groups": 3,
    "schedules": 3,
    "holiday_groups": 2,
    "doors": 4,
    "areas": 3,
}
ID_PREFIXES = {
    "holders": "h",
    "credentials": "c",
    "access_levels": "l",
    "door_groups": "g",
    "schedules": "s",
    "holiday_groups": "y",
    "doors": "d",
    "areas": "a",
}
ZONES = st.sampled_from(["Europe/Berlin", "Asia/Shanghai", "America/New_York"])


def draw_delta(data: st.DataObject, base_version: int) -> Delta:
    upserts: dict[str, tuple[Any, ...]] = {}
    deletes: dict[str, tuple[str, ...]] = {}
    for name in COLLECTIONS:
        items = data.draw(st.lists(ITEM_STRATEGIES[name], max_size=3, unique_by=lambda item: item.id))
        upserted = {item.id for item in items}
        pool = [f"{ID_PREFIXES[name]}{i}" for i in range(ID_POOLS[name]) if f"{ID_PREFIXES[name]}{i}" not in upserted]
        deleted = data.draw(st.lists(st.sampled_from(pool), max_size=2, unique=True)) if pool else []
        upserts[name], deletes[name] = tuple(items), tuple(deleted)
    site = data.draw(st.none() | ZONES.map(lambda zone: SiteSettings(timezone=zone)))
    return Delta(
        base_version=base_version,
        version=base_version + 1,
        site=site,
        upsert=AccessItems(**upserts),
        delete=DeleteIds(**deletes),
    )


def expected_snapshot(model: dict[str, dict[str, Any]], site: SiteSettings, version: int) -> Snapshot:
    return Snapshot(
        version=version, site=site, **{name: tuple(model[name][k] for k in sorted(model[name])) for name in COLLECTIONS}
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_any_sequence_of_deltas_equals_a_snapshot_of_the_final_state(data: st.DataObject) -> None:
    index = AccessIndex.empty(HASHER)
    model: dict[str, dict[str, Any]] = {name: {} for name in COLLECTIONS}
    site = SiteSettings()
    for _ in range(data.draw(st.integers(1, 8))):
        delta = draw_delta(data, index.version)
        candidate = {name: dict(model[name]) for name in COLLECTIONS}
        for name in COLLECTIONS:
            for item_id in getattr(delta.delete, name):
                candidate[name].pop(item_id, None)
            candidate[name].update((item.id, item) for item in getattr(delta.upsert, name))
        candidate_site = delta.site or site
        try:
            rebuilt = AccessIndex.build(expected_snapshot(candidate, candidate_site, delta.version), HASHER)
        except AccessDataError:
            rebuilt = None
        event("delta rejected" if rebuilt is None else "delta applied")
        if rebuilt is None:
            # The final state is invalid: the delta path refuses it too, and keeps the old index.
            before = index.to_snapshot()
            with pytest.raises(AccessDataError):
                apply_delta(index, delta)
            assert index.to_snapshot() == before
            continue
        index = apply_delta(index, delta)
        model, site = candidate, candidate_site
        assert index == rebuilt
        assert index == AccessIndex.build(index.to_snapshot(), HASHER)


# --- CSV fuzzing ---

CSV_ALPHABET = st.sampled_from(list(',"\n\r;:-. 0123456789abcdefhklmnoprstuvwxyzT\x00\x1f王\ufeff'))
FIELD_VALUES = st.sampled_from(
    ["", "a1", "staff", "resident", "visitor", "h10301", "10", "5001", "1234", "2026-03-01", "x"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(CSV_ALPHABET, max_size=400), st.lists(st.lists(FIELD_VALUES, min_size=9, max_size=12), max_size=8)
    )
)
def test_fuzzed_input_never_raises_and_errors_are_well_formed(raw: str | list[list[str]]) -> None:
    index = standard_index()
    text = raw if isinstance(raw, str) else "\n".join([HEADER, *(",".join(row) for row in raw)])
    result = parse_holders_csv(text, index)
    for error in result.errors:
        assert str(error).startswith(("input: ", f"line {error.line}: "))
        assert error.column != "pin" or "1234" not in error.message
    for row in result.rows:
        assert row.credential is None or row.credential.holder_id == row.holder.id
    # Accepted rows never conflict with each other or with the site: applying them cannot fail.
    apply_delta(index, Delta(base_version=index.version, version=index.version + 1, upsert=result.items()))
