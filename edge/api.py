"""The HTTP API, the live event stream, metrics and the web page (aiohttp).

Every route is declared once in `Api.routes()`: the same table registers it, checks its role and
becomes `/api/openapi.json`.

Who may do what (`-`: no login needed; login by bearer token or the page's session cookie):

| route                                   | resident | installer | manager | admin |
|-----------------------------------------|:--------:|:---------:|:-------:|:-----:|
| GET  /, /web/*, /api/health             |    -     |     -     |    -    |   -   |
| GET  /api/openapi.json, /metrics        |    -     |     -     |    -    |   -   |
| POST /api/login                         |    -     |     -     |    -    |   -   |
| POST /api/logout, GET /api/me           |   yes    |    yes    |   yes   |  yes  |
| GET  /api/events, /api/events/{id}      |          |    yes    |   yes   |  yes  |
| GET  /api/events/stream                 |          |    yes    |   yes   |  yes  |
| POST /api/events (inject a test event)  |          |    yes    |         |  yes  |
| GET  /api/devices                       |          |    yes    |   yes   |  yes  |
| GET  /api/config, POST .../validate     |          |    yes    |   yes   |  yes  |
| POST /api/config/apply, .../reload      |          |           |   yes   |  yes  |

Residents get no compound-wide data yet: the journal holds every household's and every gate's
events, and per-resident filtering comes with the resident features. Installers commission
devices, so they read everything and may inject test events, but the running configuration is
the property manager's: only managers and admins change it. Managers do not inject events: a
forged `alarm.*` or `access.*` event from a management account would be indistinguishable from
a real one in the platform's records.

`/metrics` carries counts only (see edge.metrics) and is open, as Prometheus scrapers expect.
Requests authenticated by the session cookie that change something must carry the
`X-Linli-Csrf` header and, when the browser sends an Origin, come from this server's own origin.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge import __version__
from edge.access_api import ACCESS_MAX_BODY, AccessRoutes
from edge.alarm_api import AlarmRoutes
from edge.auth import (
    ANY_USER,
    CONFIGURERS,
    CSRF_HEADER,
    INJECTORS,
    SESSION_COOKIE,
    STAFF,
    Authenticator,
    LoginRefused,
    Role,
    Session,
    SessionStore,
    TooManyAttempts,
)
from edge.config import ConfigError, SiteConfig, UserConfig, check_live_change, parse_config, summary
from edge.events import EVENT_TYPE_RE, ID_RE, Event, Severity
from edge.journal import JournalClosed, StoredEvent
from edge.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from edge.metrics import ApiStats, make_registry, render
from edge.openapi import Content, Param, Reply, Route, build_document
from edge.passes_api import PassRoutes
from edge.sim_api import SimRoutes
from edge.vision_api import VisionRoutes
from edge.zigbee_api import ZigbeeRoutes

if TYPE_CHECKING:
    from edge.daemon import Controller

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).with_name("web")
MAX_BODY = 1024 * 1024  # site files are the largest bodies
MAX_EVENT_BODY = 64 * 1024
MAX_LOGIN_BODY = 8 * 1024
MAX_PAGE = 500
DEFAULT_PAGE = 100
MAX_STREAMS = 64  # each live stream holds up to STREAM_QUEUE events in memory
STREAM_QUEUE = 1000
HEARTBEAT_S = 15.0
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FAMILY_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.\*$")
_STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
                 ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}
# Keys whose values are secrets or point at secret files; shown as "<redacted>" in GET /api/config.
_REDACT_KEYS = frozenset({"password", "password_file", "key_file", "hmac_key_file"})
_REDACTED = "<redacted>"

M = TypeVar("M", bound=BaseModel)


# ---- API schemas ------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    loc: str
    message: str


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong, for people")
    details: list[ErrorDetail] = Field(default_factory=list)


class JournalHealth(BaseModel):
    accepted: int
    stored_events: int
    stored_bytes: int
    budget_bytes: int
    batches: int
    pruned_undelivered: int


class TaskHealthOut(BaseModel):
    running: bool
    restarts: int
    last_error: str | None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    site: str
    controller: str
    version: str
    uptime_s: float
    uplink: str = Field(description="uplink state; `disabled` when no broker is configured")
    outbox_depth: int
    journal: JournalHealth
    tasks: dict[str, TaskHealthOut]


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginOut(BaseModel):
    token: str = Field(description="bearer token for `Authorization: Bearer …`")
    role: Role
    expires: datetime


class Me(BaseModel):
    username: str
    role: Role
    expires: datetime
    apartment: str | None = None


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(pattern=EVENT_TYPE_RE.pattern, max_length=128, examples=["test.ping"])
    source: str = Field(min_length=1, max_length=128)
    severity: Severity = Severity.INFO
    data: dict[str, Any] = Field(default_factory=dict)


class EventRecord(Event):
    """An event as the journal holds it: the event plus its journal sequence number."""

    seq: int = Field(ge=1, description="journal order; the cursor for `before`, `after`, Last-Event-ID")


class Accepted(BaseModel):
    """The answer to an injected event: it is in the journal under `seq`."""

    seq: int = Field(ge=1, description="journal sequence number")
    event: Event


class EventPage(BaseModel):
    events: list[EventRecord] = Field(description="newest first")
    next: int | None = Field(description="pass as `before` for the next (older) page; null: no more")


class DeviceOut(BaseModel):
    id: str
    name: str
    kind: str
    driver: str
    online: bool | None
    last_seen: float | None
    state: dict[str, Any]


class DeviceList(BaseModel):
    devices: list[DeviceOut]


class ConfigIssueOut(BaseModel):
    file: str
    line: int
    col: int
    path: str
    message: str


class ConfigValid(BaseModel):
    valid: Literal[True]
    summary: str


class ConfigInvalid(BaseModel):
    valid: Literal[False]
    errors: list[ConfigIssueOut]


class ConfigApplied(BaseModel):
    applied: Literal[True]
    summary: str


REDACTED_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The running site file (see `linli config-schema`); password hashes are left "
                   "out and secret files' paths read `<redacted>`.",
    "required": ["site", "controller", "users"],
    "properties": {
        "site": {"type": "object"},
        "controller": {"type": "object"},
        "users": {"type": "array", "items": {"type": "object", "not": {"required": ["password_hash"]}}},
    },
}


# ---- helpers ----------------------------------------------------------------------------------


class ApiError(web.HTTPException):
    """An HTTP error whose body is the documented JSON `{"error": …}`."""

    def __init__(self, status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> None:
        self.status_code = status  # aiohttp reads the status from here
        super().__init__(text=body.model_dump_json(), content_type="application/json", headers=headers)


def _error(status: int, message: str, details: list[ErrorDetail] | None = None,
           headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(status, ErrorBody(error=message, details=details or []), headers)


# Device state and task errors come from drivers: never let an odd value (bytes, a datetime)
# turn a status page into a 500.
_dumps = functools.partial(json.dumps, default=str)


def _json(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json", headers=headers
    )


def _record_json(stored: StoredEvent) -> str:
    # The event's own JSON with the seq spliced in front: no second serialisation per event.
    return f'{{"seq":{stored.seq},{stored.event.to_json()[1:]}'


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(body)"


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _error(413, f"request body too large (at most {limit} bytes)")
    raw = await request.read()
    if len(raw) > limit:
        raise _error(413, f"request body too large (at most {limit} bytes)")
    return raw


async def _json_body(request: web.Request, model: type[M], limit: int) -> M:
    raw = await _read_body(request, limit)
    if not raw.strip():
        raise _error(400, "request body is empty; send a JSON object")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _error(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _error(400, "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [ErrorDetail(loc=_loc(e["loc"]), message=e["msg"]) for e in exc.errors()]
        first = details[0]
        raise _error(400, f"invalid request body: {first.loc}: {first.message}", details) from None


async def _text_body(request: web.Request) -> str:
    raw = await _read_body(request, MAX_BODY)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _error(400, "request body must be UTF-8 text (the site file's YAML)") from None
    if not text.strip():
        raise _error(400, "request body is empty; send the site file's YAML text")
    return text


def _parse_time(name: str, value: str) -> int:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _error(400, f"{name}: not an ISO 8601 time: {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # a bare time is read as UTC, the journal's own zone
    return int(when.timestamp() * 1000)


def _parse_int(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _error(400, f"{name}: not an integer: {value!r}") from None
    if not low <= number <= high:
        raise _error(400, f"{name}: must be between {low} and {high}")
    return number


def _parse_types(request: web.Request) -> list[str]:
    types = [t.strip() for v in request.query.getall("type", []) for t in v.split(",") if t.strip()]
    for t in types:
        if not (EVENT_TYPE_RE.match(t) or FAMILY_RE.match(t)) or len(t) > 128:
            raise _error(400, f"type: {t!r} is neither an event type (access.granted) nor a family (access.*)")
    if len(types) > 32:
        raise _error(400, "type: at most 32 types")
    return types


def _check_params(request: web.Request, allowed: set[str]) -> None:
    # A misspelt filter must not silently widen the result.
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise _error(400, f"unknown query parameter {unknown[0]!r}; expected one of {sorted(allowed)}")


def _type_matcher(types: list[str]) -> Callable[[str], bool]:
    exact = {t for t in types if not t.endswith(".*")}
    prefixes = tuple(t[:-1] for t in types if t.endswith(".*"))
    return lambda t: not types or t in exact or t.startswith(prefixes)


def redact_config(config: SiteConfig) -> dict[str, Any]:
    """The running config as JSON, without password hashes or secret files' locations."""
    data = config.model_dump(mode="json")
    for user in data.get("users", []):
        user.pop("password_hash", None)

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (_REDACTED if k in _REDACT_KEYS and v is not None else scrub(v)) for k, v in node.items()
            }
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    data = scrub(data)
    broker = data.get("uplink", {}).get("broker")
    if isinstance(broker, str) and "@" in broker:
        scheme, _, rest = broker.partition("://")
        data["uplink"]["broker"] = f"{scheme}://{_REDACTED}@{rest.rpartition('@')[2]}"
    return data


