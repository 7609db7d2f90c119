"""The access-data routes of the API, against a running controller with access control over OSDP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.commands import Command, CommandRejected
from tests.controller_helpers import base_url, bearer, login, running_controller
from tests.test_access_service import access_site


async def call(
    session: aiohttp.ClientSession, method: str, url: str, token: str, **kwargs: Any
) -> tuple[int, Any]:
    async with session.request(method, url, headers=bearer(token), **kwargs) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


async def test_snapshot_delta_and_csv_import(tmp_path: Path) -> None:
    async with access_site(tmp_path) as (controller, _bus), aiohttp.ClientSession() as http:
        url = base_url(controller) + "/api/access"
        manager = await login(http, base_url(controller), "manager")
        resident = await login(http, base_url(controller), "resident")
        installer = await login(http, base_url(controller), "installer")

        status, snapshot = await call(http, "GET", f"{url}/snapshot", manager)
        assert status == 200 and snapshot["version"] == 1
        assert any(c["id"] == "bob.card" for c in snapshot["credentials"])
        for who in (resident, installer):
            status, _ = await call(http, "GET", f"{url}/snapshot", who)
            assert status == 403

        # Stale, malformed and inconsistent changes are refused and change nothing.
        status, body = await call(http, "POST", f"{url}/delta", manager, json={"base_version": 7, "version": 8})
        assert status == 409 and "version" in body["error"]
        status, body = await call(http, "POST", f"{url}/delta", manager, json={"base_version": 1, "version": 3})
        assert status == 400
        dup = {**snapshot, "version": 2}
        dup["credentials"] = [*snapshot["credentials"], {**snapshot["credentials"][0], "id": "copy.card"}]
        status, body = await call(http, "PUT", f"{url}/snapshot", manager, json=dup)
        assert status == 422 and "both use card" in body["error"]
        assert controller.access is not None and controller.access.store.version == 1

        status, body = await call(
            http,
            "POST",
            f"{url}/delta",
            manager,
            json={"base_version": 1, "version": 2, "delete": {"credentials": ["alice.card"]}},
        )
        assert (status, body) == (200, {"version": 2})
        status, body = await call(http, "PUT", f"{url}/snapshot", manager, json={**snapshot, "version": 1})
        assert status == 409  # older than what is stored
        status, body = await call(
            http, "PUT", f"{url}/snapshot?allow_older=true", manager, json={**snapshot, "version": 1}
        )
        assert (status, body) == (200, {"version": 1})

        csv = (
            "holder_id,name,kind,apartment,card_format,facility,card,access_levels\n"
            "zoe,Zoe,resident,5-501,h10301,10,3001,resident\n"
            "yan,Yan,resident,5-502,h10301,10,1002,resident\n"  # bob's card: refused
        )
        status, body = await call(http, "POST", f"{url}/import.csv", manager, data=csv.encode())
        assert status == 200, body
        assert body["version"] == 2 and body["imported"] == 1
        assert len(body["errors"]) == 1 and body["errors"][0].startswith("line 3: card")
        store = controller.access.store
        assert "zoe" in store.index.holders and "yan" not in store.index.holders  # type: ignore[union-attr]

        events = await controller.journal.query(types=["access.data_changed"], limit=10)
        assert {e.event.data["origin"] for e in events} == {"api:manager"}


async def test_access_routes_answer_503_without_osdp(tmp_path: Path) -> None:
    async with running_controller(tmp_path) as controller, aiohttp.ClientSession() as http:
        token = await login(http, base_url(controller), "admin")
        status, body = await call(http, "GET", f"{base_url(controller)}/api/access/snapshot", token)
        assert status == 503 and "osdp" in body["error"]


async def test_mqtt_access_commands(tmp_path: Path) -> None:
    async with access_site(tmp_path) as (controller, _bus):
        router = controller.commands
        assert "access/snapshot" in router and "access/delta" in router
        service = controller.access
        assert service is not None

        def command(name: str, args: dict[str, Any]) -> Command:
            return Command(name=name, id=f"c{time.monotonic_ns()}", ts=time.time(), args=args)

        result = await router.execute(
            command("access/delta", {"base_version": 1, "version": 2, "delete": {"credentials": ["alice.card"]}})
        )
        assert result == {"version": 2}
        with pytest.raises(CommandRejected) as stale:
            await router.execute(command("access/delta", {"base_version": 1, "version": 2}))
        assert stale.value.reason == "failed" and "send a snapshot" in str(stale.value)
        with pytest.raises(CommandRejected) as bad:
            await router.execute(command("access/delta", {"base_version": "x"}))
        assert bad.value.reason == "bad_args"
        snapshot = service.store.snapshot().model_dump(mode="json")
        result = await router.execute(command("access/snapshot", {**snapshot, "version": 5}))
        assert result == {"version": 5}
        assert service.store.version == 5
    # The service stopped: its commands are gone with it.
    assert "access/snapshot" not in controller.commands
