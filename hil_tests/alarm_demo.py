"""The alarm installer tools against their simulators, in one call, for the demo (`linli demo`).

    results = await run_alarm_tools(out, Path("reports"))   # {"zone_walk": "pass", ...}

Each tool starts and stops its own simulator (a Modbus module on a pty, a simulated Zigbee
network); nothing of the daemon's is touched. Kept short: a few zones, relays on for 0.2 s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from hil_tests import siren_test, zigbee_pairing, zone_walk
from hil_tests.alarm_common import Console
from hil_tests.installer import NobodyThere


async def run_alarm_tools(out: TextIO, reports: Path) -> dict[str, str]:
    """Run the zone walk, the siren test and a Zigbee pairing of each kind; write their reports into
    `reports`; return each run's result (pass / fail / incomplete)."""
    console = Console(out)
    nobody = NobodyThere("the demo plays the installer")
    results: dict[str, str] = {}
    walk = zone_walk.plan_from_args(zone_walk.parser().parse_args(["--inputs", "0-3", "--analog", "0"]))
    report = await zone_walk.run(walk, console, nobody)
    report.write(reports / "zone-walk.json")
    results["zone_walk"] = report.result
    sirens = siren_test.plan_from_args(siren_test.parser().parse_args(["--coils", "0-1", "--on-time", "0.2"]))
    report = await siren_test.run(sirens, console)
    report.write(reports / "siren-test.json")
    results["siren_test"] = report.result
    for kind in ("contact", "siren", "lock", "relay"):
        pairing = zigbee_pairing.plan_from_args(zigbee_pairing.parser().parse_args(["--kind", kind]))
        report = await zigbee_pairing.run(pairing, console, nobody)
        report.write(reports / f"zigbee-pairing-{kind}.json")
        results[f"zigbee_pairing_{kind}"] = report.result
    return results