class Principal:
    """Who is calling, and how they proved it."""

    __slots__ = ("session", "token", "user", "via")

    def __init__(self, session: Session, user: UserConfig, token: str, via: Literal["bearer", "cookie"]) -> None:
        self.session = session
        self.user = user
        self.token = token
        self.via = via


PRINCIPAL = web.RequestKey("linli_principal", Principal)


def _validate_text(text: str, running: SiteConfig, path: Path | None) -> SiteConfig:
    # Same checks as Controller.reload_config, so "valid" here means "apply would take it".
    new = parse_config(text, str(path or "<api>"), path.parent if path else Path.cwd())
    check_live_change(running, new, path)
    return new


def _config_errors(exc: ConfigError) -> web.Response:
    body = ConfigInvalid(
        valid=False,
        errors=[ConfigIssueOut(file=i.file, line=i.line, col=i.col, path=i.path, message=i.message)
                for i in exc.issues],
    )
    return _json(body, status=422)


# ---- the API ----------------------------------------------------------------------------------


class Api:
    """The API's state for one controller: sessions, throttling, metrics, open streams."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.sessions = SessionStore(controller.config.api.session_ttl_s)
        self.auth = Authenticator(self.sessions)
        self.stats = ApiStats()
        self.registry = make_registry(controller, self.stats)
        self.config_lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.heartbeat_s = HEARTBEAT_S
        self.max_streams = MAX_STREAMS
        self.web_files = {p.name: p for p in WEB_DIR.iterdir() if p.suffix in _STATIC_TYPES} \
            if WEB_DIR.is_dir() else {}
        self.routes = self.routes_table()
        self._by_handler = {route.handler: route for route in self.routes}
        self.openapi = self._document()

    # ---- the route table ----------------------------------------------------------------------

    def routes_table(self) -> list[Route]:
        json_error = Content(model=ErrorBody)
        events_page = Content(model=EventPage)
        record = Content(model=EventRecord)
        yaml_body = Content(media_type="application/yaml", schema={"type": "string",
                            "description": "the whole site file, YAML"})
        filters = (
            Param("type", "query", {"type": "array", "items": {"type": "string"}},
                  "event type (`access.granted`) or family (`access.*`); repeatable, or comma-separated"),
            Param("source", "query", {"type": "string"}, "source device id"),
        )
        config_errors = Reply("The YAML does not validate; nothing changed",
                              Content(model=ConfigInvalid))
        return [
            Route("GET", "/", self.index, "The web page", None, "web",
                  {200: Reply("HTML page", Content("text/html", schema={"type": "string"}))}),
            Route("GET", "/web/{name}", self.web_file, "The web page's scripts and styles", None, "web",
                  {200: Reply("the file", Content("application/octet-stream", schema={"type": "string"})),
                   404: Reply("No such file", json_error)},
                  params=(Param("name", "path", {"type": "string"}, "file name, e.g. app.js"),)),
            Route("GET", "/api/health", self.health, "Controller health", None, "system",
                  {200: Reply("health summary", Content(model=Health))}),
            Route("GET", "/api/openapi.json", self.openapi_doc, "This document", None, "system",
                  {200: Reply("OpenAPI 3.1 document", Content(schema={"type": "object"}))}),
            Route("GET", "/metrics", self.metrics, "Prometheus metrics", None, "system",
                  {200: Reply("Prometheus text exposition format",
                              Content("text/plain", schema={"type": "string"}))}),
            Route("POST", "/api/login", self.login, "Log in", None, "auth",
                  {200: Reply("Logged in; also sets the HttpOnly session cookie", Content(model=LoginOut),
                              {"Set-Cookie": f"{SESSION_COOKIE}=…; HttpOnly; SameSite=Strict"}),
                   401: Reply("Wrong user name or password", json_error),
                   429: Reply("Too many failed logins from this address or for this user",
                              json_error, {"Retry-After": "seconds to wait"})},
                  body=Content(model=LoginIn)),
            Route("POST", "/api/logout", self.logout, "Log out (revoke this token/cookie)", ANY_USER,
                  "auth", {204: Reply("Logged out")}),
            Route("GET", "/api/me", self.me, "Who am I", ANY_USER, "auth",
                  {200: Reply("the logged-in user", Content(model=Me))}),
            Route("GET", "/api/events", self.list_events, "Search the journal", STAFF, "events",
                  {200: Reply("a page of events, newest first", events_page)},
                  params=(
                      Param("since", "query", {"type": "string", "format": "date-time"},
                            "events at or after this time (ISO 8601; no zone = UTC; compared to "
                            "the millisecond)"),
                      Param("until", "query", {"type": "string", "format": "date-time"},
                            "events before this time"),
                      *filters,
                      Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                               "default": DEFAULT_PAGE}, "page size"),
                      Param("before", "query", {"type": "integer", "minimum": 1},
                            "cursor: only events with a smaller seq (the previous page's `next`)"),
                  )),
            Route("POST", "/api/events", self.inject_event, "Inject an event (integration/test tool)",
                  INJECTORS, "events",
                  {201: Reply("Committed to the journal (accepted)", Content(model=Accepted),
                              {"Location": "the event's URL"}),
                   503: Reply("The journal could not commit it; not accepted", json_error)},
                  body=Content(model=EventIn),
                  description="Answers only after the journal transaction holding the event has "
                              "committed: a 201 means the event survives a crash."),
            Route("GET", "/api/events/stream", self.stream, "Live events (server-sent events)", STAFF,
                  "events",
                  {200: Reply("`text/event-stream`: `id: <seq>` + `data: <event record JSON>` per event; "
                              "`event: dropped` (data `{dropped, total}`) when this client fell behind "
                              "and events were skipped; `: keepalive` comments every 15 s",
                              Content("text/event-stream", schema={"type": "string"})),
                   503: Reply("Too many open streams", json_error)},
                  params=(
                      Param("after", "query", {"type": "integer", "minimum": 0},
                            "first replay journal events with a larger seq, then go live"),
                      Param("Last-Event-ID", "header", {"type": "string"},
                            "set by EventSource on reconnect; wins over `after`"),
                      *filters,
                  )),
            Route("GET", "/api/events/{id}", self.get_event, "One event", STAFF, "events",
                  {200: Reply("the event", record), 404: Reply("No such event", json_error)},
                  params=(Param("id", "path", {"type": "string", "pattern": ID_RE.pattern}, "event id"),)),
            Route("GET", "/api/devices", self.list_devices, "Devices and their last known state", STAFF,
                  "devices", {200: Reply("all configured devices", Content(model=DeviceList))}),
            Route("GET", "/api/config", self.get_config, "The running configuration (redacted)", STAFF,
                  "config", {200: Reply("site file as JSON", Content(schema=REDACTED_CONFIG_SCHEMA))}),
            Route("POST", "/api/config/validate", self.validate_config, "Check a site file", STAFF,
                  "config", {200: Reply("It validates and could be applied", Content(model=ConfigValid)),
                             422: config_errors},
                  body=yaml_body),
            Route("POST", "/api/config/apply", self.apply_config, "Replace the running site file",
                  CONFIGURERS, "config",
                  {200: Reply("Applied and written to the site file", Content(model=ConfigApplied)),
                   422: config_errors},
                  body=yaml_body),
            Route("POST", "/api/config/reload", self.reload_config, "Re-read the site file on disk",
                  CONFIGURERS, "config",
                  {200: Reply("Reloaded", Content(model=ConfigApplied)), 422: config_errors}),
            *AccessRoutes(self).routes(),
            *PassRoutes(self).routes(),
            *SimRoutes(self).routes(),
            *AlarmRoutes(self).routes(),
            *VisionRoutes(self).routes(),
            *ZigbeeRoutes(self).routes(),
        ]

    def _document(self) -> dict[str, Any]:
        return build_document(
            self.routes,
            title="Linli edge controller API",
            version=__version__,
            description=(__doc__ or "").strip(),
            error_model=ErrorBody,
            security_schemes={
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "token from POST /api/login"},
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                            "description": f"set by POST /api/login; changes need the {CSRF_HEADER} header"},
            },
        )

    # ---- middleware ---------------------------------------------------------------------------

    @web.middleware
    async def errors_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or isinstance(exc, ApiError):
                raise
            message = {
                404: f"not found: {request.path}",
                405: f"method {request.method} not allowed on {request.path}",
                413: f"request body too large (at most {MAX_BODY} bytes)",
            }.get(exc.status, exc.reason)
            headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
            raise _error(exc.status, message, headers=headers) from None
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("API %s %s failed", request.method, request.path)
            raise _error(500, "internal error; see the controller's log") from None

    @web.middleware
    async def auth_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = self._by_handler.get(request.match_info.handler)
        if route is None:  # aiohttp's own 404/405 handlers
            return await handler(request)
        unsafe = request.method not in SAFE_METHODS
        if unsafe:
            origin = request.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc != request.host:
                raise _error(403, "cross-origin request refused")
        principal, problem = self._identify(request)
        if route.roles is not None:
            if principal is None:
                raise _error(401, problem or "log in first (POST /api/login)",
                             headers={"WWW-Authenticate": 'Bearer realm="linli"'})
            if principal.session.role not in route.roles:
                raise _error(403, f"the {principal.session.role} role may not use {route.method} {route.path}")
            if unsafe and principal.via == "cookie" and request.headers.get(CSRF_HEADER) is None:
                raise _error(403, f"cookie-authenticated changes need the {CSRF_HEADER} header")
        if principal is not None:
            request[PRINCIPAL] = principal
        return await handler(request)

    def _identify(self, request: web.Request) -> tuple[Principal | None, str | None]:
        users = self.controller.config.users
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None, "unsupported Authorization header; use `Bearer <token>`"
            found = self.sessions.lookup(token.strip(), users)
            if found is None:
                return None, "token invalid or expired; log in again"
            return Principal(found[0], found[1], token.strip(), "bearer"), None
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            found = self.sessions.lookup(cookie, users)
            if found is None:
                return None, "session expired; log in again"
            return Principal(found[0], found[1], cookie, "cookie"), None
        return None, None

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        if request.path.startswith("/api/"):
            headers.setdefault("Cache-Control", "no-store")
        else:
            headers.setdefault("Content-Security-Policy",
                               "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

    async def _on_shutdown(self, app: web.Application) -> None:
        self.stopping.set()  # live streams end so the server can close promptly

    # ---- web page -----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return self._file("index.html")

    async def web_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "index.html" or name not in self.web_files:
            raise _error(404, f"not found: {request.path}")
        return self._file(name)

    def _file(self, name: str) -> web.StreamResponse:
        path = self.web_files.get(name)
        if path is None:
            raise _error(404, f"web page file {name} is missing from this installation")
        return web.FileResponse(
            path, headers={"Content-Type": f"{_STATIC_TYPES[path.suffix]}; charset=utf-8",
                           "Cache-Control": "no-cache"}
        )

    # ---- system -------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.controller.health(), dumps=_dumps)

    async def openapi_doc(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.openapi)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=render(self.registry), headers={"Content-Type": METRICS_CONTENT_TYPE})

    # ---- auth ---------------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request, LoginIn, MAX_LOGIN_BODY)
        try:
            token, session = await self.auth.login(
                self.controller.config.users, body.username, body.password, request.remote or "unknown"
            )
        except TooManyAttempts as exc:
            self.stats.logins_throttled += 1
            raise _error(429, str(exc), headers={"Retry-After": str(math.ceil(exc.retry_after_s))}) from None
        except LoginRefused as exc:
            self.stats.logins_failed += 1
            log.warning("failed login for %r from %s", body.username, request.remote)
            raise _error(401, str(exc)) from None
        self.stats.logins_ok += 1
        expires = datetime.fromtimestamp(session.expires, UTC)
        response = _json(LoginOut(token=token, role=session.role, expires=expires))
        response.set_cookie(
            SESSION_COOKIE, token, max_age=int(self.sessions.ttl_s), path="/", httponly=True,
            samesite="Strict", secure=request.secure,
        )
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.revoke(request[PRINCIPAL].token)
        response = web.Response(status=204)
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def me(self, request: web.Request) -> web.StreamResponse:
        p = request[PRINCIPAL]
        return _json(Me(username=p.session.username, role=p.session.role,
                        expires=datetime.fromtimestamp(p.session.expires, UTC), apartment=p.user.apartment))

    # ---- events -------------------------------------------------------------------------------

    async def list_events(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        _check_params(request, {"since", "until", "type", "source", "limit", "before"})
        limit = _parse_int("limit", q["limit"], 1, MAX_PAGE) if "limit" in q else DEFAULT_PAGE
        rows = await self.controller.journal.query(
            since_ms=_parse_time("since", q["since"]) if "since" in q else None,
            until_ms=_parse_time("until", q["until"]) if "until" in q else None,
            types=_parse_types(request) or None,
            source=q.get("source") or None,
            before_seq=_parse_int("before", q["before"], 1, 2**63 - 1) if "before" in q else None,
            limit=limit + 1,  # one extra tells whether another page exists
        )
        page, more = rows[:limit], len(rows) > limit
        next_cursor = str(page[-1].seq) if more else "null"
        body = '{"events":[' + ",".join(_record_json(s) for s in page) + f'],"next":{next_cursor}}}'
        return web.Response(text=body, content_type="application/json")

    async def get_event(self, request: web.Request) -> web.StreamResponse:
        event_id = request.match_info["id"]
        if not ID_RE.match(event_id):
            raise _error(400, f"not an event id: {event_id!r}")
        stored = await self.controller.journal.get(event_id)
        if stored is None:
            raise _error(404, f"no event {event_id}")
        return web.Response(text=_record_json(stored), content_type="application/json")

    async def inject_event(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request, EventIn, MAX_EVENT_BODY)
        try:
            event = self.controller.factory(body.type, body.source, body.data, body.severity)
        except ValidationError as exc:
            raise _error(400, f"invalid event: {exc.errors()[0]['msg']}") from None
        try:
            seq = await self.controller.bus.publish(event)
        except JournalClosed:
            raise _error(503, "the controller is shutting down; event not accepted") from None
        except Exception as exc:  # disk full, I/O error: the journal refused the batch
            raise _error(503, f"the journal could not commit the event; not accepted ({exc})") from None
        log.info("event %s (%s) injected by %s", event.id, event.type, request[PRINCIPAL].session.username)
        return web.Response(
            text=f'{{"seq":{seq},"event":{event.to_json()}}}', status=201, content_type="application/json",
            headers={"Location": f"/api/events/{event.id}"},
        )

    async def stream(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        _check_params(request, {"after", "type", "source"})
        types = _parse_types(request)
        source = q.get("source") or None
        resume = request.headers.get("Last-Event-ID") or q.get("after")
        after = _parse_int("after", resume, 0, 2**63 - 1) if resume else None
        if self.stats.sse_clients >= self.max_streams:
            raise _error(503, "too many open live streams; try again later")
        type_ok = _type_matcher(types)

        def accept(event: Event) -> bool:
            return type_ok(event.type) and (source is None or event.source == source)

        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
        })
        await response.prepare(request)
        self.stats.sse_clients += 1
        sub = None
        try:
            await response.write(b"retry: 3000\n: connected\n\n")
            last = after if after is not None else 0
            if after is not None:
                last = await self._replay(response, last, types, source)
            # Subscribe only once caught up, then read the journal once more: anything committed
            # between that last read and the subscription is in the journal, anything after it
            # reaches the queue, and the seq check below drops the overlap.
            sub = self.controller.bus.subscribe(
                f"sse:{request.remote}:{id(request):x}", maxsize=STREAM_QUEUE, accept=accept
            )
            if after is not None:
                last = await self._replay(response, last, types, source)
            await self._live(request, response, sub, last)
        except ConnectionError:
            pass  # the client went away
        finally:
            if sub is not None:
                sub.close()
            self.stats.sse_clients -= 1
        return response

    async def _replay(self, response: web.StreamResponse, after: int, types: list[str],
                      source: str | None) -> int:
        journal = self.controller.journal
        while not self.stopping.is_set():
            rows = await journal.query(after_seq=after, types=types or None, source=source, limit=MAX_PAGE)
            if not rows:
                break
            await response.write("".join(f"id: {s.seq}\ndata: {_record_json(s)}\n\n" for s in rows).encode())
            after = rows[-1].seq
        return after

    async def _live(self, request: web.Request, response: web.StreamResponse, sub: Any, last: int) -> None:
        loop = asyncio.get_running_loop()
        reported = 0
        next_beat = loop.time() + self.heartbeat_s
        while not self.stopping.is_set():
            # Wake at least once a second: to notice a client that went away (aiohttp does not
            # cancel handlers on disconnect) and the server shutting down.
            timeout = max(0.0, min(1.0, next_beat - loop.time()))
            try:
                stored: StoredEvent = await asyncio.wait_for(sub.get(), timeout)
            except TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return
                if loop.time() >= next_beat:
                    await response.write(b": keepalive\n\n")
                    next_beat = loop.time() + self.heartbeat_s
                continue
            if sub.dropped > reported:
                self.stats.sse_dropped += sub.dropped - reported
                note = json.dumps({"dropped": sub.dropped - reported, "total": sub.dropped})
                reported = sub.dropped
                await response.write(f"event: dropped\ndata: {note}\n\n".encode())
            if stored.seq <= last:
                continue
            last = stored.seq
            await response.write(f"id: {stored.seq}\ndata: {_record_json(stored)}\n\n".encode())
            next_beat = loop.time() + self.heartbeat_s

    # ---- devices and config ---------------------------------------------------------------------

    async def list_devices(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"devices": [d.as_dict() for d in self.controller.devices.all()]}, dumps=_dumps)

    async def get_config(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(redact_config(self.controller.config), dumps=_dumps)

    async def validate_config(self, request: web.Request) -> web.StreamResponse:
        text = await _text_body(request)
        c = self.controller
        try:
            # YAML parsing of a large file takes a while: keep it off the event loop.
            new = await asyncio.get_running_loop().run_in_executor(
                None, _validate_text, text, c.config, c.config_path
            )
        except ConfigError as exc:
            return _config_errors(exc)
        return _json(ConfigValid(valid=True, summary=summary(new)))

    async def apply_config(self, request: web.Request) -> web.StreamResponse:
        return await self._reload(request, await _text_body(request))

    async def reload_config(self, request: web.Request) -> web.StreamResponse:
        return await self._reload(request, None)

    async def _reload(self, request: web.Request, text: str | None) -> web.StreamResponse:
        origin = f"api:{request[PRINCIPAL].session.username}"  # the audit trail names who changed it
        async with self.config_lock:  # two managers applying at once: one after the other
            try:
                new = await self.controller.reload_config(text, origin=origin)
            except ConfigError as exc:
                return _config_errors(exc)
        return _json(ConfigApplied(applied=True, summary=summary(new)))


API = web.AppKey("linli_api", Api)


def build_app(controller: Controller) -> web.Application:
    """The aiohttp application for `controller` (not yet listening; see start_api)."""
    api = Api(controller)
    # Each route checks its own body limit (_read_body); this is only the largest of them.
    app = web.Application(
        client_max_size=max(MAX_BODY, ACCESS_MAX_BODY), middlewares=[api.errors_middleware, api.auth_middleware]
    )
    app[API] = api
    for route in api.routes:
        app.router.add_route(route.method, route.path, route.handler)
    app.on_response_prepare.append(api._on_prepare)
    app.on_shutdown.append(api._on_shutdown)
    return app


async def start_api(controller: Controller) -> tuple[web.AppRunner, int]:
    """Serve the API on `api.host:api.port` (port 0: any free port); return the runner and port."""
    app = build_app(controller)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    cfg = controller.config.api
    site = web.TCPSite(runner, cfg.host, cfg.port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    port = runner.addresses[0][1]
    log.info("API listening on http://%s:%d/", cfg.host, port)
    return runner, port
