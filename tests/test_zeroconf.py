from __future__ import annotations

import asyncio
from types import SimpleNamespace

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from edge.config import parse_config
from edge.zeroconf_service import SERVICE_TYPE, Advertiser

SITE = """
site: {id: maple-court}
controller: {id: gate-1}
api: {host: 127.0.0.1, port: 8123}
"""


async def test_controller_is_found_on_the_local_network() -> None:
    controller = SimpleNamespace(config=parse_config(SITE), api_port=8123)
    advertiser = Advertiser(controller, interfaces=["127.0.0.1"])  # type: ignore[arg-type]
    task = asyncio.create_task(advertiser.run())
    browser = AsyncZeroconf(ip_version=IPVersion.V4Only, interfaces=["127.0.0.1"])
    try:
        name = f"linli-maple-court-gate-1.{SERVICE_TYPE}"
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        found = False
        for _ in range(20):
            if await info.async_request(browser.zeroconf, 500):
                found = True
                break
        assert found, "service not answered over mDNS"
        assert info.port == 8123
        assert info.parsed_addresses() == ["127.0.0.1"]
        assert info.decoded_properties["controller"] == "gate-1"
        assert info.decoded_properties["site"] == "maple-court"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await browser.async_close()
