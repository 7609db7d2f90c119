"""The HTTP API against a real Controller: real SQLite journal, real server on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

import edge.api
from edge.api import API
from edge.auth import CSRF_HEADER, SESSION_COOKIE
from edge.daemon import Controller
from tests.controller_helpers import (
    USERS,
    base_url,
    bearer,
    cookie_session,
    login,
    running_controller,
    site_yaml,
)


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    async with running_controller(tmp_path) as c:
        yield c


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with cookie_session() as session:
        yield session


@pytest.fixture
def url(controller: Controller) -> str:
    return base_url(controller)


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.request(method, url, **kwargs) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body, r


async def inject(http: aiohttp.ClientSession, url: str, token: str, **event: Any) -> dict[str, Any]:
    """POST an event; return it as the journal lists it (the event's fields plus `seq`)."""
    status, body, _ = await call(http, "POST", f"{url}/api/events", json=event, headers=bearer(token))
    assert status == 201, body
    assert set(body) == {"seq", "event"}
    return {"seq": body["seq"], **body["event"]}


# ---- health, errors, unknown routes -------------------------------------------------------------


async def test_health_needs_no_login_and_reports_the_journal(
    controller: Controller, http: aiohttp.ClientSession, url: str
) -> None:
    status, body, _ = await call(http, "GET", f"{url}/api/health")
    assert status == 200
    assert body["status"] == "ok"
    assert body["uplink"] == "disabled"
    assert body["site"] == "maple-court"
    # system.started is committed before the API starts.
    assert body["journal"]["accepted"] == controller.journal.stats.accepted >= 1
    assert body["outbox_depth"] == controller.journal.stats.outbox_depth


async def test_unknown_routes_and_methods_answer_json(http: aiohttp.ClientSession, url: str) -> None:
    status, body, _ = await call(http, "GET", f"{url}/api/nothing-here")
    assert status == 404
    assert body["error"] == "not found: /api/nothing-here"
    status, body, r = await call(http, "DELETE", f"{url}/api/events")
    assert status == 405
    assert "DELETE" in body["error"]
    assert set(r.headers["Allow"].split(",")) == {"GET", "POST"}


# ---- login, sessions, roles ---------------------------------------------------------------------


async def test_login_gives_a_bearer_token_and_an_httponly_strict_cookie(
    http: aiohttp.ClientSession, url: str, controller: Controller
) -> None:
    before = datetime.now(UTC)
    status, body, r = await call(
        http, "POST", f"{url}/api/login", json={"username": "installer", "password": USERS["installer"][1]}
    )
    assert status == 200, body
    assert body["role"] == "installer"
    assert len(body["token"]) >= 32  # 256 bits, url-safe base64
    ttl = controller.config.api.session_ttl_s
    expires = datetime.fromisoformat(body["expires"])
    assert before + timedelta(seconds=ttl - 5) <= expires <= datetime.now(UTC) + timedelta(seconds=ttl)
    morsel = r.cookies[SESSION_COOKIE]
    assert morsel.value == body["token"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"

    # The bearer token alone (no cookies) works ...
    async with aiohttp.ClientSession() as bare:
        status, me, _ = await call(bare, "GET", f"{url}/api/me", headers=bearer(body["token"]))
        assert (status, me["username"], me["role"]) == (200, "installer", "installer")
        # ... and so does the cookie alone (the jar of `http`).
    status, me, _ = await call(http, "GET", f"{url}/api/me")
    assert (status, me["username"]) == (200, "installer")


async def test_wrong_credentials_are_401_without_saying_which_part_was_wrong(
    http: aiohttp.ClientSession, url: str
) -> None:
    s1, wrong_pw, _ = await call(http, "POST", f"{url}/api/login", json={"username": "admin", "password": "nope"})
    s2, no_user, _ = await call(http, "POST", f"{url}/api/login", json={"username": "ghost", "password": "nope"})
    assert s1 == s2 == 401
    assert wrong_pw["error"] == no_user["error"]
    assert SESSION_COOKIE not in http.cookie_jar.filter_cookies(url)  # type: ignore[arg-type]


async def test_missing_or_bad_credentials_are_401(http: aiohttp.ClientSession, url: str) -> None:
    status, body, r = await call(http, "GET", f"{url}/api/events")
    assert status == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await call(http, "GET", f"{url}/api/events", headers=bearer("not-a-real-token"))
    assert status == 401 and "invalid" in body["error"]
    status, body, _ = await call(http, "GET", f"{url}/api/events", headers={"Authorization": "Basic YWRtaW46eA=="})
    assert status == 401 and "Bearer" in body["error"]
    status, _, _ = await call(http, "GET", f"{url}/api/me", cookies={SESSION_COOKIE: "forged"})
    assert status == 401


@pytest.mark.parametrize(
    ("user", "method", "path", "allowed"),
    [
        ("resident", "GET", "/api/me", True),
        ("resident", "GET", "/api/events", False),
        ("resident", "GET", "/api/devices", False),
        ("installer", "GET", "/api/events", True),
        ("installer", "GET", "/api/config", True),
        ("installer", "POST", "/api/config/apply", False),
        ("installer", "POST", "/api/config/reload", False),
        ("manager", "POST", "/api/events", False),
        ("manager", "GET", "/api/devices", True),
        ("admin", "POST", "/api/events", True),
    ],
)
async def test_role_table(
    http: aiohttp.ClientSession, url: str, user: str, method: str, path: str, allowed: bool
) -> None:
    token = await login(http, url, user)
    body = {"type": "test.role", "source": "pytest"} if path == "/api/events" else None
    status, reply, _ = await call(http, method, f"{url}{path}", json=body, headers=bearer(token))
    if allowed:
        assert status in (200, 201), reply
    else:
        assert status == 403, reply
        assert user in reply["error"]


async def test_cookie_changes_need_the_csrf_header_and_same_origin(
    http: aiohttp.ClientSession, url: str, controller: Controller
) -> None:
    await login(http, url, "admin")  # the jar now holds the session cookie
    event = {"type": "test.csrf", "source": "pytest"}
    accepted = controller.journal.stats.accepted

    status, body, _ = await call(http, "POST", f"{url}/api/events", json=event)
    assert status == 403 and CSRF_HEADER in body["error"]
    status, body, _ = await call(
        http, "POST", f"{url}/api/events", json=event,
        headers={CSRF_HEADER: "1", "Origin": "http://evil.example"},
    )
    assert status == 403 and "cross-origin" in body["error"]
    assert controller.journal.stats.accepted == accepted  # neither refused request wrote anything

    status, _, _ = await call(
        http, "POST", f"{url}/api/events", json=event, headers={CSRF_HEADER: "1", "Origin": url}
    )
    assert status == 201
    # Reading with the cookie needs no header: GETs change nothing.
    status, _, _ = await call(http, "GET", f"{url}/api/events")
    assert status == 200


async def test_logout_revokes_the_token_and_clears_the_cookie(http: aiohttp.ClientSession, url: str) -> None:
    token = await login(http, url, "manager")
    status, _, r = await call(http, "POST", f"{url}/api/logout", headers=bearer(token))
    assert status == 204
    assert r.cookies[SESSION_COOKIE].value == ""  # the browser is told to drop it
    status, _, _ = await call(http, "GET", f"{url}/api/me", headers=bearer(token))
    assert status == 401
    status, _, _ = await call(http, "GET", f"{url}/api/me", cookies={SESSION_COOKIE: token})
    assert status == 401


async def test_sessions_expire_after_the_configured_ttl(
    http: aiohttp.ClientSession, url: str, controller: Controller
) -> None:
    token = await login(http, url, "admin")
    sessions = controller.api_runner.app[API].sessions
    real = sessions.clock
    sessions.clock = lambda: real() + controller.config.api.session_ttl_s - 30
    status, _, _ = await call(http, "GET", f"{url}/api/me", headers=bearer(token))
    assert status == 200
    sessions.clock = lambda: real() + controller.config.api.session_ttl_s + 1
    status, body, _ = await call(http, "GET", f"{url}/api/me", headers=bearer(token))
    assert status == 401 and "expired" in body["error"]


async def test_removing_a_user_from_the_site_file_revokes_their_sessions(
    http: aiohttp.ClientSession, url: str
) -> None:
    admin = await login(http, url, "admin")
    installer = await login(http, url, "installer")
    without_installer = {k: v for k, v in USERS.items() if k != "installer"}
    status, body, _ = await call(
        http, "POST", f"{url}/api/config/apply", data=site_yaml(users=without_installer), headers=bearer(admin)
    )
    assert status == 200, body
    status, _, _ = await call(http, "GET", f"{url}/api/events", headers=bearer(installer))
    assert status == 401
    status, _, _ = await call(http, "GET", f"{url}/api/events", headers=bearer(admin))
    assert status == 200


async def test_repeated_failed_logins_are_throttled_with_growing_delays(
    http: aiohttp.ClientSession, url: str, controller: Controller
) -> None:
    limiter = controller.api_runner.app[API].auth.limiter
    now = [1000.0]
    limiter.clock = lambda: now[0]
    bad = {"username": "admin", "password": "guess"}
    for _ in range(limiter.free_failures):
        status, _, _ = await call(http, "POST", f"{url}/api/login", json=bad)
        assert status == 401
    status, body, r = await call(http, "POST", f"{url}/api/login", json=bad)
    assert status == 429
    assert int(r.headers["Retry-After"]) == 1
    # While blocked even the right password is refused: guessing gains nothing by trying faster.
    right = {"username": "admin", "password": USERS["admin"][1]}
    status, _, _ = await call(http, "POST", f"{url}/api/login", json=right)
    assert status == 429
    # The same client trying another account is blocked too (per address).
    status, _, _ = await call(http, "POST", f"{url}/api/login",
                              json={"username": "manager", "password": USERS["manager"][1]})
    assert status == 429

    delays = []
    for _ in range(4):
        now[0] += 1000  # wait out the block (but not the 1 h memory), then fail again
        status, _, _ = await call(http, "POST", f"{url}/api/login", json=bad)
        assert status == 401
        status, _, r = await call(http, "POST", f"{url}/api/login", json=bad)
        assert status == 429
        delays.append(int(r.headers["Retry-After"]))
    assert delays == [2, 4, 8, 16]

    now[0] += 17
    status, body, _ = await call(http, "POST", f"{url}/api/login", json=right)
    assert status == 200, body
    # A success clears the slate for this address and name.
    status, _, _ = await call(http, "POST", f"{url}/api/login", json=bad)
    assert status == 401


# ---- malformed requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"", "empty"),
        (b'{"type": "test.x"}', "source"),
        (b'{"type": "Not A Type", "source": "x"}', "type"),
        (b'{"type": "test.x", "source": "x", "severity": "panic"}', "severity"),
        (b'{"type": "test.x", "source": "x", "color": "red"}', "color"),
        (b'{"type": "test.x", "source": "x", "data": [1]}', "data"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
async def test_malformed_event_bodies_are_400_with_a_reason(
    http: aiohttp.ClientSession, url: str, controller: Controller, body: bytes, fragment: str
) -> None:
    token = await login(http, url, "admin")
    accepted = controller.journal.stats.accepted
    status, reply, _ = await call(
        http, "POST", f"{url}/api/events", data=body,
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert status == 400, reply
    assert fragment in reply["error"]
    assert controller.journal.stats.accepted == accepted


async def test_oversized_bodies_are_413(http: aiohttp.ClientSession, url: str) -> None:
    token = await login(http, url, "admin")
    big = {"type": "test.big", "source": "x", "data": {"blob": "x" * (edge.api.MAX_EVENT_BODY + 1)}}
    status, reply, _ = await call(http, "POST", f"{url}/api/events", json=big, headers=bearer(token))
    assert status == 413 and "too large" in reply["error"]
    huge = "#" * (edge.api.MAX_BODY + 10)
    status, reply, _ = await call(http, "POST", f"{url}/api/config/validate", data=huge, headers=bearer(token))
    assert status == 413 and "too large" in reply["error"]


async def test_login_body_is_validated(http: aiohttp.ClientSession, url: str) -> None:
    status, reply, _ = await call(http, "POST", f"{url}/api/login", json={"username": "admin"})
    assert status == 400 and "password" in reply["error"]
    assert reply["details"][0]["loc"] == "password"


# ---- events ---------------------------------------------------------------------------------------


@dataclass
class Seeded:
    token: str
    records: list[dict[str, Any]] = field(default_factory=list)


async def seed(http: aiohttp.ClientSession, url: str) -> Seeded:
    seeded = Seeded(await login(http, url, "installer"))
    plan = [
        ("access.granted", "reader-1"), ("access.denied", "reader-2"), ("door.forced_open", "door-1"),
        ("access.granted", "reader-2"), ("alarm.triggered", "zone-3"), ("accessory.noise", "reader-1"),
    ]
    for i in range(24):
        type_, source = plan[i % len(plan)]
        seeded.records.append(await inject(http, url, seeded.token, type=type_, source=source, data={"i": i}))
    return seeded


async def all_pages(
    http: aiohttp.ClientSession, url: str, token: str, params: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: int | None = None
    for _ in range(100):
        query = [*params, *([("before", str(cursor))] if cursor else [])]
        status, page, _ = await call(http, "GET", f"{url}/api/events", params=query, headers=bearer(token))
        assert status == 200, page
        out.extend(page["events"])
        cursor = page["next"]
        if cursor is None:
            return out
        assert cursor == page["events"][-1]["seq"]
    raise AssertionError("pagination did not end")


async def test_events_filter_and_paginate_newest_first(http: aiohttp.ClientSession, url: str) -> None:
    seeded = await seed(http, url)
    mine = seeded.records

    # type family: access.* matches access.granted/denied but not accessory.noise
    got = await all_pages(http, url, seeded.token, [("type", "access.*"), ("limit", "5")])
    want = [r for r in reversed(mine) if r["type"].startswith("access.")]
    assert [e["id"] for e in got] == [r["id"] for r in want]
    assert len(got) == 12

    # repeatable type + source
    got = await all_pages(http, url, seeded.token,
                          [("type", "door.forced_open"), ("type", "alarm.triggered"), ("limit", "3")])
    assert {e["type"] for e in got} == {"door.forced_open", "alarm.triggered"} and len(got) == 8
    got = await all_pages(http, url, seeded.token, [("source", "reader-2"), ("limit", "2")])
    assert [e["seq"] for e in got] == [r["seq"] for r in reversed(mine) if r["source"] == "reader-2"]

    # the whole journal, one page at a time: newest first, no duplicates, nothing missing
    got = await all_pages(http, url, seeded.token, [("limit", "7")])
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    assert {r["seq"] for r in mine} <= set(seqs)
    assert seqs[-1] == 1  # system.started

    # time window: [since, until), to the millisecond (the journal's time resolution)
    def ms(iso: str) -> int:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)

    t5, t10 = mine[5]["time"], mine[10]["time"]
    got = await all_pages(http, url, seeded.token, [("since", t5), ("until", t10), ("limit", "500")])
    want = [r["id"] for r in reversed(mine) if ms(t5) <= ms(r["time"]) < ms(t10)]
    assert [e["id"] for e in got] == want
    assert mine[5]["id"] in want and mine[10]["id"] not in want


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=501", "limit=ten", "before=x", "since=yesterday", "type=Bad Type", "types=access.*"],
)
async def test_bad_event_queries_are_400(http: aiohttp.ClientSession, url: str, query: str) -> None:
    token = await login(http, url, "manager")
    status, reply, _ = await call(http, "GET", f"{url}/api/events?{query}", headers=bearer(token))
    assert status == 400, reply
    assert query.split("=")[0] in reply["error"]


async def test_get_one_event(http: aiohttp.ClientSession, url: str) -> None:
    token = await login(http, url, "admin")
    made = await inject(http, url, token, type="intercom.call", source="panel-1", severity="warning",
                        data={"apartment": "3-401"})
    status, got, _ = await call(http, "GET", f"{url}/api/events/{made['id']}", headers=bearer(token))
    assert status == 200 and got == made
    status, _, _ = await call(http, "GET", f"{url}/api/events/01ARZ3NDEKTSV4RRFFQ69G5FAV", headers=bearer(token))
    assert status == 404
    status, reply, _ = await call(http, "GET", f"{url}/api/events/robert'); DROP TABLE", headers=bearer(token))
    assert status == 400 and "not an event id" in reply["error"]


async def test_injected_event_is_committed_before_the_201(
    http: aiohttp.ClientSession, url: str, controller: Controller
) -> None:
    token = await login(http, url, "installer")
    made = await inject(http, url, token, type="test.durable", source="pytest", data={"n": 1})
    # A separate connection sees the row at once: the transaction had committed, not just queued.
    with sqlite3.connect(controller.config.journal_path) as db:
        row = db.execute("SELECT seq, type FROM events WHERE id = ?", (made["id"],)).fetchone()
    assert row == (made["seq"], "test.durable")
    assert made["site"] == "maple-court" and made["controller"] == "gate-1"


# ---- live stream ----------------------------------------------------------------------------------


@dataclass
class Frame:
    id: str | None = None
    event: str | None = None
    data: str | None = None
    comments: list[str] = field(default_factory=list)


async def next_frame(resp: aiohttp.ClientResponse, within_s: float = 5.0) -> Frame:
    frame = Frame()
    async with asyncio.timeout(within_s):
        while True:
            raw = await resp.content.readline()
            if not raw:
                raise EOFError("stream ended")
            line = raw.decode().rstrip("\n")
            if line == "":
                if frame.data is not None or frame.comments or frame.event:
                    return frame
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                frame.comments.append(value)
            elif name in ("id", "event", "data"):
                setattr(frame, name, value)


async def next_event(resp: aiohttp.ClientResponse, within_s: float = 5.0) -> Frame:
    while True:
        frame = await next_frame(resp, within_s)
        if frame.data is not None:
            return frame


async def no_streams_within(controller: Controller, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(s.name.startswith("sse:") for s in controller.bus.subscriptions):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_stream_delivers_live_events_and_resumes_with_last_event_id(
    http: aiohttp.ClientSession, url: str, controller: Controller
) -> None:
    token = await login(http, url, "installer")
    async with http.get(f"{url}/api/events/stream", headers=bearer(token)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = await inject(http, url, token, type="test.live", source="pytest", data={"n": 1})
        frame = await next_event(resp)
        assert frame.id == str(first["seq"])
        assert json.loads(frame.data or "") == first

    # Disconnected: the server notices and closes the subscription.
    assert await no_streams_within(controller, 5)
    missed = [await inject(http, url, token, type="test.live", source="pytest", data={"n": n}) for n in (2, 3)]

    headers = {**bearer(token), "Last-Event-ID": frame.id or ""}
    # `after` is older than Last-Event-ID: the header (set by EventSource on reconnect) wins.
    async with http.get(f"{url}/api/events/stream?after=0", headers=headers) as resp:
        replayed = [json.loads((await next_event(resp)).data or "") for _ in missed]
        assert replayed == missed
        live = await inject(http, url, token, type="test.live", source="pytest", data={"n": 4})
        frame = await next_event(resp)
        assert json.loads(frame.data or "") == live  # no duplicate of the replayed ones in between


async def test_stream_filters_by_type(http: aiohttp.ClientSession, url: str) -> None:
    token = await login(http, url, "admin")
    async with http.get(f"{url}/api/events/stream?type=alarm.*", headers=bearer(token)) as resp:
        await inject(http, url, token, type="access.granted", source="reader-1")
        alarm = await inject(http, url, token, type="alarm.triggered", source="zone-1", severity="alarm")
        frame = await next_event(resp)
        assert json.loads(frame.data or "")["id"] == alarm["id"]


async def test_stream_tells_a_slow_client_how_many_events_it_dropped(
    http: aiohttp.ClientSession, url: str, controller: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge.api, "STREAM_QUEUE", 5)
    token = await login(http, url, "admin")
    async with http.get(f"{url}/api/events/stream", headers=bearer(token)) as resp:
        await next_frame(resp)  # ": connected" — the subscription exists from here on
        # 50 events in one commit batch overflow the 5-slot queue before the stream can run.
        futures = [
            await controller.bus.submit(controller.factory("test.flood", "pytest", {"n": n})) for n in range(50)
        ]
        seqs = await asyncio.gather(*futures)
        frame = await next_frame(resp)
        assert frame.event == "dropped"
        note = json.loads(frame.data or "")
        assert note["dropped"] == note["total"] == 45
        got = [json.loads((await next_event(resp)).data or "")["seq"] for _ in range(5)]
        assert got == seqs[-5:]  # the newest survive: drop-oldest

    _, text, _ = await call(http, "GET", f"{url}/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["linli_api_sse_dropped_events"].samples[0].value == 45


async def test_stream_sends_heartbeats(http: aiohttp.ClientSession, url: str, controller: Controller) -> None:
    controller.api_runner.app[API].heartbeat_s = 0.2
    token = await login(http, url, "admin")
    async with http.get(f"{url}/api/events/stream", headers=bearer(token)) as resp:
        comments: list[str] = []
        while "keepalive" not in comments:
            comments += (await next_frame(resp, within_s=3)).comments
        assert "keepalive" in comments


# ---- devices and config ---------------------------------------------------------------------------

DEVICES = "  - {id: reader-1, name: Gate reader, kind: reader, driver: simulated}\n"
SECRETS = (
    "uplink:\n  enabled: false\n  broker: mqtt://gateuser:hunter2@broker.example:8883\n"
    "  password_file: /etc/linli/mqtt-password\n"
)


@pytest.fixture
async def config_controller(tmp_path: Path) -> AsyncIterator[Controller]:
    text = site_yaml(devices=DEVICES).replace("uplink: {enabled: false}\n", SECRETS)
    async with running_controller(tmp_path, text) as c:
        yield c


async def test_config_is_shown_without_secrets(http: aiohttp.ClientSession, config_controller: Controller) -> None:
    url = base_url(config_controller)
    token = await login(http, url, "installer")
    status, body, _ = await call(http, "GET", f"{url}/api/config", headers=bearer(token))
    assert status == 200
    assert [u["name"] for u in body["users"]] == list(USERS)
    assert all("password_hash" not in u for u in body["users"])
    serialised = str(body)
    assert "$argon2" not in serialised
    assert "hunter2" not in serialised and "gateuser" not in serialised
    assert body["uplink"]["broker"] == "mqtt://<redacted>@broker.example:8883"
    assert body["uplink"]["password_file"] == "<redacted>"
    assert body["site"]["id"] == "maple-court"


async def test_devices_list(http: aiohttp.ClientSession, config_controller: Controller) -> None:
    url = base_url(config_controller)
    token = await login(http, url, "manager")
    # Drivers put what they like in the state; an odd value must not break the page.
    config_controller.devices.seen("reader-1", tamper=False, last_frame=b"\x01\x02")
    status, body, _ = await call(http, "GET", f"{url}/api/devices", headers=bearer(token))
    assert status == 200
    [device] = body["devices"]
    assert device["id"] == "reader-1" and device["online"] is True
    assert device["state"] == {"tamper": False, "last_frame": "b'\\x01\\x02'"}


async def test_config_validate_reports_positions(http: aiohttp.ClientSession, url: str) -> None:
    token = await login(http, url, "installer")
    status, body, _ = await call(
        http, "POST", f"{url}/api/config/validate", data=site_yaml(devices=DEVICES), headers=bearer(token)
    )
    assert status == 200, body
    assert body["valid"] is True and "maple-court" in body["summary"]

    broken = site_yaml() + "doors:\n  - {id: front, lock_mode: fail_open}\n"
    status, body, _ = await call(http, "POST", f"{url}/api/config/validate", data=broken, headers=bearer(token))
    assert status == 422
    assert body["valid"] is False
    [issue] = body["errors"]
    assert issue["path"] == "doors[0].lock_mode"
    assert issue["line"] == broken.splitlines().index("  - {id: front, lock_mode: fail_open}") + 1

    # A change apply would refuse (the API address needs a restart) does not validate either.
    moved = site_yaml().replace("port: 0", "port: 9999")
    status, body, _ = await call(http, "POST", f"{url}/api/config/validate", data=moved, headers=bearer(token))
    assert status == 422 and body["errors"][0]["path"] == "api"


async def test_config_apply_rejects_bad_yaml_and_keeps_running_config(
    http: aiohttp.ClientSession, url: str, controller: Controller
) -> None:
    token = await login(http, url, "manager")
    running = controller.config
    on_disk = controller.config_path.read_text() if controller.config_path else ""
    status, body, _ = await call(
        http, "POST", f"{url}/api/config/apply", data="site: {id: [unclosed\n", headers=bearer(token)
    )
    assert status == 422
    assert body["errors"][0]["message"].startswith("YAML syntax")
    assert controller.config is running
    assert controller.config_path is not None and controller.config_path.read_text() == on_disk
    status, page, _ = await call(http, "GET", f"{url}/api/events?type=config.rejected", headers=bearer(token))
    [rejected] = page["events"]
    assert rejected["data"]["origin"] == "api:manager"


async def test_config_apply_and_reload(http: aiohttp.ClientSession, url: str, controller: Controller) -> None:
    token = await login(http, url, "admin")
    status, body, _ = await call(
        http, "POST", f"{url}/api/config/apply", data=site_yaml(devices=DEVICES), headers=bearer(token)
    )
    assert status == 200, body
    assert body["applied"] is True
    status, devices, _ = await call(http, "GET", f"{url}/api/devices", headers=bearer(token))
    assert [d["id"] for d in devices["devices"]] == ["reader-1"]
    assert controller.config_path is not None and "reader-1" in controller.config_path.read_text()

    # Someone edits the file on disk; reload picks it up.
    controller.config_path.write_text(site_yaml(devices=DEVICES.replace("reader-1", "reader-9")))
    status, body, _ = await call(http, "POST", f"{url}/api/config/reload", headers=bearer(token))
    assert status == 200, body
    assert [d.id for d in controller.devices.all()] == ["reader-9"]

    controller.config_path.write_text("site: 42\n")
    status, body, _ = await call(http, "POST", f"{url}/api/config/reload", headers=bearer(token))
    assert status == 422
    assert [d.id for d in controller.devices.all()] == ["reader-9"]
    status, page, _ = await call(http, "GET", f"{url}/api/events?type=config.*", headers=bearer(token))
    assert [e["type"] for e in page["events"]] == ["config.rejected", "config.applied", "config.applied"]


async def test_config_bodies_must_be_utf8_text(http: aiohttp.ClientSession, url: str) -> None:
    token = await login(http, url, "admin")
    status, body, _ = await call(http, "POST", f"{url}/api/config/apply", data=b"\xff\xfe\x00", headers=bearer(token))
    assert status == 400 and "UTF-8" in body["error"]
    status, body, _ = await call(http, "POST", f"{url}/api/config/validate", data=b"  \n", headers=bearer(token))
    assert status == 400 and "empty" in body["error"]


# ---- metrics ---------------------------------------------------------------------------------------


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_match_the_controller(
    http: aiohttp.ClientSession, url: str, controller: Controller
) -> None:
    token = await login(http, url, "installer")
    for n in range(15):
        await inject(http, url, token, type="test.metric", source="pytest", data={"n": n})
    # And a burst that commits as one batch, so events accepted and commits differ.
    burst = [await controller.bus.submit(controller.factory("test.burst", "pytest")) for _ in range(20)]
    await asyncio.gather(*burst)

    async def probe() -> None:
        await asyncio.Event().wait()

    controller.supervisor.start("probe", probe)
    await asyncio.sleep(0)
    status, text, r = await call(http, "GET", f"{url}/metrics")  # no login needed
    assert status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    m = metric_samples(text)
    st = controller.journal.stats
    assert m[("linli_events_accepted_total", ())] == st.accepted >= 36
    assert m[("linli_journal_commit_seconds_count", ())] == st.batches < st.accepted
    assert m[("linli_journal_commit_seconds_sum", ())] == pytest.approx(st.commit_seconds_total)
    assert m[("linli_journal_commit_batch_size_sum", ())] == st.accepted
    assert m[("linli_outbox_depth", ())] == st.outbox_depth == st.accepted  # no uplink: nothing acked
    assert m[("linli_journal_bytes", ())] == st.stored_bytes > 0
    assert m[("linli_uplink_state", (("state", "disabled"),))] == 1
    assert m[("linli_uplink_state", (("state", "connected"),))] == 0
    assert m[("linli_uplink_connected", ())] == 0
    assert m[("linli_task_running", (("task", "probe"),))] == 1
    assert m[("linli_task_restarts_total", (("task", "probe"),))] == 0
    assert m[("linli_api_logins_total", (("outcome", "ok"),))] == 1
    assert m[("linli_info", (("controller", "gate-1"), ("site", "maple-court"), ("version", edge.__version__)))] == 1

    # A counter is read at scrape time: another event moves it without any other bookkeeping.
    await inject(http, url, token, type="test.metric", source="pytest")
    _, text, _ = await call(http, "GET", f"{url}/metrics")
    assert metric_samples(text)[("linli_events_accepted_total", ())] == st.accepted


async def test_each_controller_has_its_own_metrics(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with running_controller(tmp_path / "a", site_yaml(controller="gate-a")) as a, \
            running_controller(tmp_path / "b", site_yaml(controller="gate-b")) as b:
        token = await login(http, base_url(a), "admin")
        for _ in range(3):
            await inject(http, base_url(a), token, type="test.metric", source="pytest")
        _, text_a, _ = await call(http, "GET", f"{base_url(a)}/metrics")
        _, text_b, _ = await call(http, "GET", f"{base_url(b)}/metrics")
        assert metric_samples(text_a)[("linli_events_accepted_total", ())] == a.journal.stats.accepted == 4
        assert metric_samples(text_b)[("linli_events_accepted_total", ())] == b.journal.stats.accepted == 1


# ---- OpenAPI ---------------------------------------------------------------------------------------


def check(doc: dict[str, Any], method: str, path: str, status: int, body: Any,
          media: str = "application/json") -> None:
    op = doc["paths"][path][method.lower()]
    schema = op["responses"][str(status)]["content"][media]["schema"]
    validator = jsonschema.Draft202012Validator({**schema, "components": doc["components"]})
    errors = list(validator.iter_errors(body))
    assert not errors, f"{method} {path} {status}: {errors[0].message}"


async def test_openapi_documents_every_route(http: aiohttp.ClientSession, url: str, controller: Controller) -> None:
    status, doc, _ = await call(http, "GET", f"{url}/api/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    app = controller.api_runner.app
    registered = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert registered == documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            if op["security"]:
                assert {"401", "403"} <= set(op["responses"]), (method, path)
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    # The role table in the document is the one enforced.
    assert doc["paths"]["/api/config/apply"]["post"]["x-linli-roles"] == ["admin", "manager"]
    assert doc["paths"]["/api/events"]["post"]["x-linli-roles"] == ["admin", "installer"]


async def test_real_responses_match_the_documented_schemas(
    http: aiohttp.ClientSession, url: str, controller: Controller
) -> None:
    _, doc, _ = await call(http, "GET", f"{url}/api/openapi.json")
    controller.devices.load([])

    status, body, _ = await call(http, "GET", f"{url}/api/health")
    check(doc, "GET", "/api/health", status, body)
    status, body, _ = await call(http, "POST", f"{url}/api/login",
                                 json={"username": "admin", "password": USERS["admin"][1]})
    check(doc, "POST", "/api/login", status, body)
    token = body["token"]
    auth = bearer(token)
    status, body, _ = await call(http, "GET", f"{url}/api/me", headers=auth)
    check(doc, "GET", "/api/me", status, body)
    status, made, _ = await call(http, "POST", f"{url}/api/events", headers=auth,
                                 json={"type": "test.schema", "source": "pytest", "data": {"x": [1, {"y": None}]}})
    check(doc, "POST", "/api/events", status, made)
    status, body, _ = await call(http, "GET", f"{url}/api/events?limit=1", headers=auth)
    check(doc, "GET", "/api/events", status, body)
    assert body["next"] is not None
    status, body, _ = await call(http, "GET", f"{url}/api/events/{made['event']['id']}", headers=auth)
    check(doc, "GET", "/api/events/{id}", status, body)
    status, body, _ = await call(http, "GET", f"{url}/api/devices", headers=auth)
    check(doc, "GET", "/api/devices", status, body)
    status, body, _ = await call(http, "GET", f"{url}/api/config", headers=auth)
    check(doc, "GET", "/api/config", status, body)
    status, body, _ = await call(http, "POST", f"{url}/api/config/validate", headers=auth, data=site_yaml())
    check(doc, "POST", "/api/config/validate", status, body)
    status, body, _ = await call(http, "POST", f"{url}/api/config/validate", headers=auth, data="site: 1\n")
    check(doc, "POST", "/api/config/validate", status, body)
    status, body, _ = await call(http, "POST", f"{url}/api/config/apply", headers=auth, data=site_yaml())
    check(doc, "POST", "/api/config/apply", status, body)
    status, body, _ = await call(http, "GET", f"{url}/api/events?limit=0", headers=auth)
    check(doc, "GET", "/api/events", status, body)
    async with aiohttp.ClientSession() as anonymous:
        status, body, _ = await call(anonymous, "GET", f"{url}/api/events")
    assert status == 401
    check(doc, "GET", "/api/events", status, body)

    # A schema that documents the wrong shape must fail this check: guard the checker itself.
    with pytest.raises(AssertionError):
        check(doc, "GET", "/api/me", 200, {"username": "admin"})


async def test_web_page_and_assets_are_served_with_a_strict_policy(http: aiohttp.ClientSession, url: str) -> None:
    status, html, r = await call(http, "GET", f"{url}/")
    assert status == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert 'src="/web/app.js"' in html
    status, js, r = await call(http, "GET", f"{url}/web/app.js")
    assert status == 200 and r.headers["Content-Type"].startswith("text/javascript")
    assert "EventSource" in js
    status, _, _ = await call(http, "GET", f"{url}/web/..%2Fapi.py")
    assert status == 404
    status, _, _ = await call(http, "GET", f"{url}/web/missing.js")
    assert status == 404


async def test_shutdown_ends_open_streams_promptly(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with running_controller(tmp_path) as c:
        url = base_url(c)
        token = await login(http, url, "admin")
        resp = await http.get(f"{url}/api/events/stream", headers=bearer(token))
        await next_frame(resp)
        started = time.monotonic()
    assert time.monotonic() - started < 4  # aiohttp would otherwise wait its shutdown timeout
    resp.close()
