"""The pure cost of one reporting currency: converted period rows from daily buckets.

    python bench/fx_rows.py [--currencies usd,eur,gbp,jpy] [--keys 20] [--runs 7]

What the movements report adds to its queries when it converts: a year of daily buckets
(what the `ledger_daily` rollup hands over, whatever the number of movements) in each
currency, `--keys` bucket keys a day (type × kind × churn reason), converted into `usd`
with the shipped ECB history, as 12 monthly, 53 weekly and 366 daily rows; and, for
scale, the native `period_rows` of the same buckets, one currency at a time. Also the
one-off cost of parsing the shipped history. Prints medians; every figure is measured in
this run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reporting.fx import Converter, Native, converted_period_rows, converted_summary
from reporting.periods import Period
from reporting.rates import parse_eurofxref, shipped_history_bytes
from reporting.rows import KINDS, Bucket, Opening, period_rows

START, END = date(2025, 11, 1), date(2026, 11, 1)
REASONS = ["too_expensive", "missing_features", "switched_service", "unused", "unknown"]


def buckets(rng: random.Random, keys: int) -> list[Bucket]:
    """`keys` buckets a day for every day of [START, END), amounts in minor units."""
    choices: list[tuple[str, str | None, str | None, bool]] = [
        ("new", None, None, False),
        ("reactivation", None, None, False),
        *(("expansion", k, None, False) for k in KINDS),
        *(("contraction", k, None, False) for k in KINDS),
        *(("churn", None, r, d) for r in REASONS for d in (False, True)),
    ]
    out = []
    day = START
    while day < END:
        for type_, kind, reason, delinquent in rng.sample(choices, keys):
            out.append(
                Bucket(
                    day=day,
                    type=type_,
                    amount=rng.randint(1_000, 5_000_000),
                    count=rng.randint(1, 40),
                    kind=kind,
                    reason=reason,
                    delinquent=delinquent,
                )
            )
        day += timedelta(days=1)
    return out


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--currencies", default="usd,eur,gbp,jpy")
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(7)
    currencies = args.currencies.split(",")
    natives = {
        c: Native(
            Opening(rng.randint(10**8, 10**9), rng.randint(1_000, 10_000)), buckets(rng, args.keys)
        )
        for c in currencies
    }
    count = sum(len(n.buckets) for n in natives.values())
    data = shipped_history_bytes()
    parse_ms = median_ms(lambda: parse_eurofxref(data), max(3, args.runs // 2))
    rates = parse_eurofxref(data)
    print(f"shipped history: {rates!r}; parse {parse_ms:.1f} ms (once per process)")
    print(
        f"{count} buckets: {len(currencies)} currencies x {(END - START).days} days x {args.keys}"
    )
    for period in (Period.MONTH, Period.WEEK, Period.DAY):
        # A fresh converter each run: its cache of daily factors starts empty, as per report.
        converted = median_ms(
            lambda p=period: converted_period_rows(natives, Converter(rates, "usd"), START, END, p),
            args.runs,
        )
        native = median_ms(
            lambda p=period: [
                period_rows(n.opening, n.buckets, START, END, p) for n in natives.values()
            ],
            args.runs,
        )
        print(
            f"{period.value:>5}: converted {converted:7.1f} ms, native (all currencies) "
            f"{native:6.1f} ms, converted / native {converted / native:4.1f}x"
        )
    day = END - timedelta(days=1)
    lo = day - timedelta(days=29)
    standing = {c: n.opening for c, n in natives.items()}
    trailing = {
        c: Native(n.opening, [b for b in n.buckets if b.day >= lo]) for c, n in natives.items()
    }
    summary = median_ms(
        lambda: converted_summary(Converter(rates, "usd"), day, standing, None, trailing, lo, END),
        args.runs,
    )
    print(f"summary: converted {summary:7.1f} ms (trailing 30 days)")


if __name__ == "__main__":
    main()
