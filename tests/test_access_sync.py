"""Versioned sync: snapshots and deltas give the same index; stale and conflicting input changes nothing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rules.access import (
    AccessDataError,
    AccessIndex,
    AccessItems,
    AccessLevel,
    AccessState,
    Credential,
    CredentialKind,
    DeleteIds,
    Delta,
    Door,
    Holder,
    HolderKind,
    LevelGrant,
    Snapshot,
    StaleDeltaError,
    StaleSnapshotError,
    apply_delta,
    apply_snapshot,
)
from tests.access_helpers import HASHER, MONDAY_10, ask, card_credential, standard_snapshot

# --- fixed examples ------------------------------------------------------------------------------------


def test_a_delta_applies_only_on_its_base_version() -> None:
    index = apply_snapshot(standard_snapshot(version=7), HASHER)
    with pytest.raises(StaleDeltaError) as caught:
        apply_delta(index, Delta(base_version=6, version=7))
    assert (caught.value.current_version, caught.value.base_version) == (7, 6)
    assert apply_delta(index, Delta(base_version=7, version=8)).version == 8
    assert index.version == 7  # the old index is untouched


def test_an_older_snapshot_is_refused_unless_forced() -> None:
    index = apply_snapshot(standard_snapshot(version=7), HASHER)
    with pytest.raises(StaleSnapshotError):
        apply_snapshot(standard_snapshot(version=6), HASHER, current=index)
    assert apply_snapshot(standard_snapshot(version=6), HASHER).version == 6


def test_a_conflicting_delta_is_rejected_and_changes_nothing() -> None:
    index = apply_snapshot(standard_snapshot(), HASHER)
    before = index.to_snapshot()
    stolen_card = card_credential("bob", 1001).model_copy(update={"id": "bob.second"})  # alice's card number
    with pytest.raises(AccessDataError, match="both use card"):
        apply_delta(index, Delta(base_version=1, version=2, upsert=AccessItems(credentials=(stolen_card,))))
    same_pin = Credential(id="bob.pin", holder_id="bob", kind=CredentialKind.PIN, pin_hash=HASHER.pin_only("4711"))
    with pytest.raises(AccessDataError, match="same PIN") as caught:
        apply_delta(index, Delta(base_version=1, version=2, upsert=AccessItems(credentials=(same_pin,))))
    assert "4711" not in str(caught.value)
    assert index.to_snapshot() == before
    assert ask(index, AccessState(), MONDAY_10, door="side", card_number=1001).holder_id == "alice"


def test_a_card_can_move_between_credentials_in_one_delta() -> None:
    index = apply_snapshot(standard_snapshot(), HASHER)
    moved = card_credential("bob", 1001).model_copy(update={"id": "bob.second"})
    delta = Delta(
        base_version=1,
        version=2,
        upsert=AccessItems(credentials=(moved,)),
        delete=DeleteIds(credentials=("alice.card",)),
    )
    patched = apply_delta(index, delta)
    assert ask(patched, AccessState(), MONDAY_10, door="side", card_number=1001).holder_id == "bob"
    assert patched == AccessIndex.build(patched.to_snapshot(), HASHER)


def test_delta_shape_is_validated() -> None:
    with pytest.raises(ValidationError, match="base_version"):
        Delta(base_version=3, version=5)
    with pytest.raises(ValidationError, match="both upserted and deleted"):
        Delta(
            base_version=1,
            version=2,
            upsert=AccessItems(doors=(Door(id="d", name="D"),)),
            delete=DeleteIds(doors=("d",)),
        )
    with pytest.raises(ValidationError, match="more than once"):
        AccessItems(doors=(Door(id="d", name="D"), Door(id="d", name="E")))


def test_snapshot_and_delta_survive_json() -> None:
    snapshot = standard_snapshot()
    again = Snapshot.model_validate_json(snapshot.model_dump_json())
    assert again == snapshot
    assert AccessIndex.build(again, HASHER) == AccessIndex.build(snapshot, HASHER)
    delta = Delta(
        base_version=1, version=2, upsert=AccessItems(holders=snapshot.holders[:2]), delete=DeleteIds(doors=("vault",))
    )
    assert Delta.model_validate_json(delta.model_dump_json()) == delta


def test_dangling_references_are_listed_and_fail_closed() -> None:
    orphan = card_credential("nobody", 3000)
    level = AccessLevel(id="ghost", name="Ghost", grants=(LevelGrant(door_group="all", schedule="missing"),))
    ghost_holder = Holder(id="ghost", name="Ghost", kind=HolderKind.STAFF, access_levels=("ghost",))
    snapshot = standard_snapshot()
    snapshot = snapshot.model_copy(
        update={
            "credentials": (*snapshot.credentials, orphan, card_credential("ghost", 3001)),
            "holders": (*snapshot.holders, ghost_holder),
            "access_levels": (*snapshot.access_levels, level),
        }
    )
    index = AccessIndex.build(snapshot, HASHER)
    assert index.problems() == [
        "credential 'nobody.card': unknown holder 'nobody'",
        "access level 'ghost': unknown schedule 'missing'",
    ]
    assert ask(index, AccessState(), MONDAY_10, door="side", card_number=3000).reason == "unknown_credential"
    assert ask(index, AccessState(), MONDAY_10, door="side", card_number=3001).reason == "no_access_level"
