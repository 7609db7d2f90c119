"""The web page's simulator panel under `linli demo`: present cards, type PINs, open doors.

Staff only (installers test devices); 404 outside the demo. The commands are the ones `linli sim`
sends (edge.demo_devices.DemoDevices.command), so the page and the CLI can do exactly the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, Field

from edge.auth import STAFF
from edge.openapi import Content, Reply, Route

if TYPE_CHECKING:
    from edge.api import Api


class SimCommand(BaseModel):
    command: str = Field(min_length=1, max_length=200, description="e.g. `card gate-reader 10231`")


class SimResult(BaseModel):
    done: str


class SimInfo(BaseModel):
    readers: list[str]
    facility: int
    people: list[dict[str, Any]]
    usage: str


class SimRoutes:
    def __init__(self, api: Api) -> None:
        self.api = api

    def routes(self) -> list[Route]:
        from edge.api import ErrorBody

        err = Content(model=ErrorBody)
        off = Reply("Not a demo: there are no simulated devices", err)
        return [
            Route("GET", "/api/sim", self.info, "The demo's simulated devices and people", STAFF, "demo",
                  {200: Reply("readers, the demo's residents with their cards and PINs", Content(model=SimInfo)),
                   404: off}),
            Route("POST", "/api/sim", self.command, "Act on a simulated device", STAFF, "demo",
                  {200: Reply("Done (what happens next is in the live events)", Content(model=SimResult)),
                   400: Reply("Not a command the simulator knows; the message lists them", err), 404: off},
                  body=Content(model=SimCommand)),
        ]

    def _devices(self) -> Any:
        from edge.api import _error

        devices = self.api.controller.simulator
        if devices is None:
            raise _error(404, "no simulated devices: this is not `linli demo`")
        return devices

    async def info(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json
        from edge.demo_devices import demo_info

        self._devices()
        return _json(SimInfo(**demo_info()))

    async def command(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _error, _json, _json_body

        devices = self._devices()
        body = await _json_body(request, SimCommand, 4096)
        try:
            done = devices.command(body.command)
        except ValueError as exc:
            raise _error(400, str(exc)) from None
        return _json(SimResult(done=done))
