"""Signed remote commands: the envelope, its verification, and the registry of handlers.

A command arrives on `linli/<site>/<controller>/cmd/<name>` as

    {"body": "<JSON text of {id, ts, args}>", "alg": "hmac-sha256" | "ed25519", "sig": "<base64>"}

The signature covers the exact bytes `topic + "\\n" + body`: the body travels as a string so the
verifier checks the bytes the signer produced, with no canonical-JSON rules to get wrong, and the
topic is covered so a command signed for one controller (or one command name) cannot be replayed
on another.

Nothing in this module touches the network: `CommandVerifier.verify` turns (topic, payload) into a
`Command` or raises `CommandRejected` naming one of `REASONS`, and `CommandRouter.execute` runs a
registered handler. The uplink wires both to MQTT.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

REASONS = (
    "oversized",
    "malformed",
    "unsigned",
    "bad_signature",
    "stale",
    "replayed",
    "unknown_command",
    "bad_args",
    "failed",
)
HMAC_SHA256 = "hmac-sha256"
ED25519 = "ed25519"
ALGORITHMS = (HMAC_SHA256, ED25519)
MIN_HMAC_KEY_BYTES = 32
COMMAND_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
COMMAND_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}(/[a-z0-9][a-z0-9_-]{0,63}){0,7}$")
_ENVELOPE_KEYS = frozenset({"body", "alg", "sig"})
_BODY_KEYS = frozenset({"id", "ts", "args"})
DEFAULT_HANDLER_TIMEOUT_S = 30.0


class CommandRejected(Exception):
    """A command that must not run (or did not complete); `reason` is one of REASONS."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        command_id: str | None = None,
        name: str | None = None,
        issues: list[str] | None = None,
    ) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        # Only ids that could safely become a topic level are kept: the uplink may publish a
        # result under it.
        self.command_id = command_id if command_id and COMMAND_ID_RE.match(command_id) else None
        self.name = name
        self.issues = issues or []

    def error(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason, "message": self.message}
        if self.issues:
            out["issues"] = self.issues
        return out


class BadArgs(ValueError):
    """Raised by a handler whose arguments are wrong; reported as reason `bad_args`."""


@dataclass(frozen=True)
class Command:
    name: str
    id: str
    ts: float
    args: dict[str, Any] = field(default_factory=dict)
    alg: str = HMAC_SHA256
    signer: str = "hmac"  # which key vouched for it, for the audit trail


# ---- keys --------------------------------------------------------------------------------------


def load_hmac_key(path: Path) -> bytes:
    """The raw bytes of the key file without its trailing newline; at least 32 bytes."""
    key = Path(path).read_bytes().rstrip(b"\r\n")
    if len(key) < MIN_HMAC_KEY_BYTES:
        raise ValueError(
            f"HMAC key in {path} is {len(key)} bytes; at least {MIN_HMAC_KEY_BYTES} are required"
        )
    return key


