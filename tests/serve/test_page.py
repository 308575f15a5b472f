"""The web page, driven end to end by Playwright in Debian's headless Chromium."""

from __future__ import annotations

import re
import shutil

import pytest

from funnel.serve.app import create_app
from funnel.serve.settings import Settings

from .test_live import running

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
RESULTS_FOR = "document.querySelector('#status').textContent.includes('results for')"
MOBILE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (make system installs it from Debian packages)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def site(served_workspace):
    """The app (its state and engine, to check what the page did) and its base URL."""
    app = create_app(Settings(workspace=served_workspace.root, demo_users=True), flush_every_s=0)
    with running(app) as base:
        yield app, base


def _open(browser, base, **context):
    page = browser.new_context(**context).new_page() if context else browser.new_page(
        viewport={"width": 1280, "height": 900})
    page.goto(base + "/")
    page.wait_for_selector("#results .tile")
    page.wait_for_load_state("networkidle")
    return page


def _personal_line(clicks: int) -> str:
    """The page's line for a user whose online state holds ``clicks`` clicks."""
    if clicks == 0:
        return ""
    return f"personalized for you: based on {clicks} recent click{'' if clicks == 1 else 's'}"


def _status(page) -> str:
    return page.inner_text("#status")


def _ids(page) -> list[str]:
    return page.eval_on_selector_all(
        "#results > .tile", "tiles => tiles.map(t => t.dataset.itemId)")


@pytest.mark.browser
@pytest.mark.slow
def test_page_search_suggest_click_personalizes(browser, site, tmp_path):
    app, base = site
    page = _open(browser, base)
    try:
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
        page.wait_for_function(RESULTS_FOR)
        page.wait_for_load_state("networkidle")
        assert page.locator("#results .tile").count() >= 10

        clicks_before = len(app.state.state.get(user).clicks)
        page.locator("#results .tile").first.click()
        page.wait_for_selector("#similar .tile")
        assert len(app.state.state.get(user).clicks) == clicks_before + 1  # event posted
        assert f"click recorded for {user}" in page.inner_text("#similar-head")

        page.check("#debug")
        page.wait_for_selector("#results .tile .why")
        why = page.locator("#results .tile .why").first  # readable, not a JSON dump
        assert why.locator(".src").count() >= 1  # recall sources as chips
        assert re.fullmatch(r"recall -?[\d.]+ → rank [\d.]+ → final -?[\d.]+( \(\w+\))?",
                            why.locator(".scores").inner_text())
        assert why.locator("pre").is_hidden()  # the full record, one click away
        why.locator("summary").click()
        assert "recall_sources" in why.locator("pre").inner_text()
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
        page.context.close()


@pytest.mark.browser
@pytest.mark.slow
def test_dropdown_closes_on_submit(browser, site):
    app, base = site
    page = _open(browser, base)
    try:
        market = app.state.holder.engine.catalog.markets[0]
        page.fill("#q", market[:3])
        page.wait_for_selector("#sug li")  # open
        page.keyboard.press("Enter")
        page.wait_for_selector("#sug", state="hidden")
        # Enter right after a keystroke: the suggestion request still to come (or on its way)
        # must not reopen the dropdown over the new results
        page.fill("#q", market)
        page.keyboard.press("Enter")
        page.wait_for_function(
            f"document.querySelector('#status').textContent.includes('for \u201c{market}\u201d')")
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(300)  # past the 80 ms keystroke debounce and any late answer
        assert page.is_hidden("#sug")
        assert page.evaluate("document.activeElement.id") == "q"  # still typing in the box
    finally:
        page.context.close()


@pytest.mark.browser
@pytest.mark.slow
def test_click_refreshes_the_list_and_says_it_is_personalized(browser, site):
    app, base = site
    page = _open(browser, base)
    try:
        user = page.input_value("#user")
        held = len(app.state.state.get(user).clicks)  # other tests may have clicked as them
        # the line is the server's count of the user's clicks, from the first list on
        assert page.inner_text("#personal") == _personal_line(held)
        page.fill("#q", app.state.holder.engine.catalog.markets[0])
        page.keyboard.press("Enter")
        page.wait_for_function(RESULTS_FOR)
        page.wait_for_load_state("networkidle")
        request_before = page.get_attribute("#results", "data-request-id")
        ids_before = _ids(page)
        clicks_before = len(app.state.state.get(user).clicks)

        for n, position in enumerate((3, 5), start=1):
            page.locator("#results > .tile").nth(position - 1).click()
            page.wait_for_function(  # the server's count of the user's clicks in its state
                "document.querySelector('#personal').textContent.includes("
                f"'based on {clicks_before + n} recent click')")
            page.wait_for_load_state("networkidle")
        assert page.inner_text("#personal").startswith(
            f"personalized for you: based on {clicks_before + 2} recent clicks")
        assert len(app.state.state.get(user).clicks) == clicks_before + 2
        assert page.get_attribute("#results", "data-request-id") != request_before  # re-ran
        assert _ids(page) != ids_before  # the clicks re-ranked the list
        assert "results for" in _status(page)
    finally:
        page.context.close()


