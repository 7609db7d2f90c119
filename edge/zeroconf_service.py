"""Advertises the controller's API on the local network as `_linli._tcp.local.`."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from edge import __version__

if TYPE_CHECKING:
    from edge.daemon import Controller

log = logging.getLogger(__name__)

SERVICE_TYPE = "_linli._tcp.local."


def _addresses(host: str) -> list[str]:
    if host not in ("0.0.0.0", "::", ""):
        return [host]
    # Bound to every interface: advertise the addresses other hosts can reach us on.
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        found = sorted({info[4][0] for info in infos if not info[4][0].startswith("127.")})
    except OSError:
        found = []
    return found or ["127.0.0.1"]


class Advertiser:
    def __init__(self, controller: Controller, interfaces: list[str] | None = None) -> None:
        self.controller = controller
        self.interfaces = interfaces
        self.info: AsyncServiceInfo | None = None

    def service_info(self) -> AsyncServiceInfo:
        cfg = self.controller.config
        name = f"linli-{cfg.site.id}-{cfg.controller.id}"
        return AsyncServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            port=self.controller.api_port or cfg.api.port,
            parsed_addresses=_addresses(cfg.api.host),
            server=f"{name}.local.",
            properties={
                "site": cfg.site.id,
                "controller": cfg.controller.id,
                "version": __version__,
                "api": "/api",
            },
        )

    async def run(self) -> None:
        kwargs = {"interfaces": self.interfaces} if self.interfaces else {}
        azc = AsyncZeroconf(ip_version=IPVersion.V4Only, **kwargs)
        self.info = self.service_info()
        try:
            await azc.async_register_service(self.info, allow_name_change=True)
            log.info("advertising %s on port %s", self.info.name, self.info.port)
            await asyncio.Event().wait()
        finally:
            try:
                await azc.async_unregister_service(self.info)
            finally:
                await azc.async_close()
