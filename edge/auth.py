"""Users, sessions and login throttling for the HTTP API.

Users live in the site file (`users:` with argon2 hashes); sessions live only in memory, so a
restart logs everyone out, which is the safe default for a box at the gate. A session is bound to
the user's password hash at login time: changing (or removing) a user in the site file revokes its
sessions at the next request.

Roles, from least to most trusted: resident, installer, manager, admin. Which role may call which
route is the table in `edge.api` (ROUTES); the groups below are its vocabulary.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edge.config import UserConfig

Role = Literal["resident", "installer", "manager", "admin"]
ROLES: tuple[Role, ...] = ("resident", "installer", "manager", "admin")

# Route groups used by the role table in edge.api.
ANY_USER: frozenset[str] = frozenset(ROLES)
STAFF: frozenset[str] = frozenset({"installer", "manager", "admin"})
CONFIGURERS: frozenset[str] = frozenset({"manager", "admin"})
INJECTORS: frozenset[str] = frozenset({"installer", "admin"})

SESSION_COOKIE = "linli_session"
# The web page sends this header on every state-changing request. A cross-site form cannot set
# it, and a cross-site fetch() that sets it needs a CORS preflight we never answer.
CSRF_HEADER = "X-Linli-Csrf"

MAX_PASSWORD_BYTES = 1024  # argon2 is fed the whole password: bound the work per attempt


class LoginRefused(Exception):
    """Wrong user name or password (deliberately not saying which)."""


class TooManyAttempts(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed logins; retry in {math.ceil(retry_after_s)} s")
        self.retry_after_s = retry_after_s


@dataclass
class Session:
    username: str
    role: Role
    expires: float  # unix time
    password_hash: str  # the hash the session was created with; a new hash revokes it
    key: str  # sha256 of the token: the token itself is never stored


def _token_key(token: str) -> str:
    # Index by a digest so the dict lookup never compares the secret itself byte by byte.
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Bearer tokens / session cookies: 256 random bits each, expiring after `ttl_s`."""

    def __init__(
        self,
        ttl_s: float,
        *,
        max_per_user: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_per_user = max_per_user
        self.clock = clock
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, user: UserConfig) -> tuple[str, Session]:
        self._prune()
        mine = sorted(
            (s for s in self._sessions.values() if s.username == user.name), key=lambda s: s.expires
        )
        # A script that logs in in a loop must not grow memory without bound: oldest goes first.
        for old in mine[: max(0, len(mine) - self.max_per_user + 1)]:
            self._sessions.pop(old.key, None)
        token = secrets.token_urlsafe(32)
        session = Session(
            user.name, user.role, self.clock() + self.ttl_s, user.password_hash, _token_key(token)
        )
        self._sessions[session.key] = session
        return token, session

    def lookup(self, token: str, users: Sequence[UserConfig]) -> tuple[Session, UserConfig] | None:
        """The live session for `token` and its user as the running config has it now."""
        key = _token_key(token)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires <= self.clock():
            del self._sessions[key]
            return None
        user = next((u for u in users if u.name == session.username), None)
        if user is None or user.password_hash != session.password_hash:
            del self._sessions[key]  # user removed or password changed in the site file
            return None
        session.role = user.role  # a role change in the site file applies at once
        return session, user

    def revoke(self, token: str) -> bool:
        return self._sessions.pop(_token_key(token), None) is not None

    def _prune(self) -> None:
        now = self.clock()
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]


@dataclass
class _Failures:
    count: int
    last: float


