"""The dashboard in a real browser: Debian's chromium driven by Playwright, against the
Procfile's web process on the test database.

The fixture events go in as signed webhooks through the running web process and are
applied by an RQ worker, as in production. The browser signs in through the form, uses
the pickers, reads every chart, follows a JSON link and the search box, signs out, and
saves screenshots at 1280 and 390 px to `E2E_SCREENSHOTS` (default
`tests/e2e/screenshots/`, git-ignored); the folder is printed. The quick start's first
screen, at 1400 and 390 px, is saved as `tests/e2e/screenshots/quick-start-*.png`,
which are committed: what a newcomer sees after `script/run` and the printed replay.

Select these tests with `-m e2e`. Without chromium they are skipped, except in CI
(`CI` set), where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OPS_TOKEN, SECRET, load_fixture_events
from tests.integration.processes import (
    WebClient,
    free_port,
    start_process,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = Path(
    os.environ.get("E2E_SCREENSHOTS", Path(__file__).parent / "screenshots")
).resolve()
#: The charts of the first screen, by `data-figure`; each must draw data.
FIGURES = ["mrr", "waterfall", "net-churn", "levers", "churn", "cohorts"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

#: For each figure: its data marks that the browser laid out with a size, and how many
#: of those carry a non-zero value.
DRAWN = """
(figure) => {
  const marks = [...document.querySelectorAll(`[data-figure="${figure}"] .mark`)];
  const shown = marks.filter((m) => {
    const box = m.getBoundingClientRect();
    return box.width > 0 && box.height > 0;
  });
  const data = shown.filter((m) => Number(m.dataset.value || 0) !== 0);
  return {marks: marks.length, shown: shown.length, data: data.length};
}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"no browser at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def web(settings, tmp_path: Path) -> Iterator[str]:
    """The Procfile's web process on the test database and Redis; yields its base URL."""
    port = free_port()
    env = {
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "MRR_QUEUE": settings.queue_name,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "OPS_TOKEN": OPS_TOKEN,
    }
    proc = start_process("web", env, tmp_path / "web.log")
    base = f"http://127.0.0.1:{port}"
    try:
        client = WebClient(port, SECRET, OPS_TOKEN)
        wait_until(lambda: client.get_json("/healthz"), 30, "the web process")
        client.close()
        yield base
    finally:
        stop_process(proc)


