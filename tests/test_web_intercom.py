"""The demo's intercom, visitor passes and camera in a real browser: a staff member dials 3-201 at the
simulated gate panel from the page, the simulated indoor unit rings, and the page answers and
unlocks on it: the gate's OSDP lock output switches on through access control. Li Wei issues a QR
pass on her page; scanned at the panel from "Try it" it opens the gate once, a second scan is
refused. The camera card shows the clip's frames with the detector's people. The demo site, its
simulated buses and the daemon (with the shipped detector) run in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge.daemon import Controller
from edge.demo_devices import GATE, VISITOR_PIN, seed_visitor_pass
from tests.mqtt_helpers import wait_until
from tests.test_web import CHROMIUM, CHROMIUM_ARGS
from tests.test_web_demo import PASSWORD, demo_site

playwright_api = pytest.importorskip("playwright.async_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Controller]:
    async with demo_site(tmp_path, camera=True) as controller:
        yield controller


async def _types(controller: Controller, *types: str) -> list[Any]:
    return await controller.journal.query(types=list(types), limit=50)


async def login(browser: Any, port: int, user: str) -> Any:
    page = await browser.new_page(viewport={"width": 1280, "height": 1400})
    await page.goto(f"http://127.0.0.1:{port}/")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button")
    return page


async def test_dial_answer_unlock_passes_and_camera_from_the_page(demo: Controller, tmp_path: Path) -> None:
    devices = demo.simulator
    expect = playwright_api.expect
    gate_open = lambda: devices.unlocked("gate-reader", fail_safe=False)  # noqa: E731
    await wait_until(lambda: demo.intercom is not None and {"gate-panel", "unit-3-201"} <= demo.intercom.router.online,
                     10, "the gate panel and 3-201's unit online")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await login(browser, demo.api_port, "admin")
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            unit = page.locator('#ic-units li[data-unit="3-201"]')
            await expect(unit).to_contain_text("idle", timeout=10_000)

            # A visitor dials 3-201 at the gate panel: the daemon's router rings her indoor unit.
            await page.select_option("#ic-apartment", "3-201")
            await page.click("#ic-call")
            await expect(page.locator("#sim-result")).to_have_text("3-201 dialled at the gate panel.")
            await expect(unit.locator(".unit-state")).to_have_text("ringing", timeout=5_000)
            assert devices.unit("3-201").ringing is not None
            await expect(page.locator('#feed li[data-type="intercom.ringing"]').first).to_be_visible()

            # She answers and presses unlock on the unit: access control opens the north gate.
            await unit.get_by_role("button", name="Answer").click()
            await expect(unit.locator(".unit-state")).to_have_text("in call", timeout=5_000)
            assert not gate_open()
            await unit.get_by_role("button", name="Unlock").click()
            await wait_until(gate_open, 5, "the gate's OSDP lock output")
            await expect(page.locator('#feed li[data-type="intercom.unlock"]').first).to_contain_text("3-201")
            [unlock] = await _types(demo, "intercom.unlock")
            assert unlock.event.data["apartment"] == "3-201"
            remote = [r.event.data for r in await _types(demo, "access.remote_unlock")]
            assert [(r["door"], r["origin"]) for r in remote] == [(GATE, "intercom")]
            await unit.get_by_role("button", name="Hang up").click()
            await expect(unit.locator(".unit-state")).to_have_text("idle", timeout=5_000)
            await wait_until(lambda: not gate_open(), 10, "the gate relocking after its strike time")

            # Li Wei issues a one-use QR pass on her page; the secret is shown once.
            resident = await login(browser, demo.api_port, "li-wei")
            await expect(resident.locator("#passes-panel")).to_be_visible(timeout=10_000)
            await resident.select_option("#pass-form select[name=kind]", "qr")
            await resident.fill("#pass-form input[name=visitor]", "Cousin Bo")
            await resident.click("#pass-form button")
            await expect(resident.locator("#pass-result")).to_have_text("Pass issued for Cousin Bo.")
            token = (await resident.locator("#pass-secret-value").text_content() or "").strip()
            assert len(token) >= 16
            await expect(resident.locator(".pass").first).to_contain_text("Cousin Bo (QR)")
            await expect(resident.locator(".pass").first).to_contain_text("0/1 used")

            # The visitor shows it to the panel's scanner ("Try it"): the gate opens once.
            await page.fill("#ic-secret", token)
            await page.click("#ic-qr")
            await expect(page.locator("#sim-result")).to_have_text("QR code scanned at the gate panel.")
            await wait_until(gate_open, 5, "the gate opening for the pass")
            granted = [r.event.data for r in await _types(demo, "access.granted")]
            assert [(g["reason"], g["issued_by"], g["reader"]) for g in granted] == [
                ("visitor_pass", "api:li-wei", "intercom:gate-panel")]
            await wait_until(lambda: not gate_open(), 10, "the gate relocking")

            # A second scan of the same pass is refused and the gate stays shut.
            await page.click("#ic-qr")
            await wait_until(lambda: devices.panel.display_lines.get(0) == "Not valid", 5, "the panel's refusal")
            denied = [r.event.data for r in await _types(demo, "access.denied")]
            assert len(denied) == 1 and denied[0]["pass"] == granted[0]["pass"], denied
            assert not gate_open()
            await resident.reload()
            await expect(resident.locator(".pass").first).to_contain_text("used up")
            await resident.screenshot(path=str(tmp_path / "resident.png"))

            # The camera card: the clip's frames, refreshed, with the people the detector tracks.
            await expect(page.locator("#camera-panel")).to_be_visible()
            person = page.locator("#camera-objects li", has_text="person #").first
            await expect(person).to_contain_text(" 0.", timeout=20_000)  # label, track id, score
            await expect(page.locator("#camera-state")).to_have_text("pavement online")
            first = await page.locator("#camera-image").get_attribute("src")
            await expect(page.locator("#camera-image")).not_to_have_attribute("src", first or "", timeout=5_000)
            assert await page.locator("#camera-image").evaluate("img => img.naturalWidth") > 0
            frames = await page.evaluate(
                """async () => {
                    const at = async () => {
                        const r = await fetch("/api/vision/cameras/pavement", {credentials: "same-origin"});
                        return (await r.json()).at;
                    };
                    const a = await at();
                    await new Promise((ok) => setTimeout(ok, 1500));
                    return [a, await at()];
                }"""
            )
            assert frames[1] > frames[0], frames  # the camera moves on: a new frame behind the image
            await page.screenshot(path=str(tmp_path / "intercom.png"), full_page=True)
            assert not errors, errors
        finally:
            await browser.close()


async def test_seeded_pass_and_intercom_verbs(tmp_path: Path) -> None:
    """Li Wei's seeded visitor PIN typed at the panel opens the gate; the verbs check their words."""
    async with demo_site(tmp_path) as controller:
        devices = controller.simulator
        await wait_until(lambda: controller.intercom is not None and "gate-panel" in controller.intercom.router.online,
                         10, "the gate panel online")
        assert await seed_visitor_pass(controller) is True
        assert await seed_visitor_pass(controller) is False  # once: later starts keep what is there
        bad = {
            "call": "not understood",
            "call 3-201 now": "not understood",
            "call ../etc": "not understood",
            "answer 9-999": "no indoor unit for '9-999'",
            "code 12ab": "not understood",
            "qr <script>": "not understood",
        }
        for line, message in bad.items():
            with pytest.raises(ValueError, match="Commands: card READER") as caught:
                devices.command(line)
            assert message in str(caught.value), (line, caught.value)
        assert devices.panel.events == type(devices.panel.events)()  # nothing reached the panel

        assert devices.command(f"code {VISITOR_PIN}") == "6 digits entered at the gate panel"
        await wait_until(lambda: devices.unlocked("gate-reader", fail_safe=False), 5, "the gate for the PIN")
        [granted] = [r.event.data for r in await _types(controller, "access.granted")]
        assert (granted["reason"], granted["issued_by"], granted["apartment"]) == (
            "visitor_pass", "demo:li-wei", "3-201")
        assert devices.command("code 000000") == "6 digits entered at the gate panel"
        await wait_until(lambda: devices.panel.display_lines.get(0) == "Not valid", 5, "the refusal")
        info = devices.info()["intercom"]
        assert [u["apartment"] for u in info["units"]] == ["3-201", "3-402", "5-101", "7-1203", "guard"]
