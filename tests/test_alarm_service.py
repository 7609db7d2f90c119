"""The alarm panel in the daemon: a real Controller, bus events, real SQLite, the API, Modbus RTU and
OSDP simulators on pseudo-terminals, and the real Mosquitto for signed and Home Assistant commands.

Partitions: `fence` (the compound's, no apartment) and `home-12` (apartment 12). Codes are keyed
hashes under the data dir's PIN key, written before the daemon starts.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from drivers.modbus.simulator import SimBus as ModbusBus
from drivers.modbus.simulator import SimModule
from drivers.osdp.simulator import SimBus as OsdpBus
from drivers.osdp.simulator import SimReader
from edge.alarm import alarm_entities
from edge.commands import sign_command
from edge.daemon import Controller
from edge.homeassistant import Discovery
from edge.topics import Topics
from rules.access import PinHasher
from rules.alarm import AlarmSection
from tests.controller_helpers import base_url, bearer, hash_password, journaled, mark, running_controller, wait_event
from tests.mosquitto import Mosquitto
from tests.mqtt_helpers import Collector, TopicTree, wait_until

PIN_KEY = b"alarm-service-test-key-0123456"
HASHER = PinHasher(PIN_KEY)
MANAGER_CODE, RESIDENT_CODE, DURESS_CODE = "1357", "2468", "9999"
HMAC_KEY = b"k" * 32
SITE, CONTROLLER = "maple-court", "gate-1"
PREFIX = f"linli/{SITE}/{CONTROLLER}"
USERS = {  # name -> (role, password, apartment)
    "admin": ("admin", "admin-secret-1", None),
    "manager": ("manager", "manager-secret-2", None),
    "installer": ("installer", "installer-secret-3", None),
    "res12": ("resident", "resident-secret-12", "12"),
    "res14": ("resident", "resident-secret-14", "14"),
}


def alarm_yaml(*, fence_source: str = "{device: fence-io, point: di3}", siren: str = "{device: fence-io, point: do0}",
               siren_s: float = 30, entry: float = 0.3, max_attempts: int = 3) -> str:
    return f"""\
alarm:
  max_code_attempts: {max_attempts}
  lockout_s: 60
  partitions:
    - {{id: fence, name: Perimeter, exit_delay_s: 0, entry_delay_s: {entry}, siren_s: {siren_s}}}
    - {{id: home-12, apartment: "12", exit_delay_s: 0, entry_delay_s: {entry}, siren_s: {siren_s}}}
  zones:
    - {{id: fence-north, type: perimeter, partition: fence, source: {fence_source}}}
    - {{id: front-door, type: entry_exit, partition: home-12, source: {{device: zb-door, point: zone}}}}
    - {{id: smoke-12, type: fire, partition: home-12, source: {{device: zb-smoke, point: zone}}}}
  sirens:
    - {{id: yard, partitions: [fence], output: {siren}}}
  codes:
    - {{user: manager, code_hash: "{HASHER.pin_only(MANAGER_CODE)}", partitions: [fence]}}
    - {{user: res12, code_hash: "{HASHER.pin_only(RESIDENT_CODE)}", partitions: [home-12]}}
    - {{user: res12, code_hash: "{HASHER.pin_only(DURESS_CODE)}", partitions: [home-12], duress: true}}
"""


def site(extra: str, *, uplink: str = "uplink: {enabled: false}\n") -> str:
    users = "users:\n" + "".join(
        f'  - {{name: {name}, role: {role}, password_hash: "{hash_password(pw)}"'
        + (f', apartment: "{apt}"' if apt else "") + "}\n"
        for name, (role, pw, apt) in USERS.items()
    )
    return (f"site: {{id: {SITE}}}\ncontroller: {{id: {CONTROLLER}}}\ndata_dir: data\n"
            f"zeroconf: {{enabled: false}}\napi: {{host: 127.0.0.1, port: 0}}\n{uplink}{users}{DEVICES}{extra}")


# The residents' Zigbee sensors (their radio is not part of these tests: their reports are put on the
# bus as the Zigbee service would) and the fence module, for tests that run without Modbus.
DEVICES = """\
devices:
  - {id: zb-door, kind: sensor, driver: zigbee}
  - {id: zb-smoke, kind: sensor, driver: zigbee}
  - {id: fence-io, kind: io_module, driver: modbus}
