"""Dashboard latency: a year of subscription events for 10,000 customers on PostgreSQL.

    python bench/dashboard.py [--customers 10000] [--runs 7] [--no-browser] [--smoke]

Builds, in a fresh database beside `BENCH_DATABASE_URL` (default
postgresql://postgres@127.0.0.1:5432/mrr_bench, dropped afterwards), the events of a
year for N customers (trials, seats, upgrades and downgrades, add-ons, discounts,
voluntary and delinquent churn, reactivations; one customer in ten in euros), stores
them in the inbox and applies them through the pipeline (`apply_inline`), as
`mrr replay --sync` does. Then it times, signed in through the form:

* in process, through the Flask app: `GET /dashboard` (the default: 12 months), the
  same by week over the year, a customer page, and the stylesheet (the only other
  request the page makes; it has no script and fetches no data);
* with the Procfile's web process and Debian's chromium (unless `--no-browser` or no
  browser is installed): the page's full load in the browser, navigation start to the
  load event, stylesheet included.

It prints each median against the 1-second target. Every figure is measured in this run.
`--smoke` is a tiny run (200 customers, 3 runs, no browser) that checks the benchmark works.

What a profile of `GET /dashboard` said (10,000 customers, 49,289 events, 42,880
movements; ~350 ms in process): drawing the SVG is ~10 ms; the report documents cost
what `/reports/*` costs (the cohorts join of movements and balances ~70 ms, each read of
the daily rollup ~35 ms); and ~40 % is the status panel, i.e. `/status` itself, whose
inbox queries scan the whole inbox: `last_event` sorts it (a 120 ms sequential scan of
184 MB) and `events_with_warnings` filters it (75 ms). Those grow with the number of
events stored, not with the ledger; an index on `inbox_events (received_at, id)` and a
partial one on `warnings IS NOT NULL` would make them constant.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import SECRET, TOKEN, bench_database, private_redis, start_process, stop_process
from sqlalchemy import func, select, text

from models.db import engine_for
from models.inbox import store_events_committed
from models.tables import LedgerMovement
from pipeline.apply import apply_inline
from pipeline.runtime import bootstrap
from pipeline.settings import Settings
from service.app import create_app
from tests import factories as f
from tests.integration.processes import WebClient, free_port, wait_until

TARGET_MS = 1000.0
CHROMIUM = "/usr/bin/chromium"
DAY = 86400
FEEDBACK = [
    "too_expensive",
    "missing_features",
    "switched_service",
    "unused",
    "low_quality",
    "customer_service",
    None,
]


def prices(currency: str) -> dict[str, dict[str, Any]]:
    cur = currency
    return {
        "basic": f.price(f"price_basic_{cur}", 2900, currency=cur, product="prod_app"),
        "pro": f.price(f"price_pro_{cur}", 9900, currency=cur, product="prod_app"),
        "annual": f.price(
            f"price_annual_{cur}", 99000, currency=cur, interval="year", product="prod_app"
        ),
        "addon": f.price(f"price_addon_{cur}", 1500, currency=cur, product="prod_addon"),
    }


@dataclass
class Plan:
    """What one subscription bills at a moment, turned into a Stripe object on demand."""

    sub_id: str
    customer: str
    currency: str
    plan: str
    seats: int
    status: str
    addon: bool = False
    discount: bool = False

    def event(self, event_id: str, kind: str, at: int, **extra: Any) -> dict[str, Any]:
        p = prices(self.currency)
        items = [f.item(p[self.plan], self.seats)]
        if self.addon:
            items.append(f.item(p["addon"], 1))
        coupon = f.coupon(f"loyal_{self.currency}", percent_off=20.0)
        discounts = [f.discount(f"di_{self.sub_id}", coupon)] if self.discount else []
        obj = f.subscription(
            self.sub_id,
            self.customer,
            items,
            status=self.status,
            currency=self.currency,
            discounts=discounts,
            **extra,
        )
        return f.event(event_id, f"customer.subscription.{kind}", at, obj)


def customer_events(n: int, start: int, end: int, rng: random.Random) -> list[dict[str, Any]]:
    """One customer's year: subscriptions that start, change and end at random times;
    a churned customer may come back with a new one."""
    customer = f"cus_{n:06d}"
    currency = "eur" if n % 10 == 0 else "usd"
    events: list[dict[str, Any]] = []
    t = start + rng.randrange(0, end - start - 30 * DAY)
    for k in range(3):
        sub = Plan(
            f"sub_{n:06d}_{k}",
            customer,
            currency,
            rng.choice(["basic", "basic", "pro", "annual"]),
            rng.randint(1, 8),
            "trialing" if rng.random() < 0.3 else "active",
        )

        def emit(kind: str, at: int, sub: Plan = sub, **extra: Any) -> None:
            events.append(sub.event(f"evt_{n:06d}_{len(events)}", kind, at, **extra))

        emit("created", t)
        if sub.status == "trialing":
            t += 14 * DAY
            if t >= end:
                return events
            sub.status = "active"
            emit("updated", t)
        while True:
            t += rng.randrange(7 * DAY, 45 * DAY)
            if t >= end:
                return events
            roll = rng.random()
            if roll < 0.25:
                sub.seats = max(1, sub.seats + rng.choice([-2, -1, 1, 2, 3]))
            elif roll < 0.37:
                sub.plan = {"basic": "pro", "pro": "basic", "annual": "pro"}[sub.plan]
            elif roll < 0.47:
                sub.addon = not sub.addon
            elif roll < 0.55:
                sub.discount = not sub.discount
            elif roll < 0.60:  # a payment fails, then the subscription goes unpaid
                sub.status = "past_due"
                emit("updated", t)
                t += 7 * DAY
                if t >= end:
                    return events
                sub.status = "unpaid"
                emit("updated", t)
                break
            elif roll < 0.68:  # the customer cancels
                sub.status = "canceled"
                details = {
                    "comment": None,
                    "feedback": rng.choice(FEEDBACK),
                    "reason": "cancellation_requested",
                }
                emit("deleted", t, cancellation_details=details)
                break
            else:
                continue
            emit("updated", t)
        if rng.random() > 0.3:
            return events
        t += rng.randrange(15 * DAY, 90 * DAY)
        if t >= end:
            return events
    return events


def build(url: str, customers: int, seed: int) -> dict[str, float]:
    """Store and apply a year of events; returns what it did and how long it took."""
    end = int(datetime.now(UTC).timestamp())
    start = end - 365 * DAY
    rng = random.Random(seed)
    t0 = time.perf_counter()
    events = [e for n in range(customers) for e in customer_events(n, start, end, rng)]
    generated = time.perf_counter() - t0
    engine = engine_for(url)
    t0 = time.perf_counter()
    for lo in range(0, len(events), 2000):
        store_events_committed(engine, [(e, json.dumps(e)) for e in events[lo : lo + 2000]])
    stored = time.perf_counter() - t0
    runtime = bootstrap(Settings(webhook_secrets=(SECRET,), database_url=url))
    factory = runtime.sessions
    t0 = time.perf_counter()
    done = apply_inline(runtime, [e["id"] for e in events], chunk=200)
    refused = {**done.failed, **done.quarantined}
    if refused:
        sys.exit(f"{len(refused)} events were not applied, e.g. {next(iter(refused.items()))}")
    applied = done.applied
    with factory() as session:
        movements = session.scalar(select(func.count()).select_from(LedgerMovement)) or 0
    # Statistics and a visibility map, as autovacuum keeps them on a live database.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return {
        "events": len(events),
        "applied": applied,
        "movements": movements,
        "generate_s": generated,
        "store_s": stored,
        "apply_s": time.perf_counter() - t0,
    }


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    fn()  # warm: first connections, template compilation
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def signed_in_client(url: str, redis_url: str) -> Any:
    app = create_app(
        Settings(webhook_secrets=(SECRET,), database_url=url, redis_url=redis_url, ops_token=TOKEN)
    )
    client = app.test_client()
    form = client.get("/dashboard/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf, "no CSRF token in the sign-in form"
    answer = client.post("/dashboard/login", data={"csrf_token": csrf.group(1), "token": TOKEN})
    assert answer.status_code == 302, answer.status_code
    return client


@contextmanager
def web_process(url: str, redis_url: str, folder: Path) -> Iterator[str]:
    port = free_port()
    env = {
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "OPS_TOKEN": TOKEN,
    }
    proc = start_process("web", env, folder / "web.log")
    try:
        client = WebClient(port, SECRET, TOKEN)
        wait_until(lambda: client.get_json("/healthz"), 30, "the web process")
        client.close()
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


#: Navigation start to the load event of the page, stylesheet and icon included.
LOAD_MS = "performance.getEntriesByType('navigation')[0].loadEventEnd"


def browser_load_ms(base: str, runs: int) -> float:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base + "/dashboard")
        page.fill("#token", TOKEN)
        page.click("form.login button[type=submit]")
        page.wait_for_url(base + "/dashboard")
        samples = []
        for _ in range(runs + 1):
            page.goto(base + "/dashboard", wait_until="load")
            samples.append(float(page.evaluate(LOAD_MS)))
        browser.close()
    return statistics.median(samples[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-browser", action="store_true", help="skip the chromium load")
    parser.add_argument("--smoke", action="store_true", help="200 customers, 3 runs, no browser")
    args = parser.parse_args()
    if args.smoke:
        args.customers, args.runs, args.no_browser = 200, 3, True

    with (
        tempfile.TemporaryDirectory() as tmp,
        bench_database("dashboard") as url,
        private_redis(Path(tmp)) as redis,
    ):
        built = build(url, args.customers, args.seed)
        print(
            f"{args.customers:,} customers: {built['events']:,} events over 365 days, "
            f"{built['movements']:,} ledger movements (stored in {built['store_s']:.1f} s, "
            f"applied in {built['apply_s']:.1f} s)",
        )
        client = signed_in_client(url, redis.url)
        customer = "cus_000001"

        def get(path: str) -> Callable[[], None]:
            def fetch() -> None:
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code)
                response.close()

            return fetch

        year = datetime.now(UTC).date() - timedelta(days=365)
        rows = [
            ("/dashboard (12 months)", median_ms(get("/dashboard"), args.runs)),
            (
                "/dashboard?period=week (53 weeks)",
                median_ms(get(f"/dashboard?period=week&start={year}"), args.runs),
            ),
            (
                f"/dashboard/customers/{customer}",
                median_ms(get(f"/dashboard/customers/{customer}"), args.runs),
            ),
            ("/static/dashboard.css", median_ms(get("/static/dashboard.css"), args.runs)),
        ]
        if not args.no_browser and Path(CHROMIUM).exists():
            with web_process(url, redis.url, Path(tmp)) as base:
                rows.append(("chromium: /dashboard load event", browser_load_ms(base, args.runs)))
        elif not args.no_browser:
            print(f"(no browser at {CHROMIUM}: the page load in chromium is not measured)")
        print(f"{'what (median of ' + str(args.runs) + ')':<44}{'ms':>9}{'target':>9}{'met':>6}")
        for name, ms in rows:
            print(f"{name:<44}{ms:>9.1f}{TARGET_MS:>9.0f}{'yes' if ms < TARGET_MS else 'NO':>6}")


if __name__ == "__main__":
    main()
