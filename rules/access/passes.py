"""Visitor passes: a PIN or QR token a resident hands out, valid for a window, a number of uses and
some doors. Pure: no I/O and no clock reads (the time is an argument); the edge stores the passes
(edge/access_store.py) and journals what :func:`decide_pass` says.

Secrets: only a keyed hash is kept (HMAC-SHA256 under the box's ``pin.key``, like
:class:`rules.access.pin.PinHasher`, with its own salts so a pass PIN never hashes like a
credential PIN). QR tokens are 192 random bits (``secrets.token_urlsafe``); PINs are 6 random digits
unless the resident chooses 4-8 digits. A PIN's small space is protected the same way as credential
PINs: wrong entries count towards the reader's (or panel's) lockout.

A pass is looked up by its secret's hash in O(1) (:class:`PassBook`). Two live passes cannot share a
secret (they could not be told apart): a new pass takes over the hash only from a dead one.

Who may open what: a pass names doors, and every one of them must be reachable through the access
levels of the resident holders it is issued on behalf of (:func:`doors_of`). That is checked again
at each use, so a pass dies with its issuer's access (moved out, disabled, level removed).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AfterValidator, AwareDatetime, Field, model_validator

from edge.events import Severity
from rules.access.decide import AccessEvent
from rules.access.index import AccessIndex
from rules.access.model import DoorMode, Holder, HolderKind, Id, Name, _Frozen, _printable
from rules.access.pin import MIN_KEY_BYTES, check_pin_format
from rules.access.state import AccessState, reader_scope

MAX_VALIDITY = timedelta(days=30)  # a pass is for a visit, not a tenancy
MAX_START_AHEAD = timedelta(days=90)  # how far ahead a pass may be issued
MAX_USES = 100
MAX_DOORS = 32
PIN_DIGITS = 6  # generated PINs
QR_TOKEN_BYTES = 24  # 192 bits; token_urlsafe gives 32 characters
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")  # what a QR token can look like; anything else is no token
_SCHEME = "hs256$"
PASS_HASH_PATTERN = r"^hs256\$[0-9a-f]{64}$"
_PIN_SALT = b"pass-pin"
_QR_SALT = b"pass-qr"
GENERATE_TRIES = 50  # a fresh 6-digit PIN colliding 50 times means the site is full of passes

Apartment = Annotated[str, Field(min_length=1, max_length=32), AfterValidator(_printable)]
Actor = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_printable)]


class PassKind(StrEnum):
    PIN = "pin"
    QR = "qr"


class PassReason(StrEnum):
    GRANTED = "granted"
    UNKNOWN_DOOR = "unknown_door"
    READER_TAMPER = "reader_tamper"
    CARD_REQUIRED = "card_required"
    LOCKED_OUT = "locked_out"
    UNKNOWN_PASS = "unknown_pass"
    REVOKED = "revoked"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    USED_UP = "used_up"
    WRONG_DOOR = "wrong_door"
    LOCKDOWN = "lockdown"
    ISSUER_NO_ACCESS = "issuer_no_access"  # the residents it was issued for no longer reach the door


class PassError(ValueError):
    """A pass cannot be issued as asked; the message says why and never holds the secret."""


class VisitorPass(_Frozen):
    id: Id
    issued_by: Actor  # the user (``api:<name>``) or ``platform`` that asked for it
    on_behalf_of: tuple[Id, ...] = Field(min_length=1, max_length=64)  # the resident holders it hangs on
    apartment: Apartment
    visitor: Name
    kind: PassKind
    secret_hash: str = Field(pattern=PASS_HASH_PATTERN)
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    max_uses: int = Field(ge=1, le=MAX_USES)
    uses: int = Field(default=0, ge=0)
    doors: tuple[Id, ...] = Field(min_length=1, max_length=MAX_DOORS)
    revoked: bool = False
    created_at: AwareDatetime

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.valid_from >= self.valid_until:
            raise ValueError("valid_from must be before valid_until")
        if self.valid_until - self.valid_from > MAX_VALIDITY:
            raise ValueError(f"a pass is valid for at most {MAX_VALIDITY.days} days")
        if len(set(self.doors)) != len(self.doors):
            raise ValueError("doors must not repeat")
        if self.uses > self.max_uses:
            raise ValueError("uses cannot exceed max_uses")
        return self

    def public(self) -> dict[str, Any]:
        """The pass as shown to people and on the wire: everything but the secret's hash."""
        return self.model_dump(mode="json", exclude={"secret_hash"})


