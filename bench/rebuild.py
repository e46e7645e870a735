"""Rebuild: `mrr rebuild` of a large inbox, beside the rate of merely json-parsing the
same payloads.

    python bench/rebuild.py [--events 1000000] [--smoke]

Fills a fresh PostgreSQL inbox (BENCH_DATABASE_URL) with whole subscription lifecycles
(about ten events per customer) by COPY, times `json.loads` over every stored payload
(the payloads are read in chunks; only the parsing is timed), then runs the real
`mrr rebuild --json` and times it. Prints both rates and their ratio.

What the profiles said, before the bulk path (cProfile on the CPU clock, 100,000 events,
one process, a busy machine): 131 s of wall time for 84 s of CPU; of the CPU, parsing
payloads into snapshots 43 % (json.loads only 7 % of it), deriving timelines 20 %,
writing ledger rows and rollup deltas by executemany 21 %, reading the events 4 %.
Earlier fixes (Core executemany, plain row tuples, one lock statement per chunk,
ANALYZE as it goes, orphans by `NOT EXISTS`) had already taken the ORM, lock round
trips and sequential scans out of it.

Timing the pure pieces on the same payloads (2.6 kB on average), per event: json.loads
12 us when each result is dropped at once, as this benchmark's baseline does; 19 us
when a batch's results are kept, and 97 us when they are kept with the cyclic garbage
collector on (it rescans every live dict of the batch again and again); orjson 5 us;
`parse_event` on the parsed dict 24 us; `derive_ledger` 16 us. So the domain's own
pure functions cost about 3.5x json.loads, and the 0.25x target (4x json.loads per
event for everything) leaves almost nothing for reading and writing in one process.

Hence `pipeline.bulk_rebuild`: one snapshot read in customer order (no per-chunk
selects, deletes or lock round trips), each payload parsed once with orjson and the
collector off during the pass, rows written by COPY into fresh tables swapped in at
the end, and customer ranges spread over `--jobs` processes. On the 100,000 events
above it took 15.9 s of wall time and 7.4 s of CPU in one process (load average 3-5
from other work on the 2-core machine); with two processes it was no faster, as that
other work kept both cores busy. Under cProfile (wall clock) what is left is the
domain: `parse_event` 43 %, `derive_ledger` 26 %, orjson 7 %; reading, COPY and the
catch-up the rest, and about half the wall time is spent waiting on PostgreSQL
(reading the inbox in customer order, COPY into indexed tables).

Timing the two pure functions again (per event, 49,486 lifecycle events): parse_event
23 us, of which parsing the same few prices over and over was the largest part, and
derive_ledger 26 us, of which a Fraction per item per snapshot. A cache of parsed prices
keyed by the fields they are parsed from, and whole-number MRR for the commonest
subscriptions, brought them to 18 and 21 us: 0.243x -> 0.267x at 1,000,000 events.

Since issue 20 a rebuild also derives and stores each customer's ledger per plan,
product and interval (`ledger.segments.derive_with_segments`). These lifecycles draw
one to three of four prices for every snapshot, so nine customers in ten have several
values of every key: the worst case for it. A one-process bulk rebuild of 99,005 events
took 10.8 s before, 24.4 s after; cProfile puts a third of the time in the segments'
own `derive_ledger` calls (about six a customer), and most of the rest in pricing
discounted snapshots with Fractions and writing five times the rows. Pricing each
snapshot once for the ledger and every segment, deriving a value from the events of the
subscriptions that had it, and copying product segments from plan ones when each
product has one price took the first version's 177 s for 980,396 events to 136 s. A
customer who keeps one plan, product and interval costs no derivation at all.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime
from typing import Any

from harness import ROOT, bench_database, lifecycle_events

from models.db import make_engine
from tests.integration.processes import process_env

COLUMNS = "id, type, created, api_version, customer_id, payload, status, received_at, attempts"


def fill(url: str, customers: int, plan_variants: int = 1, rounds: int = 1) -> int:
    """COPY the lifecycles of `customers` customers into the inbox; returns the events.

    `plan_variants` > 1 gives each customer's prices one of that many ids per price
    (`price_pro` → `price_pro_v3`), so that the account has that many times the plans.
    `rounds` > 1 gives each customer that many independent sets of subscriptions (more
    events and movements per customer)."""
    engine = make_engine(url)
    raw = engine.raw_connection()
    now = datetime.now(UTC)
    total = 0
    try:
        cur = raw.cursor()
        step = 2_000
        for start, round_ in itertools.product(range(0, customers, step), range(rounds)):
            seed = start + 1 + round_ * 1_000_003
            events = lifecycle_events(min(step, customers - start), seed=seed)
            # Customer ids are unique per chunk: prefix them with the chunk (and the
            # subscription and event ids with the round too).
            tag = f"c{start}_" if round_ == 0 else f"c{start}r{round_}_"
            with cur.copy(f"COPY inbox_events ({COLUMNS}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for e in events:
                    obj = e["data"]["object"]
                    if plan_variants > 1:
                        rename_prices(obj, zlib.crc32(obj["customer"].encode()) % plan_variants)
                    obj["customer"] = f"c{start}_{obj['customer']}"
                    obj["id"] = f"{tag}{obj['id']}"
                    e["id"] = f"{tag}{e['id']}"
                    copy.write_row(
                        (
                            e["id"],
                            e["type"],
                            e["created"],
                            e.get("api_version"),
                            obj["customer"],
                            json.dumps(e),
                            "processed",
                            now,
                            0,
                        )
                    )
                    total += 1
            raw.commit()
            print(f"  stored {total:,} events", file=sys.stderr, end="\r")
        # As autovacuum would soon after a bulk load: without statistics the planner scans
        # the whole inbox for every chunk of customers. (On the driver's connection: the
        # pool's wrapper would keep the attribute and run ANALYZE in a transaction that
        # is rolled back, leaving no statistics.)
        raw.driver_connection.autocommit = True
        cur.execute("ANALYZE inbox_events")
    finally:
        raw.close()
        engine.dispose()
    print(file=sys.stderr)
    return total


def rename_prices(subscription: dict[str, Any], variant: int) -> None:
    """Give the subscription's prices (and legacy plans) the ids of variant `variant`."""
    for item in subscription["items"]["data"]:
        for field in ("price", "plan"):
            if isinstance(item.get(field), dict):
                item[field]["id"] = f"{item[field]['id']}_v{variant}"


