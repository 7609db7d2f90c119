"""Modbus poll latency: a zone input changes at a simulated module -> the driver's `input.changed` report.

8 modules x 16 discrete inputs on one bus at 115200 baud, over a pseudo-terminal to the pymodbus
simulator (`drivers.modbus.simulator`) with wire timing on: every frame takes its time on the line
plus the 1.75 ms inter-frame silence, so the figures are those of a real bus plus this machine's
software overhead. Each trip flips one random input (active, later back to normal) at a random
moment of the poll cycle; the simulator stamps the change, the driver's report callback the report.

Measured in the same run, as the baseline: a bare pymodbus AsyncModbusSerialClient polling the same
modules back to back in a plain loop (what the driver adds: scheduling, supervision, CRC counting).
Computed: the wire floor (`drivers.modbus.poll_floor`): on average half a poll cycle, at worst a
whole cycle plus the module's own transaction.

    .venv/bin/python -m bench.modbus_poll [--quick]      (from the repository root)

`measure_driver(trips)` and `measure_bare(trips)` are importable (bench/alarm_latency.py). The last
line printed is JSON (bench="modbus_poll").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from bench.common import machine, percentile
from drivers.modbus import ModbusDriver, ModuleSpec, poll_floor
from drivers.modbus.simulator import SimBus, SimModule

MODULES, INPUTS, BAUD = 8, 16, 115200


def specs() -> list[ModuleSpec]:
    return [ModuleSpec(f"io-{u}", u, inputs=INPUTS, coils=8) for u in range(1, MODULES + 1)]


def sims() -> list[SimModule]:
    return [SimModule(u, inputs=INPUTS, analog=0) for u in range(1, MODULES + 1)]


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(samples) * 1000, 3),
        "p99_ms": round(percentile(samples, 99) * 1000, 3),
        "max_ms": round(max(samples) * 1000, 3),
    }


async def _trips(bus: SimBus, trips: int, seen: dict[tuple[int, int], asyncio.Event], cycle_s: float) -> list[float]:
    """Flip random inputs; `seen[(unit, input)]` is set by whoever polls, with the time in `stamps`."""
    rng = random.Random(6)
    samples: list[float] = []
    state = {(u, i): False for u in range(1, MODULES + 1) for i in range(INPUTS)}
    for _ in range(trips):
        await asyncio.sleep(rng.uniform(0, cycle_s))  # land anywhere in the poll cycle
        unit, no = rng.randrange(1, MODULES + 1), rng.randrange(INPUTS)
        state[(unit, no)] = not state[(unit, no)]
        event = seen[(unit, no)] = asyncio.Event()
        module = bus.module(unit)
        module.set_input(no, state[(unit, no)])
        changed_at = module.last_change_at
        assert changed_at is not None
        async with asyncio.timeout(5):
            await event.wait()
        samples.append(_STAMPS.pop((unit, no)) - changed_at)
    return samples


_STAMPS: dict[tuple[int, int], float] = {}


def _stamp(seen: dict[tuple[int, int], asyncio.Event], key: tuple[int, int]) -> None:
    event = seen.get(key)
    if event is not None and not event.is_set():
        _STAMPS[key] = time.monotonic()
        event.set()


async def measure_driver(trips: int) -> dict[str, Any]:
    """Input change at the module -> ModbusDriver's report callback."""
    seen: dict[tuple[int, int], asyncio.Event] = {}
    online: set[str] = set()
    all_online = asyncio.Event()

    def report(type: str, source: str, data: dict[str, Any], severity: str) -> None:
        if type == "device.online":
            online.add(source)
            if len(online) == MODULES:
                all_online.set()
        elif type == "input.changed" and source in online:
            _stamp(seen, (int(source.removeprefix("io-")), int(data["point"].removeprefix("di"))))

    async with SimBus(sims(), baudrate=BAUD) as bus:
        driver = ModbusDriver(bus.port, specs(), report, baudrate=BAUD, timeout_s=0.1)
        async with driver:
            async with asyncio.timeout(10):
                await all_online.wait()
            await asyncio.sleep(0.2)  # the first reports (every point) are out
            cpu0, wall0 = _cpu(), time.monotonic()
            samples = await _trips(bus, trips, seen, driver.floor.cycle_s)
            cpu_pct = 100 * (_cpu() - cpu0) / (time.monotonic() - wall0)
            stats = driver.stats.as_dict()
    return {
        **_summary(samples),
        "samples": samples,
        "cycle_ms": round(stats["last_cycle_s"] * 1000, 3),
        "cpu_pct": round(cpu_pct, 1),
        "timeouts": stats["timeouts"],
        "crc_errors": stats["crc_errors"],
    }


