"""Movements → per-period rows, rates, summary and projection (SPEC §7). Pure.

The input is a list of `Bucket`s: movements already summed per UTC day, movement
type, kind and churn reason. The database hands over those sums (one GROUP BY), and
`buckets_from_movements` builds the same from plain movements, so tests and the
naive path use one formula.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any

from ledger.timeline import Kind, Movement, MovementType
from reporting.periods import Period, boundaries

KINDS = tuple(k.value for k in Kind)
RATE_PLACES = 6


@dataclass(frozen=True)
class Bucket:
    """Movements of one day, type, kind and churn reason, summed."""

    day: date
    type: str
    amount: int
    count: int
    kind: str | None = None
    reason: str | None = None  # churn: feedback, else reason, else "unknown"
    delinquent: bool = False


@dataclass(frozen=True)
class Opening:
    """MRR and paying customers at a boundary (what every movement before it adds up to)."""

    mrr: int = 0
    customers: int = 0


def churn_reason_key(feedback: str | None, reason: str | None) -> str:
    """SPEC §7: the churned subscription's feedback, else its reason, else `unknown`."""
    return feedback or reason or "unknown"


def day_of(unix_seconds: int) -> date:
    return datetime.fromtimestamp(unix_seconds, UTC).date()


def buckets_from_movements(movements: Iterable[Movement]) -> list[Bucket]:
    """Sum plain ledger movements into buckets (the naive path, and the tests')."""
    sums: dict[tuple[date, str, str | None, str | None, bool], list[int]] = defaultdict(
        lambda: [0, 0]
    )
    for m in movements:
        reason = (
            churn_reason_key(m.churn_feedback, m.churn_reason)
            if m.type is MovementType.CHURN
            else None
        )
        key = (
            day_of(m.occurred_at),
            m.type.value,
            m.kind.value if m.kind else None,
            reason,
            m.delinquent,
        )
        sums[key][0] += m.amount
        sums[key][1] += 1
    return [
        Bucket(
            day=k[0], type=k[1], kind=k[2], reason=k[3], delinquent=k[4], amount=v[0], count=v[1]
        )
        for k, v in sorted(sums.items(), key=lambda kv: repr(kv[0]))
    ]


def opening_before(buckets: Iterable[Bucket], boundary: date) -> Opening:
    """Opening MRR and customers at `boundary` from every bucket dated before it."""
    mrr = customers = 0
    for b in buckets:
        if b.day < boundary:
            mrr, customers = _advance(mrr, customers, b)
    return Opening(mrr, customers)


def period_rows(
    opening: Opening,
    buckets: Sequence[Bucket],
    start: date,
    end: date,
    period: Period,
) -> list[dict[str, Any]]:
    """One SPEC §7 row per period of the snapped [start, end).

    `opening` is the state at the *snapped* start (`periods.snap(start, end, period)[0]`);
    buckets before it are ignored, so callers may pass every bucket or only those in range.
    """
    spans = boundaries(start, end, period)
    rows = []
    mrr, customers = opening.mrr, opening.customers
    ordered = sorted((b for b in buckets if b.day >= spans[0][0]), key=lambda b: b.day)
    i = 0
    for lo, hi in spans:
        inside = []
        while i < len(ordered) and ordered[i].day < hi:
            inside.append(ordered[i])
            i += 1
        row = period_row(Opening(mrr, customers), inside, lo, hi)
        mrr, customers = row["ending_mrr"], row["ending_customers"]
        rows.append(row)
    return rows


