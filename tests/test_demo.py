"""`linli demo` as a newcomer runs it: embedded broker, simulated devices, web page, login."""

from __future__ import annotations

import asyncio
import dataclasses
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
import pytest

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

        # The alarm: the guard's passer-by armed the perimeter at start. `linli sim` breaks the north
        # beam at the simulated Modbus module; the daemon polls it, the panel raises the alarm and
        # switches the yard siren's coil on at the module.
        def get(path: str) -> dict:
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.load(resp)  # type: ignore[no-any-return]

        def perimeter() -> str:
            return next(p["state"] for p in get("/api/alarm/partitions")["partitions"] if p["partition"] == "perimeter")

        deadline = time.monotonic() + 30
        while perimeter() != "armed_away":
            assert time.monotonic() < deadline, f"perimeter not armed: {perimeter()}"
            time.sleep(0.2)
        before = get("/api/events?limit=1")["events"][0]["seq"]
        sirens = subprocess.run([*sim, "sirens"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert sirens.returncode == 0 and "yard-siren off" in sirens.stdout, sirens
        done = subprocess.run([*sim, "beam", "north", "on"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "north fence beam broken" in done.stdout, done

        def triggered() -> list[dict]:
            events = get("/api/events?type=alarm.triggered&limit=20")["events"]
            return [e for e in events if e["source"] == "perimeter" and e["seq"] > before]

        deadline = time.monotonic() + 10
        while not triggered():
            assert time.monotonic() < deadline, "no alarm from the north beam"
            time.sleep(0.1)
        assert triggered()[0]["data"]["zones"] == ["fence-north"]
        opened = get("/api/events?type=zone.opened&source=fence-north&limit=5")["events"]
        assert opened and opened[0]["seq"] > before, opened
        deadline = time.monotonic() + 10
        while "yard-siren on" not in (sirens := subprocess.run(
                [*sim, "sirens"], cwd=ROOT, capture_output=True, text=True, timeout=30)).stdout:
            assert time.monotonic() < deadline, f"the yard siren's coil was not switched on: {sirens}"
            time.sleep(0.2)
        assert perimeter() == "triggered"
        wrong = subprocess.run([*sim, "zone", "back-fence", "on"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert wrong.returncode == 1 and "no demo zone 'back-fence'" in wrong.stderr, wrong

        # The resident's login from the banner sees her own home only.
        resident = re.search(r"resident\s+li-wei / (\S+)", banner).group(1)  # type: ignore[union-attr]
        assert resident == password
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/login",
            data=json.dumps({"username": "li-wei", "password": resident}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            li_token = json.load(resp)["token"]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/alarm/partitions",
                                     headers={"Authorization": f"Bearer {li_token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert [p["partition"] for p in json.load(resp)["partitions"]] == ["home-3-201"]

        # The intercom: `linli sim call` dials 3-201 at the simulated gate panel; the daemon's
        # intercom driver hears the call request over the panel protocol and routes it.
        assert "visitor    PIN 482916" in banner
        before = get("/api/events?limit=1")["events"][0]["seq"]
        done = subprocess.run([*sim, "call", "3-201"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "3-201 dialled at the gate panel" in done.stdout, done

        def calls(type: str) -> list[dict]:
            events = get(f"/api/events?type={type}&limit=20")["events"]
            return [e for e in events if e["seq"] > before and e["data"].get("apartment") == "3-201"]

        deadline = time.monotonic() + 10
        while not calls("intercom.ringing"):  # her indoor unit rings first
            assert time.monotonic() < deadline, "3-201's indoor unit was not rung"
            time.sleep(0.1)
        assert calls("intercom.ringing")[0]["data"]["units"] == ["unit-3-201"]
        wrong = subprocess.run([*sim, "answer", "9-999"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert wrong.returncode == 1 and "no indoor unit for '9-999'" in wrong.stderr, wrong

        # The camera: the pedestrian clip is online and people walk into its zone.
        deadline = time.monotonic() + 60
        while not (get("/api/events?type=camera.online&limit=1")["events"]
                   and get("/api/events?type=vision.object_entered&limit=1")["events"]):
            assert time.monotonic() < deadline, "no camera events"
            time.sleep(0.5)
        assert get("/api/events?type=camera.online&limit=1")["events"][0]["source"] == "pavement"

        # Nobody answers at 3-201 (unit_ring_s 15): the call goes on to her app through the platform.
        deadline = time.monotonic() + 30
        while not calls("intercom.call"):
            assert time.monotonic() < deadline, "no intercom.call (the app stage) for 3-201"
            time.sleep(0.2)
        assert calls("intercom.call")[0]["source"] == "gate-panel"
        assert calls("intercom.call")[0]["data"]["stage"] == "app"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0


def test_sim_without_a_running_demo_says_what_to_do(tmp_path: Path, capsys: object) -> None:
    from edge.cli import main

    assert main(["sim", "--data-dir", str(tmp_path), "card", "--reader", "gate-reader", "--card", "1"]) == 2
    assert "start `linli demo` first" in capsys.readouterr().err  # type: ignore[attr-defined]


async def test_alarm_passersby_trip_real_alarms_and_end_them(tmp_path: Path) -> None:
    """The demo's alarm life, in-process and sped up: the guard arms the perimeter, a fox's beam
    break is a real alarm (the siren coil at the simulated module switches on), the guard answers it
    and re-arms; Li Wei goes out (armed away) and comes home within her entry delay (no alarm)."""
    from edge.demo_devices import AlarmPassersby
    from tests.mqtt_helpers import wait_until
    from tests.test_web_demo import demo_site

    async with demo_site(tmp_path, exit_delay_s=2, entry_delay_s=8, siren_s=60) as controller:
        devices = controller.simulator
        people = AlarmPassersby(devices, controller, rate=0, seed=7)  # no scenarios of its own: this test picks
        people.GUARD_RESPONSE_S, people.REARM_S, people.TICK_S = 1.0, 1.0, 0.1
        await wait_until(lambda: controller.zigbee is not None and controller.zigbee.ready.is_set(), 10, "zigbee")
        task = asyncio.create_task(people.run())
        try:
            await wait_until(lambda: people._state("perimeter") == "armed_away", 10, "the guard arming")
            await people._fox()
            await wait_until(lambda: people._state("perimeter") == "triggered", 5, "the fox's alarm")
            await wait_until(lambda: devices.sirens()["yard-siren"] is True, 5, "the yard siren's coil")
            # The guard answers (disarms with his code), the coil goes off, and he re-arms later.
            await wait_until(lambda: people._state("perimeter") == "disarmed", 10, "the guard disarming")
            await wait_until(lambda: devices.sirens()["yard-siren"] is False, 5, "the coil off")
            await wait_until(lambda: people._state("perimeter") == "armed_away", 10, "the guard re-arming")

            await people._li_wei_goes_out()
            await wait_until(lambda: people._state("home-3-201") == "armed_away", 5, "Li Wei's home armed")
            await people._li_wei_comes_home()
            assert people._state("home-3-201") == "disarmed"
            alarms = await controller.journal.query(types=["alarm.triggered"], limit=10)
            assert [(a.event.source, a.event.data["zones"]) for a in alarms] in (
                [("perimeter", ["fence-north"])], [("perimeter", ["fence-east"])])
            disarms = await controller.journal.query(types=["alarm.disarmed"], limit=10)
            assert {(d.event.source, d.event.data["user"], d.event.data["origin"]) for d in disarms} == {
                ("perimeter", "guard-zhao", "demo:guard-zhao"), ("home-3-201", "li-wei", "demo:li-wei")}
        finally:
            task.cancel()


async def test_alarm_commands_check_their_words(tmp_path: Path) -> None:
    """`linli sim` / POST /api/sim alarm verbs: each mistake gets a message that says what would do."""
    from edge.demo_devices import DemoDevices

    devices = DemoDevices(tmp_path)
    await devices.start()
    try:
        bad = {
            "zone 3-201-door on": "the Zigbee network is not running",  # no daemon attached yet
            "beam west on": "the beams are north, east",
            "zone nowhere on": "no demo zone 'nowhere'; the zones are fence-north, fence-east",
            "zone fence-north sideways": "not understood: 'zone fence-north sideways'",
            "sirens now": "not understood",
            "": "not understood",
        }
        for line, message in bad.items():
            with pytest.raises(ValueError, match="Commands: card READER") as caught:
                devices.command(line)
            assert message in str(caught.value), (line, caught.value)
        assert not devices.fence.input(0)

        assert devices.command("zone fence-north on") == "zone fence-north tripped"
        assert devices.fence.input(0) and devices.zone_active("fence-north")
        assert devices.command("beam north off") == "north fence beam clear"
        assert not devices.fence.input(0)
        assert devices.person_at > 0  # the passers-by leave the alarm to the person for a while
        assert devices.command("sirens") == "yard-siren off, yard-strobe off, 3-201-siren ?"
        assert devices.zone_active("3-201-door") is None
    finally:
        await devices.stop()


async def test_intercom_passersby_use_the_real_panel_and_passes(tmp_path: Path) -> None:
    """The demo's visitors, in-process: one is let in from an indoor unit (access control opens the
    gate, the visitor walks through), one scans the QR code of a pass a resident just issued."""
    from edge.demo_devices import IntercomPassersby
    from tests.mqtt_helpers import wait_until
    from tests.test_web_demo import demo_site

    async with demo_site(tmp_path) as controller:
        devices = controller.simulator
        people = IntercomPassersby(devices, controller, rate=0, seed=3)
        people.pace = 0.1
        units = {"gate-panel", "guard-desk", "unit-3-201", "unit-3-402", "unit-5-101", "unit-7-1203"}
        await wait_until(lambda: controller.intercom is not None and units <= controller.intercom.router.online, 10,
                         "the intercom devices online")
        await people.visitor_let_in()
        [unlock] = await controller.journal.query(types=["intercom.unlock"], limit=5)
        remote = await controller.journal.query(types=["access.remote_unlock"], limit=5)
        assert [(r.event.source, r.event.data["origin"]) for r in remote] == [("north-gate", "intercom")]
        assert unlock.event.data["apartment"] in {"3-201", "3-402", "5-101", "7-1203"}
        opened = await controller.journal.query(types=["door.opened"], limit=5)
        assert [o.event.source for o in opened] == ["north-gate"]  # the visitor walked through

        await wait_until(lambda: not devices.unlocked("gate-reader", fail_safe=False), 10, "the gate relocking")
        await people.visitor_with_pass()
        issued = await controller.journal.query(types=["visitor_pass.issued"], limit=5)
        granted = await controller.journal.query(types=["access.granted"], limit=5)
        assert [(g.event.data["reason"], g.event.data["pass"]) for g in granted] == [
            ("visitor_pass", issued[0].event.data["pass"])]
        assert issued[0].event.data["issued_by"].startswith("demo:")
        assert not await controller.journal.query(types=["access.denied"], limit=5)

        # Nobody home (rings shortened here): units, then the app, then the guard desk, whose guard
        # answers and opens.
        await wait_until(lambda: not devices.unlocked("gate-reader", fail_safe=False), 10, "the gate relocking")
        router = controller.intercom.router
        router.settings = dataclasses.replace(router.settings, unit_ring_s=0.5, app_ring_s=0.5)
        people.random.random = lambda: 0.9  # type: ignore[method-assign]  # the guard's turn to answer
        await people.nobody_home()
        stages = [m.event.data["stage"] for m in await controller.journal.query(types=["intercom.missed"], limit=5)]
        assert sorted(stages) == ["app", "units"], stages
        unlocks = await controller.journal.query(types=["intercom.unlock"], limit=5)
        assert len(unlocks) == 2 and unlocks[0].event.data.get("by") == "guard-desk", unlocks[0].event.data
        assert len(await controller.journal.query(types=["access.remote_unlock"], limit=5)) == 2


def test_demo_camera_section_is_light_and_starts_its_patrol_a_minute_ago() -> None:
    import hashlib
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from edge.demo import DEMO_CLIP, camera_section

    tz = ZoneInfo("Asia/Shanghai")
    text = camera_section(tz, now=datetime(2026, 11, 25, 0, 0, 30, tzinfo=tz))
    assert "detect: {fps: 2}" in text and "fps: 5" not in text
    assert "starts: ['23:59']" in text  # across midnight, in the site's local time
    assert f"url: '{DEMO_CLIP}'" in text and DEMO_CLIP.is_file()
    # The clip's provenance travels with it, and it is the clip the vision tests use.
    provenance = (DEMO_CLIP.parent / "PROVENANCE").read_text()
    sha256 = hashlib.sha256(DEMO_CLIP.read_bytes()).hexdigest()
    assert "opencv-doc" in provenance and f"sha256   {sha256}" in provenance
    assert DEMO_CLIP.read_bytes() == (ROOT / "tests" / "data" / "vtest-80.mp4").read_bytes()


def test_demo_without_the_zigbee_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from edge.cli import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "zigpy" else find_spec(name, *a))
    assert main(["demo", "--no-zeroconf"]) == 2
    assert "pip install -e '.[zigbee]'" in capsys.readouterr().err
