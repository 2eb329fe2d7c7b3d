"""The dashboard in a real browser: Debian's headless Chromium, driven by the playwright package.

Skipped when /usr/bin/chromium or playwright is missing, unless REQUIRE_BROWSER=1 (CI), where
that is a failure. `playwright install` is never needed: the system Chromium is used.
"""

import os
from pathlib import Path

import pytest
from conftest import add_csv, offline
from servers import deploy, live_server

from riskmonitor.pipeline.tick import run_tick
from riskmonitor.store import db

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _playwright():
    """The sync playwright API, or a skip (a failure under REQUIRE_BROWSER=1) saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright Python package is not installed"
    else:
        if CHROMIUM.exists():
            return sync_playwright
        missing = f"{CHROMIUM} is not installed (Debian package chromium)"
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser test is required (REQUIRE_BROWSER=1) but {missing}")
    pytest.skip(missing)


@pytest.fixture(scope="module")
def browser():
    with _playwright()() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def dashboard_url(sqlite_project, tmp_path, monkeypatch):
    """A live server for a project with real plots, a drifted tick and a quarantined file."""
    offline(monkeypatch, reports=True)
    engine = db.make_engine(sqlite_project.database_url)
    deploy(sqlite_project, engine)
    add_csv(sqlite_project, "flipped.csv", rows=1200, seed=9, flip=1.0)  # enough held-out rows to judge a challenger
    (sqlite_project.input_folder_path / "broken.csv").write_text("only,wrong,columns\n1,2,3\n")
    run_tick(sqlite_project, engine)
    engine.dispose()
    with live_server(sqlite_project, tmp_path / "server.log") as url:
        yield url


def open_page(browser, url: str, width: int):
    """Load the page; return it with the console errors, page errors and failed requests seen."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems = []
    page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
    page.on("response", lambda response: response.status >= 400 and problems.append(f"{response.status}: {response.url}"))
    page.goto(url, wait_until="load")
    return page, problems


def test_dashboard_renders_in_chromium(browser, dashboard_url):
    for width in (1400, 390):  # a desktop and a phone
        page, problems = open_page(browser, dashboard_url + "/", width)
        images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        assert len(images) >= 6  # F1, confusion matrix, timings and one per feature
        assert [src for src, complete, natural_width in images if not complete or natural_width == 0] == []
        assert problems == []
        # Nothing wider than the screen: a phone scrolls down, not sideways (wide tables scroll in their card).
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), width
        text = page.inner_text("body")
        assert "broken.csv" in text
        models = page.inner_text("h2:has-text('Models') + div.card")  # the models table, one row per model
        assert models.count("all data ingested until then") == 1  # the first model
        assert "the latest 960 rows (rows" in models  # the drifted tick's challenger learned the recent window
        assert "by fullprocess.py" in models
        card = page.inner_text("#latest-decision")  # the drifted tick's record, not its message
        assert card.split()[0] == "drift"  # the model-drift verdict badge comes first
        assert "Model drift (pooled)" in card
        assert "vs threshold" in card
        assert page.get_attribute("a.button", "href") == "/report"
        page.close()