@pytest.fixture
def shots(capsys: pytest.CaptureFixture[str]) -> Path:
    """The screenshot folder, printed past pytest's capture."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with capsys.disabled():
        print(f"\ndashboard screenshots: {SCREENSHOTS}")
    return SCREENSHOTS


def replay_fixtures(web: str, run_worker: Any) -> None:
    """Every fixture event, signed, through the web process; then a worker applies them."""
    client = WebClient(int(web.rsplit(":", 1)[1]), SECRET, OPS_TOKEN)
    try:
        for event in load_fixture_events():
            assert client.post_event(json.dumps(event)) == 200
        assert run_worker() == 0
        status = client.get_json("/status")
        assert status["inbox"]["pending"] == 0, status
    finally:
        client.close()


def sign_in(page: Any, web: str, path: str = "/dashboard") -> None:
    page.goto(web + path)
    assert page.url.startswith(web + "/dashboard/login"), page.url
    page.fill("#token", OPS_TOKEN)
    page.click("form.login button[type=submit]")
    page.wait_for_url(web + path)


def no_horizontal_scroll(page: Any) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the page scrolls sideways at {width[1]} px: {width[0]} px wide"


def test_a_founder_signs_in_and_every_chart_draws_the_ledger(
    browser, web, run_worker, shots
) -> None:
    replay_fixtures(web, run_worker)
    desktop = browser.new_context(viewport=DESKTOP)
    page = desktop.new_page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    sign_in(page, web)
    # The pickers: dollars, the fixtures' year, then the waterfall of March.
    page.select_option("select[name=currency]", "usd")
    page.fill("input[name=start]", "2024-01-01")
    page.fill("input[name=end]", "2025-01-01")
    page.click(".pickers button[type=submit]")
    page.wait_for_url("**/dashboard?**start=2024-01-01**")
    page.select_option("select[name=focus]", "2024-03-01")
    page.click(".pickers button[type=submit]")
    page.wait_for_url("**focus=2024-03-01**")
    assert page.locator("#fig-waterfall h2").inner_text() == "Waterfall: March 2024"

    for figure in FIGURES:
        drawn = page.evaluate(DRAWN, figure)
        assert drawn["data"] > 0, f"{figure} drew no data: {drawn}"
    assert page.locator("#fig-net-churn .band").count() > 0  # a net negative month
    assert page.locator("#status").inner_text().count("20") >= 1  # events received
    page.screenshot(path=str(shots / "dashboard-1280.png"), full_page=True)

    cookies = {c["name"]: c for c in desktop.cookies()}
    session = cookies["mrr_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert "mrr_session" not in page.evaluate("document.cookie")  # no script can read it

    # Every figure links to its JSON, which the session opens.
    href = page.locator("#fig-levers a.json").get_attribute("href")
    document = json.loads(page.goto(web + href).text())
    assert [r["period_start"] for r in document["periods"]][2] == "2024-03-01"

    # The search box leads to a customer's page.
    page.goto(web + "/dashboard")
    page.fill("input[name=q]", "acme")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/dashboard/customers/cus_acme")
    assert page.evaluate(DRAWN, "timeline")["data"] > 0
    page.screenshot(path=str(shots / "customer-1280.png"), full_page=True)

    phone = browser.new_context(viewport=PHONE, storage_state=desktop.storage_state())
    small = phone.new_page()
    small.on("request", lambda r: urls.append(r.url))
    small.goto(web + "/dashboard?currency=usd&start=2024-01-01&end=2025-01-01&focus=2024-03-01")
    for figure in FIGURES:
        assert small.evaluate(DRAWN, figure)["data"] > 0, figure
    no_horizontal_scroll(small)
    small.screenshot(path=str(shots / "dashboard-390.png"), full_page=True)
    small.goto(web + "/dashboard/customers/cus_acme")
    no_horizontal_scroll(small)
    small.screenshot(path=str(shots / "customer-390.png"), full_page=True)
    phone.close()

    page.goto(web + "/dashboard")
    page.click("form.signout button")
    page.wait_for_url("**/dashboard/login")
    page.goto(web + "/dashboard")
    assert "/dashboard/login" in page.url
    desktop.close()

    assert urls and not [u for u in urls if OPS_TOKEN in u]
    assert not [u for u in urls if not u.startswith(web)], "the page fetched another site"
    assert failed == []


def test_an_empty_ledger_opens_on_how_to_feed_it(browser, web, shots) -> None:
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    sign_in(page, web)
    text = page.locator("#first-run").inner_text()
    assert f"{web}/webhooks/stripe" in text
    assert "mrr backfill" in text
    assert page.locator("svg.chart").count() == 0
    no_horizontal_scroll(page)
    page.screenshot(path=str(shots / "first-run-390.png"), full_page=True)
    context.close()


#: Committed screenshots of the quick start's first screen (the rest stay git-ignored).
QUICK_START_SHOTS = Path(__file__).parent / "screenshots"
#: Every heatmap header or cell whose text is wider than its box (cut, e.g. "M10").
CLIPPED = """
() => [...document.querySelectorAll('.heatmap th, .heatmap td')]
  .filter((c) => c.scrollWidth > c.clientWidth + 0.5).map((c) => c.textContent)
"""


def test_the_quick_start_opens_on_a_full_dashboard(browser, web, run_worker) -> None:
    """The quick start's replay (`--shift-to-now`) and the dashboard's default view:
    every chart draws data, no cohort header is cut at 390 px; screenshots at 1400 and
    390 px are saved under `tests/e2e/screenshots/quick-start-*.png` (committed)."""
    from pipeline.replay import SourcedEvent, shift_to_now

    events = [SourcedEvent("fixture", e, json.dumps(e)) for e in load_fixture_events()]
    client = WebClient(int(web.rsplit(":", 1)[1]), SECRET, OPS_TOKEN)
    try:
        for item in shift_to_now(events, int(time.time())):
            assert client.post_event(item.raw) == 200
        assert run_worker() == 0
    finally:
        client.close()
    QUICK_START_SHOTS.mkdir(exist_ok=True)
    for viewport, name in (({"width": 1400, "height": 900}, "1400"), (PHONE, "390")):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.goto(web + "/")  # the address `mrr run` prints leads to the sign-in
        page.wait_for_url("**/dashboard/login**")
        page.fill("#token", OPS_TOKEN)
        page.click("form.login button[type=submit]")
        page.wait_for_url(web + "/dashboard")
        # The default currency is the one with the most MRR, euros: no churn in them.
        for figure in (f for f in FIGURES if f != "churn"):
            assert page.evaluate(DRAWN, figure)["data"] > 0, (name, figure)
        assert page.evaluate(CLIPPED) == [], name
        no_horizontal_scroll(page)
        page.screenshot(path=str(QUICK_START_SHOTS / f"quick-start-{name}.png"), full_page=True)
        context.close()