def parse_ed25519_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"Ed25519 public key {text[:16]!r}... is not base64") from exc
    if len(raw) != 32:
        raise ValueError(f"Ed25519 public key must be 32 raw bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def _key_label(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode()[:12]


# ---- replay protection -------------------------------------------------------------------------


class NonceCache:
    """Ids seen recently, each kept for `ttl_s` (2 x max skew: longer than any signed `ts` stays fresh).

    The cache is bounded. Evicting a live id would reopen it to replay, so eviction instead raises
    a floor: a command whose `ts` is not newer than an evicted one's is refused as a replay, since
    it can no longer be told apart from one.
    """

    def __init__(self, ttl_s: float, max_entries: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._seen: OrderedDict[str, tuple[float, float]] = OrderedDict()  # id -> (expires, ts)
        self._floor_ts = -math.inf

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, command_id: str, ts: float, now: float) -> bool:
        """Record the id; False when it was already seen (or cannot be proven new)."""
        while self._seen:
            oldest, (expires, _) = next(iter(self._seen.items()))
            if expires > now:
                break
            del self._seen[oldest]
        if command_id in self._seen or ts <= self._floor_ts:
            return False
        if len(self._seen) >= self.max_entries:
            _, (_, evicted_ts) = self._seen.popitem(last=False)
            self._floor_ts = max(self._floor_ts, evicted_ts)
        self._seen[command_id] = (now + self.ttl_s, ts)
        return True


# ---- verification ------------------------------------------------------------------------------


class CommandVerifier:
    """Checks envelopes for one controller's command topics (`prefix` = `linli/<s>/<c>/cmd/`)."""

    def __init__(
        self,
        prefix: str,
        *,
        hmac_key: bytes | None = None,
        ed25519_keys: Iterable[Ed25519PublicKey] = (),
        max_skew_s: float = 30.0,
        max_bytes: int = 16384,
        clock: Callable[[], float] = time.time,
        nonce_entries: int = 4096,
    ) -> None:
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.clock = clock
        self.max_skew_s = max_skew_s
        self.nonces = NonceCache(2 * max_skew_s, nonce_entries)
        self.set_keys(hmac_key, ed25519_keys)

    def set_keys(self, hmac_key: bytes | None, ed25519_keys: Iterable[Ed25519PublicKey]) -> None:
        """Swap keys (config reload) while keeping the replay cache."""
        if hmac_key is not None and len(hmac_key) < MIN_HMAC_KEY_BYTES:
            raise ValueError(f"HMAC key must be at least {MIN_HMAC_KEY_BYTES} bytes")
        self._hmac_key = hmac_key
        self._ed25519 = [(k, _key_label(k)) for k in ed25519_keys]

    def set_limits(self, max_skew_s: float, max_bytes: int) -> None:
        self.max_skew_s = max_skew_s
        self.max_bytes = max_bytes
        self.nonces.ttl_s = max(self.nonces.ttl_s, 2 * max_skew_s)

    @property
    def has_keys(self) -> bool:
        return self._hmac_key is not None or bool(self._ed25519)

    def verify(self, topic: str, payload: bytes, now: float | None = None) -> Command:
        now = self.clock() if now is None else now
        # Size first: nothing larger than the limit is even parsed.
        if len(payload) > self.max_bytes:
            raise CommandRejected("oversized", f"payload is {len(payload)} bytes, limit {self.max_bytes}")
        name = topic[len(self.prefix):] if topic.startswith(self.prefix) else ""
        envelope = _loads(payload, "envelope")
        if not isinstance(envelope, dict):
            raise CommandRejected("malformed", "envelope must be a JSON object")
        body = envelope.get("body")
        if not isinstance(body, str):
            raise CommandRejected("malformed", "envelope needs a string 'body'")
        # The id is read before the signature is checked only to label the rejection: it is
        # never trusted, and only a syntactically safe id is kept (see CommandRejected).
        claimed_id = _peek_id(body)
        extra = set(envelope) - _ENVELOPE_KEYS
        if extra:
            raise CommandRejected("malformed", f"unknown envelope keys: {sorted(extra)}", command_id=claimed_id)
        alg, sig = envelope.get("alg"), envelope.get("sig")
        if alg is None or sig is None:
            raise CommandRejected("unsigned", "envelope carries no 'alg' and 'sig'", command_id=claimed_id)
        if not isinstance(alg, str) or not isinstance(sig, str):
            raise CommandRejected("malformed", "'alg' and 'sig' must be strings", command_id=claimed_id)
        try:
            signed = topic.encode() + b"\n" + body.encode()
        except UnicodeEncodeError:
            raise CommandRejected("malformed", "body is not valid Unicode", command_id=claimed_id) from None
        signer = self._check_signature(alg, sig, signed, claimed_id)

        # Authenticated from here on.
        fields = _loads(body.encode(), "body")
        if not isinstance(fields, dict):
            raise CommandRejected("malformed", "body must be a JSON object")
        extra = set(fields) - _BODY_KEYS
        if extra:
            raise CommandRejected("malformed", f"unknown body keys: {sorted(extra)}", command_id=claimed_id)
        command_id = fields.get("id")
        if not isinstance(command_id, str) or not COMMAND_ID_RE.match(command_id):
            raise CommandRejected("malformed", "'id' must be 1-64 characters of A-Z a-z 0-9 _ -")
        ts = fields.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            raise CommandRejected("malformed", "'ts' must be unix seconds", command_id=command_id)
        if abs(now - ts) > self.max_skew_s:
            raise CommandRejected(
                "stale",
                f"ts is {now - ts:+.1f} s from now; allowed +/-{self.max_skew_s:g} s",
                command_id=command_id,
            )
        if not self.nonces.add(command_id, float(ts), now):
            raise CommandRejected("replayed", "this command id was already used", command_id=command_id)
        if not COMMAND_NAME_RE.match(name):
            raise CommandRejected("unknown_command", "no such command", command_id=command_id)
        args = fields.get("args", {})
        if not isinstance(args, dict):
            raise CommandRejected("bad_args", "'args' must be a JSON object", command_id=command_id, name=name)
        return Command(name=name, id=command_id, ts=float(ts), args=args, alg=alg, signer=signer)

    def _check_signature(self, alg: str, sig: str, signed: bytes, claimed_id: str | None) -> str:
        if alg not in ALGORITHMS:
            raise CommandRejected("unsigned", f"unknown alg {alg[:32]!r}", command_id=claimed_id)
        if alg == HMAC_SHA256 and self._hmac_key is None:
            raise CommandRejected("unsigned", "no HMAC key is configured", command_id=claimed_id)
        if alg == ED25519 and not self._ed25519:
            raise CommandRejected("unsigned", "no Ed25519 key is configured", command_id=claimed_id)
        try:
            raw = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            raise CommandRejected("bad_signature", "'sig' is not base64", command_id=claimed_id) from None
        if alg == HMAC_SHA256:
            assert self._hmac_key is not None
            expected = hmac.new(self._hmac_key, signed, hashlib.sha256).digest()
            if hmac.compare_digest(expected, raw):
                return "hmac"
        elif len(raw) == 64:
            for key, label in self._ed25519:
                try:
                    key.verify(raw, signed)
                except InvalidSignature:
                    continue
                return label
        raise CommandRejected("bad_signature", "signature does not verify", command_id=claimed_id)


def _loads(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    # RecursionError: a payload of nested brackets within the size limit still blows the stack.
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise CommandRejected("malformed", f"{what} is not valid JSON") from None


def _peek_id(body: str) -> str | None:
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError):
        return None
    value = fields.get("id") if isinstance(fields, dict) else None
    return value if isinstance(value, str) and COMMAND_ID_RE.match(value) else None


# ---- signing (the platform's side; also used by tests and tools) ---------------------------------


def sign_command(
    topic: str,
    *,
    command_id: str,
    args: dict[str, Any] | None = None,
    key: bytes | Ed25519PrivateKey,
    ts: float | None = None,
) -> bytes:
    """Build a signed envelope for `topic`: HMAC-SHA256 for a bytes key, Ed25519 for a private key."""
    body = json.dumps({"id": command_id, "ts": time.time() if ts is None else ts, "args": args or {}})
    signed = topic.encode() + b"\n" + body.encode()
    if isinstance(key, Ed25519PrivateKey):
        alg, raw = ED25519, key.sign(signed)
    else:
        alg, raw = HMAC_SHA256, hmac.new(key, signed, hashlib.sha256).digest()
    return json.dumps({"body": body, "alg": alg, "sig": base64.b64encode(raw).decode()}).encode()


# ---- the registry ------------------------------------------------------------------------------

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class CommandRouter:
    """Command name -> handler. Features add their commands with `register`.

    A handler receives the `args` object and returns a JSON-able dict (the result). It raises
    `BadArgs` for arguments it does not accept; any other exception is reported as `failed`.
    """

    def __init__(self, timeout_s: float = DEFAULT_HANDLER_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler, *, replace: bool = False) -> None:
        if not COMMAND_NAME_RE.match(name):
            raise ValueError(f"invalid command name {name!r}: lower-case words separated by '/'")
        if name in self._handlers and not replace:
            raise ValueError(f"command {name!r} is already registered")
        self._handlers[name] = handler

    def unregister(self, name: str) -> None:
        self._handlers.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)

    async def execute(self, command: Command) -> dict[str, Any]:
        handler = self._handlers.get(command.name)
        if handler is None:
            raise CommandRejected("unknown_command", "no such command", command_id=command.id)
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await handler(dict(command.args))
        except CommandRejected:
            raise
        except BadArgs as exc:
            raise CommandRejected("bad_args", str(exc), command_id=command.id, name=command.name) from None
        except TimeoutError:
            raise CommandRejected(
                "failed", f"no result within {self.timeout_s:g} s", command_id=command.id, name=command.name
            ) from None
        except Exception as exc:
            raise CommandRejected(
                "failed", f"{type(exc).__name__}: {exc}", command_id=command.id, name=command.name
            ) from exc
        if result is None:
            result = {}
        if not isinstance(result, dict):
            raise CommandRejected("failed", "handler returned no object", command_id=command.id, name=command.name)
        return result


# ---- built-in commands ---------------------------------------------------------------------------


class _Reloadable(Protocol):
    async def reload_config(self, text: str | None = None, origin: str = "api") -> Any: ...


def register_builtin_commands(router: CommandRouter, controller: _Reloadable) -> None:
    """`ping` and `config/reload`; skips names a feature already registered."""

    async def ping(args: dict[str, Any]) -> dict[str, Any]:
        if args:
            raise BadArgs("ping takes no arguments")
        return {"pong": True, "time": time.time()}

    async def reload(args: dict[str, Any]) -> dict[str, Any]:
        from edge.config import ConfigError

        if args:
            raise BadArgs("config/reload takes no arguments; it re-reads the site file on disk")
        try:
            await controller.reload_config(origin="mqtt")
        except ConfigError as exc:
            raise CommandRejected(
                "failed", "the site file does not validate; the running config is kept",
                issues=[str(i) for i in exc.issues],
            ) from None
        return {"reloaded": True}

    for name, handler in (("ping", ping), ("config/reload", reload)):
        if name not in router:
            router.register(name, handler)
