"""`linli demo` as a newcomer runs it: embedded broker, simulated devices, web page, login."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as paho

from tests.mosquitto import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_the_whole_path_offline(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "demo",
            "--http-port",
            str(port),
            "--data-dir",
            str(tmp_path / "demo"),
            "--rate",
            "20",
            "--no-zeroconf",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any("Press Ctrl-C" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
        banner = "".join(lines)
        assert f"http://127.0.0.1:{port}/" in banner
        password = re.search(r"login\s+admin / (\S+)", banner).group(1)  # type: ignore[union-attr]
        broker_port = int(re.search(r"MQTT\s+mqtt://127\.0\.0\.1:(\d+)", banner).group(1))  # type: ignore[union-attr]

        # The web page is served.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.status == 200 and b"<html" in resp.read().lower()

        # The printed login works and the simulated devices' events are in the journal.
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/login",
            data=json.dumps({"username": "admin", "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            token = json.load(resp)["token"]

        # Events reach the embedded broker (MQTT 3.1.1) with the documented topics.
        received: list[str] = []
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        client.on_message = lambda _c, _u, msg: received.append(msg.topic)
        client.on_connect = lambda c, *_: c.subscribe("linli/maple-court/gate-1/#", qos=1)
        client.connect("127.0.0.1", broker_port)
        client.loop_start()
        try:
            deadline = time.monotonic() + 20
            while not any("/events/access." in t for t in received) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            client.loop_stop()
            client.disconnect()
        assert any(t.startswith("linli/maple-court/gate-1/events/access.") for t in received), received
        assert "linli/maple-court/gate-1/status" in received  # retained "online"

        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/events?type=access.*&limit=5", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            events = json.load(resp)["events"]
        assert events and all(e["site"] == "maple-court" and e["type"].startswith("access.") for e in events)

        # Decisions come from the simulated OSDP readers through the real driver.
        assert {e["source"] for e in events} <= {"gate-reader", "lobby-reader"}

        # `linli sim` presents the guard's card (the simulated passers-by never use it): the gate
        # reader's driver reads it, access control grants it and the door unlocks.
        sim = [sys.executable, "-m", "edge.cli", "sim", "--data-dir", str(tmp_path / "demo")]
        done = subprocess.run([*sim, "card", "--reader", "gate-reader", "--card", "20001"],
                              cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "card 42:20001 presented at gate-reader" in done.stdout, done
        wrong = subprocess.run([*sim, "card", "--reader", "back-door", "--card", "1"],
                               cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert wrong.returncode == 1 and "gate-reader, lobby-reader" in wrong.stderr

        def guard_events() -> list[dict]:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/events?type=access.granted&limit=50",
                headers={"Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                return [e for e in json.load(resp)["events"] if e["data"].get("holder") == "guard-zhao"]

        deadline = time.monotonic() + 10
        while not guard_events():
            assert time.monotonic() < deadline, "the guard's card was not granted"
            time.sleep(0.1)
        [granted] = guard_events()
        assert (granted["source"], granted["data"]["door"]) == ("gate-reader", "north-gate")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0


def test_sim_without_a_running_demo_says_what_to_do(tmp_path: Path, capsys: object) -> None:
    from edge.cli import main

    assert main(["sim", "--data-dir", str(tmp_path), "card", "--reader", "gate-reader", "--card", "1"]) == 2
    assert "start `linli demo` first" in capsys.readouterr().err  # type: ignore[attr-defined]
