from __future__ import annotations

import asyncio

from edge.events import Severity
from edge.supervisor import Supervisor


async def test_crash_is_reported_and_restarted_with_backoff() -> None:
    reports: list[tuple[str, dict[str, object], Severity]] = []
    sup = Supervisor(lambda t, s, d, sev: reports.append((t, d, sev)), initial_backoff_s=0.01, max_backoff_s=0.05)
    runs = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 4:
            raise RuntimeError(f"bus lost #{runs}")
        done.set()
        await asyncio.Event().wait()

    sup.start("driver-osdp", flaky)
    await asyncio.wait_for(done.wait(), 5)
    health = sup.health["driver-osdp"]
    assert runs == 4 and health.restarts == 3 and health.running
    assert health.last_error == "RuntimeError: bus lost #3"
    assert [r[0] for r in reports] == ["supervisor.task_crashed"] * 3
    assert reports[0][1]["task"] == "driver-osdp" and reports[0][2] is Severity.WARNING
    await sup.stop()
    assert not health.running


async def test_stop_cancels_in_reverse_order() -> None:
    sup = Supervisor(lambda *a: None)
    order: list[str] = []

    def forever(name: str):
        async def run() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                order.append(name)

        return run

    sup.start("a", forever("a"))
    sup.start("b", forever("b"))
    await asyncio.sleep(0)
    await sup.stop()
    assert order == ["b", "a"]


async def test_stop_task_stops_one_task_so_it_can_start_again() -> None:
    sup = Supervisor(lambda *a: None)
    cleaned: list[str] = []

    async def service() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("access")

    async def other() -> None:
        await asyncio.Event().wait()

    sup.start("access", service)
    sup.start("uplink", other)
    await asyncio.sleep(0)
    await sup.stop_task("access")
    assert cleaned == ["access"] and "access" not in sup.health and sup.health["uplink"].running
    await sup.stop_task("missing")  # nothing to stop: no error
    sup.start("access", service)  # the name is free again
    await asyncio.sleep(0)
    assert sup.health["access"].running
    await sup.stop()
    assert cleaned == ["access", "access"]


async def test_a_task_failing_while_it_is_stopped_is_not_restarted() -> None:
    reports: list[str] = []
    sup = Supervisor(lambda t, *a: reports.append(t), initial_backoff_s=0.01)
    starts = 0

    async def messy_shutdown() -> None:
        nonlocal starts
        starts += 1
        try:
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("cleanup failed")

    sup.start("access", messy_shutdown)
    await asyncio.sleep(0.01)
    await asyncio.wait_for(sup.stop(), 2)
    assert starts == 1 and reports == []