async def measure_bare(trips: int) -> dict[str, Any]:
    """The baseline: pymodbus's client polling the same modules in a plain loop, no driver around it."""
    seen: dict[tuple[int, int], asyncio.Event] = {}
    async with SimBus(sims(), baudrate=BAUD) as bus:
        client = AsyncModbusSerialClient(bus.port, framer=FramerType.RTU, baudrate=BAUD, timeout=0.1, retries=0)
        await client.connect()
        last = {u: [False] * INPUTS for u in range(1, MODULES + 1)}
        cycle_s = poll_floor(specs(), BAUD).cycle_s

        async def poll() -> None:
            while True:
                for unit in range(1, MODULES + 1):
                    try:
                        rr = await client.read_discrete_inputs(0, count=INPUTS, device_id=unit)
                    except ModbusException:
                        continue  # a late answer on a busy machine; the next cycle asks again
                    for i in range(INPUTS):
                        if rr.bits[i] != last[unit][i]:
                            last[unit][i] = rr.bits[i]
                            _stamp(seen, (unit, i))

        poller = asyncio.create_task(poll())
        try:
            await asyncio.sleep(0.2)
            samples = await _trips(bus, trips, seen, cycle_s)
        finally:
            poller.cancel()
            client.close()
    return {**_summary(samples), "samples": samples}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 trips instead of 300")
    args = parser.parse_args()
    trips = 60 if args.quick else 300
    floor = poll_floor(specs(), BAUD)
    driver = asyncio.run(measure_driver(trips))
    bare = asyncio.run(measure_bare(trips))
    print(f"machine: {machine()}")
    print(f"bus: {MODULES} modules x {INPUTS} discrete inputs, {BAUD} baud, pty with wire timing, {trips} trips")
    print(
        f"wire floor: poll cycle {floor.cycle_s * 1000:.2f} ms, mean {floor.cycle_s * 500:.2f} ms, "
        f"worst {floor.detect_worst_s * 1000:.2f} ms (input change -> read)"
    )
    print(
        f"driver:      median {driver['median_ms']:.2f} ms  p99 {driver['p99_ms']:.2f} ms"
        f"  max {driver['max_ms']:.2f} ms  (cycle {driver['cycle_ms']:.2f} ms, CPU {driver['cpu_pct']}%,"
        f" timeouts {driver['timeouts']})"
    )
    print(f"bare client: median {bare['median_ms']:.2f} ms  p99 {bare['p99_ms']:.2f} ms  max {bare['max_ms']:.2f} ms")
    mean_floor_ms = floor.cycle_s * 500
    worst_floor_ms = floor.detect_worst_s * 1000
    result = {
        "bench": "modbus_poll",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "trips": trips,
        "median_ms": driver["median_ms"],
        "p99_ms": driver["p99_ms"],
        "max_ms": driver["max_ms"],
        "cycle_ms": driver["cycle_ms"],
        "cpu_pct": driver["cpu_pct"],
        "floor_ms": round(mean_floor_ms, 3),
        "worst_floor_ms": round(worst_floor_ms, 3),
        "cycle_floor_ms": round(floor.cycle_s * 1000, 3),
        "ratio_to_floor": round(driver["median_ms"] / mean_floor_ms, 3),
        "p99_ratio_to_worst_floor": round(driver["p99_ms"] / worst_floor_ms, 3),
        "baseline_median_ms": bare["median_ms"],
        "baseline_p99_ms": bare["p99_ms"],
        "ratio_to_baseline": round(driver["median_ms"] / bare["median_ms"], 3),
        "target_p99_ms": 100,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
