"""REST routes for the alarm panel: part of edge.api's route table.

Who may do what, per partition: managers and admins the compound's partitions (those without an
`apartment`); a resident only the partition whose `apartment` is their user's; everyone else gets
403, and a refused arm/disarm/bypass is journaled (`alarm.request_refused`, reason `forbidden`).
Reading: staff see every partition, a resident only their own. Every change still needs a user
code, checked by the panel (wrong codes count towards its lockout). They answer 503 while the alarm
panel is not running (no `alarm.partitions` in the site file, or starting).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from edge.auth import ANY_USER, CONFIGURERS, STAFF
from edge.openapi import Content, Param, Reply, Route
from rules.alarm import Result

if TYPE_CHECKING:
    from edge.alarm import AlarmService
    from edge.api import Api, Principal

MAX_BODY = 4096
# Panel refusals -> HTTP status.
STATUS = {"wrong_code": 403, "not_permitted": 403, "locked_out": 429, "unknown_partition": 404, "unknown_zone": 404}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArmIn(_In):
    mode: Literal["away", "home", "night", "vacation"]
    code: str = Field(min_length=1, max_length=16)
    force: bool = Field(False, description="bypass open zones (with a warning) and arm despite troubles")


class DisarmIn(_In):
    code: str = Field(min_length=1, max_length=16)


class BypassIn(_In):
    zone: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=1, max_length=16)
    bypass: bool = True


class ZoneOut(BaseModel):
    zone: str
    partition: str
    type: str
    state: str  # normal | active | tamper | fault
    bypassed: bool
    device: str
    point: str


class PartitionOut(BaseModel):
    partition: str
    apartment: str | None
    state: str  # Home Assistant's alarm_control_panel states
    mode: str | None
    deadline: float | None  # unix time the exit/entry delay or the siren time ends
    alarm_zones: list[str]
    alarm_memory: list[dict[str, Any]]
    open_zones: list[str]
    bypassed: list[str]
    troubles: list[dict[str, Any]]
    locked_out_until: float | None


class PartitionList(BaseModel):
    partitions: list[PartitionOut]


class ZoneList(BaseModel):
    zones: list[ZoneOut]


class AlarmRoutes:
    def __init__(self, api: Api) -> None:
        self.api = api

    def routes(self) -> list[Route]:
        from edge.api import ErrorBody

        err = Content(model=ErrorBody)
        off = Reply("The alarm panel is not running (no alarm partitions configured, or starting)", err)
        pid = (Param("id", "path", {"type": "string"}, "partition id"),)
        change = {200: Reply("Done; the partition's state after it", Content(model=PartitionOut)),
                  400: Reply("Invalid body", err),
                  403: Reply("Not this user's partition, or a wrong code / a code without this right", err),
                  404: Reply("No such partition or zone", err),
                  409: Reply("Refused by the panel (zones open, trouble, in alarm, not bypassable)", err),
                  429: Reply("Code entry locked out after too many wrong codes", err, {"Retry-After": "seconds"}),
                  503: off}
        return [
            Route("GET", "/api/alarm/partitions", self.list_partitions, "Alarm partitions and their state",
                  ANY_USER, "alarm", {200: Reply("the partitions this user may see", Content(model=PartitionList)),
                                      503: off}),
            Route("GET", "/api/alarm/zones", self.list_zones, "Alarm zones and their state", ANY_USER, "alarm",
                  {200: Reply("the zones of the partitions this user may see", Content(model=ZoneList)),
                   503: off}),
            Route("POST", "/api/alarm/partitions/{id}/arm", self.arm, "Arm a partition", ANY_USER, "alarm",
                  change, body=Content(model=ArmIn), params=pid),
            Route("POST", "/api/alarm/partitions/{id}/disarm", self.disarm, "Disarm a partition", ANY_USER,
                  "alarm", change, body=Content(model=DisarmIn), params=pid),
            Route("POST", "/api/alarm/partitions/{id}/bypass", self.bypass, "Bypass a zone (or end its bypass)",
                  ANY_USER, "alarm", change, body=Content(model=BypassIn), params=pid),
        ]

    # ---- helpers ---------------------------------------------------------------------------------

    def _service(self) -> AlarmService:
        from edge.api import _error

        service = self.api.controller.alarm
        if service is None or not service.ready.is_set():
            raise _error(503, "the alarm panel is not running: configure alarm partitions in the site file")
        return service  # type: ignore[no-any-return]

    @staticmethod
    def _may(principal: Principal, apartment: str | None, *, read: bool = False) -> bool:
        role = principal.session.role
        if role == "resident":
            return apartment is not None and principal.user.apartment == apartment
        if read:
            return role in STAFF
        return role in CONFIGURERS and apartment is None

    def _visible(self, request: web.Request) -> list[str]:
        from edge.api import PRINCIPAL

        service = self._service()
        assert service.panel is not None
        principal = request[PRINCIPAL]
        return [p.id for p in service.panel.partitions.values() if self._may(principal, p.apartment, read=True)]

    async def _target(self, request: web.Request, action: str) -> tuple[AlarmService, str, str]:
        """The service, the partition and the origin for a change, or 404/403 (journaled)."""
        from edge.api import PRINCIPAL, _error

        service = self._service()
        assert service.panel is not None
        partition = request.match_info["id"]
        principal = request[PRINCIPAL]
        origin = f"api:{principal.session.username}"
        part = service.panel.partitions.get(partition)
        if part is None:
            raise _error(404, f"no alarm partition {partition[:64]!r}")
        if not self._may(principal, part.apartment):
            await service.refuse(partition, "forbidden", origin, action=action, role=principal.session.role)
            raise _error(403, f"the {principal.session.role} {principal.session.username!r} may not {action} "
                              f"partition {partition!r}")
        return service, partition, origin

    def _answer(self, service: AlarmService, partition: str, result: Result) -> web.StreamResponse:
        from edge.api import _error, _json

        if not result.ok:
            status = STATUS.get(result.reason or "", 409)
            headers = None
            if result.reason == "locked_out":
                assert service.panel is not None
                until = service.panel.partitions[partition].locked_until or service.clock()
                headers = {"Retry-After": str(max(1, round(until - service.clock())))}
            detail = "; ".join(f"{k}: {v}" for k, v in result.detail.items())
            raise _error(status, f"refused: {result.reason}" + (f" ({detail})" if detail else ""), headers=headers)
        assert service.panel is not None
        return _json(PartitionOut.model_validate(service.panel.partition_status(partition)))

    # ---- handlers --------------------------------------------------------------------------------

    async def list_partitions(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json

        service = self._service()
        assert service.panel is not None
        parts = [PartitionOut.model_validate(service.panel.partition_status(p)) for p in self._visible(request)]
        return _json(PartitionList(partitions=parts))

    async def list_zones(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json

        service = self._service()
        assert service.panel is not None
        visible = set(self._visible(request))
        zones = [ZoneOut.model_validate(service.panel.zone_status(z)) for z, rt in service.panel.zones.items()
                 if rt.cfg.partition in visible]
        return _json(ZoneList(zones=zones))

    async def arm(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json_body

        service, partition, origin = await self._target(request, "arm")
        body = await _json_body(request, ArmIn, MAX_BODY)
        result = await service.arm(partition, body.mode, body.code, force=body.force, origin=origin)
        return self._answer(service, partition, result)

    async def disarm(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json_body

        service, partition, origin = await self._target(request, "disarm")
        body = await _json_body(request, DisarmIn, MAX_BODY)
        return self._answer(service, partition, await service.disarm(partition, body.code, origin=origin))

    async def bypass(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json_body

        service, partition, origin = await self._target(request, "bypass")
        body = await _json_body(request, BypassIn, MAX_BODY)
        result = await service.bypass(partition, body.zone, body.code, on=body.bypass, origin=origin)
        return self._answer(service, partition, result)
