"""Access latency benchmark: card presented at a reader -> lock output command received at the reader.

Readers are simulated (libosdp PeripheralDevices, `python -m drivers.osdp.simulator`) in a separate
process on a pseudo-terminal, with the secure channel on; the simulator timestamps both ends, so
the figure is end to end over real OSDP: poll, card reply, decision, OUT command, relay.

Measured in the same run:
- Linli's driver (`drivers.osdp.OsdpDriver`, refreshed from the asyncio loop), 1 reader on the bus;
- the same with 4 readers on the bus (cards presented at each in turn, the others being polled);
- the baseline: libosdp's own threaded `osdp.ControlPanel`, default settings (a refresh thread
  that sleeps 20 ms), same simulator, same keys, 1 reader;
- the CPU this process uses with 4 readers on an idle, polled bus.

Both sides make the real decision, rules.access.decide() over 10,000 loaded credentials (a 24/7
access level on every door), and switch the lock output for 100 ms on a grant.

    .venv/bin/python -m bench.access_latency [--quick]      (from the repository root)

The last line printed is JSON (bench="access_latency").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import osdp
import osdp_sys
import serial

from bench.common import machine, percentile
from drivers.osdp import Credential, Decision, KeyStore, OsdpDriver, ReaderConfig, wiegand
from drivers.osdp.model import CardCredential
from rules.access import (
    AccessIndex,
    AccessLevel,
    AccessRequest,
    AccessState,
    Card,
    CardFormat,
    CardRead,
    CredentialKind,
    Door,
    DoorGroup,
    Holder,
    HolderKind,
    LevelGrant,
    PinHasher,
    Schedule,
    ScheduleInterval,
    Snapshot,
    decide,
)
from rules.access import (
    Credential as AccessCredential,
)
from rules.access.model import ALL_DAYS

PULSE_MS = 100
BAUD = 115200
FACILITY = 1


def access_index(doors: int = 4, holders: int = 10_000) -> AccessIndex:
    """10,000 staff cards (facility 1, numbers 0..9999), all allowed at every door, all the time."""
    door_ids = tuple(f"door-{n}" for n in range(1, doors + 1))
    snapshot = Snapshot(
        version=1,
        doors=tuple(Door(id=d, name=d) for d in door_ids),
        door_groups=(DoorGroup(id="all-doors", name="All doors", doors=door_ids),),
        schedules=(
            Schedule(
                id="always", name="Always", intervals=(ScheduleInterval(days=ALL_DAYS, start="00:00", end="24:00"),)
            ),
        ),
        access_levels=(
            AccessLevel(id="staff", name="Staff", grants=(LevelGrant(door_group="all-doors", schedule="always"),)),
        ),
        holders=tuple(
            Holder(id=f"h{n}", name=f"Holder {n}", kind=HolderKind.STAFF, access_levels=("staff",))
            for n in range(holders)
        ),
        credentials=tuple(
            AccessCredential(
                id=f"c{n}",
                holder_id=f"h{n}",
                kind=CredentialKind.CARD,
                card=Card(format=CardFormat.H10301, facility=FACILITY, number=n),
            )
            for n in range(holders)
        ),
    )
    return AccessIndex.build(snapshot, PinHasher(b"bench-pin-key-0123456789abcdef"))


INDEX = access_index()


def grants(address: int, facility: int | None, card: int) -> bool:
    """The decision both sides make: reader at address N stands at door-N."""
    request = AccessRequest(
        door_id=f"door-{address}", reader_id=f"r{address}", card=CardRead.decoded("h10301", facility, card)
    )
    return decide(INDEX, AccessState(), request, datetime.now(UTC)).granted


class Simulator:
    """The simulator program, driven over its stdin/stdout."""

    def __init__(self, link: Path, keys: Path, addresses: list[int]) -> None:
        self.link, self.keys, self.addresses = link, keys, addresses
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Simulator:
        args = ["-m", "drivers.osdp.simulator", "--link", str(self.link), "--keys", str(self.keys)]
        for a in self.addresses:
            args += ["--reader", f"{a}:r{a}"]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        ready = await self.line()
        assert ready["event"] == "ready", ready
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"quit\n")
        await self.proc.stdin.drain()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def line(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), 10)
        if not raw:
            raise RuntimeError("simulator exited")
        return json.loads(raw)

    async def send(self, command: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()

    async def read_latency(self, address: int, card: int) -> float:
        """Present a card; return ms until the lock output switched on; wait until it is off again."""
        await self.send(f"card {address} {card} 1")
        latency = None
        while True:
            doc = await self.line()
            if doc.get("event") != "output" or doc["address"] != address:
                continue
            if doc["on"]:
                latency = doc["since_card_ms"]
            elif latency is not None:
                return float(latency)


async def measure(sim: Simulator, reads: int, addresses: list[int]) -> list[float]:
    rng = random.Random(11)
    # Not counted: readers report their state right after connecting, one report per poll, and a
    # card presented then waits behind those reports.
    for address in addresses:
        await sim.read_latency(address, 0)
    latencies = []
    for i in range(reads):
        # A random pause so cards arrive at every phase of the 50 ms poll cycle, as people do.
        await asyncio.sleep(rng.uniform(0.0, 0.06))
        latencies.append(await sim.read_latency(addresses[i % len(addresses)], rng.randrange(10_000)))
    return latencies


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def idle_cpu_pct(seconds: float) -> float:
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (cpu_seconds() - cpu0) / (time.monotonic() - wall0)


async def linli_run(
    tmp: Path, keys: KeyStore, addresses: list[int], reads: int, idle_s: float
) -> tuple[list[float], float | None]:
    link = tmp / f"bus-{len(addresses)}"
    async with Simulator(link, keys.path, addresses) as sim:
        driver: OsdpDriver

        async def grant_by_rules(reader: str, credential: Credential) -> Decision:
            assert isinstance(credential, CardCredential)
            granted = grants(int(reader[1:]), credential.read.facility, credential.read.card or 0)
            if granted:
                await driver.output(reader, 0, True, duration_ms=PULSE_MS)
            return Decision(granted=granted)

        online = asyncio.Event()
        seen: set[str] = set()

        def report(type: str, source: str, data: dict[str, Any], severity: str) -> None:
            if type == "device.online" and data.get("secure"):
                seen.add(source)
                if len(seen) == len(addresses):
                    online.set()

        readers = [ReaderConfig(f"r{a}", a) for a in addresses]
        driver = OsdpDriver(str(link), readers, report, on_credential=grant_by_rules, keys=keys, baudrate=BAUD)
        async with driver:
            await asyncio.wait_for(online.wait(), 10)
            cpu = await idle_cpu_pct(idle_s) if idle_s else None
            return await measure(sim, reads, addresses), cpu


async def baseline_run(tmp: Path, keys: KeyStore, reads: int) -> list[float]:
    """libosdp's threaded ControlPanel as its documentation shows it, default refresh settings."""
    link = tmp / "bus-baseline"
    async with Simulator(link, keys.path, [1]) as sim:
        loop = asyncio.get_running_loop()
        port = serial.Serial(str(link), BAUD, timeout=0, write_timeout=0)

        class PortChannel(osdp.Channel):
            def read(self, max_bytes: int) -> bytes:
                return port.read(max_bytes)

            def write(self, buf: bytes) -> int:
                return port.write(buf) or 0

            def flush(self) -> None:
                port.reset_input_buffer()

        def on_event(address_index: int, event: dict[str, Any]) -> int:
            # Called from the refresh thread with the wrapper's lock held: submitting here would
            # deadlock, so hand the card to the event loop, which submits the output command.
            if event.get("event") == osdp_sys.EVENT_CARDREAD:
                loop.call_soon_threadsafe(grant, event)
            return 0

        def grant(event: dict[str, Any]) -> None:
            data = bytes(event.get("data", b""))
            length = int(event.get("length", len(data) * 8))
            read = wiegand.decode_bytes(data, length, reverse=event.get("direction") == 1)
            if not grants(1, read.facility, read.card or 0):
                return
            cmd = {"command": osdp_sys.CMD_OUTPUT, "output_no": 0, "control_code": 5, "timer_count": 1}
            cp.submit_command(1, cmd)  # waits for the wrapper's lock: at most one refresh

        info = osdp.PDInfo(1, PortChannel(), scbk=keys.get("r1"), flags=[osdp.LibFlag.EnforceSecure])
        cp = osdp.ControlPanel([info], log_level=osdp.LogLevel.Error, event_handler=on_event)
        cp.start()
        try:
            deadline = time.monotonic() + 10
            while not (cp.is_online(1) and cp.is_sc_active(1)):
                if time.monotonic() > deadline:
                    raise RuntimeError("baseline CP did not come online")
                await asyncio.sleep(0.05)
            latencies = await measure(sim, reads, [1])
        finally:
            await asyncio.to_thread(cp.stop)
            port.close()
        return latencies


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:34} median {percentile(values, 50):6.1f} ms   p99 {percentile(values, 99):6.1f} ms   "
        f"min {min(values):5.1f}   max {max(values):6.1f}   n={len(values)}"
    )


