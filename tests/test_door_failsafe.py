"""Doors end in their lock mode's safe state when Linli dies or the bus is cut, with the reader
still powered: nothing powered outlives the controller's lease (`lock_lease_s`).

Over real OSDP (libosdp at both ends of a pty); the kill -9 test runs `linli run` in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

from drivers.osdp.simulator import OUTPUT_LOCK, SimBus, SimReader
from edge.audit import verify_file
from edge.journal import Journal
from tests.access_helpers import FACILITY
from tests.controller_helpers import site_yaml
from tests.test_access_service import access_site, access_yaml, seed_store

ROOT = Path(__file__).resolve().parent.parent


async def wait_until_output(reader: SimReader, on: bool, within: float) -> float:
    """Seconds until the reader's lock output is `on` (0 if it already is)."""
    start = time.monotonic()
    await reader.wait_output(OUTPUT_LOCK, on, within=within)
    return time.monotonic() - start


async def test_a_locked_maglock_is_a_lease_renewed_while_the_controller_lives(tmp_path: Path) -> None:
    async with access_site(tmp_path) as (controller, bus):
        office = bus.reader(2)  # fail-safe maglock: locked = output on
        await office.wait_output(OUTPUT_LOCK, True, within=3.0)
        await asyncio.sleep(4.0)  # longer than the 3 s lease: renewals keep it on
        assert office.outputs[OUTPUT_LOCK].on
        assert [state for _, no, state in office.output_log if no == OUTPUT_LOCK][-1] is True

        # The reader keeps its power but hears nothing more (cable cut): its own timer releases
        # the maglock within the lease, long before the controller even calls it offline.
        office.mute = True
        released_after = await wait_until_output(office, False, within=5.0)
        assert released_after <= 3.5
        assert controller.access is not None  # the daemon is fine; only the bus is gone


async def test_kill_9_during_an_unlock_leaves_both_doors_safe_and_the_grant_journaled(tmp_path: Path) -> None:
    async with SimBus([SimReader(1), SimReader(2)]) as bus:
        gate, office = bus.reader(1), bus.reader(2)
        data_dir = tmp_path / "data"
        await seed_store(data_dir)
        # The gate: fail-secure strike, unlocked by a 3 s pulse; the office: fail-safe maglock.
        timings = ("strike_s: 0.5\n    extended_unlock_s: 1", "strike_s: 3\n    extended_unlock_s: 6")
        site = site_yaml(extra=access_yaml(bus.port)).replace(*timings, 1)
        (tmp_path / "site.yaml").write_text(site)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.cli", "run", "--config", str(tmp_path / "site.yaml"),
            cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        try:
            try:
                await office.wait_output(OUTPUT_LOCK, True, within=20.0)  # the daemon took the doors over
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                assert proc.stderr is not None
                raise AssertionError((await proc.stderr.read()).decode()[-3000:]) from None

            gate.present_card(1001, FACILITY)  # alice: granted
            await gate.wait_output(OUTPUT_LOCK, True, within=5.0)  # the strike is unlocked now
            proc.kill()
            assert await proc.wait() == -signal.SIGKILL

            # No process left to relock anything: the readers' own timers do it.
            relocked_after = await wait_until_output(gate, False, within=5.0)
            released_after = await wait_until_output(office, False, within=5.0)
            assert relocked_after <= 3.5  # the pulse the reader times: the strike locks again
            assert released_after <= 3.5  # the lease runs out: the maglock releases (fail-safe)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    # The door moved only after the grant was committed, so the grant is in the journal, whole,
    # and the audit chain over it verifies.
    journal = Journal(data_dir / "journal.db")
    await journal.open()
    try:
        granted = await journal.query(types=["access.granted"], limit=10)
    finally:
        await journal.close()
    assert [(e.event.data["door"], e.event.data["holder"]) for e in granted] == [("gate", "alice")]
    report = verify_file(data_dir / "journal.db")
    assert report.ok, report
