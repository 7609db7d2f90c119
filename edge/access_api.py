"""REST routes for the access data (credentials, levels, schedules, doors): part of edge.api's route table.

Managers and admins only. Every change goes through the AccessService (and so the store's
transaction): a body that does not validate, a stale version or data that does not hold together
changes nothing and says why. They answer 503 while access control is not running (no `osdp`
buses in the site file, or the service is starting).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel

from edge.auth import CONFIGURERS, STAFF
from edge.door_control import RemoteUnlockRefused, door_state
from edge.openapi import Content, Reply, Route
from rules.access import AccessDataError, Delta, Snapshot, StaleDeltaError, StaleSnapshotError

if TYPE_CHECKING:
    from edge.access import AccessService
    from edge.api import Api

ACCESS_MAX_BODY = 8 * 1024 * 1024  # a snapshot with 10,000 holders and credentials is a few MB
CSV_MAX_BODY = 2_000_000  # rules.access.csv_import's own limit


class AccessVersion(BaseModel):
    version: int


class CsvImportOut(BaseModel):
    version: int  # the access data's version after the import
    imported: int  # rows applied
    errors: list[str]  # `line N: column: message` per rejected row; those rows changed nothing


class DoorOut(BaseModel):
    id: str
    name: str
    lock_mode: str
    remote_unlock: list[str]  # who may unlock it from afar
    state: dict[str, Any]  # edge.door_control.door_state: lock, open, forced_open, held_open, ...


class DoorList(BaseModel):
    doors: list[DoorOut]


class UnlockOut(BaseModel):
    door: str
    unlocked: bool  # False: the door stayed locked (fault, lockdown); door.unlock_refused says why


class AccessRoutes:
    def __init__(self, api: Api) -> None:
        self.api = api

    def routes(self) -> list[Route]:
        from edge.api import ErrorBody

        err = Content(model=ErrorBody)
        off = Reply("Access control is not running (no osdp buses configured, or starting)", err)
        return [
            Route("GET", "/api/doors", self.list_doors, "Doors and their state", STAFF, "access",
                  {200: Reply("every door of the site file", Content(model=DoorList)), 503: off}),
            Route("POST", "/api/doors/{door}/unlock", self.unlock_door, "Unlock a door for its strike time",
                  CONFIGURERS, "access",
                  {200: Reply("Journaled and handed to the door", Content(model=UnlockOut)),
                   403: Reply("The door's remote_unlock does not list api", err),
                   404: Reply("No such door", err), 503: off},
                  description="Only doors whose `remote_unlock` lists `api`. Journaled as "
                              "`access.remote_unlock` with the user's name before the door moves."),
            Route("GET", "/api/access/snapshot", self.get_snapshot, "The access data as one snapshot", CONFIGURERS,
                  "access", {200: Reply("the current snapshot (PINs only as keyed hashes)", Content(model=Snapshot)),
                             503: off}),
            Route("PUT", "/api/access/snapshot", self.put_snapshot, "Replace all access data", CONFIGURERS,
                  "access", {200: Reply("Stored", Content(model=AccessVersion)),
                             400: Reply("The body is not a valid snapshot; nothing changed", err),
                             409: Reply("Older than the stored version; nothing changed", err),
                             422: Reply("The data does not hold together (e.g. a card used twice)", err),
                             503: off},
                  body=Content(model=Snapshot),
                  description="Add `?allow_older=true` to accept an older version (the platform's "
                              "database was restored)."),
            Route("POST", "/api/access/delta", self.post_delta, "Apply one versioned change", CONFIGURERS,
                  "access", {200: Reply("Applied", Content(model=AccessVersion)),
                             400: Reply("The body is not a valid delta; nothing changed", err),
                             409: Reply("The delta's base is not the stored version: send a snapshot", err),
                             422: Reply("The data does not hold together (e.g. a card used twice)", err),
                             503: off},
                  body=Content(model=Delta)),
            Route("POST", "/api/access/import.csv", self.import_csv, "Bulk import holders and credentials",
                  CONFIGURERS, "access",
                  {200: Reply("Valid rows applied as one change; each rejected row is listed and changed "
                              "nothing", Content(model=CsvImportOut)),
                   400: Reply("Not UTF-8 text", err), 409: Reply("The access data changed meanwhile", err),
                   503: off},
                  body=Content(media_type="text/csv", schema={"type": "string", "description": "see "
                               "rules/access/csv_import.py for the columns"})),
        ]

    def _service(self) -> AccessService:
        from edge.api import _error

        service = self.api.controller.access
        if service is None or not service.ready.is_set():
            raise _error(503, "access control is not running: configure osdp buses in the site file")
        return service  # type: ignore[no-any-return]

    async def list_doors(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json

        service = self._service()
        doors = [
            DoorOut(
                id=d.cfg.id,
                name=d.cfg.name or d.cfg.id,
                lock_mode=d.cfg.lock_mode,
                remote_unlock=list(d.cfg.remote_unlock),
                state=door_state(d.machine.status),
            )
            for d in service.doors.values()
        ]
        return _json(DoorList(doors=doors))

    async def unlock_door(self, request: web.Request) -> web.StreamResponse:
        from edge.api import PRINCIPAL, _error, _json

        service = self._service()
        door = request.match_info["door"]
        try:
            unlocked = await service.remote_unlock(door, origin="api", actor=request[PRINCIPAL].session.username)
        except RemoteUnlockRefused as exc:
            status = {"unknown_door": 404, "not_allowed": 403}.get(exc.reason, 503)
            raise _error(status, str(exc)) from None
        return _json(UnlockOut(door=door, unlocked=unlocked))

    def _origin(self, request: web.Request) -> str:
        from edge.api import PRINCIPAL

        return f"api:{request[PRINCIPAL].session.username}"

    async def get_snapshot(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json

        return _json(self._service().store.snapshot())

    async def put_snapshot(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json_body

        service = self._service()
        snapshot = await _json_body(request, Snapshot, ACCESS_MAX_BODY)
        allow_older = request.query.get("allow_older", "false").lower() == "true"
        return await self._apply(service.replace_snapshot(snapshot, self._origin(request), allow_older=allow_older))

    async def post_delta(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json_body

        service = self._service()
        delta = await _json_body(request, Delta, ACCESS_MAX_BODY)
        return await self._apply(service.apply_delta(delta, self._origin(request)))

    async def _apply(self, change: Any) -> web.StreamResponse:
        from edge.api import _error, _json

        try:
            version = await change
        except (StaleDeltaError, StaleSnapshotError) as exc:
            raise _error(409, str(exc)) from None
        except AccessDataError as exc:
            raise _error(422, str(exc)) from None
        return _json(AccessVersion(version=version))

    async def import_csv(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _error, _json, _read_body

        service = self._service()
        raw = await _read_body(request, CSV_MAX_BODY)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _error(400, "request body must be UTF-8 CSV text") from None
        try:
            result, version = await service.import_csv(text, self._origin(request))
        except StaleDeltaError as exc:
            raise _error(409, f"the access data changed during the import; try again ({exc})") from None
        except AccessDataError as exc:
            raise _error(422, str(exc)) from None
        return _json(CsvImportOut(version=version, imported=len(result.rows), errors=[str(e) for e in result.errors]))