class LoginLimiter:
    """Slows password guessing per client address and per user name.

    The first `free_failures` failures cost nothing; after that each further failure doubles the
    time the key must wait before the next attempt (`base_delay_s`, 2x, 4x … up to `max_delay_s`).
    Attempts while blocked are refused without checking the password, so they neither help the
    attacker nor cost argon2 time. Keys are forgotten `forget_after_s` after their last failure;
    at most `max_keys` are remembered (least recently failed dropped first) so a flood of made-up
    user names cannot exhaust memory.
    """

    def __init__(
        self,
        *,
        free_failures: int = 5,
        base_delay_s: float = 1.0,
        max_delay_s: float = 900.0,
        forget_after_s: float = 3600.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.forget_after_s = forget_after_s
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def delay_after(self, failures: int) -> float:
        if failures < self.free_failures:
            return 0.0
        return min(self.base_delay_s * 2 ** (failures - self.free_failures), self.max_delay_s)

    def _entry(self, key: str, now: float) -> _Failures | None:
        entry = self._failures.get(key)
        if entry is not None and now - entry.last > max(self.forget_after_s, self.delay_after(entry.count)):
            del self._failures[key]
            return None
        return entry

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until these keys may try again (0: now)."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            entry = self._entry(key, now)
            if entry is not None:
                wait = max(wait, entry.last + self.delay_after(entry.count) - now)
        return wait

    def failure(self, keys: Iterable[str]) -> None:
        now = self.clock()
        for key in keys:
            entry = self._entry(key, now)
            if entry is None:
                entry = self._failures[key] = _Failures(0, now)
            entry.count += 1
            entry.last = now
            self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def success(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)


class PasswordChecker:
    """argon2 verification off the event loop, a few at a time.

    Each verification takes tens of milliseconds and (with argon2's defaults) 64 MiB of memory,
    so concurrent logins are capped to keep a 1 GB box from swapping under a login flood.
    """

    def __init__(self, concurrency: int = 2) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self._dummies: dict[str, str] = {}

    async def verify(self, password_hash: str, password: str) -> bool:
        """Check a password; the caller holds one of `slots`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, _verify, password_hash, password)

    async def dummy_hash(self, like: Sequence[UserConfig]) -> str:
        """A hash with the same cost as the real ones, to check unknown names against.

        Without it, "no such user" would answer measurably faster than "wrong password".
        """
        params_of = like[0].password_hash if like else None
        key = "$".join(params_of.split("$")[1:4]) if params_of else ""  # variant, version, costs
        if key not in self._dummies:
            loop = asyncio.get_running_loop()
            self._dummies[key] = await loop.run_in_executor(None, _make_dummy, params_of)
        return self._dummies[key]


def _verify(password_hash: str, password: str) -> bool:
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _make_dummy(like_hash: str | None) -> str:
    hasher = PasswordHasher()
    if like_hash is not None:
        with contextlib.suppress(InvalidHashError):
            hasher = PasswordHasher.from_parameters(extract_parameters(like_hash))
    return hasher.hash(secrets.token_urlsafe(16))


class Authenticator:
    """Login: throttle, find the user, verify the password, open a session."""

    def __init__(
        self,
        sessions: SessionStore,
        limiter: LoginLimiter | None = None,
        checker: PasswordChecker | None = None,
    ) -> None:
        self.sessions = sessions
        self.limiter = limiter or LoginLimiter()
        self.checker = checker or PasswordChecker()

    async def login(
        self, users: Sequence[UserConfig], username: str, password: str, client: str
    ) -> tuple[str, Session]:
        # Names are throttled case-insensitively so "Admin" and "admin" share one budget.
        keys = (f"ip:{client}", f"user:{username.lower()}")
        self._check_throttle(keys)
        user = next((u for u in users if u.name == username), None)
        too_long = len(password.encode()) > MAX_PASSWORD_BYTES
        dummy = await self.checker.dummy_hash(users) if user is None and not too_long else None
        async with self.checker.slots:
            # Checked again after queueing for a slot: a burst of parallel guesses all passed the
            # first check, but only those that get a slot before the failures land are tried.
            self._check_throttle(keys)
            if too_long:
                ok = False
            elif user is None:
                await self.checker.verify(dummy or "", password)
                ok = False
            else:
                ok = await self.checker.verify(user.password_hash, password)
        if not ok or user is None:
            self.limiter.failure(keys)
            raise LoginRefused("wrong user name or password")
        self.limiter.success(keys)
        return self.sessions.create(user)

    def _check_throttle(self, keys: Iterable[str]) -> None:
        wait = self.limiter.retry_after(keys)
        if wait > 0:
            raise TooManyAttempts(wait)
