"""REST routes for the cameras: what each sees now, as JSON and as an annotated JPEG (part of edge.api's table);
the patrol tour log and the parking lots (edge/vision_rules.py).

Staff only (installer, manager, admin): camera pictures never go to residents through the API. The
JPEG is drawn and encoded on request from the latest processed frame (boxes, labels, track ids), so
the pipeline pays nothing while nobody watches. They answer 503 while vision is not running.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel

from edge.auth import STAFF
from edge.openapi import Content, Param, Reply, Route

if TYPE_CHECKING:
    from edge.api import Api
    from edge.vision import VisionService

ROUTE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CAMERA_PARAM = Param("camera", "path", {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]{0,63}$"}, "camera id")


class VisionObject(BaseModel):
    track_id: int
    label: str
    score: float
    box: list[float]  # x1, y1, x2, y2 in detect-resolution pixels
    zones: list[str]
    stationary: bool


class CameraStats(BaseModel):
    frames: int
    detector_runs: int
    rechecks: int


class CameraStatus(BaseModel):
    camera: str
    online: bool
    reason: str  # why it is offline
    at: float | None  # frame time of the latest processed frame, UTC epoch seconds
    frame_size: list[int] | None
    detected: bool  # the detector ran on that frame (else motion gating skipped it)
    objects: list[VisionObject]
    stats: CameraStats | None
    zones: dict[str, dict[str, int]]  # zone -> {person: n, vehicle: n}


class CameraList(BaseModel):
    cameras: list[CameraStatus]


class TourLog(BaseModel):
    tours: list[dict[str, Any]]  # rules.patrol Tour.to_json(): route, tour, started_at, checkpoints...


class LotState(BaseModel):
    lot: str
    free: int
    occupied: int
    unknown: int  # not yet decided (just started, or seen too briefly)
    total: int
    spaces: dict[str, bool | None]  # true: occupied


class LotList(BaseModel):
    lots: list[LotState]


class VisionRoutes:
    def __init__(self, api: Api) -> None:
        self.api = api

    def routes(self) -> list[Route]:
        from edge.api import ErrorBody

        err = Content(model=ErrorBody)
        off = Reply("Vision is not running (no vision cameras configured, or starting)", err)
        missing = Reply("No such camera", err)
        return [
            Route("GET", "/api/vision/cameras", self.list_cameras, "Cameras and what they see now", STAFF, "vision",
                  {200: Reply("every enabled camera", Content(model=CameraList)), 503: off}),
            Route("GET", "/api/vision/cameras/{camera}", self.get_camera, "One camera's latest detections", STAFF,
                  "vision", {200: Reply("status and tracked objects", Content(model=CameraStatus)), 404: missing,
                             503: off}, params=(CAMERA_PARAM,)),
            Route("GET", "/api/vision/cameras/{camera}/latest.jpg", self.latest_jpeg,
                  "The latest processed frame with its objects drawn", STAFF, "vision",
                  {200: Reply("JPEG", Content(media_type="image/jpeg", schema={"type": "string", "format": "binary"})),
                   404: Reply("No such camera, or no frame yet", err), 503: off},
                  params=(CAMERA_PARAM,)),
            Route("GET", "/api/vision/patrol/tours", self.tour_log, "Guard tours, running and finished, newest first",
                  STAFF, "vision", {200: Reply("the tour log", Content(model=TourLog)),
                                    404: Reply("No patrol routes configured", err), 503: off},
                  params=(Param("route", "query", {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]{0,63}$"},
                                "only this route's tours"),
                          Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 200},
                                "at most this many tours (default 50)"))),
            Route("GET", "/api/vision/parking/lots", self.parking_lots, "Parking lots: free and occupied spaces",
                  STAFF, "vision", {200: Reply("every lot", Content(model=LotList)),
                                    404: Reply("No parking configured", err), 503: off}),
        ]

    def _service(self) -> VisionService:
        from edge.api import _error

        service = self.api.controller.vision
        if service is None:
            raise _error(503, "vision is not running: configure vision cameras in the site file")
        return service  # type: ignore[no-any-return]

    def _status(self, service: VisionService, camera: str) -> dict[str, Any]:
        from edge.api import _error

        status = service.status(camera)
        if status is None:
            raise _error(404, f"no camera {camera!r}")
        return status

    async def list_cameras(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json

        service = self._service()
        return _json(CameraList(cameras=[CameraStatus.model_validate(self._status(service, c.id))
                                         for c in service.cameras]))

    async def get_camera(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _json

        service = self._service()
        return _json(CameraStatus.model_validate(self._status(service, request.match_info["camera"])))

    async def latest_jpeg(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _error

        service = self._service()
        camera = request.match_info["camera"]
        self._status(service, camera)
        jpeg = await asyncio.to_thread(service.latest_jpeg, camera)
        if jpeg is None:
            raise _error(404, f"camera {camera!r} has no frame yet")
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def tour_log(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _error, _json

        service = self._service()
        route = request.query.get("route")
        if route is not None and not ROUTE_RE.match(route):
            raise _error(400, "route: a route id (a-z 0-9 _ -)")
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            raise _error(400, "limit: an integer 1-200") from None
        if not 1 <= limit <= 200:
            raise _error(400, "limit: an integer 1-200")
        tours = service.rules.tour_log(route, limit) if service.rules is not None else None
        if tours is None:
            raise _error(404, "no patrol routes configured (vision.patrol)")
        return _json(TourLog(tours=tours))

    async def parking_lots(self, request: web.Request) -> web.StreamResponse:
        from edge.api import _error, _json

        service = self._service()
        lots = service.rules.lots() if service.rules is not None else None
        if lots is None:
            raise _error(404, "no parking configured (vision.parking)")
        return _json(LotList(lots=[LotState.model_validate(lot) for lot in lots]))
