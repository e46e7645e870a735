"""Cohorts: customers grouped by the month of their first `new` movement (SPEC §7)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from ledger.timeline import MovementType
from reporting.periods import Period, boundaries
from reporting.rows import ratio, rounded


@dataclass(frozen=True)
class CohortFlow:
    """Movements of one cohort's customers in one calendar month, summed per type."""

    cohort: date  # first day of the month of the customers' first `new`
    month: date  # first day of the month the movements happened in
    type: str
    amount: int
    count: int


def cohort_table(flows: Iterable[CohortFlow], start: date, end: date) -> list[dict[str, Any]]:
    """One row per cohort month in [start, end), each with every month up to `end`.

    Per month: paying customers and their share of the cohort (customer retention),
    the cohort's MRR and its ratio to the cohort's new MRR (revenue retention, above 1
    when expansion outgrows churn). Rates are `null` for an empty cohort.
    """
    months = [lo for lo, _ in boundaries(start, end, Period.MONTH)]
    if not months:
        return []
    by_cohort: dict[date, dict[date, dict[str, tuple[int, int]]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for f in flows:
        by_cohort[f.cohort][f.month][f.type] = (f.amount, f.count)
    rows = []
    for cohort in months:
        flows_of = by_cohort.get(cohort, {})
        new_mrr, size = flows_of.get(cohort, {}).get(MovementType.NEW, (0, 0))
        mrr = customers = 0
        cells = []
        for offset, month in enumerate(m for m in months if m >= cohort):
            sums = flows_of.get(month, {})
            for type_, (amount, count) in sums.items():
                movement = MovementType(type_)
                mrr += movement.sign * amount
                customers += movement.paying_delta * count
            cells.append(
                {
                    "month": month.isoformat()[:7],
                    "offset": offset,
                    "customers": customers,
                    "customer_retention": rounded(ratio(customers, size)),
                    "mrr": mrr,
                    "revenue_retention": rounded(ratio(mrr, new_mrr)),
                }
            )
        rows.append(
            {
                "cohort": cohort.isoformat()[:7],
                "customers": size,
                "new_mrr": new_mrr,
                "months": cells,
            }
        )
    return rows
