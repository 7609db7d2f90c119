"""The web page's simulator panel under `linli demo`: present cards, type PINs, open doors, trip
alarm zones (fence beams, doors, motion, smoke) and see the sirens' outputs, dial apartments at the
gate's intercom panel and answer on their indoor units, type pass codes and scan QR tokens.

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


class SimZone(BaseModel):
    id: str
    name: str
    partition: str
    active: bool | None  # the simulated sensor: tripped (beam broken, door open...); None: not up yet


class SimCode(BaseModel):
    user: str
    code: str
    partitions: list[str]
    duress: bool


class SimUnitState(BaseModel):
    apartment: str  # or "guard": the guard desk
    name: str
    ringing: bool
    in_call: bool
    dnd: bool


class SimIntercom(BaseModel):
    panel: str
    display: str  # what the panel's display was last told
    call_state: str | None  # the panel's call as the panel was told: ringing, answered, ended...
    units: list[SimUnitState]
    visitor_pin: str  # Li Wei's demo visitor pass


class SimInfo(BaseModel):
    readers: list[str]
    facility: int
    people: list[dict[str, Any]]
    usage: str
    zones: list[SimZone]
    sirens: dict[str, bool | None]  # siren id -> on, as the simulated module / Zigbee siren was told
    codes: list[SimCode]  # the demo's alarm codes
    intercom: SimIntercom


class SimRoutes:
    def __init__(self, api: Api) -> None:
        self.api = api

    def routes(self) -> list[Route]:
        from edge.api import ErrorBody

        err = Content(model=ErrorBody)
        off = Reply("Not a demo: there are no simulated devices", err)
        return [
            Route("GET", "/api/sim", self.info, "The demo's simulated devices and people", STAFF, "demo",
                  {200: Reply("readers, the demo's residents with their cards and PINs, alarm zones, sirens, "
                              "codes and the intercom's panel and indoor units", Content(model=SimInfo)),
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

        return _json(SimInfo(**self._devices().info()))

    async def command(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _error, _json, _json_body

        devices = self._devices()
        body = await _json_body(request, SimCommand, 4096)
        try:
            done = devices.command(body.command)
        except ValueError as exc:
            raise _error(400, str(exc)) from None
        return _json(SimResult(done=done))
