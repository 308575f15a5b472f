"""The README's screenshots, taken by the test suite from the real page (issue 20).

Desktop and mobile shots of a search on the served synthetic marketplace, through the same
steps as ``scripts/screenshots.py``, into a temporary directory; with
``FUNNEL_UPDATE_SCREENSHOTS=1`` into ``docs/`` instead, replacing the README's images.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from funnel.serve.app import create_app
from funnel.serve.settings import Settings

from .test_live import running

DOCS = Path(__file__).parents[2] / "docs"
SIZES = {"desktop": (1280, 860), "mobile": (780, 1688)}  # mobile: 390 x 844 at 2x
"""Pixel size of each PNG: the viewport times the device scale factor."""


def _script() -> ModuleType:
    path = Path(__file__).parents[2] / "scripts" / "screenshots.py"
    spec = importlib.util.spec_from_file_location("funnel_screenshots", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.browser
@pytest.mark.slow
def test_screenshots_of_the_real_page(served_workspace, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (make system installs it from Debian packages)")
    sync_api = pytest.importorskip("playwright.sync_api")
    image = pytest.importorskip("PIL.Image")
    shots = _script()
    out = DOCS if os.environ.get("FUNNEL_UPDATE_SCREENSHOTS") == "1" else tmp_path
    app = create_app(Settings(workspace=served_workspace.root, demo_users=True), flush_every_s=0)
    with running(app) as base, sync_api.sync_playwright() as pw:
        markets = app.state.holder.engine.catalog.markets
        query = f"{'barcelona' if 'barcelona' in markets else markets[0]} loft"  # the README's
        browser = pw.chromium.launch(executable_path=chromium, args=shots.CHROMIUM_ARGS)
        try:
            for name, options in shots.VIEWPORTS.items():
                page = browser.new_page(**options)
                shots.search(page, base, query)
                if name == "desktop":  # a click shows similar items beside the results
                    page.locator("#results .tile").first.click()
                    page.wait_for_selector("#similar .tile")
                    page.wait_for_load_state("networkidle")
                    page.mouse.move(0, 0)
                page.screenshot(path=str(out / f"screenshot-{name}.png"))
                page.close()
        finally:
            browser.close()
    for name, size in SIZES.items():
        path = out / f"screenshot-{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with image.open(path) as png:
            assert png.size == size
            colours = png.convert("RGB").getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 200, f"{path}: {len(colours)} colours; a blank or error page?"
        assert path.stat().st_size > 30_000