def period_row(opening: Opening, buckets: Iterable[Bucket], lo: date, hi: date) -> dict[str, Any]:
    """The SPEC §7 row of one period from its opening state and its buckets."""
    amounts = dict.fromkeys(MovementType, 0)
    counts = dict.fromkeys(MovementType, 0)
    expansion_by_kind = dict.fromkeys(KINDS, 0)
    contraction_by_kind = dict.fromkeys(KINDS, 0)
    churn_by_reason: dict[str, int] = {}
    delinquent = 0
    for b in buckets:
        t = MovementType(b.type)
        amounts[t] += b.amount
        counts[t] += b.count
        if t is MovementType.EXPANSION:
            expansion_by_kind[b.kind or Kind.OTHER.value] += b.amount
        elif t is MovementType.CONTRACTION:
            contraction_by_kind[b.kind or Kind.OTHER.value] += b.amount
        elif t is MovementType.CHURN:
            reason = b.reason or "unknown"
            churn_by_reason[reason] = churn_by_reason.get(reason, 0) + b.amount
            if b.delinquent:
                delinquent += b.amount
    new, expansion = amounts[MovementType.NEW], amounts[MovementType.EXPANSION]
    reactivation = amounts[MovementType.REACTIVATION]
    contraction, churn = amounts[MovementType.CONTRACTION], amounts[MovementType.CHURN]
    starting = opening.mrr
    ending = starting + new + expansion + reactivation - contraction - churn
    churned_customers = counts[MovementType.CHURN]
    ending_customers = (
        opening.customers
        + counts[MovementType.NEW]
        + counts[MovementType.REACTIVATION]
        - churned_customers
    )
    gross = _ratio(churn + contraction, starting)
    net = _ratio(churn + contraction - expansion - reactivation, starting)
    return {
        "period_start": lo.isoformat(),
        "period_end": hi.isoformat(),
        "starting_mrr": starting,
        "new": new,
        "expansion": expansion,
        "contraction": contraction,
        "churn": churn,
        "reactivation": reactivation,
        "ending_mrr": ending,
        "starting_customers": opening.customers,
        "ending_customers": ending_customers,
        "new_customers": counts[MovementType.NEW],
        "reactivated_customers": counts[MovementType.REACTIVATION],
        "churned_customers": churned_customers,
        "customer_churn_rate": _rate(_ratio(churned_customers, opening.customers)),
        "gross_mrr_churn_rate": _rate(gross),
        "net_mrr_churn_rate": _rate(net),
        "nrr": _rate(None if net is None else 1 - net),
        "grr": _rate(None if gross is None else 1 - gross),
        "quick_ratio": _rate(_ratio(new + expansion + reactivation, churn + contraction)),
        "expansion_by_kind": expansion_by_kind,
        "contraction_by_kind": contraction_by_kind,
        "churn_by_reason": dict(sorted(churn_by_reason.items())),
        "delinquent_churn": delinquent,
    }


def projection(mrr: int, net_rate: Fraction | None, months: int = 12) -> list[int]:
    """MRR for each of the next `months` months compounding the monthly net MRR churn rate.

    `mrr × (1 − rate)^k`, exact, rounded half-even per month; no rate, no change.
    """
    keep = Fraction(1) - (net_rate or 0)
    return [round(mrr * keep**k) for k in range(1, months + 1)]


def summary(
    currency: str,
    mrr: int,
    customers: int,
    scheduled_churn: int,
    trailing: dict[str, Any],
    trailing_net: Fraction | None,
    trailing_customer_churn: Fraction | None,
) -> dict[str, Any]:
    """The `/reports/summary` figures of one currency (SPEC §7).

    `trailing` is the period row of the trailing 30 days; the exact rates are passed
    beside it so `ltv` and `projection` do not compound a rounded rate.
    """
    arpa = Fraction(mrr, customers) if customers else None
    ltv = None
    if arpa is not None and trailing_customer_churn:
        ltv = round(arpa / trailing_customer_churn)
    return {
        "currency": currency,
        "mrr": mrr,
        "arr": 12 * mrr,
        "customers": customers,
        "arpa": None if arpa is None else round(arpa),
        "scheduled_churn": scheduled_churn,
        "trailing_30d": {
            key: trailing[key]
            for key in (
                "period_start",
                "period_end",
                "new",
                "expansion",
                "contraction",
                "churn",
                "reactivation",
                "customer_churn_rate",
                "gross_mrr_churn_rate",
                "net_mrr_churn_rate",
                "nrr",
                "grr",
                "quick_ratio",
            )
        },
        "customer_churn_rate": trailing["customer_churn_rate"],
        "gross_mrr_churn_rate": trailing["gross_mrr_churn_rate"],
        "net_mrr_churn_rate": trailing["net_mrr_churn_rate"],
        "ltv": ltv,
        "projection": projection(mrr, trailing_net),
    }


def exact_rates(row: dict[str, Any]) -> tuple[Fraction | None, Fraction | None]:
    """(net MRR churn rate, customer churn rate) of a period row, as exact fractions."""
    net = _ratio(
        row["churn"] + row["contraction"] - row["expansion"] - row["reactivation"],
        row["starting_mrr"],
    )
    return net, _ratio(row["churned_customers"], row["starting_customers"])


def _advance(mrr: int, customers: int, b: Bucket) -> tuple[int, int]:
    t = MovementType(b.type)
    if t in (MovementType.NEW, MovementType.REACTIVATION):
        return mrr + b.amount, customers + b.count
    if t is MovementType.EXPANSION:
        return mrr + b.amount, customers
    if t is MovementType.CONTRACTION:
        return mrr - b.amount, customers
    return mrr - b.amount, customers - b.count


def _ratio(numerator: int, denominator: int) -> Fraction | None:
    return Fraction(numerator, denominator) if denominator else None


def _rate(value: Fraction | None) -> float | None:
    return None if value is None else round(float(value), RATE_PLACES)
