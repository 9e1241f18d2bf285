"""Headless Chromium (Debian's package) through Playwright, for the web map's tests: a fixture starting the browser
and a page that records everything that goes wrong on it. Without /usr/bin/chromium the tests skip, but fail under
CI (``CI`` or ``GARIMPO_REQUIRE_BROWSER`` set; .ci/run installs Chromium and sets the latter)."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
# The flags a closed network needs: without the background-networking ones Chromium keeps trying Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        why = f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)"
        if os.environ.get("CI") or os.environ.get("GARIMPO_REQUIRE_BROWSER"):
            pytest.fail(f"{why}; CI must run the web map's browser test (.ci/run installs it)")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class OpenMap:
    """A page showing the map at ``path``, with what went wrong on it: console and page errors, requests."""

    def __init__(self, browser, path):
        self.context = browser.new_context(viewport={"width": 1000, "height": 700})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed request: {r.url}"))
        self.page.on(
            "request",
            lambda r: r.url.startswith(("file:", "data:")) or self.problems.append(f"network request: {r.url}"),
        )
        self.page.goto(Path(path).resolve().as_uri())
        self.page.wait_for_function("window.garimpoMap && window.garimpoMap.ready === true", timeout=15_000)

    def state(self):
        return self.page.evaluate("({layers: garimpoMap.layers, errors: garimpoMap.errors})")

    def svg_paths(self):
        return self.page.evaluate("document.querySelectorAll('.leaflet-pane svg path').length")

    def click_lonlat(self, lon, lat):
        x, y = self.page.evaluate(
            "([lat, lon]) => { const p = garimpoMap.map.latLngToContainerPoint([lat, lon]); return [p.x, p.y]; }",
            [lat, lon],
        )
        self.page.mouse.click(x, y)

    def close(self):
        self.context.close()


def not_blank(path, min_std=10.0, min_colours=50):
    img = np.asarray(Image.open(path).convert("RGB"))
    colours = len(np.unique(img.reshape(-1, 3), axis=0))
    assert img.std() > min_std and colours > min_colours, (
        f"screenshot looks blank: std {img.std():.1f}, {colours} colours"
    )
