"""The daemon as a user runs it: `linli run` in its own process, signals, kill -9, a real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from argon2 import PasswordHasher

from tests.mosquitto import Mosquitto, free_port

PASSWORD = "correct horse battery"
HASH = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
ROOT = Path(__file__).resolve().parent.parent


def site_text(broker_port: int, api_port: int, name: str = "Maple Court") -> str:
    return f"""\
site: {{id: maple-court, name: {name}}}
controller: {{id: gate-1}}
data_dir: data
uplink:
  broker: mqtt://127.0.0.1:{broker_port}
  backoff: {{initial_s: 0.1, max_s: 0.5}}
api: {{port: {api_port}}}
zeroconf: {{enabled: false}}
users:
  - {{name: admin, role: admin, password_hash: "{HASH}"}}
"""


class Daemon:
    """`linli run --config SITE` as a child process, with a small HTTP client for its API."""

    def __init__(self, site: Path, api_port: int, *extra_args: str) -> None:
        self.site = site
        self.port = api_port
        self.extra_args = extra_args
        self.proc: subprocess.Popen[str] | None = None
        self.token: str | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", *self.extra_args, "run", "--config", str(self.site)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"linli run exited: {self.proc.stdout.read() if self.proc.stdout else ''}"
            try:
                if self.request("GET", "/api/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise TimeoutError("daemon did not become healthy")
        status, body = self.request("POST", "/api/login", {"username": "admin", "password": PASSWORD})
        assert status == 200, body
        self.token = body["token"]

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def inject(self, n: int) -> str:
        status, body = self.request(
            "POST", "/api/events", {"type": "access.granted", "source": "reader-1", "data": {"n": n}}
        )
        assert status == 201, body
        return body["event"]["id"]

    def kill(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(20)

    def output(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.read()


class Subscriber:
    """A platform-side subscriber with a persistent session, so the broker queues for it."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="platform", clean_session=False)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.ids.append(json.loads(msg.payload)["id"])

    def wait_for(self, ids: set[str], timeout: float = 30) -> set[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if ids <= set(self.ids):
                    break
            time.sleep(0.05)
        with self.lock:
            return set(self.ids)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def daemon(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Daemon]:
    port = free_port()
    site = tmp_path / "site.yaml"
    site.write_text(site_text(mosquitto.port, port))
    d = Daemon(site, port)
    d.start()
    yield d
    if d.proc and d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def test_kill_9_loses_no_accepted_event(daemon: Daemon, mosquitto: Mosquitto) -> None:
    sub = Subscriber(mosquitto, "linli/maple-court/gate-1/events/access.granted")
    try:
        # Stop the uplink from draining so events sit in the outbox when the process dies.
        mosquitto.stop()
        accepted = [daemon.inject(i) for i in range(200)]
        daemon.kill(signal.SIGKILL)
        mosquitto.start()
        daemon.token = None
        daemon.start()
        for event_id in accepted:
            status, _ = daemon.request("GET", f"/api/events/{event_id}")
            assert status == 200, event_id
        received = sub.wait_for(set(accepted))
        assert set(accepted) <= received
    finally:
        sub.close()


def test_sighup_reload_rejects_a_broken_file_and_keeps_running(daemon: Daemon, mosquitto: Mosquitto) -> None:
    good = daemon.site.read_text()
    daemon.site.write_text(good.replace("zeroconf: {enabled: false}", "zeroconf: {enabled: maybe}"))
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    rejected: list[Any] = []
    while not rejected and time.monotonic() < deadline:
        time.sleep(0.1)
        _, body = daemon.request("GET", "/api/events?type=config.rejected")
        rejected = body["events"]
    assert rejected, "no config.rejected event"
    assert any("zeroconf.enabled" in e for e in rejected[0]["data"]["errors"])
    assert daemon.proc.poll() is None
    assert daemon.request("GET", "/api/config")[1]["site"]["name"] == "Maple Court"

    daemon.site.write_text(good.replace("Maple Court", "Maple Court East"))
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if daemon.request("GET", "/api/config")[1]["site"]["name"] == "Maple Court East":
            break
        time.sleep(0.1)
    else:
        pytest.fail("valid config was not applied on SIGHUP")


def test_sigterm_shuts_down_cleanly_and_keeps_everything(daemon: Daemon, mosquitto: Mosquitto) -> None:
    mosquitto.stop()  # everything stays in the outbox
    accepted = [daemon.inject(i) for i in range(20)]
    assert daemon.kill(signal.SIGTERM) == 0
    mosquitto.start()
    daemon.token = None
    daemon.start()
    for event_id in accepted:
        assert daemon.request("GET", f"/api/events/{event_id}")[0] == 200


def test_json_logs(tmp_path: Path, mosquitto: Mosquitto) -> None:
    port = free_port()
    site = tmp_path / "site.yaml"
    site.write_text(site_text(mosquitto.port, port))
    d = Daemon(site, port, "--log-json")
    d.start()
    assert d.kill(signal.SIGTERM) == 0
    lines = [line for line in d.output().splitlines() if line.strip()]
    assert lines, "the daemon logged nothing"
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry)


def test_run_refuses_a_broken_site_file(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("site: {id: x}\ncontroller: {id: y}\nuplinkk: {}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(site)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert f"{site}:3:1: uplinkk: unknown key" in proc.stderr
    assert os.path.exists(site)


def test_port_in_use_is_a_clear_error(tmp_path: Path, mosquitto: Mosquitto) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        site = tmp_path / "site.yaml"
        site.write_text(site_text(mosquitto.port, port))
        proc = subprocess.run(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(site)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 2
    assert f"linli run: cannot serve the API on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
