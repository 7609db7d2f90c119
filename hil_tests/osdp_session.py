"""Bring one OSDP reader online for commissioning: open the bus (or a simulated one), commission
the reader's key if asked to, and explain in an installer's words why a reader does not come up."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import osdp_sys

from drivers.osdp import Credential, Decision, KeyStore, OsdpDriver, PinCredential, ReaderConfig
from drivers.osdp.simulator import SimBus, SimReader
from drivers.osdp.testing import EventRecorder

CONNECT_TIMEOUT_SIM = 5.0
CONNECT_TIMEOUT_PORT = 10.0  # libosdp retries a silent reader about once a second; 9600 baud is slow

SECURITY_HINTS = {
    "key_mismatch": (
        "the reader answered the secure channel handshake but does not hold the key for {reader} in {keys}. "
        "A factory-fresh reader: commission it (--commission). One commissioned by another controller: "
        "reset it to its factory keys with the vendor's tool, then commission it."
    ),
    "sc_refused": "the reader refused the secure channel (NAK): check its OSDP settings with the vendor's tool",
    "sc_unsupported": "the reader does not offer the secure channel, which this profile requires",
    "sc_failed": (
        "install mode: the reader refused even the default key SCBK-D, so it already holds another key: "
        "reset it to its factory keys with the vendor's tool"
    ),
}


@dataclass(frozen=True)
class Target:
    """Where the reader is. port None: a simulated reader on a pseudo-terminal."""

    port: str | None
    address: int
    baud: int
    reader_id: str

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "simulator" if self.port is None else "hardware",
            "port": self.port,
            "address": self.address,
            "baud": self.baud,
            "reader": self.reader_id,
        }


class Session:
    """The driver (and, in simulator mode, the simulated bus) for one commissioning run."""

    def __init__(
        self,
        target: Target,
        *,
        keys: KeyStore | None,
        key_label: str | None,
        commission: bool,
        sim: SimReader | None = None,
        feedback: bool = True,
    ) -> None:
        self.target = target
        self.keys = keys
        self.key_label = key_label  # how the report names the key: never the key itself
        self.commission = commission
        self.sim = sim
        self.feedback = feedback  # green LED and a beep for each credential: a person sees it was read
        self.events = EventRecorder()
        self.pins: asyncio.Queue[str] = asyncio.Queue()
        self.bus: SimBus | None = None
        self.driver: OsdpDriver | None = None
        self.connection: dict[str, Any] = {}

    async def open(self) -> dict[str, Any]:
        """Connect; returns the connection record (online, secure, commissioned, reason, hint)."""
        port = self.target.port
        if port is None:
            assert self.sim is not None, "simulator mode needs a simulated reader"
            self.bus = SimBus([self.sim])
            await self.bus.start()
            port = self.bus.port
        started = time.monotonic()
        secure = self.keys is not None
        conn: dict[str, Any] = {"port": port, "key": self.key_label if secure else None}
        install_mode = self.commission and secure
        await self._start(port, install_mode=install_mode)
        reason = await self._wait_online(install_mode=install_mode)
        commissioned = bool(self.events.of("reader.commissioned", self.target.reader_id))
        if reason is None and install_mode:
            # Install mode lets a reader in with SCBK-D. Reconnect with its own key enforced: only
            # that shows the reader accepted the key and uses it.
            await self._stop_driver()
            await self._start(port, install_mode=False)
            reason = await self._wait_online(install_mode=False)
        conn.update(
            online=reason is None,
            seconds=round(time.monotonic() - started, 2),
            commissioned=commissioned,
            enforced=secure and reason is None,
        )
        if reason is not None:
            conn["reason"], conn["hint"] = reason
        else:
            assert self.driver is not None
            conn["secure"] = self.driver.reader_state(self.target.reader_id)["secure"]
        self.connection = conn
        return conn

    async def close(self) -> None:
        await self._stop_driver()
        if self.bus is not None:
            await self.bus.stop()
            self.bus = None

    async def _start(self, port: str, *, install_mode: bool) -> None:
        cfg = ReaderConfig(
            self.target.reader_id, self.target.address, secure=self.keys is not None, install_mode=install_mode
        )
        # In install mode libosdp first tries the reader's own key, fails ("Failed to verify PD
        # cryptogram") and falls back to SCBK-D, as intended: keep that expected error off the screen.
        level = osdp_sys.LOG_CRIT if install_mode else osdp_sys.LOG_ERROR
        self.driver = OsdpDriver(
            port,
            [cfg],
            self.events,
            on_credential=self._on_credential,
            keys=self.keys,
            baudrate=self.target.baud,
            name=f"osdp:{self.target.port or 'simulator'}",
            libosdp_log_level=level,
        )
        await self.driver.start()

    async def _stop_driver(self) -> None:
        if self.driver is not None:
            await self.driver.stop()
            self.driver = None

    async def _on_credential(self, reader_id: str, credential: Credential) -> Decision | None:
        if isinstance(credential, PinCredential):
            self.pins.put_nowait(credential.pin)
        return Decision(granted=True, feedback_ms=1000) if self.feedback else None

    async def _wait_online(self, *, install_mode: bool) -> tuple[str, str] | None:
        """None once the reader is online; else (reason, hint)."""
        assert self.driver is not None
        rid = self.target.reader_id
        timeout = CONNECT_TIMEOUT_SIM if self.target.port is None else CONNECT_TIMEOUT_PORT
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.driver.is_online(rid):
                return None
            # A wrong key is final (the driver retries only every few seconds); in install mode the
            # reader may still be working through SCBK-D, so wait for the outcome.
            if self.driver.reader_state(rid)["security_fault"] and not install_mode:
                break
            await asyncio.sleep(0.01)
        return self._why_offline(timeout)

    def _why_offline(self, timeout: float) -> tuple[str, str]:
        assert self.driver is not None
        t = self.target
        state = self.driver.reader_state(t.reader_id)
        fault = state["security_fault"]
        if fault:
            keys = self.key_label or "the key file"
            return f"security fault: {fault}", SECURITY_HINTS.get(fault, "").format(reader=t.reader_id, keys=keys)
        bus = [e for e in self.events.events if e.type in ("bus.online", "bus.offline")]
        if bus and bus[-1].type == "bus.offline":
            error = bus[-1].data.get("error")
            return f"cannot open {t.port}: {error}", "check the port name (ls /dev/serial/by-id/) and its permissions"
        if state["replies"] == 0:
            stats = self.driver.stats()
            if stats["bad_frames"] or stats["discarded_bytes"]:
                return (
                    f"bytes on the bus but no valid OSDP reply from address {t.address}",
                    f"check the baud rate ({t.baud}) and the A/B wiring (swapped lines garble every byte)",
                )
            return (
                f"no reply from address {t.address} at {t.baud} baud within {timeout:g} s",
                "check the reader's power, the A/B wiring and termination, its address and its baud rate",
            )
        offline = self.events.of("device.offline", t.reader_id)
        why = offline[-1].data.get("reason") if offline else "unknown"
        return f"the reader answered but did not come online ({why})", "see the driver's events in the report"
