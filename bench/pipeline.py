"""Event pipeline benchmark: bus -> journal (durable) -> outbox -> MQTT QoS 1 to a local Mosquitto.

Baseline, measured in the same run against the same broker: raw aiomqtt publishing the same
payloads at QoS 1 with the same in-flight window. Reports both rates and their ratio (target
>= 0.7), accept latency (submit -> committed) at 1,000 events/s (target p99 <= 25 ms), and how
fast a backlog queued while the broker was down drains, against the live rate (target >= 0.7).

    .venv/bin/python -m bench.pipeline [--quick]      (from the repository root)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt

from bench.common import Mosquitto, machine, percentile
from edge.config import parse_config
from edge.daemon import Controller
from edge.events import Event

INFLIGHT = 100


def site(broker_port: int, data_dir: Path) -> str:
    return f"""
site: {{id: bench}}
controller: {{id: gate-1}}
data_dir: {data_dir}
uplink:
  broker: mqtt://127.0.0.1:{broker_port}
  inflight: {INFLIGHT}
  backoff: {{initial_s: 0.05, max_s: 0.2}}
homeassistant: {{enabled: false}}
api: {{port: 0}}
zeroconf: {{enabled: false}}
journal: {{budget_mb: 2048}}
"""


def sample_events(controller: Controller, n: int) -> list[Event]:
    # ~200-byte JSON bodies, like a card read.
    return [
        controller.factory("access.granted", f"reader-{i % 8}", {"door": "door-1", "card": 10000 + i})
        for i in range(n)
    ]


async def raw_rate(port: int, payloads: list[tuple[str, bytes]]) -> float:
    """aiomqtt alone: the same messages, QoS 1, INFLIGHT workers awaiting PUBACKs."""
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="bench-raw", protocol=aiomqtt.ProtocolVersion.V5, max_inflight_messages=0
    ) as client:
        # A full window is normal here; aiomqtt would otherwise log a warning per publish.
        client.pending_calls_threshold = 10 * INFLIGHT
        items = iter(payloads)

        async def worker() -> None:
            for topic, body in items:
                await client.publish(topic, body, qos=1)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(INFLIGHT)))
        return len(payloads) / (time.perf_counter() - started)


async def wait_until(predicate: Callable[[], bool], limit_s: float = 600.0) -> float:
    """Poll every 2 ms; return the time the condition first held."""
    deadline = time.perf_counter() + limit_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.002)
    return time.perf_counter()


async def submit_all(controller: Controller, events: list[Event]) -> list[asyncio.Future[int]]:
    return [await controller.bus.submit(e) for e in events]


async def live_rate(controller: Controller, n: int) -> float:
    events = sample_events(controller, n)
    started = time.perf_counter()
    futures = await submit_all(controller, events)
    await asyncio.gather(*futures)
    ended = await wait_until(lambda: controller.journal.stats.outbox_depth == 0)
    return n / (ended - started)


async def accept_latency(controller: Controller, rate: float, seconds: float) -> list[float]:
    """Submit at a steady `rate` and time each event from submit to committed."""
    latencies: list[float] = []
    n = int(rate * seconds)
    events = sample_events(controller, n)
    futures = []
    start = time.perf_counter()
    for i, event in enumerate(events):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        submitted = time.perf_counter()
        future = await controller.bus.submit(event)
        future.add_done_callback(lambda _f, t=submitted: latencies.append((time.perf_counter() - t) * 1000))
        futures.append(future)
    await asyncio.gather(*futures)
    await wait_until(lambda: controller.journal.stats.outbox_depth == 0)
    return latencies


async def backlog_rate(controller: Controller, broker: Mosquitto, n: int) -> float:
    broker.stop()
    await wait_until(lambda: controller.uplink.state != "connected", limit_s=30)
    futures = await submit_all(controller, sample_events(controller, n))
    await asyncio.gather(*futures)
    print(f"  {n} events queued in the outbox while the broker is down (depth {controller.journal.stats.outbox_depth})")
    broker.start()
    connected = await wait_until(lambda: controller.uplink.state == "connected", limit_s=60)
    ended = await wait_until(lambda: controller.journal.stats.outbox_depth == 0)
    return n / (ended - connected)


async def main(quick: bool) -> dict[str, object]:
    n = 5_000 if quick else 30_000
    backlog = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto")
        broker.start()
        try:
            controller = Controller(parse_config(site(broker.port, Path(tmp) / "data")))
            await controller.start()
            await wait_until(lambda: controller.uplink.state == "connected", limit_s=30)
            await asyncio.sleep(0.2)  # let start-up publishes (status, discovery) settle

            payloads = [
                (f"linli/bench/gate-1/events/{e.type}", e.to_json().encode()) for e in sample_events(controller, n)
            ]
            body = len(payloads[0][1])
            raw = await raw_rate(broker.port, payloads)
            linli = await live_rate(controller, n)
            raw2 = await raw_rate(broker.port, payloads)  # again, so drift between phases shows
            raw = (raw + raw2) / 2
            print(f"  raw aiomqtt QoS 1, {INFLIGHT} in flight, {body}-byte JSON: {raw:,.0f} msg/s")
            print(f"  linli bus -> journal -> outbox -> MQTT:              {linli:,.0f} events/s")

            latencies = await accept_latency(controller, 1000, 3 if quick else 10)
            p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
            print(f"  accept latency at 1,000 events/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({len(latencies)} events)")

            drain = await backlog_rate(controller, broker, backlog)
            print(f"  backlog drain after the broker returns: {drain:,.0f} events/s")
            await controller.stop()
        finally:
            broker.stop()
    return {
        "bench": "pipeline",
        "machine": machine(),
        "events": n,
        "backlog": backlog,
        "linli_eps": round(linli),
        "raw_eps": round(raw),
        "ratio": round(linli / raw, 3),
        "accept_p50_ms": round(p50, 2),
        "accept_p99_ms": round(p99, 2),
        "drain_eps": round(drain),
        "drain_ratio": round(drain / linli, 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"pipeline benchmark on {machine()}")
    result = asyncio.run(main(args.quick))
    print(f"  ratio {result['ratio']} (target >= 0.7), drain ratio {result['drain_ratio']} (target >= 0.7)")
    print(json.dumps(result))
