"""The access index: the synced configuration plus the lookup tables ``decide()`` needs, all O(1).

Built from a :class:`Snapshot`, or derived from a previous index and a :class:`Delta` by patching
only what the delta touches (the credential tables are patched entry by entry; the small tables —
schedules, access levels — are recomputed). An index is never mutated after construction: a delta
yields a new index, so a rejected delta leaves the running one untouched. Both paths give equal
indexes for equal data (``==`` compares the data and every derived table).

Conflicts that would make a decision ambiguous — one card on two credentials, one PIN on two
PIN-only credentials — are errors (:class:`AccessDataError`). Dangling references (a credential
whose holder is not there yet, a level naming a missing schedule) are tolerated because deltas may
arrive in any order; decisions treat the missing item as absent (fail closed) and
:meth:`AccessIndex.problems` lists them for the manager.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from rules.access.model import (
    COLLECTIONS,
    AccessLevel,
    Area,
    CardKey,
    Credential,
    CredentialKind,
    Delta,
    Door,
    DoorGroup,
    Holder,
    HolidayGroup,
    Schedule,
    SiteSettings,
    Snapshot,
)
from rules.access.pin import PinHasher
from rules.access.schedule import CompiledSchedule, compile_schedule


class AccessDataError(ValueError):
    """The data would make decisions ambiguous; nothing was applied."""


LevelDoors = dict[str, dict[str, tuple[str, ...]]]  # level id -> door id -> schedule ids


class AccessIndex:
    __slots__ = (
        "access_levels",
        "areas",
        "by_card",
        "by_pin_hash",
        "compiled_schedules",
        "credentials",
        "credentials_by_holder",
        "door_groups",
        "doors",
        "holders",
        "holiday_groups",
        "level_doors",
        "pin_hasher",
        "schedules",
        "site",
        "version",
        "zone",
    )

    version: int
    site: SiteSettings
    zone: ZoneInfo
    pin_hasher: PinHasher
    holders: dict[str, Holder]
    credentials: dict[str, Credential]
    access_levels: dict[str, AccessLevel]
    door_groups: dict[str, DoorGroup]
    schedules: dict[str, Schedule]
    holiday_groups: dict[str, HolidayGroup]
    doors: dict[str, Door]
    areas: dict[str, Area]
    by_card: dict[CardKey, str]  # card -> credential id
    by_pin_hash: dict[str, str]  # PIN-only hash -> credential id
    credentials_by_holder: dict[str, frozenset[str]]
    compiled_schedules: dict[str, CompiledSchedule]
    level_doors: LevelDoors

    # --- construction ---

    @classmethod
    def build(cls, snapshot: Snapshot, pin_hasher: PinHasher) -> AccessIndex:
        index = cls.__new__(cls)
        index.version = snapshot.version
        index.pin_hasher = pin_hasher
        index._set_site(snapshot.site)
        for name in COLLECTIONS:
            setattr(index, name, {item.id: item for item in getattr(snapshot, name)})
        index.by_card, index.by_pin_hash, index.credentials_by_holder = {}, {}, {}
        index._add_credentials(index.credentials.values())
        index.compiled_schedules = _compile_all(index.schedules, index.holiday_groups)
        index.level_doors = _level_doors(index.access_levels, index.door_groups)
        return index

    @classmethod
    def empty(cls, pin_hasher: PinHasher, site: SiteSettings | None = None) -> AccessIndex:
        return cls.build(Snapshot(version=0, site=site or SiteSettings()), pin_hasher)

    def with_delta(self, delta: Delta) -> AccessIndex:
        """A new index with ``delta`` applied (its base version is the caller's check: see sync)."""
        index = AccessIndex.__new__(AccessIndex)
        index.version = delta.version
        index.pin_hasher = self.pin_hasher
        index._set_site(delta.site or self.site)
        for name in COLLECTIONS:
            table = dict(getattr(self, name))
            for item_id in getattr(delta.delete, name):
                table.pop(item_id, None)
            table.update((item.id, item) for item in getattr(delta.upsert, name))
            setattr(index, name, table)

        # Credentials: unhook every touched credential's old entries, then hook in the new ones, so
        # a card moving between credentials in one delta is not a conflict.
        index.by_card = dict(self.by_card)
        index.by_pin_hash = dict(self.by_pin_hash)
        index.credentials_by_holder = dict(self.credentials_by_holder)
        touched = [*delta.delete.credentials, *(c.id for c in delta.upsert.credentials)]
        index._remove_credentials(self.credentials[c] for c in touched if c in self.credentials)
        index._add_credentials(delta.upsert.credentials)

        if delta.upsert.holiday_groups or delta.delete.holiday_groups:
            index.compiled_schedules = _compile_all(index.schedules, index.holiday_groups)
        else:
            compiled = dict(self.compiled_schedules)
            for schedule_id in delta.delete.schedules:
                compiled.pop(schedule_id, None)
            for schedule in delta.upsert.schedules:
                compiled[schedule.id] = compile_schedule(schedule, index.holiday_groups)
            index.compiled_schedules = compiled

        levels_changed = delta.upsert.access_levels or delta.delete.access_levels
        if levels_changed or delta.upsert.door_groups or delta.delete.door_groups:
            index.level_doors = _level_doors(index.access_levels, index.door_groups)
        else:
            index.level_doors = self.level_doors  # never mutated, so sharing is safe
        return index

    def to_snapshot(self) -> Snapshot:
        items: dict[str, Any] = {
            name: tuple(getattr(self, name)[key] for key in sorted(getattr(self, name))) for name in COLLECTIONS
        }
        return Snapshot(version=self.version, site=self.site, **items)

    def _set_site(self, site: SiteSettings) -> None:
        self.site = site
        self.zone = ZoneInfo(site.timezone)

    def _add_credentials(self, credentials: Iterable[Credential]) -> None:
        for credential in credentials:
            if credential.card is not None:
                other = self.by_card.setdefault(credential.card.key, credential.id)
                if other != credential.id:
                    card = credential.card
                    raise AccessDataError(
                        f"credentials {other!r} and {credential.id!r} both use card "
                        f"{card.format.value} {card.facility}/{card.number}"
                    )
            if credential.kind is CredentialKind.PIN and credential.pin_hash is not None:
                other = self.by_pin_hash.setdefault(credential.pin_hash, credential.id)
                if other != credential.id:
                    # The message names the credentials, never the PIN.
                    raise AccessDataError(f"PIN-only credentials {other!r} and {credential.id!r} have the same PIN")
            owned = self.credentials_by_holder.get(credential.holder_id, frozenset())
            self.credentials_by_holder[credential.holder_id] = owned | {credential.id}

    def _remove_credentials(self, credentials: Iterable[Credential]) -> None:
        for credential in credentials:
            if credential.card is not None:
                self.by_card.pop(credential.card.key, None)
            if credential.kind is CredentialKind.PIN and credential.pin_hash is not None:
                self.by_pin_hash.pop(credential.pin_hash, None)
            remaining = self.credentials_by_holder.get(credential.holder_id, frozenset()) - {credential.id}
            if remaining:
                self.credentials_by_holder[credential.holder_id] = remaining
            else:
                self.credentials_by_holder.pop(credential.holder_id, None)

    # --- lookups ---

    def credential_for_card(self, key: CardKey) -> Credential | None:
        credential_id = self.by_card.get(key)
        return None if credential_id is None else self.credentials[credential_id]

    def credential_for_pin(self, entered: str) -> Credential | None:
        """The PIN-only credential whose PIN was typed, if any."""
        lookup_key = self.pin_hasher.lookup_key(entered)
        credential_id = None if lookup_key is None else self.by_pin_hash.get(lookup_key)
        return None if credential_id is None else self.credentials[credential_id]

    def credentials_of(self, holder_id: str) -> list[Credential]:
        return [self.credentials[c] for c in sorted(self.credentials_by_holder.get(holder_id, ()))]

    def schedules_for(self, holder: Holder, door_id: str) -> list[str]:
        """Schedule ids under which the holder's access levels open ``door_id`` (empty: no access)."""
        found: list[str] = []
        for level_id in holder.access_levels:
            doors = self.level_doors.get(level_id)
            if doors is not None:
                found.extend(doors.get(door_id, ()))
        return found

    def problems(self) -> list[str]:
        """Dangling references, for the manager to fix; decisions treat them as absent."""
        found: list[str] = []

        def check(owner: str, kind: str, ids: Iterable[str | None], table: Mapping[str, object]) -> None:
            found.extend(f"{owner}: unknown {kind} {ref!r}" for ref in ids if ref is not None and ref not in table)

        for credential in self.credentials.values():
            check(f"credential {credential.id!r}", "holder", [credential.holder_id], self.holders)
        for holder in self.holders.values():
            check(f"holder {holder.id!r}", "access level", holder.access_levels, self.access_levels)
        for level in self.access_levels.values():
            check(f"access level {level.id!r}", "door group", [g.door_group for g in level.grants], self.door_groups)
            check(f"access level {level.id!r}", "schedule", [g.schedule for g in level.grants], self.schedules)
        for group in self.door_groups.values():
            check(f"door group {group.id!r}", "door", group.doors, self.doors)
        for schedule in self.schedules.values():
            check(f"schedule {schedule.id!r}", "holiday group", schedule.holiday_groups, self.holiday_groups)
        for door in self.doors.values():
            check(f"door {door.id!r}", "area", [door.area_from, door.area_to], self.areas)
            check(f"door {door.id!r}", "schedule", [door.unlock_schedule], self.schedules)
        return found

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AccessIndex):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _COMPARED)

    __hash__ = None  # type: ignore[assignment]


_COMPARED = (
    "version",
    "site",
    *COLLECTIONS,
    "by_card",
    "by_pin_hash",
    "credentials_by_holder",
    "compiled_schedules",
    "level_doors",
)


def _compile_all(
    schedules: Mapping[str, Schedule], holiday_groups: Mapping[str, HolidayGroup]
) -> dict[str, CompiledSchedule]:
    return {schedule_id: compile_schedule(schedule, holiday_groups) for schedule_id, schedule in schedules.items()}


def _level_doors(access_levels: Mapping[str, AccessLevel], door_groups: Mapping[str, DoorGroup]) -> LevelDoors:
    table: LevelDoors = {}
    for level in access_levels.values():
        doors: dict[str, list[str]] = {}
        for grant in level.grants:
            group = door_groups.get(grant.door_group)
            for door_id in group.doors if group is not None else ():
                doors.setdefault(door_id, []).append(grant.schedule)
        table[level.id] = {door_id: tuple(sorted(set(ids))) for door_id, ids in doors.items()}
    return table
