"""REST routes for visitor passes: part of edge.api's route table.

Residents issue, list and revoke passes of their own apartment (the `apartment` of their user in
the site file); managers and admins see and revoke every pass and may issue for any apartment.
Another apartment's pass answers 404, as a pass that does not exist, so ids cannot be probed.
The PIN or QR token is in the answer to the POST only: the box keeps a keyed hash of it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from edge.auth import CONFIGURERS
from edge.openapi import Content, Reply, Route
from edge.passes import PassNotFound
from rules.access.model import Id, Name
from rules.access.passes import MAX_DOORS, MAX_USES, Apartment, PassError, PassKind, PassOrder, VisitorPass

if TYPE_CHECKING:
    from edge.access import AccessService
    from edge.api import Api, Principal

PASS_USERS: frozenset[str] = frozenset({"resident", "manager", "admin"})
PASS_MAX_BODY = 16 * 1024


class PassIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    visitor: Name
    kind: PassKind = PassKind.PIN
    doors: tuple[Id, ...] = Field(min_length=1, max_length=MAX_DOORS)
    valid_from: AwareDatetime | None = Field(None, description="default: now")
    valid_until: AwareDatetime = Field(description="at most 30 days after valid_from")
    max_uses: int = Field(1, ge=1, le=MAX_USES)
    pin: str | None = Field(None, max_length=8, repr=False,
                            description="4-8 digits chosen by the resident; default: 6 random digits")
    apartment: Apartment | None = Field(None, description="managers and admins: the apartment it is for")


class PassOut(BaseModel):
    id: str
    issued_by: str
    apartment: str
    visitor: str
    kind: PassKind
    valid_from: datetime
    valid_until: datetime
    max_uses: int
    uses: int
    doors: list[str]
    revoked: bool
    created_at: datetime

    @classmethod
    def of(cls, p: VisitorPass) -> PassOut:
        return cls.model_validate(p.public())


class PassIssued(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    visitor_pass: PassOut = Field(alias="pass")
    secret: str = Field(description="the PIN or QR token: shown this once, never again")


class PassList(BaseModel):
    passes: list[PassOut]


class PassRoutes:
    def __init__(self, api: Api) -> None:
        self.api = api

    def routes(self) -> list[Route]:
        from edge.api import ErrorBody

        err = Content(model=ErrorBody)
        off = Reply("Access control is not running", err)
        return [
            Route("POST", "/api/passes", self.issue, "Issue a visitor pass", PASS_USERS, "passes",
                  {201: Reply("Issued; the secret is shown only here", Content(model=PassIssued)),
                   400: Reply("The body is not valid", err),
                   403: Reply("A resident without an apartment, or naming another apartment", err),
                   422: Reply("Refused (doors beyond the apartment's access, window, PIN taken, ...)", err),
                   503: off},
                  body=Content(model=PassIn)),
            Route("GET", "/api/passes", self.list, "Visitor passes (residents: their apartment's)", PASS_USERS,
                  "passes", {200: Reply("newest first, without secrets", Content(model=PassList)), 503: off}),
            Route("DELETE", "/api/passes/{id}", self.revoke, "Revoke a visitor pass", PASS_USERS, "passes",
                  {200: Reply("Revoked (revoking twice is harmless)", Content(model=PassOut)),
                   404: Reply("No such pass, or another apartment's", err), 503: off}),
        ]

    def _service(self) -> AccessService:
        from edge.api import _error

        service = self.api.controller.access
        if service is None or not service.ready.is_set():
            raise _error(503, "access control is not running: configure osdp buses in the site file")
        return service  # type: ignore[no-any-return]

    @staticmethod
    def _who(request: web.Request) -> Principal:
        from edge.api import PRINCIPAL

        return request[PRINCIPAL]

    def _own_apartment(self, request: web.Request) -> str | None:
        """The apartment a resident is limited to; None for managers and admins (every pass)."""
        from edge.api import _error

        principal = self._who(request)
        if principal.session.role in CONFIGURERS:
            return None
        if not principal.user.apartment:
            raise _error(403, "your user has no apartment in the site file")
        return principal.user.apartment

    async def issue(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _error, _json, _json_body

        service = self._service()
        body = await _json_body(request, PassIn, PASS_MAX_BODY)
        own = self._own_apartment(request)
        if own is not None and body.apartment not in (None, own):
            raise _error(403, "residents issue passes for their own apartment only")
        apartment = own or body.apartment
        if apartment is None:
            raise _error(400, "invalid request body: apartment: required for managers and admins")
        order = PassOrder(
            visitor=body.visitor,
            kind=body.kind,
            doors=body.doors,
            valid_from=body.valid_from,
            valid_until=body.valid_until,
            max_uses=body.max_uses,
            pin=body.pin,
        )
        issued_by = f"api:{self._who(request).session.username}"
        try:
            made, secret = await service.passes.issue(order, apartment=apartment, issued_by=issued_by)
        except PassError as exc:
            raise _error(422, str(exc)) from None
        return _json(PassIssued(visitor_pass=PassOut.of(made), secret=secret), status=201)

    async def list(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json

        service = self._service()
        own = self._own_apartment(request)
        return _json(PassList(passes=[PassOut.of(p) for p in service.passes.visible(own)]))

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _error, _json

        service = self._service()
        own = self._own_apartment(request)
        by = f"api:{self._who(request).session.username}"
        try:
            revoked = await service.passes.revoke(request.match_info["id"], apartment=own, revoked_by=by)
        except PassNotFound as exc:
            raise _error(404, str(exc)) from None
        return _json(PassOut.of(revoked))