"""


def write_pin_key(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    if (data_dir / "pin.key").exists():
        return
    fd = os.open(data_dir / "pin.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(PIN_KEY)


@asynccontextmanager
async def alarm_site(tmp_path: Path, extra: str, **kw: Any) -> AsyncIterator[Controller]:
    write_pin_key(tmp_path / "data")
    async with running_controller(tmp_path, site(extra, **kw)) as controller:
        await wait_until(lambda: controller.alarm is not None and controller.alarm.ready.is_set(), 5, "alarm ready")
        yield controller


def state_of(controller: Controller, partition: str) -> str:
    return str(controller.alarm.panel.partitions[partition].state)


async def zone(controller: Controller, device: str, point: str, state: str) -> None:
    await controller.bus.emit("input.changed", device, {"point": point, "state": state})


# ---- the bus, the panel, SQLite ------------------------------------------------------------------


async def test_bus_input_raises_the_alarm_and_a_missing_siren_output_is_a_trouble(tmp_path: Path) -> None:
    async with alarm_site(tmp_path, alarm_yaml()) as controller:
        service = controller.alarm
        since = mark(controller)
        assert (await service.arm("fence", "away", MANAGER_CODE, origin="test")).ok
        armed = await wait_event(controller, "alarm.armed", after=since)
        assert armed.event.source == "fence" and armed.event.data["partition"] == "fence"
        await zone(controller, "fence-io", "di3", "active")
        triggered = await wait_event(controller, "alarm.triggered", after=since)
        assert triggered.event.data["zones"] == ["fence-north"] and triggered.event.severity == "alarm"
        assert triggered.event.priority.name == "SECURITY"
        # No Modbus section: the siren cannot sound. That is a trouble on the record, not a crash.
        trouble = await wait_event(controller, "alarm.trouble", lambda d: d["kind"] == "siren_output", after=since)
        assert "Modbus" in trouble.event.data["error"]
        assert controller.supervisor.health["alarm"].running
        # Junk on the bus for a zone device changes nothing.
        for data in ({"point": 3, "state": "active"}, {"point": "di3"}, {"point": "di3", "state": "exploded"}):
            await controller.bus.emit("input.changed", "fence-io", data)
        result = await service.disarm("fence", MANAGER_CODE, origin="test")
        assert result.ok and state_of(controller, "fence") == "disarmed"
        disarmed = await wait_event(controller, "alarm.disarmed", after=since)
        assert disarmed.event.data["was"] == "triggered"


async def test_state_survives_a_restart_and_resident_events_carry_the_apartment(tmp_path: Path) -> None:
    async with alarm_site(tmp_path, alarm_yaml(entry=30)) as controller:
        service = controller.alarm
        assert (await service.arm("home-12", "night", RESIDENT_CODE, origin="test")).ok
        assert (await service.arm("fence", "away", MANAGER_CODE, origin="test")).ok
        since = mark(controller)
        await zone(controller, "zb-door", "zone", "active")
        pending = await wait_event(controller, "alarm.pending", after=since)
        assert pending.event.data["apartment"] == "12"
        opened = await wait_event(controller, "zone.opened", after=since)
        assert opened.event.source == "front-door" and opened.event.data["apartment"] == "12"
    async with alarm_site(tmp_path, alarm_yaml(entry=30)) as controller:
        assert state_of(controller, "fence") == "armed_away"
        assert state_of(controller, "home-12") == "pending"  # the entry delay goes on where it was
        assert controller.alarm.panel.zones["front-door"].state == "active"
        assert (await controller.alarm.disarm("home-12", DURESS_CODE, origin="test")).ok
        duress = await wait_event(controller, "alarm.duress")
        assert duress.event.severity == "critical" and duress.event.data["apartment"] == "12"
    async with alarm_site(tmp_path, alarm_yaml(entry=30)) as controller:
        assert state_of(controller, "home-12") == "disarmed" and state_of(controller, "fence") == "armed_away"


async def test_a_24h_fire_zone_alarms_while_disarmed(tmp_path: Path) -> None:
    async with alarm_site(tmp_path, alarm_yaml()) as controller:
        await zone(controller, "zb-smoke", "zone", "active")
        fire = await wait_event(controller, "alarm.triggered")
        assert fire.event.data["kind"] == "fire" and fire.event.severity == "critical"
        assert fire.event.data["apartment"] == "12"


async def test_device_supervision_and_battery_become_troubles(tmp_path: Path) -> None:
    async with alarm_site(tmp_path, alarm_yaml()) as controller:
        await controller.bus.emit("device.offline", "zb-door", {"reason": "no check-in for 1200 s"})
        offline = await wait_event(controller, "alarm.trouble", lambda d: d["kind"] == "offline")
        assert offline.event.data["zones"] == ["front-door"] and offline.event.data["active"] is True
        await controller.bus.emit("device.battery", "zb-door", {"low": True, "percent": 5.0})
        await wait_event(controller, "alarm.trouble", lambda d: d["kind"] == "battery")
        result = await controller.alarm.arm("home-12", "away", RESIDENT_CODE, origin="test")
        assert result.reason == "trouble"
        await controller.bus.emit("device.online", "zb-door", {"reason": "checked in"})
        await wait_event(controller, "alarm.trouble", lambda d: d["kind"] == "offline" and not d["active"])


# ---- real transports ---------------------------------------------------------------------------------


def modbus_yaml(port: str) -> str:
    return f"""\