def parse_rate(url: str) -> tuple[float, int]:
    """Events/s of `json.loads` alone over every stored payload (reading not timed)."""
    engine = make_engine(url)
    raw = engine.raw_connection()
    spent, count = 0.0, 0
    try:
        cur = raw.cursor(name="payloads")  # server-side cursor: chunks, not everything
        cur.itersize = 10_000
        cur.execute("SELECT payload FROM inbox_events")
        while rows := cur.fetchmany(10_000):
            payloads = [r[0] for r in rows]
            start = time.perf_counter()
            for payload in payloads:
                json.loads(payload)
            spent += time.perf_counter() - start
            count += len(payloads)
        raw.rollback()
    finally:
        raw.close()
        engine.dispose()
    return count / spent, count


def rebuild_rate(url: str, events: int) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "rebuild", "--json"],
        env=process_env({"DATABASE_URL": url}),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"mrr rebuild failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    assert result["events"] == events, result
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="tiny run, no target (CI)")
    args = parser.parse_args()
    events = 3_000 if args.smoke else args.events
    with bench_database("rebuild") as url:
        stored = fill(url, max(events // 10, 10))
        parsing, _ = parse_rate(url)
        rebuilding = rebuild_rate(url, stored)
    print(f"json.loads of the payloads: {parsing:10,.0f} events/s ({stored:,} events)")
    print(f"mrr rebuild:                {rebuilding:10,.0f} events/s")
    ratio = rebuilding / parsing
    print(f"rebuild / parse = {ratio:.3f}x")
    if not args.smoke:
        print(f"target >= 0.25x: {'met' if ratio >= 0.25 else 'NOT met'}")


if __name__ == "__main__":
    main()