@pytest.mark.browser
@pytest.mark.slow
def test_server_down_and_errors_are_said_in_words(browser, site):
    app, base = site
    page = _open(browser, base)
    try:
        user = page.input_value("#user")
        old = _ids(page)
        assert old
        page.route("**/search", lambda route: route.abort())
        page.route("**/related*", lambda route: route.abort())
        page.fill("#q", "qwxzzv plmnb")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.querySelector('#status').textContent.includes('retrying')")
        status = _status(page)
        assert status.startswith("the server is not answering; retrying in 1 s")
        assert "Failed to fetch" not in status
        assert "not this query" in status  # the old list is labelled as someone else's
        assert "stale" in page.get_attribute("#results", "class")
        assert _ids(page) == old  # still there, greyed out, and not clickable
        assert page.inner_text("#personal") == ""

        page.unroute("**/search")  # the server answers again: the retry picks the query up
        page.wait_for_function(
            "document.querySelector('#status').textContent.startsWith("
            "'No results for \u201cqwxzzv plmnb\u201d; showing')", timeout=15_000)
        assert "stale" not in page.get_attribute("#results", "class")
        assert "error" not in (page.get_attribute("#status", "class") or "")

        # an error response: its detail, in words; a 4xx is not retried
        page.route("**/search", lambda route: route.fulfill(
            status=422, content_type="application/json",
            body='{"detail": "query longer than 200 characters"}'))
        page.fill("#q", "barcelona loft")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.querySelector('#status').textContent.includes('422')")
        status = _status(page)
        assert status.startswith("the server answered 422: query longer than 200 characters")
        assert "retrying" not in status
        page.route("**/search", lambda route: route.fulfill(
            status=503, content_type="application/json",
            body='{"detail": "no artifact loaded yet"}'))
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.querySelector('#status').textContent.includes('503')")
        assert _status(page).startswith(
            "the server answered 503: no artifact loaded yet; retrying in 1 s")
        page.unroute("**/search")
        page.wait_for_function(
            "document.querySelector('#status').textContent.includes("
            "'results for \u201cbarcelona loft\u201d')", timeout=15_000)

        # suggestions that fail say so quietly, under the box, and leave the status alone
        page.route("**/suggest*", lambda route: route.abort())
        page.fill("#q", "barc")
        page.wait_for_function(
            "document.querySelector('#notice').textContent.includes("
            "'suggestions unavailable: the server is not answering')")
        assert page.is_hidden("#sug")
        assert "results for" in _status(page)
        page.unroute("**/suggest*")
        page.keyboard.press("Escape")

        # a click whose event is lost is not reported as recorded, and changes nothing
        page.wait_for_load_state("networkidle")
        clicks_before = len(app.state.state.get(user).clicks)
        request_before = page.get_attribute("#results", "data-request-id")
        page.route("**/events", lambda route: route.abort())
        page.locator("#results > .tile").first.click()
        page.wait_for_selector("#similar .tile")
        head = page.inner_text("#similar-head")
        assert "click not recorded: the server is not answering" in head
        assert "click recorded" not in head
        page.wait_for_load_state("networkidle")
        assert len(app.state.state.get(user).clicks) == clicks_before
        assert page.get_attribute("#results", "data-request-id") == request_before
        # the server's count, unchanged by the lost click
        assert page.inner_text("#personal") == _personal_line(clicks_before)
    finally:
        page.context.close()


@pytest.mark.browser
@pytest.mark.slow
def test_similar_items_open_under_the_tapped_tile_on_a_phone(browser, site, tmp_path):
    _, base = site
    page = _open(browser, base, **MOBILE)
    try:
        tapped = page.locator("#results > .tile").nth(3)
        tapped_id = tapped.get_attribute("data-item-id")
        tapped.tap()
        page.wait_for_selector("#similar .tile")
        page.wait_for_load_state("networkidle")  # the refresh after the click, too
        # the panel sits right after a tile of the list (the tapped one, if the refreshed list
        # still holds it), spanning the row, on screen
        above = page.evaluate("document.getElementById('side').previousElementSibling.dataset")
        ids = _ids(page)
        assert above["itemId"] == (tapped_id if tapped_id in ids else ids[3])
        prev = page.locator("#side").evaluate(
            "s => [s.previousElementSibling.getBoundingClientRect().bottom,"
            " s.getBoundingClientRect().top]")
        assert 0 <= prev[1] - prev[0] <= 40
        assert page.evaluate("document.getElementById('side').getBoundingClientRect().top"
                             " + window.scrollY") < 2_000  # not under the whole list
        page.screenshot(path=str(tmp_path / "mobile.png"), full_page=True)
    finally:
        page.context.close()


@pytest.mark.browser
@pytest.mark.slow
def test_api_docs_render_with_no_internet(browser, site):
    """/docs was blank on a machine without internet (Swagger UI from a CDN); its assets (and
    ReDoc's) now come from a package: both render with every request off this server refused."""
    _app, base = site
    page = browser.new_page()
    outside: list[tuple[str, str]] = []

    def only_this_server(route):
        if route.request.url.startswith(base):
            route.continue_()
        else:
            outside.append((route.request.resource_type, route.request.url))
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(base + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "funnel API" in page.title()
    page.wait_for_selector("text=/search")  # the operations come from /openapi.json
    assert outside == []
    page.goto(base + "/redoc")
    page.wait_for_selector("h1:has-text('funnel')", timeout=30_000)
    # ReDoc still asks its CDN for the footer logo, an image it renders without
    assert {kind for kind, _url in outside} <= {"image"}
    page.close()
