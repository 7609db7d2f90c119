"""Arming and disarming at an OSDP reader's keypad: `*` FUNCTION CODE `#`, over real OSDP (libosdp at
both ends of a pty) into the real alarm panel. The code is checked by the panel, wrong codes count
towards its lockout, and no code ever reaches an event."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.osdp import LedColor
from drivers.osdp.simulator import SimBus, SimReader
from tests.mqtt_helpers import wait_until
from tests.test_alarm_service import (
    DURESS_CODE,
    MANAGER_CODE,
    RESIDENT_CODE,
    alarm_site,
    alarm_yaml,
    journaled,
    mark,
    state_of,
    wait_event,
)


def keypad_yaml(port: str) -> str:
    return f"""\
doors:
  - {{id: gate}}
  - {{id: lobby}}
osdp:
  buses:
    - port: {port}
      baudrate: 115200
      readers:
        - {{id: gate-r, address: 1, door: gate, secure: false, alarm_partition: fence}}
        - {{id: lobby-r, address: 2, door: lobby, secure: false}}
"""


async def test_keypad_arms_and_disarms_its_partition(tmp_path: Path) -> None:
    async with SimBus([SimReader(1), SimReader(2)]) as bus:
        gate, lobby = bus.reader(1), bus.reader(2)
        async with alarm_site(tmp_path, alarm_yaml() + keypad_yaml(bus.port)) as controller:
            await wait_until(lambda: controller.access is not None and controller.access.ready.is_set(), 5, "access")
            since = mark(controller)
            gate.press_keys(f"*1{MANAGER_CODE}#")  # arm away
            armed = await wait_event(controller, "alarm.armed", after=since)
            assert armed.event.data["partition"] == "fence"
            assert state_of(controller, "fence") == "armed_away"
            await gate.wait_for(lambda: gate.leds.get(0, {}).get("on_color") == LedColor.GREEN)  # done

            # A resident's code is not valid for the perimeter: refused, red, still armed.
            since = mark(controller)
            gate.press_keys(f"*0{RESIDENT_CODE}#")
            await wait_event(controller, "alarm.code_rejected", after=since)
            assert state_of(controller, "fence") == "armed_away"
            await gate.wait_for(lambda: gate.leds.get(0, {}).get("on_color") == LedColor.RED)

            since = mark(controller)
            gate.press_keys(f"*0{MANAGER_CODE}#")  # disarm
            await wait_event(controller, "alarm.disarmed", after=since)
            assert state_of(controller, "fence") == "disarmed"

            # A reader without a partition, and a function nobody defined: refused and on the record.
            since = mark(controller)
            lobby.press_keys(f"*1{MANAGER_CODE}#")
            gate.press_keys(f"*7{MANAGER_CODE}#")
            await wait_until(lambda: controller.journal.stats.last_seq > since + 3, 5, "refusals journaled")
            refusals = await wait_event(controller, "access.keypad_function_refused", after=since)
            assert refusals.event.data["reason"] in {"no_partition", "unknown_function"}
            await wait_until(lambda: state_of(controller, "fence") == "disarmed", 1, "still disarmed")

            # Nothing typed ever shows up in an event: not the codes, not the duress code's digits.
            every = await controller.journal.query(after_seq=0, limit=5000)
            text = repr([e.event.data for e in every])
            for code in (MANAGER_CODE, RESIDENT_CODE, DURESS_CODE):
                assert code not in text
            functions = await journaled(controller, "reader.keypad_function", 0)
            assert {e.event.data["code_length"] for e in functions} == {4}


def test_hash_code_cli_uses_the_boxs_pin_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge.cli import main
    from tests.test_alarm_service import HASHER, site, write_pin_key

    write_pin_key(tmp_path / "data")
    (tmp_path / "site.yaml").write_text(site(""))
    monkeypatch.setenv("LINLI_CODE", "2468")
    assert main(["hash-code", "--config", str(tmp_path / "site.yaml")]) == 0
    assert capsys.readouterr().out.strip() == HASHER.pin_only("2468")
    monkeypatch.setenv("LINLI_CODE", "24")
    assert main(["hash-code", "--config", str(tmp_path / "site.yaml")]) == 2
