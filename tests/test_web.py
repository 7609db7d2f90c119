"""The web page in a real browser (Debian's Chromium driven by Playwright): log in, watch events arrive."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from edge.daemon import Controller
from tests.controller_helpers import USERS, base_url, bearer, login, running_controller

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOT_COPY = Path("/tmp/linli-web.png")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    async with running_controller(tmp_path) as c:
        yield c


@pytest.fixture
async def browser() -> AsyncIterator[playwright_api.Browser]:
    async with playwright_api.async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def test_login_then_live_feed_shows_an_injected_event(
    controller: Controller, browser: playwright_api.Browser, tmp_path: Path
) -> None:
    url = base_url(controller)
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    # Chromium logs every 4xx as a console error; the page expects some (401 before login).
    page.on("console", lambda msg: problems.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    # The page must work with nothing from outside the box.
    outside: list[str] = []
    page.on("request", lambda req: outside.append(req.url) if not req.url.startswith(url) else None)

    await page.goto(f"{url}/")
    expect = playwright_api.expect
    await expect(page.locator("#login-view")).to_be_visible()
    await expect(page.locator("#h-uplink")).to_have_text("disabled")

    # A wrong password shows an error and keeps the login form.
    await page.fill("input[name=username]", "installer")
    await page.fill("input[name=password]", "not the password")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#login-error")).to_contain_text("wrong user name or password")

    await page.fill("input[name=password]", USERS["installer"][1])
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#app-view")).to_be_visible()
    await expect(page.locator("#user-name")).to_have_text("installer")
    await expect(page.locator("#stream-state")).to_have_text("live", timeout=5000)
    # The history loaded first: system.started is there.
    await expect(page.locator('#feed li[data-type="system.started"]')).to_have_count(1)

    # The session is an HttpOnly cookie: the page's scripts cannot read it.
    assert "linli_session" not in await page.evaluate("document.cookie")

    # An integration injects events through the API; they appear on top, coloured by severity.
    async with aiohttp.ClientSession() as http:
        token = await login(http, url, "admin")
        for type_, severity, data in [
            ("access.granted", "info", {"door": "north-gate", "card": "****1234"}),
            ("door.held_open", "warning", {"door": "bike-room", "seconds": 95}),
            ("alarm.triggered", "alarm", {"zone": "perimeter-east", "partition": "fence"}),
        ]:
            async with http.post(
                f"{url}/api/events", headers=bearer(token),
                json={"type": type_, "source": "pytest", "severity": severity, "data": data},
            ) as r:
                assert r.status == 201
                made = (await r.json())["event"]
    row = page.locator(f'#feed li[data-id="{made["id"]}"]')
    await expect(row).to_be_visible(timeout=5000)
    await expect(row).to_have_class("event sev-alarm")
    await expect(row.locator(".type")).to_have_text("alarm.triggered")
    await expect(page.locator("#feed li").first).to_have_attribute("data-id", made["id"])  # newest on top
    assert await row.evaluate("el => getComputedStyle(el.querySelector('.sev')).backgroundColor") \
        == "rgb(224, 86, 27)"

    # The installer's own test-event form goes through the API with the session cookie + CSRF header.
    await page.fill("#inject-form input[name=type]", "test.console_ping")
    await page.select_option("#inject-form select[name=severity]", "critical")
    await page.click("#inject-form button[type=submit]")
    await expect(page.locator("#inject-result")).to_contain_text("Accepted: test.console_ping")
    await expect(page.locator('#feed li[data-type="test.console_ping"]')).to_have_class("event sev-critical")

    # The health bar follows the journal.
    await expect(page.locator("#h-accepted")).to_have_text(
        str(controller.journal.stats.accepted), timeout=8000
    )

    shot = tmp_path / "linli-web.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    shutil.copyfile(shot, SCREENSHOT_COPY)

    # Logging out returns to the login form and the stream stops.
    await page.click("#logout")
    await expect(page.locator("#login-view")).to_be_visible()
    assert await _eventually_no_streams(controller)

    assert outside == []
    assert problems == []


async def _eventually_no_streams(controller: Controller) -> bool:
    for _ in range(50):
        if not any(s.name.startswith("sse:") for s in controller.bus.subscriptions):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_resident_sees_no_compound_feed(controller: Controller, browser: playwright_api.Browser) -> None:
    page = await browser.new_page()
    await page.goto(f"{base_url(controller)}/")
    await page.fill("input[name=username]", "resident")
    await page.fill("input[name=password]", USERS["resident"][1])
    await page.click("#login-form button[type=submit]")
    expect = playwright_api.expect
    await expect(page.locator("#feed-notice")).to_contain_text("no access")
    await expect(page.locator("#inject-panel")).to_be_hidden()
    assert await page.locator("#feed li").count() == 0