modbus:
  buses:
    - port: {port}
      baudrate: 115200
      timeout_ms: 50
      modules:
        - {{id: fence-io, unit: 1, inputs: 16, coils: 8}}
"""


async def test_modbus_zone_trips_the_siren_coil_and_it_resumes_after_a_restart(tmp_path: Path) -> None:
    extra = alarm_yaml(siren_s=30) + modbus_yaml("PORT")
    async with ModbusBus([SimModule(1)]) as bus:
        module = bus.module(1)
        async with alarm_site(tmp_path, extra.replace("PORT", bus.port)) as controller:
            await wait_until(lambda: controller.modbus is not None and controller.modbus.is_online("fence-io"), 5,
                             "modbus module online")
            assert (await controller.alarm.arm("fence", "away", MANAGER_CODE, origin="test")).ok
            since = mark(controller)
            module.set_input(3, True)
            await module.wait_coil(0, True, within=3.0)
            triggered = await wait_event(controller, "alarm.triggered", after=since)
            assert triggered.event.data["zones"] == ["fence-north"]
    # A restart within the siren time: a module that lost its coil state gets the siren back.
    async with ModbusBus([SimModule(1)]) as bus:
        module = bus.module(1)
        module.set_input(3, True)
        async with alarm_site(tmp_path, extra.replace("PORT", bus.port)) as controller:
            assert state_of(controller, "fence") == "triggered"
            await module.wait_coil(0, True, within=5.0)
            result = await controller.alarm.disarm("fence", MANAGER_CODE, origin="test")
            assert result.ok
            await module.wait_coil(0, False, within=3.0)
            # If the first attempt came before the module's first poll it failed (a trouble) and was
            # repeated when the module came online; either way no siren trouble is left standing.
            panel = controller.alarm.panel
            await wait_until(lambda: not any(kind == "siren_output" for _, kind in panel.troubles), 3, "cleared")
            if await journaled(controller, "alarm.trouble"):
                await wait_event(controller, "alarm.trouble", lambda d: d["active"] is False)


async def test_an_osdp_reader_input_is_a_zone(tmp_path: Path) -> None:
    async with OsdpBus([SimReader(1, inputs=4)]) as bus:
        reader = bus.reader(1)
        osdp = f"""\
doors:
  - {{id: gate}}
osdp:
  buses:
    - port: {bus.port}
      baudrate: 115200
      readers:
        - {{id: gate-r, address: 1, door: gate, secure: false}}
