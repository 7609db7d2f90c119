"""The embedded MQTT broker `linli demo` uses when no broker is given.

amqtt is pure-Python asyncio and speaks MQTT 3.1.1 only, so the uplink falls back from v5. It
binds 0.0.0.0 unless told otherwise: we always bind loopback, so the demo never opens a port to
the network.
"""

from __future__ import annotations

import logging
import socket

from amqtt.broker import Broker

log = logging.getLogger(__name__)


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    def __init__(self, port: int = 0) -> None:
        self.host = "127.0.0.1"
        self.port = port or _free_loopback_port()
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        # amqtt logs every packet at INFO; keep the demo's console readable.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._broker = Broker(config)
        await self._broker.start()
        log.info("embedded MQTT broker listening on %s", self.url)

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
