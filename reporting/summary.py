"""The summary of one currency: MRR, ARR, ARPA, trailing rates, LTV and a projection
(SPEC §7). Pure."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from reporting.rows import FieldKind, PeriodRow, rounded

#: What of the trailing window's row the summary shows: its dates, flows and rates.
TRAILING_KINDS: tuple[FieldKind, ...] = ("period", "flow", "rate")


def projection(mrr: int | Fraction, net_rate: Fraction | None, months: int = 12) -> list[int]:
    """MRR for each of the next `months` months compounding the monthly net MRR churn rate.

    `mrr × (1 − rate)^k`, exact, rounded half-even per month; no rate, no change.
    """
    keep = Fraction(1) - (net_rate or 0)
    return [round(mrr * keep**k) for k in range(1, months + 1)]


def summary(
    currency: str,
    mrr: int | Fraction,
    customers: int,
    scheduled_churn: int | Fraction,
    trailing: PeriodRow,
) -> dict[str, Any]:
    """The `/reports/summary` figures of one currency.

    `trailing` is the row of the trailing 30 days; its exact rates drive `ltv` and the
    projection, so neither compounds a rounded rate. `mrr` and `scheduled_churn` may be
    exact converted sums (SPEC §10): each figure is rounded once (half-even) from them,
    and `arr` is 12 × the `mrr` shown.
    """
    shown = round(mrr)
    arpa = Fraction(mrr) / customers if customers else None
    customer_churn = trailing.customer_churn_rate
    ltv = round(arpa / customer_churn) if arpa is not None and customer_churn else None
    return {
        "currency": currency,
        "mrr": shown,
        "arr": 12 * shown,
        "customers": customers,
        "arpa": None if arpa is None else round(arpa),
        "scheduled_churn": round(scheduled_churn),
        "trailing_30d": trailing.to_json(TRAILING_KINDS),
        "customer_churn_rate": rounded(customer_churn),
        "gross_mrr_churn_rate": rounded(trailing.gross_mrr_churn_rate),
        "net_mrr_churn_rate": rounded(trailing.net_mrr_churn_rate),
        "expansion_share": rounded(trailing.expansion_share),
        "ltv": ltv,
        "projection": projection(mrr, trailing.net_mrr_churn_rate),
    }
