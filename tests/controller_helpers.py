"""A real Controller for tests: a site file in tmp_path, a real SQLite journal, the API on port 0.

    async with running_controller(tmp_path) as controller:
        url = base_url(controller)
        ...

Users (name -> role, password) are in USERS; their argon2 hashes use tiny costs so logins in tests
take milliseconds. Uplink and zeroconf are off unless the caller's YAML says otherwise.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from argon2 import PasswordHasher

from edge.config import load_config
from edge.daemon import Controller
from edge.journal import StoredEvent

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)

USERS: dict[str, tuple[str, str]] = {
    "admin": ("admin", "admin-secret-1"),
    "manager": ("manager", "manager-secret-2"),
    "installer": ("installer", "installer-secret-3"),
    "resident": ("resident", "resident-secret-4"),
}


@functools.cache
def hash_password(password: str) -> str:
    return FAST_HASHER.hash(password)


def users_yaml(users: Mapping[str, tuple[str, str]] = USERS) -> str:
    lines = ["users:"]
    for name, (role, password) in users.items():
        lines.append(f'  - {{name: {name}, role: {role}, password_hash: "{hash_password(password)}"}}')
    return "\n".join(lines) + "\n"


def site_yaml(
    *,
    site: str = "maple-court",
    controller: str = "gate-1",
    users: Mapping[str, tuple[str, str]] = USERS,
    devices: str = "",
    extra: str = "",
) -> str:
    """A minimal site file for an API test. `devices`/`extra` are raw YAML appended at top level."""
    text = (
        f"site: {{id: {site}, name: Maple Court}}\n"
        f"controller: {{id: {controller}}}\n"
        "data_dir: data\n"
        "uplink: {enabled: false}\n"
        "zeroconf: {enabled: false}\n"
        "api: {host: 127.0.0.1, port: 0}\n"
        + users_yaml(users)
    )
    if devices:
        text += "devices:\n" + devices
    return text + extra


@asynccontextmanager
async def running_controller(tmp_path: Path, text: str | None = None) -> AsyncIterator[Controller]:
    """Write the site file, start a Controller (journal + API on 127.0.0.1:0), stop it after."""
    path = tmp_path / "site.yaml"
    path.write_text(text if text is not None else site_yaml(), encoding="utf-8")
    controller = Controller(load_config(path), path)
    await controller.start()
    try:
        yield controller
    finally:
        await controller.stop()


def base_url(controller: Controller) -> str:
    return f"http://127.0.0.1:{controller.api_port}"


async def login(session: aiohttp.ClientSession, url: str, name: str) -> str:
    """Log `name` (from USERS) in; return the bearer token (the session's jar keeps the cookie)."""
    _, password = USERS[name]
    async with session.post(f"{url}/api/login", json={"username": name, "password": password}) as r:
        body = await r.json()
        assert r.status == 200, body
        return str(body["token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cookie_session() -> aiohttp.ClientSession:
    """A client that keeps cookies for 127.0.0.1 (aiohttp's default jar ignores IP hosts)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def wait_event(
    controller: Controller,
    type: str,
    where: Callable[[dict[str, Any]], bool] | None = None,
    *,
    after: int = 0,
    within: float = 5.0,
) -> StoredEvent:
    """The first journaled (committed) event of `type` after seq `after` whose data passes `where`."""
    deadline = time.monotonic() + within
    while True:
        for stored in await controller.journal.query(types=[type], after_seq=after, limit=1000):
            if where is None or where(stored.event.data):
                return stored
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {type} journaled within {within}s")
        await asyncio.sleep(0.01)


async def journaled(controller: Controller, type: str, after: int = 0) -> list[StoredEvent]:
    return await controller.journal.query(types=[type], after_seq=after, limit=1000)


def mark(controller: Controller) -> int:
    """The journal's newest seq: events after it are the test's."""
    return controller.journal.stats.last_seq
