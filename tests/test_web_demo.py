"""The demo's web page in a real browser: present a card at a simulated OSDP reader and watch the
door open, unlock a door from the page — the demo site, its readers and the daemon run in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edge.config import load_config
from edge.daemon import Controller
from edge.demo import write_demo_site
from edge.demo_devices import DemoDevices, seed_access_data
from tests.test_web import CHROMIUM, CHROMIUM_ARGS

playwright_api = pytest.importorskip("playwright.async_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
PASSWORD = "demo-admin-pass"


@asynccontextmanager
async def demo_site(tmp_path: Path, *, camera: bool = False, **alarm_timing: Any) -> AsyncIterator[Controller]:
    """The demo site in-process, its simulated devices attached as `linli demo` does (no passers-by);
    the camera (a detector on a video clip) only where a test looks at it."""
    devices = DemoDevices(tmp_path)
    await devices.start()
    try:
        # A broker nobody listens on: the uplink keeps retrying, which the page shows.
        site = write_demo_site(tmp_path, "mqtt://127.0.0.1:9", 0, PASSWORD, False, "3.1.1", devices.port,
                               devices.modbus_port, intercom_port=devices.intercom_port, camera=camera,
                               **alarm_timing)
        config = load_config(site)
        await seed_access_data(tmp_path, config.site.timezone)
        controller = Controller(config, site)
        controller.simulator = devices
        devices.attach(controller)
        await controller.start()
        try:
            yield controller
        finally:
            await controller.stop()
    finally:
        await devices.stop()


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Controller]:
    async with demo_site(tmp_path) as controller:
        yield controller


async def test_present_a_card_and_watch_the_gate_open(demo: Controller, tmp_path: Path) -> None:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"http://127.0.0.1:{demo.api_port}/")
            await page.fill("input[name=username]", "admin")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("#login-form button")
            expect = playwright_api.expect
            gate = page.locator('#doors li[data-door="north-gate"]')
            await expect(gate).to_contain_text("locked", timeout=10_000)
            await expect(gate).not_to_contain_text("unlocked")

            # Li Wei's card at the gate reader: granted over OSDP, the strike unlocks for 4 s.
            await page.select_option("#sim-reader", "gate-reader")
            await page.select_option("#sim-person", label="Li Wei (3-201)")
            await expect(page.locator("#sim-card")).to_have_value("10231")
            await page.click("#sim-present")
            await expect(page.locator("#sim-result")).to_have_text("Card 42:10231 presented at gate-reader.")
            await expect(gate).to_contain_text("unlocked", timeout=5_000)
            granted = page.locator('#feed li[data-type="access.granted"]').first
            await expect(granted).to_contain_text("li-wei")
            await expect(gate).not_to_contain_text("unlocked", timeout=10_000)  # relocked after the strike time

            # Someone unknown: denied, the door stays locked.
            await page.select_option("#sim-person", "unknown")
            await page.click("#sim-present")
            await expect(page.locator('#feed li[data-type="access.denied"]').first).to_contain_text(
                "unknown_credential"
            )

            # The lobby allows unlocking from the page; the admin does it.
            lobby = page.locator('#doors li[data-door="lobby-3"]')
            await lobby.get_by_role("button", name="Unlock").click()
            await expect(page.locator("#door-result")).to_have_text("lobby-3 unlocked.")
            await expect(page.locator('#feed li[data-type="access.remote_unlock"]').first).to_contain_text("admin")

            # A command the simulator does not know gets the usage back.
            reply = await page.evaluate(
                """async () => {
                    const r = await fetch("/api/sim", {method: "POST", credentials: "same-origin",
                        headers: {"Content-Type": "application/json", "X-Linli-Csrf": "1"},
                        body: JSON.stringify({command: "card gate-reader lots"})});
                    return [r.status, (await r.json()).error];
                }"""
            )
            assert reply[0] == 400 and "Commands: card READER NUMBER" in reply[1]
            await page.screenshot(path=str(tmp_path / "demo.png"))
            assert not errors
        finally:
            await browser.close()