async def main_async(quick: bool) -> dict[str, Any]:
    reads = 60 if quick else 500
    idle_s = 3.0 if quick else 10.0
    with tempfile.TemporaryDirectory(prefix="linli-bench-osdp-") as d:
        tmp = Path(d)
        keys = KeyStore(tmp / "keys.json")
        for a in (1, 2, 3, 4):
            keys.generate(f"r{a}")
        one, _ = await linli_run(tmp, keys, [1], reads, 0)
        print(summary("linli, 1 reader", one), flush=True)
        four, cpu = await linli_run(tmp, keys, [1, 2, 3, 4], reads, idle_s)
        print(summary("linli, 4 readers", four), flush=True)
        print(f"{'linli, idle polled bus (4 readers)':34} CPU {cpu:.2f} % of one core", flush=True)
        base = await baseline_run(tmp, keys, reads)
        print(summary("baseline: threaded osdp.ControlPanel", base), flush=True)
    return {
        "bench": "access_latency",
        "median_ms": round(percentile(one, 50), 2),
        "p99_ms": round(percentile(one, 99), 2),
        "median_ms_4_readers": round(percentile(four, 50), 2),
        "p99_ms_4_readers": round(percentile(four, 99), 2),
        "baseline_median_ms": round(percentile(base, 50), 2),
        "baseline_p99_ms": round(percentile(base, 99), 2),
        "idle_cpu_pct": round(cpu or 0.0, 2),
        "reads": reads,
        "secure_channel": True,
        "decision": "rules.access.decide(), 10,000 credentials loaded",
        "transport": "pty, 115200 nominal (a pty does not pace bytes)",
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 reads per configuration instead of 500")
    args = parser.parse_args()
    result = asyncio.run(main_async(args.quick))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
