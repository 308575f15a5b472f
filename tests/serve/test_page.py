"""The web page, driven end to end by Playwright in Debian's headless Chromium."""

from __future__ import annotations

import shutil

import pytest

from funnel.serve.app import create_app
from funnel.serve.settings import Settings

from .test_live import running

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.mark.browser
@pytest.mark.slow
def test_page_search_suggest_click_personalizes(served_workspace, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (make system installs it from Debian packages)")
    sync_api = pytest.importorskip("playwright.sync_api")
    app = create_app(Settings(workspace=served_workspace.root, demo_users=True), flush_every_s=0)
    with running(app) as base, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base + "/")
            page.wait_for_selector("#results .tile")
            user = page.input_value("#user")
            assert user, "the user switcher starts on a demo user"
            assert page.get_attribute("#q", "placeholder").startswith("try")  # the hint query

            market = app.state.holder.engine.catalog.markets[0]
            page.fill("#q", market[:3])
            page.wait_for_selector("#sug li")
            first = page.inner_text("#sug li >> nth=0")
            assert first.startswith(market[:3])
            page.keyboard.press("ArrowDown")
            page.keyboard.press("Enter")
            page.wait_for_function(
                "document.querySelector('#status').textContent.includes('results for')")
            page.wait_for_load_state("networkidle")
            assert page.locator("#results .tile").count() >= 10

            clicks_before = len(app.state.state.get(user).clicks)
            page.locator("#results .tile").first.click()
            page.wait_for_selector("#similar .tile")
            assert len(app.state.state.get(user).clicks) == clicks_before + 1  # event posted

            page.check("#debug")
            page.wait_for_selector("#results .tile pre")
            assert "recall_sources" in page.inner_text("#results .tile pre >> nth=0")
            page.uncheck("#debug")
            page.fill("#q", "qwxzzv plmnb")  # matches nothing: the page says so (issue 20)
            page.keyboard.press("Enter")
            page.wait_for_function(
                "document.querySelector('#status').textContent.startsWith("
                "'No results for \u201cqwxzzv plmnb\u201d; showing')")
            assert page.locator("#results .tile").count() > 0
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            assert (tmp_path / "page.png").stat().st_size > 10_000
        finally:
            browser.close()