class PassHasher:
    """Keyed hashes of pass secrets under the site's PIN key (at least 16 bytes)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the PIN key must be at least {MIN_KEY_BYTES} bytes")
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def _digest(self, salt: bytes, secret: str) -> str:
        mac = self._keyed.copy()
        mac.update(salt)
        mac.update(b"\x00")
        mac.update(secret.encode("ascii"))  # both formats are checked to be ASCII first
        return _SCHEME + mac.hexdigest()

    def pin(self, pin: str) -> str:
        check_pin_format(pin)
        return self._digest(_PIN_SALT, pin)

    def token(self, token: str) -> str:
        if not (token.isascii() and TOKEN_RE.match(token)):
            raise ValueError("not a pass token")
        return self._digest(_QR_SALT, token)

    def lookup_keys(self, entered: str) -> list[str]:
        """The hashes ``entered`` could be (a typed PIN, a scanned token); empty if neither."""
        keys = []
        for make in (self.pin, self.token):
            with contextlib.suppress(ValueError):
                keys.append(make(entered))
        return keys

    def hash_of(self, kind: PassKind, secret: str) -> str:
        return self.pin(secret) if kind is PassKind.PIN else self.token(secret)


def generate_secret(kind: PassKind) -> str:
    if kind is PassKind.QR:
        return secrets.token_urlsafe(QR_TOKEN_BYTES)
    return f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"


def is_live(p: VisitorPass, now: datetime) -> bool:
    """Could still open a door now or later (not revoked, used up or expired)."""
    return not p.revoked and p.uses < p.max_uses and now < p.valid_until


class PassBook:
    """All stored passes by id, and the live secret hashes -> pass id for the O(1) lookup."""

    def __init__(self, passes: Iterable[VisitorPass] = ()) -> None:
        self.by_id: dict[str, VisitorPass] = {}
        self.by_hash: dict[str, str] = {}
        for p in sorted(passes, key=lambda p: p.created_at):
            self.put(p)

    def put(self, p: VisitorPass) -> None:
        """Add or update a pass; a newer pass takes its hash over (the caller checked it was free)."""
        old = self.by_id.get(p.id)
        if old is not None and self.by_hash.get(old.secret_hash) == old.id and old.secret_hash != p.secret_hash:
            del self.by_hash[old.secret_hash]
        self.by_id[p.id] = p
        self.by_hash[p.secret_hash] = p.id

    def lookup(self, secret_hash: str) -> VisitorPass | None:
        pass_id = self.by_hash.get(secret_hash)
        return None if pass_id is None else self.by_id[pass_id]

    def taken(self, secret_hash: str, now: datetime) -> bool:
        held = self.lookup(secret_hash)
        return held is not None and is_live(held, now)

    def of_apartment(self, apartment: str | None) -> list[VisitorPass]:
        """Passes of one apartment (None: all), newest first."""
        found = [p for p in self.by_id.values() if apartment is None or p.apartment == apartment]
        return sorted(found, key=lambda p: (p.created_at, p.id), reverse=True)

    def live_count(self, apartment: str, now: datetime) -> int:
        return sum(1 for p in self.by_id.values() if p.apartment == apartment and is_live(p, now))


# --- who may open what ------------------------------------------------------------------------------


def residents_of(index: AccessIndex, apartment: str) -> list[Holder]:
    """The apartment's resident holders (enabled or not: the use-time check looks at that)."""
    return sorted(
        (h for h in index.holders.values() if h.kind is HolderKind.RESIDENT and h.apartment == apartment),
        key=lambda h: h.id,
    )


def doors_of(index: AccessIndex, holders: Iterable[Holder], now: datetime) -> set[str]:
    """Doors the holders' access levels reach (whatever the schedule), for holders usable at ``now``."""
    doors: set[str] = set()
    for holder in holders:
        if not _holder_usable(holder, now):
            continue
        for level_id in holder.access_levels:
            doors.update(index.level_doors.get(level_id, {}))
    return doors & set(index.doors)


