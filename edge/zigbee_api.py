"""REST routes for Zigbee pairing: list the devices, open the permit-join window, back the network up.

Installers, managers and admins (STAFF). They answer 503 while the Zigbee network is not running
(no `zigbee:` section, or the coordinator is starting).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from edge.auth import STAFF
from edge.openapi import Content, Reply, Route

if TYPE_CHECKING:
    from edge.api import Api
    from edge.zigbee import ZigbeeService


class ZigbeeDeviceOut(BaseModel):
    id: str | None  # the site file's device id; None for a device paired but not (yet) configured
    ieee: str
    kind: str | None
    apartment: str | None
    paired: bool
    model: str | None = None
    manufacturer: str | None = None
    online: bool | None


class ZigbeeDeviceList(BaseModel):
    devices: list[ZigbeeDeviceOut]


class PermitJoinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: int | None = Field(None, ge=0, le=254, description="0 closes the window; default from the site file")


class PermitJoinOut(BaseModel):
    seconds: int


class BackupOut(BaseModel):
    file: str


class ZigbeeRoutes:
    def __init__(self, api: Api) -> None:
        self.api = api

    def routes(self) -> list[Route]:
        from edge.api import ErrorBody

        err = Content(model=ErrorBody)
        off = Reply("Zigbee is not running (no zigbee section, or starting)", err)
        return [
            Route("GET", "/api/zigbee/devices", self.list_devices, "Zigbee devices: configured and paired", STAFF,
                  "zigbee", {200: Reply("devices", Content(model=ZigbeeDeviceList)), 503: off}),
            Route("POST", "/api/zigbee/permit_join", self.permit_join, "Open the pairing window", STAFF, "zigbee",
                  {200: Reply("The window is open for this long", Content(model=PermitJoinOut)),
                   400: Reply("Not a valid request", err), 502: Reply("The coordinator refused", err), 503: off},
                  body=Content(model=PermitJoinIn)),
            Route("POST", "/api/zigbee/backup", self.backup, "Back the network up to the data dir", STAFF, "zigbee",
                  {200: Reply("Written", Content(model=BackupOut)), 502: Reply("The coordinator failed", err),
                   503: off}),
        ]

    def _service(self) -> ZigbeeService:
        from edge.api import _error

        service = self.api.controller.zigbee
        if service is None or not service.ready.is_set():
            raise _error(503, "Zigbee is not running: configure a zigbee section in the site file")
        return service  # type: ignore[no-any-return]

    async def list_devices(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json

        devices = [ZigbeeDeviceOut(**d) for d in self._service().devices()]
        return _json(ZigbeeDeviceList(devices=devices))

    async def permit_join(self, request: web.Request) -> web.StreamResponse:
        from drivers.zigbee.driver import ZigbeeCommandError
        from edge.api import _error, _json, _json_body

        service = self._service()
        body = await _json_body(request, PermitJoinIn, 1024) if request.can_read_body else PermitJoinIn()
        try:
            seconds = await service.permit_join(body.seconds)
        except ZigbeeCommandError as exc:
            raise _error(502, str(exc)) from None
        return _json(PermitJoinOut(seconds=seconds))

    async def backup(self, request: web.Request) -> web.StreamResponse:
        from drivers.zigbee.driver import ZigbeeCommandError
        from edge.api import _error, _json

        try:
            path = await self._service().backup()
        except ZigbeeCommandError as exc:
            raise _error(502, str(exc)) from None
        return _json(BackupOut(file=path))
