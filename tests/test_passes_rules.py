"""Visitor passes as pure rules (rules/access/passes.py), over the fixed compound of access_helpers.

Alice (resident of 3-201) reaches gate, garage, side (card_or_pin) and main; dave (1-101) is
disabled; the compound's time zone is Europe/Berlin.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from rules.access import AccessIndex, AccessState, Holder, HolderKind
from rules.access.passes import (
    MAX_VALIDITY,
    PassBook,
    PassError,
    PassHasher,
    PassKind,
    PassOrder,
    PassReason,
    VisitorPass,
    check_pass,
    decide_pass,
    is_live,
    new_pass,
    residents_of,
)
from tests.access_helpers import MONDAY_10, local, standard_index, standard_snapshot, utc

KEY = b"test-pin-key-0123456789abcdef"
HASHER = PassHasher(KEY)
NOW = MONDAY_10


def issue(
    index: AccessIndex,
    book: PassBook,
    *,
    kind: PassKind = PassKind.PIN,
    doors: tuple[str, ...] = ("side",),
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    max_uses: int = 1,
    pin: str | None = None,
    apartment: str = "3-201",
    now: datetime = NOW,
    pass_id: str = "vp-1",
) -> tuple[VisitorPass, str]:
    order = PassOrder(
        visitor="Uncle Wei",
        kind=kind,
        doors=doors,
        valid_from=valid_from,
        valid_until=valid_until or now + timedelta(days=1),
        max_uses=max_uses,
        pin=pin,
    )
    made, secret = new_pass(
        order,
        pass_id=pass_id,
        issued_by="api:alice",
        apartment=apartment,
        holders=residents_of(index, apartment),
        index=index,
        book=book,
        hasher=HASHER,
        now=now,
    )
    book.put(made)
    return made, secret


def use(
    index: AccessIndex,
    state: AccessState,
    book: PassBook,
    secret: str,
    now: datetime,
    *,
    door: str = "side",
    via: str = "side-r",
    keypad: bool = True,
) -> tuple[PassReason, dict]:
    decision = decide_pass(
        index, state, book, door_id=door, via=via, secret_hashes=HASHER.lookup_keys(secret), now=now, keypad=keypad
    )
    if decision.granted:
        assert decision.visitor_pass is not None
        book.put(decision.visitor_pass)
    return decision.reason, dict(decision.events[0].data)


def test_a_generated_pin_pass_opens_its_doors_and_keeps_only_a_keyed_hash() -> None:
    index, book, state = standard_index(), PassBook(), AccessState()
    made, pin = issue(index, book, doors=("side", "gate"))
    assert re.fullmatch(r"\d{6}", pin)
    assert pin not in made.model_dump_json() and pin not in repr(made)
    assert "secret_hash" not in made.public()
    assert made.secret_hash == HASHER.pin(pin) != PassHasher(b"another-key-0123456789abcdef").pin(pin)
    assert made.on_behalf_of == ("alice",)

    reason, data = use(index, state, book, pin, NOW + timedelta(minutes=5))
    assert reason is PassReason.GRANTED
    assert data["reason"] == "visitor_pass"
    assert (data["pass"], data["issued_by"], data["apartment"], data["uses"]) == ("vp-1", "api:alice", "3-201", 1)
    assert pin not in repr(data)
    assert book.by_id["vp-1"].uses == 1


def test_qr_tokens_are_long_random_and_only_their_own_hash_matches() -> None:
    index, book = standard_index(), PassBook()
    tokens = set()
    for n in range(50):
        made, token = issue(index, book, kind=PassKind.QR, pass_id=f"vp-{n}")
        assert len(token) >= 22 and re.fullmatch(r"[A-Za-z0-9_-]+", token)  # >= 128 bits, URL-safe
        tokens.add(token)
        assert book.lookup(HASHER.token(token)) == made
    assert len(tokens) == 50
    token = tokens.pop()
    assert book.lookup(HASHER.token(token[:-1] + ("A" if token[-1] != "A" else "B"))) is None
    with pytest.raises(PassError, match="QR pass has no PIN"):
        issue(index, book, kind=PassKind.QR, pin="123456")


def test_doors_beyond_the_apartments_access_and_unknown_apartments_are_refused() -> None:
    index, book = standard_index(), PassBook()
    with pytest.raises(PassError, match="office"):  # alice's levels do not reach the management office
        issue(index, book, doors=("side", "office"))
    with pytest.raises(PassError, match="no resident"):
        issue(index, book, apartment="9-999")
    with pytest.raises(PassError, match="not reachable"):  # dave is disabled: his apartment reaches nothing
        issue(index, book, apartment="1-101", doors=("gate",))
    assert book.by_id == {}


def test_validity_window_boundaries_expiry_and_not_yet_valid() -> None:
    index, book, state = standard_index(), PassBook(), AccessState()
    start, end = NOW + timedelta(hours=2), NOW + timedelta(hours=5)
    made, pin = issue(index, book, valid_from=start, valid_until=end, max_uses=5)
    assert check_pass(made, "side", start - timedelta(seconds=1)) is PassReason.NOT_YET_VALID
    assert use(index, state, book, pin, start - timedelta(seconds=1))[0] is PassReason.NOT_YET_VALID
    assert use(index, state, book, pin, start)[0] is PassReason.GRANTED  # from: inclusive
    assert use(index, state, book, pin, end - timedelta(seconds=1))[0] is PassReason.GRANTED
    assert use(index, state, book, pin, end)[0] is PassReason.EXPIRED  # until: exclusive
    assert not is_live(book.by_id["vp-1"], end)


def test_windows_are_instants_so_dst_changes_neither_stretch_nor_shrink_them() -> None:
    index, book, state = standard_index(), PassBook(), AccessState()
    # Spring forward (Berlin, 29 March 2026: 02:00 -> 03:00): 22:00 to 04:00 local is 5 hours, not 6.
    start, end = local(2026, 3, 28, 22), local(2026, 3, 29, 4)
    assert end - start == timedelta(hours=5)
    _, pin = issue(index, book, valid_from=start, valid_until=end, max_uses=10, now=start - timedelta(hours=1))
    assert use(index, state, book, pin, utc(2026, 3, 29, 1, 30))[0] is PassReason.GRANTED  # 03:30 CEST
    assert use(index, state, book, pin, utc(2026, 3, 29, 2, 0))[0] is PassReason.EXPIRED  # 04:00 CEST

    # Fall back (25 October 2026: 02:00-03:00 happens twice): until the first 02:30 (CEST).
    book = PassBook()
    first_0230 = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    _, pin = issue(index, book, valid_until=first_0230, max_uses=10, now=utc(2026, 10, 24, 20))
    assert use(index, state, book, pin, utc(2026, 10, 25, 0, 15))[0] is PassReason.GRANTED  # 02:15 CEST
    # 02:15 again on the wall clock, now CET: an hour later in fact, so expired.
    assert use(index, state, book, pin, utc(2026, 10, 25, 1, 15))[0] is PassReason.EXPIRED

    with pytest.raises(PassError, match="time zone"):
        issue(index, book, valid_until=datetime(2026, 10, 26, 12), now=utc(2026, 10, 25, 12))
    with pytest.raises(ValueError, match="aware"):
        check_pass(None, "side", datetime(2026, 3, 2, 10))


def test_window_length_and_start_are_bounded() -> None:
    index, book = standard_index(), PassBook()
    with pytest.raises(PassError, match="at most 30 days"):
        issue(index, book, valid_until=NOW + MAX_VALIDITY + timedelta(seconds=1))
    with pytest.raises(PassError, match="in the past"):
        issue(index, book, valid_until=NOW - timedelta(seconds=1))
    with pytest.raises(PassError, match="valid_from must be before"):
        issue(index, book, valid_from=NOW + timedelta(hours=2), valid_until=NOW + timedelta(hours=1))
    with pytest.raises(PassError, match="days ahead"):
        issue(index, book, valid_from=NOW + timedelta(days=200), valid_until=NOW + timedelta(days=201))
    issue(index, book, valid_until=NOW + MAX_VALIDITY)  # exactly 30 days is fine


def test_uses_are_counted_and_a_used_up_pass_is_refused() -> None:
    index, book, state = standard_index(), PassBook(), AccessState()
    _, pin = issue(index, book, max_uses=2)
    assert [use(index, state, book, pin, NOW)[0] for _ in range(3)] == [
        PassReason.GRANTED,
        PassReason.GRANTED,
        PassReason.USED_UP,
    ]
    assert book.by_id["vp-1"].uses == 2
    reason, data = use(index, state, book, pin, NOW)
    assert reason is PassReason.USED_UP and data["reason"] == "used_up" and data["pass"] == "vp-1"
    # A used-up pass no longer holds its PIN: a new pass may take it.
    issue(index, book, pin=pin, pass_id="vp-2")
    assert use(index, state, book, pin, NOW)[1]["pass"] == "vp-2"


def test_revoked_wrong_door_and_card_only_doors_are_refused() -> None:
    index, book, state = standard_index(), PassBook(), AccessState()
    _, pin = issue(index, book, doors=("side", "gate"), max_uses=5)
    assert use(index, state, book, pin, NOW, door="garage", keypad=False)[0] is PassReason.WRONG_DOOR
    # The gate is a card door: a PIN typed alone at its reader is no credential there.
    assert use(index, state, book, pin, NOW, door="gate", via="gate-r")[0] is PassReason.CARD_REQUIRED
    # At an intercom panel (not an OSDP keypad) the pass opens the gate.
    assert use(index, state, book, pin, NOW, door="gate", via="intercom:panel-1", keypad=False)[0] is (
        PassReason.GRANTED
    )
    book.put(book.by_id["vp-1"].model_copy(update={"revoked": True}))
    assert use(index, state, book, pin, NOW)[0] is PassReason.REVOKED
    assert use(index, state, book, pin, NOW, door="nowhere")[0] is PassReason.UNKNOWN_DOOR
    assert book.by_id["vp-1"].uses == 1


def test_a_pass_dies_with_its_issuers_access_and_lockdown_holds() -> None:
    index, book, state = standard_index(), PassBook(), AccessState()
    _, pin = issue(index, book, max_uses=5)
    snapshot = standard_snapshot(2)
    holders = tuple(h.model_copy(update={"enabled": False}) if h.id == "alice" else h for h in snapshot.holders)
    gone = AccessIndex.build(snapshot.model_copy(update={"holders": holders}), index.pin_hasher)
    assert use(gone, state, book, pin, NOW)[0] is PassReason.ISSUER_NO_ACCESS
    doors = tuple(d.model_copy(update={"lockdown": True}) if d.id == "side" else d for d in snapshot.doors)
    locked = AccessIndex.build(snapshot.model_copy(update={"doors": doors}), index.pin_hasher)
    assert use(locked, state, book, pin, NOW)[0] is PassReason.LOCKDOWN
    assert book.by_id["vp-1"].uses == 0


def test_guessing_locks_the_reader_out_even_for_a_valid_pass() -> None:
    index, book, state = standard_index(), PassBook(), AccessState()
    _, pin = issue(index, book, max_uses=5)
    policy = index.site.pin_lockout_reader
    guesses = [f"{n:06d}" for n in range(policy.max_failures) if f"{n:06d}" != pin]
    events = []
    for guess in guesses[: policy.max_failures]:
        decision = decide_pass(
            index, state, book, door_id="side", via="side-r", secret_hashes=HASHER.lookup_keys(guess), now=NOW
        )
        assert decision.reason is PassReason.UNKNOWN_PASS and decision.state_changed
        events += decision.events
    lockouts = [e for e in events if e.type == "access.lockout"]
    assert len(lockouts) == 1 and lockouts[0].data["reader"] == "side-r"
    assert use(index, state, book, pin, NOW + timedelta(seconds=1))[0] is PassReason.LOCKED_OUT
    # Another panel is not locked out, and the lockout ends.
    assert use(index, state, book, pin, NOW, via="intercom:panel-2", keypad=False)[0] is PassReason.GRANTED
    later = NOW + timedelta(seconds=policy.lockout_s + 1)
    assert use(index, state, book, pin, later)[0] is PassReason.GRANTED


@pytest.mark.parametrize(
    "entered",
    ["", "1", "123", "123456789", "12a4", "١٢٣٤", "12\x0034", "a/b+c=" * 5, "x" * 10_000, "💥" * 30, " 123456"],
)
def test_garbage_at_a_keypad_or_scanner_matches_nothing(entered: str) -> None:
    assert HASHER.lookup_keys(entered) == []
    index, book, state = standard_index(), PassBook(), AccessState()
    issue(index, book)
    decision = decide_pass(index, state, book, door_id="side", via="p", secret_hashes=HASHER.lookup_keys(entered),
                           now=NOW)
    assert decision.reason is PassReason.UNKNOWN_PASS and not decision.granted


def test_chosen_pins_are_checked_and_never_echoed() -> None:
    index, book = standard_index(), PassBook()
    with pytest.raises(PassError) as refused:
        issue(index, book, pin="12ab")
    assert "12ab" not in str(refused.value)
    # 4711 is alice's PIN-only credential: a pass with it could not be told apart.
    with pytest.raises(PassError, match="cannot be used") as refused:
        issue(index, book, pin="4711")
    assert "4711" not in str(refused.value)
    made, pin = issue(index, book, pin="20260302")
    assert pin == "20260302" and made.secret_hash == HASHER.pin("20260302")
    with pytest.raises(PassError, match="cannot be used"):  # a live pass holds it
        issue(index, book, pin="20260302", pass_id="vp-2")
    order = PassOrder(visitor="x", kind=PassKind.PIN, doors=("side",), valid_until=NOW, pin="1234")
    assert "1234" not in repr(order)


def test_hostile_pass_data_does_not_validate() -> None:
    index, book = standard_index(), PassBook()
    made, _ = issue(index, book)
    good = made.model_dump(mode="json")
    for bad in (
        {"visitor": "Eve\x1b[2J"},
        {"visitor": ""},
        {"visitor": "x" * 129},
        {"doors": ["side", "side"]},
        {"doors": []},
        {"doors": [f"d{n}" for n in range(33)]},
        {"doors": ["side; DROP TABLE"]},
        {"max_uses": 0},
        {"max_uses": 101},
        {"uses": 2},
        {"uses": -1},
        {"secret_hash": "1234"},
        {"valid_until": "2026-03-03T10:00:00"},  # no offset
        {"id": "../etc/passwd"},
        {"kind": "fingerprint"},
        {"surprise": True},
    ):
        with pytest.raises(ValidationError):
            VisitorPass.model_validate({**good, **bad})
    with pytest.raises(PassError, match="visitor"):
        new_pass(
            PassOrder(visitor="\x00", kind=PassKind.PIN, doors=("side",), valid_until=NOW + timedelta(hours=1)),
            pass_id="vp-x", issued_by="api:alice", apartment="3-201", holders=residents_of(index, "3-201"),
            index=index, book=book, hasher=HASHER, now=NOW,
        )


def test_an_apartment_cannot_hoard_live_passes() -> None:
    index, book = standard_index(), PassBook()
    holders = residents_of(index, "3-201")
    order = PassOrder(visitor="v", kind=PassKind.QR, doors=("side",), valid_until=NOW + timedelta(hours=1))
    for n in range(3):
        book.put(new_pass(order, pass_id=f"vp-{n}", issued_by="a", apartment="3-201", holders=holders, index=index,
                          book=book, hasher=HASHER, now=NOW, max_live_per_apartment=3)[0])
    with pytest.raises(PassError, match="live passes"):
        new_pass(order, pass_id="vp-9", issued_by="a", apartment="3-201", holders=holders, index=index, book=book,
                 hasher=HASHER, now=NOW, max_live_per_apartment=3)
    # Expired ones do not count.
    later = NOW + timedelta(hours=2)
    order = PassOrder(visitor="v", kind=PassKind.QR, doors=("side",), valid_until=later + timedelta(hours=1))
    new_pass(order, pass_id="vp-9", issued_by="a", apartment="3-201", holders=holders, index=index, book=book,
             hasher=HASHER, now=later, max_live_per_apartment=3)


def test_the_book_rebuilds_the_same_lookups_from_stored_passes() -> None:
    index, book = standard_index(), PassBook()
    first, pin = issue(index, book, max_uses=1)
    book.put(first.model_copy(update={"uses": 1}))  # used up: its PIN is free again
    second, _ = issue(index, book, pin=pin, pass_id="vp-2", now=NOW + timedelta(minutes=1))
    stored = [VisitorPass.model_validate_json(p.model_dump_json()) for p in book.by_id.values()]
    for order in (stored, list(reversed(stored))):
        again = PassBook(order)
        assert again.by_id == book.by_id
        assert again.lookup(HASHER.pin(pin)) == second  # the newer pass holds the PIN
    assert [p.id for p in book.of_apartment("3-201")] == ["vp-2", "vp-1"]
    assert book.of_apartment("2-202") == []


def test_residents_of_lists_only_resident_holders_of_the_apartment() -> None:
    index = standard_index()
    assert [h.id for h in residents_of(index, "3-201")] == ["alice"]
    staff = Holder(id="sam", name="Sam", kind=HolderKind.STAFF, apartment="3-201", access_levels=("staff-all",))
    snapshot = standard_snapshot()
    index = AccessIndex.build(snapshot.model_copy(update={"holders": (*snapshot.holders, staff)}), index.pin_hasher)
    assert [h.id for h in residents_of(index, "3-201")] == ["alice"]


def test_the_pass_rules_do_no_io_and_read_no_clock() -> None:
    import ast
    from pathlib import Path

    import rules.access.passes

    allowed = ("__future__", "collections.abc", "contextlib", "dataclasses", "datetime", "enum", "hashlib", "hmac",
               "re", "secrets", "typing", "pydantic")
    path = Path(rules.access.passes.__file__)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                assert name in allowed or name.startswith(("edge.events", "rules.access")), name
        if isinstance(node, ast.Attribute):
            assert node.attr not in ("now", "utcnow", "today", "sleep", "monotonic", "open"), node.attr
