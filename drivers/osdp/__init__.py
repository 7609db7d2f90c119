"""OSDP (IEC 60839-11-5) readers over RS-485: a Control Panel driver on libosdp, and a reader simulator.

    from drivers.osdp import OsdpDriver, ReaderConfig, KeyStore

The driver is refreshed from the asyncio event loop (no thread), reports dotted events through a
`report(type, source, data, severity)` callback and asks an `on_credential(reader_id, credential)`
coroutine for the access decision. See docs/osdp.md.
"""

from drivers.osdp.cp import OsdpDriver
from drivers.osdp.keys import KeyFileError, KeyStore
from drivers.osdp.model import (
    Capability,
    CardCredential,
    Credential,
    CredentialCallback,
    Decision,
    KeypadFunction,
    LedColor,
    PinCredential,
    ReaderConfig,
    ReportCallback,
    Severity,
)
from drivers.osdp.wiegand import CardRead, WiegandError, WiegandParityError

__all__ = [
    "Capability",
    "CardCredential",
    "CardRead",
    "Credential",
    "CredentialCallback",
    "Decision",
    "KeyFileError",
    "KeyStore",
    "KeypadFunction",
    "LedColor",
    "OsdpDriver",
    "PinCredential",
    "ReaderConfig",
    "ReportCallback",
    "Severity",
    "WiegandError",
    "WiegandParityError",
]
