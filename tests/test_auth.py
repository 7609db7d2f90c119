"""Sessions, login throttling and password checking (edge.auth), without HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest
from argon2 import PasswordHasher

from edge.auth import (
    MAX_PASSWORD_BYTES,
    Authenticator,
    LoginLimiter,
    LoginRefused,
    PasswordChecker,
    SessionStore,
    TooManyAttempts,
)
from edge.config import UserConfig
from tests.controller_helpers import hash_password


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def user(name: str = "alice", role: str = "manager", password: str = "pw-alice") -> UserConfig:
    return UserConfig(name=name, role=role, password_hash=hash_password(password))  # type: ignore[arg-type]


# ---- sessions ---------------------------------------------------------------------------------------


def test_tokens_are_long_random_and_not_stored_in_clear() -> None:
    store = SessionStore(3600)
    alice = user()
    tokens = {store.create(alice)[0] for _ in range(20)}
    assert len(tokens) == 20
    assert all(len(t) >= 43 for t in tokens)  # 32 random bytes, base64url
    assert not any(t in store._sessions for t in tokens)  # keyed by digest, not by the token


def test_session_expires() -> None:
    clock = Clock()
    store = SessionStore(600, clock=clock)
    alice = user()
    token, session = store.create(alice)
    assert session.expires == clock.now + 600
    clock.now += 599
    assert store.lookup(token, [alice]) is not None
    clock.now += 2
    assert store.lookup(token, [alice]) is None
    assert len(store) == 0  # expired sessions are dropped, not kept around


def test_password_change_or_removal_revokes_and_role_change_applies() -> None:
    store = SessionStore(600)
    alice = user()
    token, _ = store.create(alice)
    promoted = alice.model_copy(update={"role": "admin"})
    found = store.lookup(token, [promoted])
    assert found is not None and found[0].role == "admin"
    assert store.lookup(token, []) is None  # removed from the site file
    token, _ = store.create(alice)
    changed = alice.model_copy(update={"password_hash": hash_password("new password")})
    assert store.lookup(token, [changed]) is None


def test_revoke_and_per_user_cap() -> None:
    store = SessionStore(600, max_per_user=3)
    alice, bob = user(), user("bob")
    bob_token, _ = store.create(bob)
    tokens = [store.create(alice)[0] for _ in range(5)]
    live = [t for t in tokens if store.lookup(t, [alice]) is not None]
    assert live == tokens[-3:]  # the oldest made room
    assert store.lookup(bob_token, [bob]) is not None  # others are untouched
    assert store.revoke(tokens[-1]) is True
    assert store.lookup(tokens[-1], [alice]) is None
    assert store.revoke(tokens[-1]) is False


# ---- throttling -------------------------------------------------------------------------------------


def test_limiter_grows_the_delay_after_the_free_failures() -> None:
    clock = Clock()
    limiter = LoginLimiter(free_failures=3, base_delay_s=1, max_delay_s=10, clock=clock)
    keys = ["ip:1.2.3.4"]
    waits = []
    for _ in range(8):
        waits.append(limiter.retry_after(keys))
        clock.now += waits[-1]
        limiter.failure(keys)
    assert waits == [0, 0, 0, 1, 2, 4, 8, 10]  # capped at max_delay_s
    assert limiter.retry_after(keys) == 10
    clock.now += 4
    assert limiter.retry_after(keys) == 6


def test_limiter_keys_are_independent_and_any_blocked_key_blocks() -> None:
    clock = Clock()
    limiter = LoginLimiter(free_failures=2, clock=clock)
    for ip in ("ip:a", "ip:b"):  # one name guessed from two addresses
        limiter.failure([ip, "user:admin"])
    assert limiter.retry_after(["ip:a", "user:admin"]) == 1
    assert limiter.retry_after(["ip:c", "user:admin"]) == 1  # a fresh address does not help
    assert limiter.retry_after(["ip:a", "user:bob"]) == 0  # one failure from ip:a is still free


def test_limiter_forgets_and_success_resets() -> None:
    clock = Clock()
    limiter = LoginLimiter(free_failures=1, forget_after_s=60, clock=clock)
    limiter.failure(["k"])
    assert limiter.retry_after(["k"]) == 1
    clock.now += 61
    assert limiter.retry_after(["k"]) == 0
    limiter.failure(["k"])
    assert limiter.retry_after(["k"]) == 1  # counted from scratch: first failure again
    limiter.success(["k"])
    assert limiter.retry_after(["k"]) == 0


def test_limiter_memory_is_bounded() -> None:
    limiter = LoginLimiter(max_keys=100)
    for n in range(1000):
        limiter.failure([f"user:made-up-{n}"])
    assert len(limiter._failures) == 100
    assert "user:made-up-999" in limiter._failures


# ---- login -------------------------------------------------------------------------------------------


async def test_login_opens_a_session_for_the_right_password_only() -> None:
    auth = Authenticator(SessionStore(600))
    users = [user(), user("bob", "installer", "pw-bob")]
    token, session = await auth.login(users, "bob", "pw-bob", "10.0.0.1")
    assert (session.username, session.role) == ("bob", "installer")
    assert auth.sessions.lookup(token, users) is not None
    with pytest.raises(LoginRefused):
        await auth.login(users, "bob", "pw-alice", "10.0.0.1")
    with pytest.raises(LoginRefused):
        await auth.login(users, "Bob", "pw-bob", "10.0.0.1")  # names are exact
    with pytest.raises(LoginRefused):
        await auth.login(users, "bob", "x" * (MAX_PASSWORD_BYTES + 1), "10.0.0.1")


async def test_a_burst_of_parallel_guesses_is_cut_off() -> None:
    clock = Clock()
    limiter = LoginLimiter(free_failures=3, clock=clock)
    auth = Authenticator(SessionStore(600), limiter, PasswordChecker(concurrency=1))
    users = [user()]
    results = await asyncio.gather(
        *(auth.login(users, "alice", f"guess-{n}", "10.0.0.9") for n in range(30)), return_exceptions=True
    )
    refused = sum(isinstance(r, LoginRefused) for r in results)
    throttled = sum(isinstance(r, TooManyAttempts) for r in results)
    # Only the free failures were actually checked; the rest were refused unseen.
    assert (refused, throttled) == (3, 27)
    with pytest.raises(TooManyAttempts) as blocked:
        await auth.login(users, "alice", "pw-alice", "10.0.0.9")
    assert blocked.value.retry_after_s == pytest.approx(1)


async def test_unknown_names_cost_as_much_as_wrong_passwords() -> None:
    # Real-cost hashes here: the point is that "no such user" is not a shortcut.
    hasher = PasswordHasher(time_cost=3, memory_cost=32768)
    users = [UserConfig(name="alice", role="admin", password_hash=hasher.hash("right"))]
    auth = Authenticator(SessionStore(600), LoginLimiter(free_failures=100))
    with pytest.raises(LoginRefused):
        await auth.login(users, "nobody", "guess", "ip")  # warms up the dummy hash

    async def timed(name: str) -> float:
        started = time.perf_counter()
        with pytest.raises(LoginRefused):
            await auth.login(users, name, "guess", "ip")
        return time.perf_counter() - started

    known = min([await timed("alice") for _ in range(3)])
    unknown = min([await timed("nobody") for _ in range(3)])
    assert known > 0.005
    assert 0.5 < unknown / known < 2


async def test_password_checks_do_not_block_the_event_loop() -> None:
    hasher = PasswordHasher(time_cost=4, memory_cost=65536)
    slow_hash = hasher.hash("right")
    checker = PasswordChecker()
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    async with checker.slots:
        assert await checker.verify(slow_hash, "right") is True
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    assert elapsed > 0.02
    assert ticks >= elapsed / 0.001 / 4  # the loop kept running while argon2 worked


async def test_broken_hashes_fail_closed() -> None:
    checker = PasswordChecker()
    async with checker.slots:
        assert await checker.verify("$argon2id$garbage", "x") is False
        assert await checker.verify("not a hash", "x") is False
