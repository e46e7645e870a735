"""Backfill: the whole history of a large account through a Stripe stand-in that answers
in 20 ms per call, as `mrr backfill` reads it.

    python bench/backfill.py [--subscriptions 10000] [--latency-ms 20] [--smoke]

Builds an account with the test world (tests/world): each subscription started about
two years ago (so ~24 invoices each), a third with a seat change mid-period (prorations)
and a tenth with a forever discount; serves it over real HTTP on 127.0.0.1 with every
answer delayed by `--latency-ms`; runs the backfill use case on a fresh PostgreSQL
database (BENCH_DATABASE_URL). Prints:

* API calls against the least possible: every list page at 100 objects (events,
  customers, subscriptions, invoices, pending items), one lines page per invoice with
  more than the 10 lines it embeds, one call per price and coupon fetched (target
  ≤ 1.1×);
* the share of the run spent outside waiting on the API (the wall time less the time
  the client waited on responses; target ≤ 25 %: a real account is then bound by
  Stripe's rate limit, not by us).

The stand-in answers from a process of its own (as Stripe does not share our CPU), and
the waits are the time during which at least one request was outstanding (the backfill
fetches the next list page on a thread while it reads the last one). It also prints
when each stage began and ended.

What the profile said (cProfile, 1,000 subscriptions, no latency), before the next page
was fetched ahead: of 14.2 s, listing took 6.4 s (stripe-python's JSON parsing 2.8 s,
round trips 3.2 s), reading invoices 2.2 s, storing the synthetic events 1.9 s,
applying them 1.8 s, the histories under a second. Now the reading overlaps the waits
and bodies are parsed with orjson; what remains outside is the work after the last
page: the histories, storing them and applying them (BENCHMARKS.md).

The next profile (10,000 subscriptions, no latency) found psycopg parsing the text of
every multi-row INSERT again (a new statement of 1,200 placeholders per hundred
events; the customers' upsert likewise) and the customer-by-customer apply: storing now
goes through one prepared `unnest` insert, a first backfill applies by `mrr rebuild`'s
bulk path, and customer events are recorded as they are listed. Requesting the next
page on a cursor read off the raw body before parsing was tried and was slower: the
thread hand-off costs more than the parse it hides.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from harness import bench_database

from adapters.stripe_http import RetryingHTTPClient
from migrations import upgrade
from pipeline.backfill import NETWORK_RETRIES, backfill
from pipeline.runtime import bootstrap
from pipeline.settings import Settings
from tests.integration.fake_stripe import EMBEDDED_LINES, FakeStripe, holding, serve
from tests.world import BASIL, World
from tests.world.calendar import boundary, days
from tests.world.scenarios import NOW, catalog


def account(subscriptions: int, seed: int = 1) -> World:
    rng = random.Random(seed)
    w = World(BASIL, seed)
    c = catalog(w)
    plans = [c.basic, c.pro, c.plus]
    for n in range(subscriptions):
        start = NOW - days(735) + rng.randrange(0, days(30))
        customer = w.customer(start - 3600, name=f"B{n}")
        price = rng.choice(plans)
        coupon = c.forever20 if rng.random() < 0.1 else None
        sub = w.subscribe(customer, start, [(price, rng.randint(1, 4))], coupon=coupon)
        if rng.random() < 0.33:
            k = rng.randint(2, 20)
            mid = (boundary(start, "month", 1, k) + boundary(start, "month", 1, k + 1)) // 2
            w.set_quantity(sub, mid, price, rng.randint(5, 9))
    return w.run(NOW)


@contextmanager
def serve_apart(fake: FakeStripe) -> Iterator[tuple[str, Callable[[], list[Any]]]]:
    """Serve `fake` from a process of its own, as Stripe is: its serialization must not
    compete with the backfill for this interpreter. Yields its base URL and a function
    that returns the requests it answered (once the run is over)."""
    context = multiprocessing.get_context("fork")
    here, there = context.Pipe()
    child = context.Process(target=_serve, args=(fake, there), daemon=True)
    child.start()
    base = here.recv()

    def requests() -> list[Any]:
        here.send("done")
        answered: list[Any] = here.recv()
        return answered

    try:
        yield base, requests
    finally:
        child.terminate()
        child.join(timeout=10)


def _serve(fake: FakeStripe, conn: Any) -> None:
    with serve(fake) as base:
        conn.send(base)
        conn.recv()
        conn.send(fake.requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--smoke", action="store_true", help="tiny run, no target (CI)")
    args = parser.parse_args()
    count = 100 if args.smoke else args.subscriptions

    started = time.perf_counter()
    world = account(count)
    fake = holding(world)
    print(
        f"account: {count:,} subscriptions, {len(fake.invoices):,} invoices, "
        f"{len(fake.customers):,} customers (built in {time.perf_counter() - started:.0f} s)",
        file=sys.stderr,
    )
    fake.delay_s = args.latency_ms / 1000
    now = datetime.fromtimestamp(NOW, UTC)
    with bench_database("backfill") as url, serve_apart(fake) as (base, requests):
        upgrade(url)
        settings = Settings.from_env().with_overrides(
            database_url=url, stripe_api_key="sk_test_bench", stripe_api_base=base
        )
        runtime = bootstrap(settings)
        http = RetryingHTTPClient()
        client = runtime.stripe(max_network_retries=NETWORK_RETRIES, http_client=http)
        begun = time.perf_counter()
        stages: dict[str, list[float]] = {}

        def progress(stage: str, n: int) -> None:
            at = time.perf_counter() - begun
            stages.setdefault(stage, [at, at])[1] = at

        result = backfill(runtime, client, now=now, progress=progress)
        wall = time.perf_counter() - begun
        answered = requests()

    window = sum(1 for e in fake.events if e["created"] >= NOW - 30 * 86400)
    fetched = len({p for p, _ in answered if p.startswith(("/v1/prices/", "/v1/coupons/"))})
    least = fake.least_calls(window) + fetched
    outside = wall - http.waited_s
    long_invoices = sum(1 for i in fake.invoices if len(i["lines"]["data"]) > EMBEDDED_LINES)
    print(
        f"backfill: {wall:.1f} s, {result.api_calls:,} API calls "
        f"(least possible {least:,}: list pages, {long_invoices} long invoices, "
        f"{fetched} prices and coupons), waited on the API {http.waited_s:.1f} s"
    )
    print(
        f"events {result.events:,}, synthetic stored {result.synthetic_stored:,}, "
        f"applied {result.applied:,}, assumed {result.assumed:,}, failed {len(result.failed)}"
    )
    print(
        "stages (s from the start, first to last report): "
        + ", ".join(f"{k} {a:.1f}-{b:.1f}" for k, (a, b) in stages.items())
    )
    calls = result.api_calls / least
    share = outside / wall
    print(f"API calls / least possible = {calls:.2f}x; outside API waits = {share:.0%} of the run")
    if not args.smoke:
        print(
            f"target calls <= 1.1x: {'met' if calls <= 1.1 else 'NOT met'}; "
            f"outside waits <= 25 %: {'met' if share <= 0.25 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