"""
        extra = alarm_yaml(fence_source="{device: gate-r, point: input2}") + osdp
        async with alarm_site(tmp_path, extra) as controller:
            await wait_until(lambda: controller.access is not None and controller.access.ready.is_set(), 5, "access")
            assert (await controller.alarm.arm("fence", "away", MANAGER_CODE, origin="test")).ok
            since = mark(controller)
            reader.set_input(2, True)
            triggered = await wait_event(controller, "alarm.triggered", after=since)
            assert triggered.event.data["zones"] == ["fence-north"]
            opened = await wait_event(controller, "zone.opened", after=since)
            assert opened.event.data["device"] == "gate-r" and opened.event.data["point"] == "input2"


# ---- the API --------------------------------------------------------------------------------------------


async def login(http: aiohttp.ClientSession, url: str, name: str) -> dict[str, str]:
    async with http.post(f"{url}/api/login", json={"username": name, "password": USERS[name][1]}) as r:
        body = await r.json()
        assert r.status == 200, body
        return bearer(body["token"])


async def test_api_roles_codes_and_lockout(tmp_path: Path) -> None:
    async with alarm_site(tmp_path, alarm_yaml()) as controller, aiohttp.ClientSession() as http:
        url = base_url(controller)
        auth = {name: await login(http, url, name) for name in USERS}

        async def post(user: str, partition: str, action: str, body: Any) -> tuple[int, dict[str, Any], Any]:
            async with http.post(f"{url}/api/alarm/partitions/{partition}/{action}", json=body,
                                 headers=auth[user]) as r:
                return r.status, await r.json(), r.headers

        async with http.get(f"{url}/api/alarm/partitions", headers=auth["res12"]) as r:
            assert [p["partition"] for p in (await r.json())["partitions"]] == ["home-12"]
        async with http.get(f"{url}/api/alarm/partitions", headers=auth["res14"]) as r:
            assert (await r.json())["partitions"] == []
        async with http.get(f"{url}/api/alarm/zones", headers=auth["installer"]) as r:
            assert {z["zone"] for z in (await r.json())["zones"]} == {"fence-north", "front-door", "smoke-12"}

        since = mark(controller)
        arm_12 = {"mode": "away", "code": RESIDENT_CODE}
        for user in ("res14", "manager", "installer"):  # someone else's apartment; the manager; no right
            status, body, _ = await post(user, "home-12", "arm", arm_12)
            assert status == 403, (user, body)
        status, _, _ = await post("res12", "fence", "arm", {"mode": "away", "code": RESIDENT_CODE})
        assert status == 403
        refused = await journaled(controller, "alarm.request_refused", since)
        assert [(e.event.data["origin"], e.event.data["reason"]) for e in refused] == [
            ("api:res14", "forbidden"), ("api:manager", "forbidden"), ("api:installer", "forbidden"),
            ("api:res12", "forbidden")]
        assert refused[0].event.data["apartment"] == "12"
        assert state_of(controller, "home-12") == "disarmed"

        status, body, _ = await post("res12", "home-12", "arm", {"mode": "away"})
        assert status == 400
        status, body, _ = await post("res12", "home-12", "arm", {"mode": "away", "code": "1234", "extra": 1})
        assert status == 400

        # Wrong codes: refused and journaled; the third locks code entry out, even for the right code.
        for attempt in (1, 2):
            status, body, _ = await post("res12", "home-12", "arm", {"mode": "away", "code": f"000{attempt}"})
            assert status == 403 and "wrong_code" in body["error"]
        status, body, headers = await post("res12", "home-12", "arm", {"mode": "away", "code": "0003"})
        assert status == 403
        status, body, headers = await post("res12", "home-12", "arm", arm_12)
        assert status == 429 and int(headers["Retry-After"]) > 0
        assert len(await journaled(controller, "alarm.code_rejected", since)) == 4
        lockout = await journaled(controller, "alarm.code_lockout", since)
        assert len(lockout) == 1 and lockout[0].event.severity == "alarm"
        assert state_of(controller, "home-12") == "disarmed"
        assert "2468" not in json.dumps([e.event.data for e in await controller.journal.query(limit=1000)])

        status, body, _ = await post("manager", "fence", "arm", {"mode": "away", "code": MANAGER_CODE})
        assert status == 200 and body["state"] == "armed_away"
        status, body, _ = await post("admin", "fence", "bypass", {"zone": "fence-north", "code": MANAGER_CODE})
        assert status == 200 and body["bypassed"] == ["fence-north"]
        status, body, _ = await post("manager", "fence", "bypass", {"zone": "nowhere", "code": MANAGER_CODE})
        assert status == 404
        status, body, _ = await post("manager", "attic", "disarm", {"code": MANAGER_CODE})
        assert status == 404
        status, body, _ = await post("manager", "fence", "disarm", {"code": MANAGER_CODE})
        assert status == 200 and body["state"] == "disarmed"


# ---- MQTT: signed commands, Home Assistant --------------------------------------------------------------


def test_home_assistant_discovery_payloads_follow_the_schema() -> None:
    section = AlarmSection.model_validate({
        "partitions": [{"id": "fence"}, {"id": "home-12", "apartment": "12"}],
        "zones": [
            {"id": "fence-north", "type": "perimeter", "partition": "fence",
             "source": {"device": "io", "point": "di0"}},
            {"id": "smoke", "type": "fire", "partition": "home-12", "source": {"device": "zb", "point": "zone"}},
            {"id": "hall", "partition": "home-12", "device_class": "occupancy",
             "source": {"device": "zb2", "point": "zone"}},
        ],
        "sirens": [{"id": "yard", "output": {"device": "io", "point": "do0"}}],
    })
    topics = Topics(SITE, CONTROLLER)
    messages = dict(Discovery("homeassistant", topics, "1.0").messages(alarm_entities(topics, section)))
    tree = TopicTree()
    for topic, payload in messages.items():
        tree.check(topic, json.dumps(payload).encode())
    panel = messages[f"homeassistant/alarm_control_panel/linli_{SITE}_{CONTROLLER}/alarm_home_12/config"]
    assert panel["code"] == "REMOTE_CODE" and panel["code_arm_required"] is True
    assert panel["command_topic"] == f"{PREFIX}/ha/cmd/alarm.home-12"
    assert panel["state_topic"] == f"{PREFIX}/state/alarm.home-12"
    classes = {t.rsplit("/", 2)[1]: p.get("device_class") for t, p in messages.items() if "/binary_sensor/" in t}
    assert classes == {"zone_fence_north": "opening", "zone_smoke": "smoke", "zone_hall": "occupancy"}
    siren = messages[f"homeassistant/siren/linli_{SITE}_{CONTROLLER}/siren_yard/config"]
    assert siren["state_topic"] == f"{PREFIX}/state/alarm.sirens"
    broken = dict(panel, code_arm_requierd=True)
    try:
        tree.check(f"homeassistant/alarm_control_panel/linli_{SITE}_{CONTROLLER}/alarm_home_12/config",
                   json.dumps(broken).encode())
    except AssertionError:
        pass
    else:
        raise AssertionError("a misspelt key passed the schema")


async def test_signed_and_home_assistant_commands_over_mosquitto(mosquitto: Mosquitto, tmp_path: Path) -> None:
    key_file = tmp_path / "hmac.key"
    key_file.write_bytes(HMAC_KEY)
    uplink = (f"uplink: {{broker: '{mosquitto.url}', backoff: {{initial_s: 0.05, max_s: 0.5}}, "
              f"commands: {{hmac_key_file: {key_file}}}}}\n")
    async with (
        Collector(mosquitto.port, [f"{PREFIX}/cmd_result/#", f"{PREFIX}/state/#",
                                   "homeassistant/alarm_control_panel/#"]) as seen,
        alarm_site(tmp_path, alarm_yaml(), uplink=uplink) as controller,
    ):
        await wait_until(lambda: controller.uplink.state == "connected", 10, "uplink connected")
        await seen.wait_for(lambda m: any("/alarm_control_panel/" in x.topic for x in m), what="discovery")
        tree = TopicTree()
        for m in seen.matching("/alarm_control_panel/"):
            tree.check(m.topic, m.payload)

        def command(name: str, cid: str, args: dict[str, Any]) -> bytes:
            return sign_command(f"{PREFIX}/cmd/{name}", command_id=cid, args=args, key=HMAC_KEY)

        def result(cid: str) -> dict[str, Any] | None:
            found = seen.on(f"{PREFIX}/cmd_result/{cid}")
            return found[-1].json() if found else None

        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
            await platform.publish(f"{PREFIX}/cmd/alarm/arm",
                                   command("alarm/arm", "a1", {"partition": "fence", "mode": "away",
                                                               "code": MANAGER_CODE}), qos=1)
            await seen.wait_for(lambda _: result("a1") is not None, what="a1 result")
            assert result("a1") == {"id": "a1", "ok": True,
                                    "result": {"partition": "fence", "state": "armed_away", "user": "manager"}}
            await platform.publish(f"{PREFIX}/cmd/alarm/disarm",
                                   command("alarm/disarm", "a2", {"partition": "fence", "code": "0000"}), qos=1)
            await platform.publish(f"{PREFIX}/cmd/alarm/arm",
                                   command("alarm/arm", "a3", {"partition": "fence", "mode": "sideways",
                                                               "code": MANAGER_CODE}), qos=1)
            await seen.wait_for(lambda _: result("a2") is not None and result("a3") is not None, what="refusals")
            assert result("a2")["ok"] is False and result("a2")["error"]["message"] == "refused: wrong_code"
            assert result("a3")["error"]["reason"] == "bad_args"
            assert state_of(controller, "fence") == "armed_away"
            await seen.wait_for(lambda _: any(m.json()["state"] == "armed_away"
                                              for m in seen.on(f"{PREFIX}/state/alarm.fence")), what="fence state")

            # Home Assistant: unsigned, so every action needs the user's code.
            ha = f"{PREFIX}/ha/cmd/alarm.home-12"
            await platform.publish(ha, json.dumps({"action": "ARM_AWAY", "code": RESIDENT_CODE}), qos=1)
            await wait_until(lambda: state_of(controller, "home-12") == "armed_away", 5, "armed by HA")
            await platform.publish(ha, json.dumps({"action": "DISARM", "code": "1111"}), qos=1)
            await platform.publish(ha, b"DISARM", qos=1)  # HA's default template: no code at all
            await platform.publish(f"{PREFIX}/ha/cmd/alarm.siren.yard", b"OFF", qos=1)
            await wait_event(controller, "alarm.request_refused", lambda d: d["reason"] == "siren_follows_the_panel")
            rejected = await wait_event(controller, "alarm.code_rejected", lambda d: d["origin"] == "home_assistant")
            assert rejected.event.data["partition"] == "home-12"
            await wait_event(controller, "alarm.request_refused", lambda d: d["reason"] == "malformed")
            assert state_of(controller, "home-12") == "armed_away"
            await platform.publish(ha, json.dumps({"action": "DISARM", "code": RESIDENT_CODE}), qos=1)
            await wait_until(lambda: state_of(controller, "home-12") == "disarmed", 5, "disarmed by HA")
            await seen.wait_for(lambda _: seen.on(f"{PREFIX}/state/alarm.home-12")[-1].json()["state"] == "disarmed",
                                what="home-12 state")
            for m in seen.matching("/state/alarm"):
                tree.check(m.topic, m.payload)


async def test_reload_restarts_the_panel_in_its_persisted_state(tmp_path: Path) -> None:
    async with alarm_site(tmp_path, alarm_yaml()) as controller:
        first = controller.alarm
        assert (await first.arm("fence", "away", MANAGER_CODE, origin="test")).ok
        await controller.reload_config(site(alarm_yaml(siren_s=45)))
        await wait_until(lambda: controller.alarm is not None and controller.alarm is not first
                         and controller.alarm.ready.is_set(), 5, "new alarm service")
        assert controller.alarm.config.partitions[0].siren_s == 45
        assert state_of(controller, "fence") == "armed_away"
        # A reload that leaves the alarm section alone keeps the running panel.
        same = controller.alarm
        await controller.reload_config(site(alarm_yaml(siren_s=45)).replace("site: {id: maple-court}",
                                                                             "site: {id: maple-court, name: M}"))
        assert controller.alarm is same


def test_hash_code_uses_the_boxs_pin_key(tmp_path: Path) -> None:
    from edge.alarm import hash_code

    write_pin_key(tmp_path)
    assert hash_code(tmp_path, "2468") == HASHER.pin_only("2468")
    with pytest.raises(ValueError):
        hash_code(tmp_path, "24")


def test_site_file_errors_point_at_the_alarm_line(tmp_path: Path) -> None:
    from edge.config import ConfigError, parse_config

    broken = alarm_yaml().replace("device: zb-door", "device: zb-dor").replace("partition: fence,", "partition: fense,")
    text = site(broken)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "site.yaml", tmp_path)
    issues = {i.path: (i.line, i.message) for i in caught.value.issues}
    lines = text.splitlines()
    line, message = issues["alarm.zones[1].source.device"]
    assert message == "no device 'zb-dor' in the site file" and "zb-dor" in lines[line - 1]
    line, message = issues["alarm.zones[0].partition"]
    assert "no partition 'fense'" in message and "fense" in lines[line - 1]


@pytest.mark.parametrize("args", [
    {},
    {"partition": "fence"},
    {"partition": "fence", "code": 1234},
    {"partition": "", "code": "1234"},
    {"partition": "fence", "code": "1234", "zone": "x"},
    {"partition": "fence", "code": "1" * 65},
    {"partition": ["fence"], "code": "1234"},
])
def test_hostile_command_args_are_bad_args(args: dict[str, Any]) -> None:
    from edge.alarm import parse_request
    from edge.commands import BadArgs

    with pytest.raises(BadArgs):
        parse_request(args)
    with pytest.raises(BadArgs):
        parse_request({**args, "mode": "away", "force": "yes"}, mode=True)


async def test_an_unsafe_pin_key_is_one_clear_problem_not_a_crash_loop(tmp_path: Path) -> None:
    write_pin_key(tmp_path / "data")
    (tmp_path / "data" / "pin.key").chmod(0o644)
    async with running_controller(tmp_path, site(alarm_yaml())) as controller:
        problem = await wait_event(controller, "alarm.config_problem")
        assert "chmod 600" in problem.event.data["error"] and problem.event.severity == "alarm"
        await asyncio.sleep(0.2)
        assert len(await journaled(controller, "alarm.config_problem")) == 1
        assert controller.supervisor.health["alarm"].running and controller.alarm.panel is None
        async with aiohttp.ClientSession() as http:
            headers = await login(http, base_url(controller), "manager")
            async with http.get(f"{base_url(controller)}/api/alarm/partitions", headers=headers) as r:
                assert r.status == 503


ZB_DOOR, ZB_SIREN = "00:0d:6f:00:00:00:02:01", "00:0d:6f:00:00:00:02:02"
ZIGBEE_HOME = f"""\
zigbee:
  radio: simulated
  devices:
    - {{id: home-door, ieee: "{ZB_DOOR}", kind: contact, apartment: "12"}}
    - {{id: home-siren, ieee: "{ZB_SIREN}", kind: siren, apartment: "12"}}
