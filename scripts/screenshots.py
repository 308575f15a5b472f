"""Screenshots of the web page for the README: docs/screenshot-desktop.png and -mobile.png.

Runs a search in Debian's headless Chromium (``make system`` installs it) through Playwright
against a server that is already running, e.g. after ``make demo`` or
``funnel serve -w WS --demo-users``. The desktop shot clicks the first result, which posts a
click event for the page's user to that server. Downloads nothing.

    .venv/bin/python scripts/screenshots.py --url http://127.0.0.1:8000 --query "barcelona loft"
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 860}, "device_scale_factor": 1},
    "mobile": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
               "is_mobile": True, "has_touch": True},
}


def search(page: Page, url: str, query: str) -> None:
    """Open the page, run one search and wait until its results are shown."""
    page.goto(url + "/")
    page.wait_for_selector("#results .tile")
    page.fill("#q", query)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.querySelector('#status').textContent.includes('results for')")
    page.wait_for_load_state("networkidle")
    page.locator("#q").blur()  # closes the suggestion dropdown (Escape would clear the box)
    page.wait_for_selector("#sug", state="hidden")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--query", default="barcelona loft")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "docs")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium not installed (make system installs it from Debian packages)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for name, options in VIEWPORTS.items():
                page = browser.new_page(**options)
                search(page, args.url.rstrip("/"), args.query)
                if name == "desktop":  # a click shows similar items beside the results
                    page.locator("#results .tile").first.click()
                    page.wait_for_selector("#similar .tile")
                    page.wait_for_load_state("networkidle")
                    page.mouse.move(0, 0)
                path = args.out / f"screenshot-{name}.png"
                page.screenshot(path=str(path))
                print(path)  # noqa: T201 - a script's output
                page.close()
        finally:
            browser.close()


if __name__ == "__main__":
    main()
