"""Start-up benchmark: `linli run` with the demo site file.

Measures the time from process start to `/api/health` answering ok, and the resident memory
once it has settled (targets: <= 2 s, <= 80 MB). The baseline, measured in the same run, is a bare
`python -c "import asyncio"` process, so the figures separate Linli from the interpreter.

    .venv/bin/python -m bench.startup [--quick]      (from the repository root)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import Mosquitto, machine
from edge.demo import write_demo_site
from tests.mosquitto import free_port


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def health_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=0.5) as resp:
            return resp.status == 200 and json.load(resp).get("status") == "ok"
    except OSError:
        return False


def one_start(site: Path, port: int, settle_s: float) -> tuple[float, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not health_ok(port):
            if proc.poll() is not None:
                raise RuntimeError("linli run exited during start-up")
            if time.perf_counter() - started > 30:
                raise TimeoutError("no healthy /api/health within 30 s")
            time.sleep(0.01)
        startup = time.perf_counter() - started
        time.sleep(settle_s)
        return startup, rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def baseline_rss() -> float:
    proc = subprocess.Popen([sys.executable, "-c", "import asyncio, time; time.sleep(3)"])
    time.sleep(1)
    try:
        return rss_mb(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def main(quick: bool) -> dict[str, object]:
    runs = 3 if quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto")
        broker.start()
        try:
            port = free_port()
            site = write_demo_site(Path(tmp) / "data", broker.url, port, "bench-password", zeroconf=False)
            results = [one_start(site, port, settle_s=2 if quick else 5) for _ in range(runs)]
        finally:
            broker.stop()
    startups = sorted(r[0] for r in results)
    rss = max(r[1] for r in results)
    base = baseline_rss()
    median = startups[len(startups) // 2]
    print(f"  start -> /api/health ok: median {median:.2f} s, worst {startups[-1]:.2f} s over {runs} starts")
    print(f"  resident memory: {rss:.1f} MB (bare Python interpreter: {base:.1f} MB, ratio {rss / base:.1f}x)")
    return {
        "bench": "startup",
        "machine": machine(),
        "runs": runs,
        "startup_s": round(median, 3),
        "startup_worst_s": round(startups[-1], 3),
        "rss_mb": round(rss, 1),
        "baseline_rss_mb": round(base, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer starts, under a minute")
    args = parser.parse_args()
    print(f"startup benchmark on {machine()}")
    print(json.dumps(main(args.quick)))