def _holder_usable(holder: Holder, now: datetime) -> bool:
    if not holder.enabled:
        return False
    if holder.valid_from is not None and now < holder.valid_from:
        return False
    return holder.valid_until is None or now < holder.valid_until


@dataclass(frozen=True, slots=True)
class PassOrder:
    """What a resident (or the platform on their behalf) asks for; checked by :func:`new_pass`."""

    visitor: str
    kind: PassKind
    doors: tuple[str, ...]
    valid_until: datetime
    valid_from: datetime | None = None  # None: now
    max_uses: int = 1
    pin: str | None = field(default=None, repr=False)  # the resident's chosen PIN; never in reprs


def new_pass(
    order: PassOrder,
    *,
    pass_id: str,
    issued_by: str,
    apartment: str,
    holders: list[Holder],
    index: AccessIndex,
    book: PassBook,
    hasher: PassHasher,
    now: datetime,
    max_live_per_apartment: int = 50,
) -> tuple[VisitorPass, str]:
    """A new pass and its secret (shown once). Raises PassError (nothing stored) when refused."""
    if now.tzinfo is None:
        raise ValueError("the time must be timezone-aware")
    if not holders:
        raise PassError(f"apartment {apartment!r} has no resident in the access data")
    valid_from = order.valid_from or now
    if valid_from.tzinfo is None or order.valid_until.tzinfo is None:
        raise PassError("valid_from and valid_until need a time zone offset")
    if order.valid_until <= now:
        raise PassError("valid_until is in the past")
    if valid_from > now + MAX_START_AHEAD:
        raise PassError(f"a pass may start at most {MAX_START_AHEAD.days} days ahead")
    if order.kind is PassKind.QR and order.pin is not None:
        raise PassError("a QR pass has no PIN")
    if book.live_count(apartment, now) >= max_live_per_apartment:
        raise PassError(f"apartment {apartment!r} already has {max_live_per_apartment} live passes; revoke some")
    if not order.doors:
        raise PassError("name at least one door")
    reachable = doors_of(index, holders, now)
    beyond = sorted(set(order.doors) - reachable)
    if beyond:
        raise PassError(f"doors not reachable with apartment {apartment!r}'s access: {', '.join(beyond)}")

    if order.pin is not None:
        try:
            secret_hash = hasher.pin(order.pin)
        except ValueError as exc:
            raise PassError(str(exc)) from None
        # A chosen PIN that is someone's credential PIN or a live pass's could not be told apart.
        if book.taken(secret_hash, now) or index.credential_for_pin(order.pin) is not None:
            raise PassError("this PIN cannot be used; choose another or let the box generate one")
        secret = order.pin
    else:
        secret, secret_hash = _fresh_secret(order.kind, hasher, lambda s, h: _free(s, h, order.kind, index, book, now))
    try:
        made = VisitorPass(
            id=pass_id,
            issued_by=issued_by,
            on_behalf_of=tuple(h.id for h in holders),
            apartment=apartment,
            visitor=order.visitor,
            kind=order.kind,
            secret_hash=secret_hash,
            valid_from=valid_from,
            valid_until=order.valid_until,
            max_uses=order.max_uses,
            doors=order.doors,
            created_at=now,
        )
    except ValueError as exc:  # pydantic's ValidationError included; its text holds no secret
        raise PassError(_first_error(exc)) from None
    return made, secret


def _free(secret: str, secret_hash: str, kind: PassKind, index: AccessIndex, book: PassBook, now: datetime) -> bool:
    if book.taken(secret_hash, now):
        return False
    return kind is not PassKind.PIN or index.credential_for_pin(secret) is None


def _fresh_secret(kind: PassKind, hasher: PassHasher, free: Callable[[str, str], bool]) -> tuple[str, str]:
    for _ in range(GENERATE_TRIES):
        secret = generate_secret(kind)
        secret_hash = hasher.hash_of(kind, secret)
        if free(secret, secret_hash):
            return secret, secret_hash
    raise PassError("no free PIN found; revoke old passes or use a QR pass")


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return str(exc)


# --- using a pass -----------------------------------------------------------------------------------


