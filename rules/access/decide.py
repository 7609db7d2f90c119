"""The access decision: ``decide(index, state, request, now) -> Decision``.

Pure and deterministic: the configuration comes in as an :class:`AccessIndex`, the mutable state
(anti-passback positions, wrong-PIN counters, lockouts, first-person-in) as an :class:`AccessState`
that this function updates in place, and the time as ``now``. The same inputs give the same
decision whether the uplink is up or not; nothing here knows about it.

Checks, in order (the first failing one is the reason):

1. ``unknown_door``; ``reader_tamper`` (a tampered reader's data cannot be trusted, so nobody passes);
   ``no_credential``; a PIN alone at a door that is not card_or_pin: ``card_required``.
2. A PIN in play at a reader locked out for wrong PINs: ``locked_out``.
3. Identify: an unknown card is ``unknown_credential``; an unknown PIN typed alone is ``wrong_pin``
   (it counts towards the reader's lockout); a credential whose holder is missing is unknown too.
4. ``disabled`` (holder or credential), then validity: ``not_yet_valid`` / ``expired``.
5. The door in lockdown and the holder without ``lockdown_override``: ``lockdown``.
6. card_and_pin doors: the credential locked out: ``locked_out``; no PIN typed: ``pin_required``
   (the reader driver collects card and PIN, with its own timeout, before asking); the card has no
   PIN enrolled: ``pin_not_enrolled``; a wrong PIN: ``wrong_pin`` (counts per credential and per
   reader). At card_or_pin doors a card alone is enough, so a PIN typed with it is not checked.
7. Access levels x schedules at this door: none (or only missing schedules): ``no_access_level``;
   some, none open now:
   ``holiday`` if a holiday took away hours that would have covered now, else ``outside_schedule``.
8. Anti-passback, ruled by the area being entered: the holder's recorded area is not the one this
   door leads from. Hard: ``antipassback``; soft: granted with ``antipassback_violation``.
   An unknown (never seen, forgiven or reset) position passes.

On a grant the holder's area becomes the area entered (for every door with areas, whatever its
mode, so a later entry elsewhere is judged right), and a staff grant inside a first-person-in
door's unlock window releases that window (see :func:`may_start_scheduled_unlock`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from edge.events import Severity
from rules.access.index import AccessIndex
from rules.access.model import AntiPassback, Card, CardKey, Credential, Door, DoorMode, Holder, HolderKind
from rules.access.schedule import Coverage, LocalReading
from rules.access.state import AccessState, AreaPosition, credential_scope, reader_scope


class Reason(StrEnum):
    GRANTED = "granted"
    UNKNOWN_DOOR = "unknown_door"
    READER_TAMPER = "reader_tamper"
    NO_CREDENTIAL = "no_credential"
    CARD_REQUIRED = "card_required"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    DISABLED = "disabled"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    LOCKDOWN = "lockdown"
    LOCKED_OUT = "locked_out"
    PIN_REQUIRED = "pin_required"
    PIN_NOT_ENROLLED = "pin_not_enrolled"
    WRONG_PIN = "wrong_pin"
    NO_ACCESS_LEVEL = "no_access_level"
    OUTSIDE_SCHEDULE = "outside_schedule"
    HOLIDAY = "holiday"
    ANTIPASSBACK = "antipassback"


class Direction(StrEnum):
    IN = "in"  # from the door's area_from into its area_to
    OUT = "out"  # the other way


@dataclass(frozen=True, slots=True)
class CardRead:
    """A card as the reader driver decoded it."""

    format: str  # a CardFormat value
    facility: int
    number: int

    @property
    def key(self) -> CardKey:
        return (self.format, self.facility, self.number)

    @classmethod
    def of(cls, card: Card) -> CardRead:
        return cls(card.format.value, card.facility, card.number)

    @classmethod
    def decoded(cls, format_name: str, facility: int | None, number: int) -> CardRead:
        """From a reader driver's decode (drivers/osdp/wiegand.py names formats ``H10301`` … ``raw``
        and gives no facility for raw reads): lower-case the name, no facility means 0."""
        return cls(format_name.lower(), facility or 0, number)


@dataclass(frozen=True, slots=True)
class AccessRequest:
    door_id: str
    reader_id: str
    card: CardRead | None = None
    pin: str | None = None  # as typed; hashed for lookup, never stored or reported
    direction: Direction = Direction.IN
    reader_tamper: bool = False  # the reader's tamper input is active

    def __repr__(self) -> str:  # keep the PIN out of logs and tracebacks
        pin = None if self.pin is None else "***"
        return (
            f"AccessRequest(door_id={self.door_id!r}, reader_id={self.reader_id!r}, card={self.card!r}, "
            f"pin={pin}, direction={self.direction.value!r}, reader_tamper={self.reader_tamper})"
        )


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """An event to emit, as plain data: ``EventFactory(type, source, data, severity)`` makes it real."""

    type: str
    source: str
    data: Mapping[str, Any]
    severity: Severity


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: Reason
    door_id: str
    reader_id: str
    holder_id: str | None
    credential_id: str | None
    antipassback_violation: bool
    extended_unlock: bool  # granted to a holder who needs the door's extended unlock time
    events: tuple[AccessEvent, ...]
    state_changed: bool  # persist the AccessState


def decide(index: AccessIndex, state: AccessState, request: AccessRequest, now: datetime) -> Decision:
    """Decide one request at ``now`` (aware); updates ``state``. See the module docstring."""
    return _Deciding(index, state, request, now).run()


class _Deciding:
    """One decision's working set, so the steps can stay small without passing ten arguments."""

    def __init__(self, index: AccessIndex, state: AccessState, request: AccessRequest, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("the decision time must be timezone-aware")
        self.index = index
        self.state = state
        self.request = request
        self.now = now
        self.holder: Holder | None = None
        self.credential: Credential | None = None
        self.state_changed = False
        self.extra_events: list[AccessEvent] = []

    def run(self) -> Decision:
        request, index = self.request, self.index
        door = index.doors.get(request.door_id)
        if door is None:
            return self.deny(Reason.UNKNOWN_DOOR)
        if request.reader_tamper:
            return self.deny(Reason.READER_TAMPER, Severity.ALARM)
        if request.card is None and request.pin is None:
            return self.deny(Reason.NO_CREDENTIAL)
        if request.card is None and door.mode is not DoorMode.CARD_OR_PIN:
            return self.deny(Reason.CARD_REQUIRED)

        pin_in_play = request.pin is not None and (request.card is None or door.mode is DoorMode.CARD_AND_PIN)
        if pin_in_play and self.state.locked_until(reader_scope(request.reader_id), self.now):
            return self.deny(Reason.LOCKED_OUT)

        if request.card is not None:
            self.credential = index.credential_for_card(request.card.key)
            if self.credential is None:
                return self.deny(Reason.UNKNOWN_CREDENTIAL)
        else:
            assert request.pin is not None
            self.credential = index.credential_for_pin(request.pin)
            if self.credential is None:
                self.count_pin_failure(credential_id=None)
                return self.deny(Reason.WRONG_PIN)
        self.holder = index.holders.get(self.credential.holder_id)
        if self.holder is None:
            return self.deny(Reason.UNKNOWN_CREDENTIAL)

        refusal = self.check_holder_and_credential(door) or self.check_pin(door) or self.check_schedule(door)
        if refusal is not None:
            return self.deny(refusal)
        return self.check_antipassback_and_grant(door)

    # --- the steps ---

    def check_holder_and_credential(self, door: Door) -> Reason | None:
        holder, credential, now = self.holder, self.credential, self.now
        assert holder is not None and credential is not None
        if not (holder.enabled and credential.enabled):
            return Reason.DISABLED
        for window in (holder, credential):
            if window.valid_from is not None and now < window.valid_from:
                return Reason.NOT_YET_VALID
            if window.valid_until is not None and now >= window.valid_until:
                return Reason.EXPIRED
        if door.lockdown and not holder.lockdown_override:
            return Reason.LOCKDOWN
        return None

    def check_pin(self, door: Door) -> Reason | None:
        if door.mode is not DoorMode.CARD_AND_PIN:
            return None
        credential, pin = self.credential, self.request.pin
        assert credential is not None
        if self.state.locked_until(credential_scope(credential.id), self.now):
            return Reason.LOCKED_OUT
        if pin is None:
            return Reason.PIN_REQUIRED
        if credential.pin_hash is None:
            return Reason.PIN_NOT_ENROLLED
        if not self.index.pin_hasher.matches_card_pin(credential.pin_hash, credential.id, pin):
            self.count_pin_failure(credential_id=credential.id)
            return Reason.WRONG_PIN
        if credential_scope(credential.id) in self.state.pin_failures:
            self.state.clear_pin_failures(credential_scope(credential.id))
            self.state_changed = True
        return None

    def check_schedule(self, door: Door) -> Reason | None:
        assert self.holder is not None
        schedule_ids = self.index.schedules_for(self.holder, door.id)
        if not schedule_ids:
            return Reason.NO_ACCESS_LEVEL
        reading = LocalReading.at(self.now, self.index.zone)
        best: Coverage | None = None  # None: every schedule named is missing, which opens nothing
        for schedule_id in schedule_ids:
            compiled = self.index.compiled_schedules.get(schedule_id)
            if compiled is not None:
                coverage = compiled.evaluate(reading)[0]
                if coverage is Coverage.INSIDE:
                    return None
                best = coverage if best is None else max(best, coverage)
        if best is None:
            return Reason.NO_ACCESS_LEVEL
        return Reason.HOLIDAY if best is Coverage.HOLIDAY else Reason.OUTSIDE_SCHEDULE

    def check_antipassback_and_grant(self, door: Door) -> Decision:
        holder = self.holder
        assert holder is not None
        violation = False
        if door.area_from is not None and door.area_to is not None:
            leaving, entering = door.area_from, door.area_to
            if self.request.direction is Direction.OUT:
                leaving, entering = entering, leaving
            entered_area = self.index.areas.get(entering)
            mode = entered_area.antipassback if entered_area is not None else AntiPassback.NONE
            if mode is not AntiPassback.NONE:
                position = self.state.positions.get(holder.id)
                if position is not None and not self.forgiven(position):
                    violation = position.area != leaving
                if violation and mode is AntiPassback.HARD:
                    return self.deny(Reason.ANTIPASSBACK)
            self.state.record_position(holder.id, entering, self.now)
            self.state_changed = True
        self.note_first_person_in(door, holder)
        return self.finish(True, Reason.GRANTED, Severity.WARNING if violation else Severity.INFO, violation)

    def forgiven(self, position: AreaPosition) -> bool:
        """Timed forgiveness, set on the area the holder was last recorded in."""
        area = self.index.areas.get(position.area)
        if area is None or area.forgive_after_s is None:
            return False
        return (self.now - position.since).total_seconds() >= area.forgive_after_s

    def note_first_person_in(self, door: Door, holder: Holder) -> None:
        if not door.first_person_in or holder.kind is not HolderKind.STAFF or door.unlock_schedule is None:
            return
        compiled = self.index.compiled_schedules.get(door.unlock_schedule)
        if compiled is None:
            return
        coverage, occurrence = compiled.evaluate(LocalReading.at(self.now, self.index.zone))
        if (
            coverage is Coverage.INSIDE
            and occurrence is not None
            and self.state.first_person_in.get(door.id) != occurrence
        ):
            self.state.first_person_in[door.id] = occurrence
            self.state_changed = True

    def count_pin_failure(self, credential_id: str | None) -> None:
        site = self.index.site
        scopes = [(reader_scope(self.request.reader_id), site.pin_lockout_reader)]
        if credential_id is not None:
            scopes.append((credential_scope(credential_id), site.pin_lockout_credential))
        for scope, policy in scopes:
            until = self.state.record_pin_failure(scope, self.now, policy)
            if until is not None:
                kind, _, scope_id = scope.partition(":")
                data = {"scope": kind, kind: scope_id, "until": until.isoformat(), "door": self.request.door_id}
                self.extra_events.append(AccessEvent("access.lockout", self.request.reader_id, data, Severity.ALARM))
        self.state_changed = True

    # --- the outcome ---

    def deny(self, reason: Reason, severity: Severity = Severity.WARNING) -> Decision:
        return self.finish(False, reason, severity, False)

    def finish(self, granted: bool, reason: Reason, severity: Severity, violation: bool) -> Decision:
        request = self.request
        holder_id = self.holder.id if self.holder is not None else None
        credential_id = self.credential.id if self.credential is not None else None
        data: dict[str, Any] = {
            "door": request.door_id,
            "reader": request.reader_id,
            "direction": request.direction.value,
            "reason": reason.value,
            "holder": holder_id,
            "credential": credential_id,
        }
        if request.card is not None:
            card = request.card
            data["card"] = {"format": card.format, "facility": card.facility, "number": card.number}
        if violation:
            data["antipassback_violation"] = True
        extended = granted and self.holder is not None and self.holder.extended_unlock
        if extended:
            data["extended_unlock"] = True
        event = AccessEvent("access.granted" if granted else "access.denied", request.reader_id, data, severity)
        return Decision(
            granted=granted,
            reason=reason,
            door_id=request.door_id,
            reader_id=request.reader_id,
            holder_id=holder_id,
            credential_id=credential_id,
            antipassback_violation=violation,
            extended_unlock=extended,
            events=(event, *self.extra_events),
            state_changed=self.state_changed,
        )


def may_start_scheduled_unlock(index: AccessIndex, state: AccessState, door_id: str, now: datetime) -> bool:
    """Whether the door's scheduled unlock (free passage) should be in force at ``now``.

    True while ``now`` is inside the door's unlock schedule, and — for a first-person-in door —
    only once a staff member has been granted at this door inside *this* occurrence of the window
    (yesterday's grant does not open today's window). Lockdown always keeps the door locked.
    """
    door = index.doors.get(door_id)
    if door is None or door.unlock_schedule is None or door.lockdown:
        return False
    compiled = index.compiled_schedules.get(door.unlock_schedule)
    if compiled is None:
        return False
    coverage, occurrence = compiled.evaluate(LocalReading.at(now, index.zone))
    if coverage is not Coverage.INSIDE:
        return False
    return not door.first_person_in or state.first_person_in.get(door_id) == occurrence
