"""Visitor passes in the daemon: issue, revoke, list and use, over the AccessService's store.

The rules are rules/access/passes.py; this wires them to the store (a pass and its use count are
committed in access.db before anything else happens), the journal (every issue, revocation and use
is an event naming the issuing user and apartment, never the secret) and the doors (a granted use
is journaled, committed, and only then handed to the door machine, like a card grant).

Used by edge/passes_api.py (residents, managers), edge/passes_commands.py (the platform, signed
MQTT), AccessService._decide (a PIN typed alone at an OSDP keypad) and AccessService.use_pass
(intercom panels: a keypad code or a scanned QR token).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from edge.access_store import AccessStore
from edge.events import Severity
from rules.access.decide import AccessEvent
from rules.access.passes import (
    PassDecision,
    PassError,
    PassOrder,
    PassReason,
    VisitorPass,
    decide_pass,
    new_pass,
    residents_of,
)
from rules.door import AccessGranted

if TYPE_CHECKING:
    from edge.access import AccessService

SOURCE = "access"


class PassNotFound(LookupError):
    """No such pass, or not one the caller may see (the same answer, so ids cannot be probed)."""


class PassDesk:
    def __init__(self, service: AccessService) -> None:
        self.service = service

    @property
    def _store(self) -> AccessStore:
        return self.service.store

    def visible(self, apartment: str | None) -> list[VisitorPass]:
        """The passes of one apartment (None: every pass, for managers), newest first."""
        return self._store.passes.of_apartment(apartment)

    def get(self, pass_id: str, apartment: str | None) -> VisitorPass:
        found = self._store.passes.by_id.get(pass_id)
        if found is None or (apartment is not None and found.apartment != apartment):
            raise PassNotFound(f"no pass {pass_id!r}")
        return found

    async def issue(
        self, order: PassOrder, *, apartment: str, issued_by: str, holder_id: str | None = None
    ) -> tuple[VisitorPass, str]:
        """Store a new pass and return it with its secret (to be shown once). PassError: refused.

        ``holder_id``: issue on behalf of that resident holder only (the platform names one);
        otherwise on behalf of every resident of the apartment.
        """
        store = self._store
        index = store.index
        assert index is not None and store.pass_hasher is not None
        holders = residents_of(index, apartment)
        if holder_id is not None:
            holders = [h for h in holders if h.id == holder_id]
            if not holders:
                raise PassError(f"holder {holder_id!r} is not a resident of apartment {apartment!r}")
        async with store.pass_lock:
            now = _now()
            made, secret = new_pass(
                order,
                pass_id="vp-" + secrets.token_hex(6),
                issued_by=issued_by,
                apartment=apartment,
                holders=holders,
                index=index,
                book=store.passes,
                hasher=store.pass_hasher,
                now=now,
            )
            await store.put_pass(made)
        data = {
            "pass": made.id,
            "issued_by": issued_by,
            "apartment": apartment,
            "kind": made.kind.value,
            "doors": list(made.doors),
            "valid_from": made.valid_from.isoformat(),
            "valid_until": made.valid_until.isoformat(),
            "max_uses": made.max_uses,
        }
        await self.service._journal_now([AccessEvent("visitor_pass.issued", SOURCE, data, Severity.INFO)])
        return made, secret

    async def revoke(self, pass_id: str, *, apartment: str | None, revoked_by: str) -> VisitorPass:
        """Revoke a pass (PassNotFound if the caller may not see it); revoking twice is harmless."""
        store = self._store
        async with store.pass_lock:
            found = self.get(pass_id, apartment)
            if found.revoked:
                return found
            revoked = found.model_copy(update={"revoked": True})
            await store.put_pass(revoked)
        data = {"pass": pass_id, "revoked_by": revoked_by, "issued_by": found.issued_by, "apartment": found.apartment}
        await self.service._journal_now([AccessEvent("visitor_pass.revoked", SOURCE, data, Severity.INFO)])
        return revoked

    async def use(
        self, door_id: str, secret: str, *, via: str, keypad: bool = False, reader_tamper: bool = False
    ) -> PassDecision:
        """One attempt: decide, store the counted use, journal (committed), then unlock the door."""
        service, store = self.service, self._store
        index = store.index
        assert index is not None and store.pass_hasher is not None
        if door_id not in service.doors:  # no lock to open (not in the site file): no pass is spent here
            data = {"door": door_id, "reader": via, "reason": PassReason.UNKNOWN_DOOR.value, "holder": None,
                    "credential": None}
            event = AccessEvent("access.denied", via, data, Severity.WARNING)
            await service._journal_now([event])
            return PassDecision(False, PassReason.UNKNOWN_DOOR, None, (event,), False)
        async with store.pass_lock:  # two readers racing for a pass's last use: one wins
            decision = decide_pass(
                index,
                store.state,
                store.passes,
                door_id=door_id,
                via=via,
                secret_hashes=store.pass_hasher.lookup_keys(secret),
                now=_now(),
                keypad=keypad,
                reader_tamper=reader_tamper,
            )
            if decision.state_changed:
                store.state_changed()
            if decision.granted:
                assert decision.visitor_pass is not None
                await store.put_pass(decision.visitor_pass)  # the use is counted before the door moves
        await service._journal_now(decision.events)
        door = service.doors.get(door_id)
        if decision.granted and door is not None:
            service._apply(door, AccessGranted(None, via), _now())
        return decision


def _now() -> datetime:
    return datetime.now(UTC)