def check_pass(p: VisitorPass | None, door_id: str, now: datetime) -> PassReason:
    """The pass's own verdict at ``door_id`` and ``now``: GRANTED or why not."""
    if now.tzinfo is None:
        raise ValueError("the time must be timezone-aware")
    if p is None:
        return PassReason.UNKNOWN_PASS
    if p.revoked:
        return PassReason.REVOKED
    if now < p.valid_from:
        return PassReason.NOT_YET_VALID
    if now >= p.valid_until:
        return PassReason.EXPIRED
    if p.uses >= p.max_uses:
        return PassReason.USED_UP
    if door_id not in p.doors:
        return PassReason.WRONG_DOOR
    return PassReason.GRANTED


@dataclass(frozen=True, slots=True)
class PassDecision:
    granted: bool
    reason: PassReason
    visitor_pass: VisitorPass | None  # the pass after this use (uses counted on a grant)
    events: tuple[AccessEvent, ...]
    state_changed: bool  # persist the AccessState (a failure was counted)


def decide_pass(
    index: AccessIndex,
    state: AccessState,
    book: PassBook,
    *,
    door_id: str,
    via: str,
    secret_hashes: Iterable[str],
    now: datetime,
    keypad: bool = False,
    reader_tamper: bool = False,
) -> PassDecision:
    """One attempt to use a pass at ``door_id`` through ``via`` (a reader id, or a panel).

    ``keypad``: typed at an OSDP reader's keypad, where only card_or_pin doors take a PIN alone.
    Attempts that match no pass count towards ``via``'s lockout (the site's reader policy), and a
    locked-out ``via`` refuses every pass. Updates ``state``; the caller stores the returned pass.
    """
    events: list[AccessEvent] = []
    state_changed = False
    found: VisitorPass | None = None
    for secret_hash in secret_hashes:
        found = book.lookup(secret_hash)
        if found is not None:
            break
    door = index.doors.get(door_id)
    if door is None:
        reason = PassReason.UNKNOWN_DOOR
    elif reader_tamper:
        reason = PassReason.READER_TAMPER
    elif keypad and door.mode is not DoorMode.CARD_OR_PIN:
        reason = PassReason.CARD_REQUIRED
    elif state.locked_until(reader_scope(via), now):
        reason = PassReason.LOCKED_OUT
    else:
        reason = check_pass(found, door_id, now)
        if reason is PassReason.UNKNOWN_PASS:
            state_changed = True
            until = state.record_pin_failure(reader_scope(via), now, index.site.pin_lockout_reader)
            if until is not None:
                data = {"scope": "reader", "reader": via, "until": until.isoformat(), "door": door_id}
                events.append(AccessEvent("access.lockout", via, data, Severity.ALARM))
        elif reason is PassReason.GRANTED:
            assert found is not None
            if door.lockdown:
                reason = PassReason.LOCKDOWN
            elif door_id not in doors_of(index, _issuers(index, found), now):
                reason = PassReason.ISSUER_NO_ACCESS
    granted = reason is PassReason.GRANTED
    if granted:
        assert found is not None
        found = found.model_copy(update={"uses": found.uses + 1})
    data: dict[str, Any] = {
        "door": door_id,
        "reader": via,
        "reason": "visitor_pass" if granted else reason.value,
        "holder": None,
        "credential": None,
    }
    if found is not None:
        data.update({"pass": found.id, "issued_by": found.issued_by, "apartment": found.apartment})
        if granted:
            data["uses"] = found.uses
    severity = Severity.INFO if granted else Severity.WARNING
    if reason is PassReason.READER_TAMPER:
        severity = Severity.ALARM
    event = AccessEvent("access.granted" if granted else "access.denied", via, data, severity)
    return PassDecision(granted, reason, found, (event, *events), state_changed)


def _issuers(index: AccessIndex, p: VisitorPass) -> list[Holder]:
    return [h for h in (index.holders.get(i) for i in p.on_behalf_of) if h is not None]


__all__ = [
    "MAX_DOORS",
    "MAX_USES",
    "MAX_VALIDITY",
    "PassBook",
    "PassDecision",
    "PassError",
    "PassHasher",
    "PassKind",
    "PassOrder",
    "PassReason",
    "VisitorPass",
    "check_pass",
    "decide_pass",
    "doors_of",
    "generate_secret",
    "is_live",
    "new_pass",
    "residents_of",
]