alarm:
  partitions:
    - {{id: home-12, apartment: "12", exit_delay_s: 0, entry_delay_s: 0.2, siren_s: 90}}
  zones:
    - {{id: front-door, type: entry_exit, partition: home-12, source: {{device: home-door, point: zone}}}}
  sirens:
    - {{id: flat-siren, zigbee: home-siren}}
  codes:
    - {{user: res12, code_hash: "{HASHER.pin_only(RESIDENT_CODE)}", partitions: [home-12]}}
"""


async def test_a_residents_zigbee_door_sensor_sounds_the_zigbee_siren(tmp_path: Path) -> None:
    """Over zigpy and the fake radio: enrolled contact -> entry delay -> alarm -> IAS WD warning; the
    siren squawks on arming and disarming, and disarming stops it."""
    async with alarm_site(tmp_path, ZIGBEE_HOME) as controller:
        await wait_event(controller, "zigbee.enrolled", lambda d: d["ieee"] == ZB_DOOR)
        zigbee = controller.zigbee
        siren, door = zigbee.network.device(ZB_SIREN), zigbee.network.device(ZB_DOOR)
        assert (await controller.alarm.arm("home-12", "away", RESIDENT_CODE, origin="test")).ok
        await wait_until(lambda: siren.commands("squawk"), 5, "squawk on arming")
        since = mark(controller)
        door.set_zone(alarm=True)
        pending = await wait_event(controller, "alarm.pending", after=since)
        assert pending.event.data["apartment"] == "12"
        triggered = await wait_event(controller, "alarm.triggered", after=since)
        assert triggered.event.data["zones"] == ["front-door"]
        # (A device coming online gets the panel's siren state again, so "stop"s may come first.)
        def sounding() -> list[Any]:
            return [w.args for w in siren.commands("start_warning") if w.args["warning"].mode == 1]

        await wait_until(lambda: sounding(), 5, "siren on")
        assert 85 <= sounding()[0]["warning_duration"] <= 90
        assert (await controller.alarm.disarm("home-12", RESIDENT_CODE, origin="test")).ok
        await wait_until(lambda: siren.commands("start_warning")[-1].args["warning"].mode == 0, 5, "siren off")
        assert len(sounding()) == 1
        await wait_until(lambda: len(siren.commands("squawk")) == 2, 5, "squawk on disarming")
        assert not await journaled(controller, "alarm.trouble")
