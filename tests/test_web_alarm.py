"""The demo's alarm in a real browser: Li Wei arms her home from the page with her code, a staff
member trips her Zigbee door contact from the "Try it" panel, the page shows the entry delay, the
alarm and her siren sounding, and her code ends it; a wrong code is refused on the page. The demo
site, its simulated Modbus module and Zigbee network and the daemon run in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge.daemon import Controller
from edge.demo_devices import RESIDENT_CODE
from tests.mqtt_helpers import wait_until
from tests.test_web import CHROMIUM, CHROMIUM_ARGS
from tests.test_web_demo import PASSWORD, demo_site

playwright_api = pytest.importorskip("playwright.async_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
HOME = '#partitions li[data-partition="home-3-201"]'


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Controller]:
    # Short delays so the test sees arming, the entry delay and the alarm in seconds.
    async with demo_site(tmp_path, exit_delay_s=1, entry_delay_s=4, siren_s=60) as controller:
        await wait_until(lambda: bool(controller.alarm and controller.alarm.ready.is_set() and controller.zigbee
                                      and controller.zigbee.ready.is_set()), 10, "alarm panel and Zigbee network")
        yield controller


async def log_in(context: Any, port: int, user: str, errors: list[str]) -> Any:
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{user}: {exc}"))
    await page.goto(f"http://127.0.0.1:{port}/")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button")
    return page


async def alarm_action(page: Any, button: str, code: str) -> None:
    await page.fill("#alarm-code", code)
    await page.locator(HOME).get_by_role("button", name=button).click()


async def test_arm_trip_alarm_and_disarm_from_the_page(demo: Controller, tmp_path: Path) -> None:
    expect = playwright_api.expect
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            errors: list[str] = []
            viewport = {"width": 1280, "height": 1100}
            resident = await log_in(await browser.new_context(viewport=viewport), demo.api_port, "li-wei", errors)
            staff = await log_in(await browser.new_context(viewport=viewport), demo.api_port, "admin", errors)

            # Li Wei sees her home only; the admin sees the perimeter too.
            home = resident.locator(HOME)
            await expect(home).to_contain_text("disarmed", timeout=10_000)
            await expect(resident.locator("#partitions li")).to_have_count(1)
            await expect(staff.locator("#partitions li")).to_have_count(2)
            await expect(home.locator('[data-zone="3-201-door"]')).to_have_text("3-201-door: closed")

            # A wrong code is refused on the page.
            await alarm_action(resident, "Arm away", "0000")
            await expect(resident.locator("#alarm-result")).to_have_text("Refused: wrong code")
            await expect(home).to_contain_text("disarmed")
            # Staff see her home but have no buttons for it (the API would refuse them: test_alarm_service).
            await expect(staff.locator(HOME).get_by_role("button")).to_have_count(0)
            await expect(staff.locator('#partitions li[data-partition="perimeter"]').get_by_role(
                "button", name="Arm away")).to_be_visible()

            # Her code arms it: the exit delay, then armed away.
            await alarm_action(resident, "Arm away", RESIDENT_CODE.code)
            await expect(resident.locator("#alarm-result")).to_have_text("home-3-201: arming.")
            await expect(resident.locator("#alarm-code")).to_have_value("")
            await expect(home.locator(".alarm-state")).to_have_text("armed away", timeout=5_000)

            # The staff member opens her front door through the simulated Zigbee contact.
            door = staff.locator('#sim-zones li[data-zone="3-201-door"]')
            await door.get_by_role("button", name="Trip").click()
            await expect(staff.locator("#sim-result")).to_have_text("Zone 3-201-door tripped.")
            await expect(door.get_by_role("button", name="Restore")).to_be_visible()

            # Entry delay, then the alarm: her siren sounds (the simulated IAS WD siren was told to).
            await expect(home.locator(".alarm-state")).to_have_text("pending", timeout=5_000)
            await expect(home.locator(".countdown")).to_contain_text("entry delay")
            await expect(home.locator('[data-zone="3-201-door"]')).to_have_text("3-201-door: open")
            await expect(home.locator(".alarm-state")).to_have_text("triggered", timeout=10_000)
            await expect(home.locator(".countdown")).to_contain_text("siren")
            await expect(staff.locator('#sim-sirens [data-siren="3-201-siren"]')).to_have_text(
                "3-201-siren: sounding", timeout=5_000)
            await expect(staff.locator('#feed li[data-type="alarm.triggered"]').first).to_contain_text("3-201-door")
            await resident.screenshot(path=str(tmp_path / "resident-alarm.png"))
            await staff.screenshot(path=str(tmp_path / "staff-alarm.png"), full_page=True)

            # A wrong code does not stop it; hers does.
            await alarm_action(resident, "Disarm", "1111")
            await expect(resident.locator("#alarm-result")).to_have_text("Refused: wrong code")
            await expect(home.locator(".alarm-state")).to_have_text("triggered")
            await alarm_action(resident, "Disarm", RESIDENT_CODE.code)
            await expect(resident.locator("#alarm-result")).to_have_text("home-3-201: disarmed.")
            await expect(home.locator(".alarm-state")).to_have_text("disarmed")
            await expect(home.locator(".memory")).to_have_text("Alarm memory: 3-201-door")
            await expect(staff.locator('#sim-sirens [data-siren="3-201-siren"]')).to_have_text(
                "3-201-siren: off", timeout=5_000)

            await door.get_by_role("button", name="Restore").click()
            await expect(home.locator('[data-zone="3-201-door"]')).to_have_text("3-201-door: closed", timeout=5_000)
            await staff.screenshot(path=str(tmp_path / "staff-after.png"))
            assert not errors
        finally:
            await browser.close()
