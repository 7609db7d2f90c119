"""A door whose lock relay, door position switch and exit button are on a Modbus RTU I/O module,
with its card reader on OSDP: both real protocol stacks over pseudo-terminals (libosdp at both
ends; pymodbus client against a pymodbus server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from drivers.modbus.simulator import SimBus as ModbusBus
from drivers.modbus.simulator import SimModule
from drivers.osdp.simulator import SimBus, SimReader
from edge.config import ConfigError, parse_config
from edge.daemon import Controller
from tests.access_helpers import FACILITY
from tests.controller_helpers import running_controller, site_yaml
from tests.test_access_service import journaled, mark, seed_store, wait_event, wait_ready

LOCK, DPS, REX = 0, 0, 1  # coil do0; inputs di0, di1


def modbus_door_yaml(osdp_port: str, modbus_port: str) -> str:
    return f"""\
doors:
  - id: gate
    lock_mode: fail_secure
    lock: {{module: door-io, output: {LOCK}}}
    dps: {{module: door-io, input: {DPS}}}
    rex: {{module: door-io, input: {REX}}}
    strike_s: 0.6
    extended_unlock_s: 1
    held_open_s: 5
    held_open_pre_alarm_s: 1
osdp:
  buses:
    - port: {osdp_port}
      baudrate: 115200
      readers:
        - {{id: gate-r, address: 1, door: gate, secure: false}}
modbus:
  buses:
    - port: {modbus_port}
      baudrate: 115200
      offline_after: 2
      modules:
        - {{id: door-io, unit: 3, inputs: 4, coils: 2}}
"""


@asynccontextmanager
async def modbus_door(tmp_path: Path) -> AsyncIterator[tuple[Controller, SimReader, SimModule, ModbusBus]]:
    async with SimBus([SimReader(1)]) as osdp, ModbusBus([SimModule(3, inputs=4, coils=2)]) as modbus:
        await seed_store(tmp_path / "data")
        async with running_controller(tmp_path, site_yaml(extra=modbus_door_yaml(osdp.port, modbus.port))) as c:
            await wait_ready(c, within=8.0)
            yield c, osdp.reader(1), modbus.module(3), modbus


async def test_a_grant_pulses_the_module_coil_and_its_inputs_supervise_the_door(tmp_path: Path) -> None:
    async with modbus_door(tmp_path) as (controller, reader, module, _bus):
        assert controller.access is not None
        assert controller.access.doors["gate"].machine.status.faults == ()  # the module is online

        since = mark(controller)
        reader.present_card(1001, FACILITY)  # alice
        on_at = await module.wait_coil(LOCK, True, within=3.0)
        off_at = await module.wait_coil(LOCK, False, within=3.0)  # the machine's relock: coils have no timer
        assert 0.4 <= off_at - on_at <= 1.6
        granted = await wait_event(controller, "access.granted", after=since)
        assert granted.event.data["holder"] == "alice"

        # The door opened with nobody let in: forced open, from the module's DPS input.
        since = mark(controller)
        module.set_input(DPS, True)
        forced = await wait_event(controller, "door.forced_open", after=since)
        assert forced.event.data["door"] == "gate"
        module.set_input(DPS, False)
        await wait_event(controller, "door.closed", after=since)

        # The exit button unlocks (rex_action: unlock) and shunts the DPS.
        since = mark(controller)
        module.set_input(REX, True)
        await wait_event(controller, "door.rex", after=since)
        await module.wait_coil(LOCK, True, within=3.0)
        module.set_input(REX, False)
        module.set_input(DPS, True)
        opened = await wait_event(controller, "door.opened", after=since)
        assert opened.event.data.get("authorised_by") == "rex"
        assert not await journaled(controller, "door.forced_open", since)
        module.set_input(DPS, False)


async def test_a_module_that_goes_quiet_puts_its_door_in_the_safe_state(tmp_path: Path) -> None:
    async with modbus_door(tmp_path) as (controller, reader, module, _bus):
        since = mark(controller)
        module.present = False  # powered off: silent on the bus
        safe = await wait_event(controller, "door.safe_state", after=since, within=8.0)
        assert "io_module_offline" in str(safe.event.data)
        reader.present_card(1001, FACILITY)  # granted, but the door cannot open: it says so
        refused = await wait_event(controller, "door.unlock_refused", after=since, within=5.0)
        assert refused.event.data["reason"] == "safe_state"

        module.present = True
        await wait_event(controller, "door.safe_state_cleared", after=since, within=8.0)
        since = mark(controller)
        reader.present_card(1008, FACILITY)  # hank (alice is inside now: anti-passback)
        await module.wait_coil(LOCK, True, within=3.0)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("{module: nowhere, output: 0}", "no Modbus module 'nowhere'"),
        ("{module: door-io, output: 5}", "module 'door-io' has 2 coils"),
        ("{module: door-io, reader: gate-r, output: 0}", "either reader (OSDP) or module (Modbus)"),
        ("{output: 0}", "either reader (OSDP) or module (Modbus)"),
    ],
)
def test_door_wiring_to_modules_is_checked(ref: str, message: str) -> None:
    text = site_yaml(extra=modbus_door_yaml("/dev/ttyS0", "/dev/ttyS1")).replace(
        f"lock: {{module: door-io, output: {LOCK}}}", f"lock: {ref}"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "site.yaml")
    assert message in str(caught.value)
    assert "site.yaml:" in str(caught.value)


def test_wiring_is_accepted_as_written() -> None:
    config = parse_config(site_yaml(extra=modbus_door_yaml("/dev/ttyS0", "/dev/ttyS1")), "site.yaml")
    gate = config.doors[0]
    assert gate.lock is not None and (gate.lock.device, gate.lock.point) == ("door-io", "do0")
    assert gate.dps is not None and (gate.dps.device, gate.dps.point) == ("door-io", "di0")


async def test_nothing_is_lost_when_a_grant_meets_a_module_still_starting(tmp_path: Path) -> None:
    """The door's module answers only after access control took the doors over: the boot command
    is recorded as not delivered, and the state is sent again when the module comes online."""
    async with SimBus([SimReader(1)]) as osdp, ModbusBus([SimModule(3, inputs=4, coils=2)]) as modbus:
        modbus.module(3).present = False
        await seed_store(tmp_path / "data")
        async with running_controller(tmp_path, site_yaml(extra=modbus_door_yaml(osdp.port, modbus.port))) as c:
            await wait_ready(c, within=10.0)
            since = mark(c)
            modbus.module(3).present = True
            await wait_event(c, "door.safe_state_cleared", within=8.0)
            osdp.reader(1).present_card(1001, FACILITY)
            await modbus.module(3).wait_coil(LOCK, True, within=3.0)
            assert await journaled(c, "access.granted", since)
            await asyncio.sleep(0)
