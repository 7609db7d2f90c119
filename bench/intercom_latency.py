"""Intercom latency benchmark (issue 7): call pressed at a panel -> indoor unit ringing, and unlock
pressed at the indoor unit -> unlock relay at the panel, over the Linli panel protocol on a pty.

The panel and the indoor unit are simulated in a separate process (`python -m drivers.intercom.simulator`,
115200 baud nominal; a pty does not pace bytes); the simulator timestamps both ends (stdin line taken
-> RING / UNLOCK frame acted on), so each figure is end to end: wait for the next poll, the event reply,
routing, journal commit, the command frame, the device acting on it.

Measured in the same run:
- Linli: a real Controller (SQLite journal) with IntercomService: the driver, rules.intercom's
  CallRouter, every event committed before its action;
- the baseline: the same driver (same polling) with a bare callback that rings / unlocks directly,
  no routing and no journal: the floor set by polling and the link, which the daemon adds to.

    .venv/bin/python -m bench.intercom_latency [--quick]      (from the repository root)

The last line printed is JSON (bench="intercom_latency").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import machine, percentile
from drivers.intercom import DeviceKind, DeviceSpec, IntercomBus
from drivers.intercom.protocol import CallRequest, CallState, HangUp, Message, UnlockRequest

PANEL, UNIT = 1, 10
CALLS, QUICK_CALLS = 300, 40
TARGET_P99_MS = 50.0


class Simulator:
    """The simulator program, driven over its stdin, its JSON lines read from stdout."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "drivers.intercom.simulator", "--link", str(self.link),
            "--panel", str(PANEL), "--unit", str(UNIT),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        await self.expect("ready", within=10)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            await self.lines.put(json.loads(line))

    async def send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, event: str, within: float = 5.0, **match: Any) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                doc = await self.lines.get()
                if doc.get("event") == event and all(doc.get(k) == v for k, v in match.items()):
                    return doc

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            await self.send("quit")
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()


async def measure(sim: Simulator, calls: int) -> tuple[list[float], list[float]]:
    ring, unlock = [], []
    rng = random.Random(7)
    for _ in range(calls):
        # Visitors and residents press at random moments, not in step with the bus: without the
        # pause every press would land just after an exchange, i.e. a whole poll interval early.
        await asyncio.sleep(rng.uniform(0, 0.05))
        await sim.send(f"call {PANEL} 1203")
        doc = await sim.expect("ring", address=UNIT)
        ring.append(doc["since_call_ms"])
        await sim.send(f"answer {UNIT}")
        await sim.expect("call_state", address=PANEL, state="answered")
        await asyncio.sleep(rng.uniform(0, 0.05))
        await sim.send(f"unlock {UNIT}")
        doc = await sim.expect("relay", address=PANEL)
        unlock.append(doc["since_unlock_ms"])
        await sim.send(f"hangup {UNIT}")
        await sim.expect("call_state", address=PANEL, state="ended")
    return ring, unlock


def site_yaml(port: str, data_dir: Path) -> str:
    return f"""\
site: {{id: bench, name: Bench}}
controller: {{id: gate-1}}
data_dir: {data_dir}
uplink: {{enabled: false}}
zeroconf: {{enabled: false}}
api: {{host: 127.0.0.1, port: 0}}
intercom:
  buses:
    - port: {port}
      baudrate: 115200
      panels: [{{id: gate, address: {PANEL}}}]
      indoor_units: [{{id: u1203, address: {UNIT}, apartment: "1203"}}]
  timeouts: {{unit_ring_s: 60, app_ring_s: 0, guard_ring_s: 0, talk_s: 600, unlock_grace_s: 5}}
  unlock_s: 0.1
"""


async def run_linli(folder: Path, calls: int) -> tuple[list[float], list[float]]:
    from edge.config import parse_config
    from edge.daemon import Controller

    sim = Simulator(folder / "linli-bus")
    await sim.start()
    config = parse_config(site_yaml(str(sim.link), folder / "data"), "<bench>", folder)
    controller = Controller(config)
    await controller.start()
    try:
        await _until(lambda: controller.intercom is not None and {"gate", "u1203"} <= controller.intercom.router.online)
        return await measure(sim, calls)
    finally:
        await controller.stop()
        await sim.stop()


