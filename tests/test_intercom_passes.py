"""A visitor pass shown at an intercom panel opens the access door the panel stands at.

Both real protocol stacks over pseudo-terminals: the panel speaks Linli's intercom protocol, the
gate's lock is an OSDP reader output (libosdp at both ends). The resident's pass is decided by
access control, counted, rate-limited per panel and journaled before the door moves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from drivers.intercom.simulator import SimIntercomBus, SimPanel
from drivers.osdp.simulator import OUTPUT_LOCK, SimBus, SimReader
from rules.access.passes import PassKind, PassOrder
from tests.controller_helpers import running_controller, site_yaml
from tests.mqtt_helpers import wait_until
from tests.test_access_service import access_yaml, journaled, mark, seed_store, wait_event, wait_ready


def panel_yaml(port: str) -> str:
    return f"""\
intercom:
  buses:
    - port: {port}
      baudrate: 115200
      panels:
        - {{id: gate-panel, address: 1, door: gate}}
"""


async def test_a_qr_pass_at_the_panel_opens_its_door_once(tmp_path: Path) -> None:
    async with SimBus([SimReader(1), SimReader(2)]) as osdp, SimIntercomBus([SimPanel(1)]) as intercom:
        await seed_store(tmp_path / "data")
        text = site_yaml(extra=access_yaml(osdp.port) + panel_yaml(intercom.port))
        async with running_controller(tmp_path, text) as controller:
            await wait_ready(controller)
            await wait_until(lambda: controller.intercom is not None and controller.intercom.ready.is_set(), 5, "panel")
            access = controller.access
            assert access is not None
            order = PassOrder(visitor="Aunt Mei", kind=PassKind.QR, doors=("gate",), max_uses=1,
                              valid_until=datetime.now(UTC) + timedelta(hours=2))
            _, token = await access.passes.issue(order, apartment="3-201", issued_by="api:alice")
            panel, gate = intercom.device(1), osdp.reader(1)

            since = mark(controller)
            panel.scan_qr(token.encode())
            await gate.wait_output(OUTPUT_LOCK, True, within=5.0)  # the gate's strike: unlocked
            granted = await wait_event(controller, "access.granted", after=since)
            assert granted.event.data["reason"] == "visitor_pass"
            assert granted.event.data["apartment"] == "3-201"
            await wait_until(lambda: "Welcome" in panel.display_lines.values(), 3, "welcome on the panel")

            # Used up: the same token again is refused, and the panel says so.
            await gate.wait_output(OUTPUT_LOCK, False, within=3.0)
            since = mark(controller)
            panel.display_lines.clear()
            panel.scan_qr(token.encode())
            denied = await wait_event(controller, "access.denied", after=since)
            assert denied.event.data["reason"] == "used_up"
            await wait_until(lambda: "Not valid" in panel.display_lines.values(), 3, "refusal on the panel")
            assert gate.outputs[OUTPUT_LOCK].on is False

            # The token itself never reaches the journal; only its length and a hash prefix do.
            scans = await journaled(controller, "intercom.qr_scanned", 0)
            assert len(scans) == 2 and all(token not in repr(e.event.data) for e in scans)
            every = await controller.journal.query(after_seq=0, limit=5000)
            assert token not in repr([e.event.data for e in every])
