"""Modbus I/O modules in a running controller: site file -> drivers -> journal, and outputs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus import OutputError
from drivers.modbus.simulator import SimBus, SimModule
from edge.config import ConfigError, parse_config
from edge.daemon import Controller
from edge.journal import StoredEvent
from tests.controller_helpers import running_controller, site_yaml
from tests.mosquitto import Mosquitto
from tests.mqtt_helpers import retained


def modbus_yaml(port: str, extra_module: str = "") -> str:
    return (
        "modbus:\n"
        "  buses:\n"
        f"    - port: {port}\n"
        "      timeout_ms: 50\n"
        "      offline_retry_ms: 100\n"
        "      modules:\n"
        "        - {id: fence-io-1, name: Fence north, unit: 1, inputs: 16, coils: 8}\n"
        "        - id: fence-io-2\n"
        "          unit: 2\n"
        "          inputs: 0\n"
        "          coils: 4\n"
        "          analog:\n"
        "            - {input: 0, short_below: 500, normal_below: 1500, alarm_below: 3000}\n" + extra_module
    )


@pytest.fixture
async def bus() -> AsyncIterator[SimBus]:
    async with SimBus([SimModule(1), SimModule(2, inputs=0, coils=4, analog=1)]) as b:
        yield b


async def wait_event(
    controller: Controller, type: str, where: Callable[[StoredEvent], bool], *, after: int = 0, within: float = 3.0
) -> StoredEvent:
    deadline = time.monotonic() + within
    while True:
        for stored in await controller.journal.query(types=[type], after_seq=after, limit=1000):
            if where(stored):
                return stored
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {type} journaled within {within}s")
        await asyncio.sleep(0.01)


def of(source: str, **data: Any) -> Callable[[StoredEvent], bool]:
    return lambda s: s.event.source == source and all(s.event.data.get(k) == v for k, v in data.items())


async def modules_online(controller: Controller, *ids: str) -> None:
    for i in ids:
        await wait_event(controller, "device.online", of(i))
    assert controller.modbus is not None


async def test_input_change_is_journaled_as_input_changed(tmp_path: Path, bus: SimBus) -> None:
    async with running_controller(tmp_path, site_yaml(extra=modbus_yaml(bus.port))) as controller:
        await modules_online(controller, "fence-io-1", "fence-io-2")
        device = controller.devices.get("fence-io-1")
        assert device is not None and (device.kind, device.driver, device.online) == ("io_module", "modbus", True)
        await wait_event(controller, "input.changed", of("fence-io-2", point="ai0", state="normal"))  # first contact
        await wait_event(controller, "input.changed", of("fence-io-1", point="di15", state="normal"))
        mark = controller.journal.stats.last_seq
        bus.module(1).set_input(2, True)
        stored = await wait_event(controller, "input.changed", of("fence-io-1", point="di2"), after=mark)
        assert stored.event.data == {"point": "di2", "state": "active"}
        bus.module(2).set_analog(0, 65000)
        stored = await wait_event(controller, "input.changed", of("fence-io-2", point="ai0"), after=mark)
        assert stored.event.data == {"point": "ai0", "state": "tamper", "detail": "cut"}
        assert controller.modbus.state("fence-io-2")["points"] == {"ai0": "tamper"}
        assert controller.health()["tasks"]["modbus"]["running"]


async def test_set_output_switches_the_coil_and_refuses_what_it_cannot_do(tmp_path: Path, bus: SimBus) -> None:
    async with running_controller(tmp_path, site_yaml(extra=modbus_yaml(bus.port))) as controller:
        await modules_online(controller, "fence-io-1", "fence-io-2")
        modbus = controller.modbus
        await modbus.set_output("fence-io-2", "do1", True)
        assert bus.module(2).coils == [False, True, False, False]
        await modbus.set_output("fence-io-2", "do1", False)
        assert bus.module(2).coils == [False] * 4

        with pytest.raises(OutputError, match="no Modbus module 'gate-9'"):
            await modbus.set_output("gate-9", "do0", True)
        with pytest.raises(OutputError, match="not an output"):
            await modbus.set_output("fence-io-1", "di0", True)
        with pytest.raises(OutputError, match="no output do4"):
            await modbus.set_output("fence-io-2", "do4", True)
        mark = controller.journal.stats.last_seq
        bus.module(1).present = False
        await wait_event(controller, "device.offline", of("fence-io-1"), after=mark)
        assert not controller.devices.get("fence-io-1").online  # type: ignore[union-attr]
        with pytest.raises(OutputError, match="offline"):
            await modbus.set_output("fence-io-1", "do0", True)
        assert bus.module(1).coils == [False] * 8
    assert controller.modbus is None  # gone with the service


async def test_no_modbus_section_no_service(tmp_path: Path) -> None:
    async with running_controller(tmp_path) as controller:
        assert controller.modbus is None
        assert "modbus" not in controller.health()["tasks"]


@pytest.mark.parametrize(
    ("extra_module", "message"),
    [
        ("        - {id: fence-io-3, unit: 1}\n", "unit 1 is used twice on this bus"),
        ("        - {id: fence-io-1, unit: 3}\n", "duplicate module id 'fence-io-1'"),
        ("        - {id: fence-io-3, unit: 248}\n", "less than or equal to 247"),
        ("        - {id: fence-io-3, unit: 3, inputs: 17}\n", "less than or equal to 16"),
        ("        - {id: fence-io-3, unit: 3, relays: 4}\n", "unknown key"),
        (
            "        - {id: fence-io-3, unit: 3, analog: [{input: 0, short_below: 2000, normal_below: 1500}]}\n",
            "thresholds must rise",
        ),
        ("        - {id: fence-io-3, unit: 3, analog: [{input: 1}, {input: 1}]}\n", "input 1 is listed twice"),
        ("        - {id: controller, unit: 3}\n", "reserved"),
    ],
)
def test_bad_modbus_config_is_refused_with_a_clear_message(extra_module: str, message: str) -> None:
    text = site_yaml(extra=modbus_yaml("/dev/ttyUSB1", extra_module))
    with pytest.raises(ConfigError) as err:
        parse_config(text, "site.yaml")
    assert message in str(err.value)
    assert "site.yaml:" in str(err.value)  # points at the line


def test_bad_bus_settings_are_refused() -> None:
    for port, message in [("ttyUSB1", "absolute path"), ("socket://host", "socket://host:port")]:
        with pytest.raises(ConfigError, match=message):
            parse_config(site_yaml(extra=modbus_yaml(port)), "site.yaml")
    two_buses = modbus_yaml("/dev/ttyUSB1") + modbus_yaml("/dev/ttyUSB1").split("buses:\n", 1)[1]
    with pytest.raises(ConfigError, match="port /dev/ttyUSB1 is configured twice"):
        parse_config(site_yaml(extra=two_buses), "site.yaml")
    with pytest.raises(ConfigError, match="baudrate"):
        parse_config(site_yaml(extra=modbus_yaml("/dev/ttyUSB1").replace("timeout_ms: 50", "baudrate: 12345")))


def test_good_config_lists_the_modules_as_devices() -> None:
    config = parse_config(site_yaml(extra=modbus_yaml("socket://10.0.0.5:4001")), "site.yaml")
    devices = {d.id: d for d in config.device_configs()}
    assert (devices["fence-io-1"].kind, devices["fence-io-1"].driver, devices["fence-io-1"].name) == (
        "io_module",
        "modbus",
        "Fence north",
    )
    spec = config.modbus.buses[0].modules[1].spec()
    assert (spec.unit, spec.inputs, spec.coils, spec.analog_count) == (2, 0, 4, 1)
    assert config.modbus.buses[0].driver_options()["timeout_s"] == 0.05


async def test_module_state_is_published_retained_to_the_platform(
    tmp_path: Path, bus: SimBus, mosquitto: Mosquitto
) -> None:
    text = site_yaml(extra=modbus_yaml(bus.port)).replace(
        "uplink: {enabled: false}", f"uplink: {{broker: '{mosquitto.url}', backoff: {{initial_s: 0.05}}}}"
    )
    async with running_controller(tmp_path, text) as controller:
        await modules_online(controller, "fence-io-1", "fence-io-2")
        bus.module(1).set_input(11, True)
        await wait_event(controller, "input.changed", of("fence-io-1", point="di11"))
        topic = "linli/maple-court/gate-1/state/fence-io-1"
        deadline = time.monotonic() + 5
        while True:
            kept = await retained(mosquitto.port, topic, 0.5)
            state = kept.json() if kept is not None else {}
            if state.get("points", {}).get("di11") == "active" or time.monotonic() > deadline:
                break
        assert kept is not None and kept.retain
        assert state["online"] is True and state["unit"] == 1
        assert state["points"]["di11"] == "active" and state["points"]["di0"] == "normal"


async def test_reload_with_a_changed_modbus_section_restarts_the_drivers(tmp_path: Path, bus: SimBus) -> None:
    text = site_yaml(extra=modbus_yaml(bus.port))
    async with running_controller(tmp_path, text) as controller:
        await modules_online(controller, "fence-io-1", "fence-io-2")
        first = controller.modbus
        mark = controller.journal.stats.last_seq
        await controller.reload_config(text.replace("coils: 4", "coils: 2"))
        await wait_event(controller, "device.online", of("fence-io-2"), after=mark)
        assert controller.modbus is not None and controller.modbus is first  # same service, new drivers
        with pytest.raises(OutputError, match="no output do3"):
            await controller.modbus.set_output("fence-io-2", "do3", True)
        await controller.modbus.set_output("fence-io-2", "do1", True)
        assert bus.module(2).coil(1)