async def run_baseline(folder: Path, calls: int) -> tuple[list[float], list[float]]:
    sim = Simulator(folder / "baseline-bus")
    await sim.start()
    pending: set[asyncio.Task[Any]] = set()
    driver: IntercomBus

    def spawn(work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        pending.add(task)
        task.add_done_callback(pending.discard)

    def on_message(device: str, msg: Message) -> None:
        if isinstance(msg, CallRequest):
            spawn(driver.ring("u1203", 1, PANEL))
        elif isinstance(msg, UnlockRequest):
            spawn(driver.unlock("gate", 0.1))
        elif isinstance(msg, HangUp):
            spawn(driver.call_state("gate", 1, CallState.ENDED))
        elif type(msg).__name__ == "Answer":
            spawn(driver.call_state("gate", 1, CallState.ANSWERED))

    specs = [DeviceSpec("gate", PANEL, DeviceKind.PANEL), DeviceSpec("u1203", UNIT, DeviceKind.INDOOR_UNIT)]
    driver = IntercomBus(str(sim.link), specs, on_message)
    await driver.start()
    try:
        await _until(lambda: driver.is_online("gate") and driver.is_online("u1203"))
        return await measure(sim, calls)
    finally:
        for task in list(pending):
            task.cancel()
        await driver.stop()
        await sim.stop()


async def _until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("devices did not come online")
        await asyncio.sleep(0.01)


def stats(values: list[float]) -> tuple[float, float]:
    return round(percentile(values, 50), 2), round(percentile(values, 99), 2)


async def main_async(quick: bool) -> dict[str, Any]:
    calls = QUICK_CALLS if quick else CALLS
    with tempfile.TemporaryDirectory(prefix="linli-bench-intercom-") as tmp:
        folder = Path(tmp)
        base_ring, base_unlock = await run_baseline(folder, calls)
        ring, unlock = await run_linli(folder, calls)
    ring_med, ring_p99 = stats(ring)
    unlock_med, unlock_p99 = stats(unlock)
    b_ring_med, b_ring_p99 = stats(base_ring)
    b_unlock_med, b_unlock_p99 = stats(base_unlock)
    print(f"calls {calls} per configuration, pty at 115200 nominal, poll interval 20 ms per device")
    print(f"{'':28}{'median ms':>12}{'p99 ms':>10}")
    print(f"{'Linli call -> ring':28}{ring_med:>12}{ring_p99:>10}")
    print(f"{'Linli unlock -> relay':28}{unlock_med:>12}{unlock_p99:>10}")
    print(f"{'baseline call -> ring':28}{b_ring_med:>12}{b_ring_p99:>10}")
    print(f"{'baseline unlock -> relay':28}{b_unlock_med:>12}{b_unlock_p99:>10}")
    ok = ring_p99 <= TARGET_P99_MS and unlock_p99 <= TARGET_P99_MS
    print(f"target p99 <= {TARGET_P99_MS:g} ms for each: {'met' if ok else 'NOT met'}")
    return {
        "bench": "intercom_latency",
        "ring_median_ms": ring_med,
        "ring_p99_ms": ring_p99,
        "unlock_median_ms": unlock_med,
        "unlock_p99_ms": unlock_p99,
        "baseline_ring_median_ms": b_ring_med,
        "baseline_ring_p99_ms": b_ring_p99,
        "baseline_unlock_median_ms": b_unlock_med,
        "baseline_unlock_p99_ms": b_unlock_p99,
        "ring_p99_vs_baseline": round(ring_p99 / b_ring_p99, 2) if b_ring_p99 else None,
        "unlock_p99_vs_baseline": round(unlock_p99 / b_unlock_p99, 2) if b_unlock_p99 else None,
        "calls": calls,
        "target_p99_ms": TARGET_P99_MS,
        "transport": "pty, 115200 nominal (a pty does not pace bytes)",
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CALLS} calls instead of {CALLS}")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args.quick))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
