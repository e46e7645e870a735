"""Segment latency: `/reports/movements?group_by=plan`, `filter=plan:…`, `filter=country:DE`
and `group_by=country` over 12 months, beside the ungrouped report, on an inbox of
whole subscription lifecycles.

    python bench/segment_latency.py [--customers 100000] [--runs 5] [--smoke]

Fills a fresh PostgreSQL inbox (BENCH_DATABASE_URL; see bench/harness.py) with the
lifecycles of `--customers` customers (two sets of subscriptions each: about twenty
events and ten movements a customer; each customer's four prices one of five variants:
20 plans in usd, and euro ones), runs the real `mrr rebuild`, then times through the
Flask app the ungrouped 12-month movements report (served from the daily rollup), the
same grouped by plan and filtered to one plan, then by the customer key `country` (each
customer given a country, one in ten none, as `customer.*` webhooks would), and one of
each combined. Before timing, the groups are checked to sum to the whole (MRR levels by
plan, every field by country).

Item segments are stored at apply time (`ledger.segments.derive_with_segments`): a
report by one item key reads the rollups `segment_daily` and `segment_trial_daily`;
with a customer key too, the stored segment rows joined with `customers`. Before that,
each report by plan derived every customer's item-restricted ledgers from its stored
events at report time: 3.7 s for 1,000 customers, ~3.7 ms a customer. What the profile
of the first stored version showed (931 ms → 217 ms) is in BENCHMARKS.md. Every figure
is measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, date, datetime

from harness import bench_database
from rebuild import fill, rebuild_rate
from sqlalchemy import func, insert, select

from models.db import make_engine
from models.tables import CustomerRow, InboxEvent, LedgerMovement
from pipeline.settings import Settings
from service.app import create_app

TARGET_MS = 500.0
#: Ids per price of the lifecycles (four usd prices): 20 plans.
PLAN_VARIANTS = 5
#: Sets of subscriptions per customer: about ten movements a customer (one set: five).
ROUNDS = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny run, no target (CI)")
    args = parser.parse_args()
    customers = 100 if args.smoke else args.customers
    runs = 1 if args.smoke else args.runs
    with bench_database("segments") as url:
        events = fill(url, customers, plan_variants=PLAN_VARIANTS, rounds=ROUNDS)
        rebuild_rate(url, events)
        give_countries(url)
        movements = count_movements(url)
        app = create_app(
            Settings(
                webhook_secrets=("whsec_bench",),
                database_url=url,
                ops_token="bench",
                redis_url="redis://127.0.0.1:1/0",  # no Redis: reports never need one
            )
        )
        client = app.test_client()
        headers = {"Authorization": "Bearer bench"}
        start, end = date(2024, 1, 1), date(2025, 1, 1)
        base = f"/reports/movements?period=month&start={start}&end={end}&currency=usd"

        def get(path: str) -> dict:
            response = client.get(path, headers=headers)
            assert response.status_code == 200, response.get_data(as_text=True)[:500]
            return response.json

        whole = get(base)
        grouped = get(f"{base}&group_by=plan")
        for n, row in enumerate(whole["periods"]):  # the figures are right before timed
            for field in ("starting_mrr", "ending_mrr"):
                assert sum(g["periods"][n][field] for g in grouped["groups"]) == row[field]
        plans = len(grouped["groups"])
        plan = grouped["groups"][0]["value"]

        def timed(path: str) -> float:
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                get(path)
                times.append((time.perf_counter() - t0) * 1000)
            return statistics.median(times)

        by_country = get(f"{base}&group_by=country")
        for n, row in enumerate(whole["periods"]):  # every field, for a customer key
            for field, value in row.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    assert sum(g["periods"][n][field] for g in by_country["groups"]) == value

        results = [
            ("movements (12 months)", timed(base)),
            ("movements?group_by=plan", timed(f"{base}&group_by=plan")),
            ("movements?filter=plan:…", timed(f"{base}&filter=plan:{plan}")),
            ("movements?filter=country:DE", timed(f"{base}&filter=country:DE")),
            ("movements?group_by=country", timed(f"{base}&group_by=country")),
            ("…?filter=country:DE&group_by=plan", timed(f"{base}&filter=country:DE&group_by=plan")),
        ]
    countries = len(by_country["groups"])
    print(
        f"{events:,} events, {movements:,} movements, {customers:,} customers, "
        f"{plans} plans, {countries} countries"
    )
    print(f"{'report':<40}{'median ms':>12}{'target':>10}{'met':>6}")
    targets = {"movements?group_by=plan", "movements?filter=country:DE"}  # issue 20's
    for name, ms in results:
        met = "-" if args.smoke or name not in targets else ("yes" if ms < TARGET_MS else "NO")
        print(f"{name:<40}{ms:>12.1f}{TARGET_MS:>10.0f}{met:>6}")
    for name, ms in results[1:]:
        print(f"{name} / ungrouped: {ms / results[0][1]:.1f}x")


def count_movements(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        found = conn.scalar(select(func.count()).select_from(LedgerMovement))
    engine.dispose()
    return int(found or 0)


COUNTRIES = ("DE", "FR", "US", "GB", "NL", "ES", "IT", "SE", "PL")


def give_countries(url: str) -> None:
    """A country for nine customers in ten (the tenth never seen as an object)."""
    engine = make_engine(url)
    with engine.begin() as conn:
        ids = sorted(
            conn.scalars(
                select(InboxEvent.customer_id).where(InboxEvent.customer_id.is_not(None)).distinct()
            )
        )
        rows = [
            {
                "id": cid,
                "country": COUNTRIES[n % len(COUNTRIES)],
                "shipping_country": None,
                "metadata_json": "{}",
                "deleted": False,
                "as_of": datetime.now(UTC),
                "event_id": f"evt_bench_{n}",
            }
            for n, cid in enumerate(ids)
            if n % 10
        ]
        for i in range(0, len(rows), 1000):
            conn.execute(insert(CustomerRow), rows[i : i + 1000])
        conn.exec_driver_sql("ANALYZE customers")
    engine.dispose()


if __name__ == "__main__":
    main()
