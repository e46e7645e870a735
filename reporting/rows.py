"""Movements → one SPEC §7 row per period, with exact rates. Pure.

The input is a list of `Bucket`s: movements already summed per UTC day, movement type,
kind and churn reason. The database hands over those sums (one GROUP BY), and
`buckets_from_movements` builds the same from plain movements, so tests and the naive
path use one formula. `PeriodRow` holds the figures exactly (rates as fractions) and is
serialized in one place, `PeriodRow.to_json`; the OpenAPI schema, the summary's
trailing window and the terminal tables take their columns from `FIELDS`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any, Literal, NamedTuple

from ledger.timeline import Kind, Movement, MovementType
from reporting.periods import Period, boundaries

KINDS = tuple(k.value for k in Kind)
#: Decimal places of every rate in JSON.
RATE_PLACES = 6

FieldKind = Literal["period", "balance", "flow", "customers", "rate", "breakdown"]


@dataclass(frozen=True)
class Field:
    """One key of a period row: its name, what it holds, and its terminal heading."""

    name: str
    kind: FieldKind
    heading: str | None = None  # None: not a terminal column
    percent: bool = True  # a rate shown as a percentage (the quick ratio is not)


#: The keys of a period row, in their JSON order.
FIELDS: tuple[Field, ...] = (
    Field("period_start", "period", "period"),
    Field("period_end", "period"),
    Field("starting_mrr", "balance", "starting"),
    Field("new", "flow", "new"),
    Field("expansion", "flow", "expansion"),
    Field("contraction", "flow", "contraction"),
    Field("churn", "flow", "churn"),
    Field("reactivation", "flow", "reactivation"),
    Field("ending_mrr", "balance", "ending"),
    Field("starting_customers", "customers"),
    Field("ending_customers", "customers", "customers"),
    Field("new_customers", "customers"),
    Field("reactivated_customers", "customers"),
    Field("churned_customers", "customers"),
    Field("customer_churn_rate", "rate"),
    Field("gross_mrr_churn_rate", "rate"),
    Field("net_mrr_churn_rate", "rate", "net churn"),
    Field("nrr", "rate", "NRR"),
    Field("grr", "rate"),
    Field("quick_ratio", "rate", "quick ratio", percent=False),
    Field("expansion_by_kind", "breakdown"),
    Field("contraction_by_kind", "breakdown"),
    Field("churn_by_reason", "breakdown"),
    Field("delinquent_churn", "breakdown"),
    Field("expansion_share", "rate"),
)

#: The key a converted row adds (SPEC §10): the revaluation of the MRR held through the
#: period, so that the row's identity closes; native rows have no such key.
FX_ADJUSTMENT = Field("fx_adjustment", "flow", "fx")
#: The keys of a converted period row: `FIELDS` with `fx_adjustment` before `ending_mrr`.
CONVERTED_FIELDS: tuple[Field, ...] = tuple(
    f for g in FIELDS for f in ((FX_ADJUSTMENT, g) if g.name == "ending_mrr" else (g,))
)


class Bucket(NamedTuple):
    """Movements of one day, type, kind and churn reason, summed.

    A named tuple, not a dataclass: a converted year reads tens of thousands of them, and
    a tuple is built several times faster.
    """

    day: date
    type: str
    amount: int
    count: int  # type: ignore[assignment]  # the field shadows tuple.count, on purpose
    kind: str | None = None
    reason: str | None = None  # churn: feedback, else reason, else "unknown"
    delinquent: bool = False


@dataclass(frozen=True)
class Opening:
    """MRR and paying customers at a boundary (what every movement before it adds up to)."""

    mrr: int = 0
    customers: int = 0

    def after(self, bucket: Bucket) -> Opening:
        """The standing once `bucket`'s movements have happened."""
        movement = MovementType(bucket.type)
        return Opening(
            self.mrr + movement.sign * bucket.amount,
            self.customers + movement.paying_delta * bucket.count,
        )


@dataclass(frozen=True)
class PeriodRow:
    """The SPEC §7 row of one period, exact: rates are fractions (None without a base)."""

    period_start: date
    period_end: date
    starting_mrr: int
    new: int
    expansion: int
    contraction: int
    churn: int
    reactivation: int
    starting_customers: int
    new_customers: int
    reactivated_customers: int
    churned_customers: int
    expansion_by_kind: Mapping[str, int]
    contraction_by_kind: Mapping[str, int]
    churn_by_reason: Mapping[str, int]
    delinquent_churn: int
    #: Converted rows only (SPEC §10): what exchange rates did to the MRR held; None in a
    #: native row, which has no such key.
    fx_adjustment: int | None = field(default=None, kw_only=True)

    @property
    def ending_mrr(self) -> int:
        """`starting + new + expansion + reactivation − contraction − churn`, plus the
        `fx_adjustment` of a converted row."""
        return (
            self.starting_mrr
            + self.new
            + self.expansion
            + self.reactivation
            - self.contraction
            - self.churn
            + (self.fx_adjustment or 0)
        )

    @property
    def ending_customers(self) -> int:
        return (
            self.starting_customers
            + self.new_customers
            + self.reactivated_customers
            - self.churned_customers
        )

    @property
    def ending(self) -> Opening:
        return Opening(self.ending_mrr, self.ending_customers)

    @property
    def customer_churn_rate(self) -> Fraction | None:
        return ratio(self.churned_customers, self.starting_customers)

    @property
    def gross_mrr_churn_rate(self) -> Fraction | None:
        return ratio(self.churn + self.contraction, self.starting_mrr)

    @property
    def net_mrr_churn_rate(self) -> Fraction | None:
        """Negative: net negative churn (expansion and reactivation outgrow the losses)."""
        losses = self.churn + self.contraction - self.expansion - self.reactivation
        return ratio(losses, self.starting_mrr)

    @property
    def nrr(self) -> Fraction | None:
        net = self.net_mrr_churn_rate
        return None if net is None else 1 - net

    @property
    def grr(self) -> Fraction | None:
        gross = self.gross_mrr_churn_rate
        return None if gross is None else 1 - gross

    @property
    def quick_ratio(self) -> Fraction | None:
        wins = self.new + self.expansion + self.reactivation
        return ratio(wins, self.churn + self.contraction)

    @property
    def expansion_share(self) -> Fraction | None:
        """Expansion ÷ (new + expansion + reactivation): the share of new MRR won from
        existing customers (ChartMogul's benchmark: 28.8 % in 2020, 32.3 % in 2023);
        None when nothing was won."""
        return ratio(self.expansion, self.new + self.expansion + self.reactivation)

    @property
    def fields(self) -> tuple[Field, ...]:
        """The keys of this row: `CONVERTED_FIELDS` when it is converted, else `FIELDS`."""
        return FIELDS if self.fx_adjustment is None else CONVERTED_FIELDS

    def to_json(self, kinds: Iterable[FieldKind] | None = None) -> dict[str, Any]:
        """The row as JSON: dates in ISO form, rates rounded to `RATE_PLACES`; only the
        fields of `kinds` when given (the summary's trailing window)."""
        wanted = None if kinds is None else set(kinds)
        doc: dict[str, Any] = {}
        for f in self.fields:
            if wanted is not None and f.kind not in wanted:
                continue
            value = getattr(self, f.name)
            if f.kind == "period":
                value = value.isoformat()
            elif f.kind == "rate":
                value = rounded(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            doc[f.name] = value
        return doc


def ratio(numerator: int, denominator: int) -> Fraction | None:
    return Fraction(numerator, denominator) if denominator else None


def rounded(rate: Fraction | None) -> float | None:
    """A rate as JSON shows it: a decimal rounded to `RATE_PLACES`, or null."""
    return None if rate is None else round(float(rate), RATE_PLACES)


def day_of(unix_seconds: int) -> date:
    return datetime.fromtimestamp(unix_seconds, UTC).date()


def buckets_from_movements(movements: Iterable[Movement]) -> list[Bucket]:
    """Sum plain ledger movements into buckets (the naive path, and the tests')."""
    sums: dict[tuple[date, str, str | None, str | None, bool], list[int]] = defaultdict(
        lambda: [0, 0]
    )
    for m in movements:
        key = (
            day_of(m.occurred_at),
            m.type.value,
            m.kind.value if m.kind else None,
            m.reason_key,
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
    opening = Opening()
    for b in buckets:
        if b.day < boundary:
            opening = opening.after(b)
    return opening


def period_rows(
    opening: Opening,
    buckets: Sequence[Bucket],
    start: date,
    end: date,
    period: Period,
) -> list[PeriodRow]:
    """One row per period of the snapped [start, end).

    `opening` is the state at the *snapped* start (`periods.snap(start, end, period)[0]`);
    buckets before it are ignored, so callers may pass every bucket or only those in range.
    """
    spans = boundaries(start, end, period)
    rows = []
    ordered = sorted((b for b in buckets if b.day >= spans[0][0]), key=lambda b: b.day)
    i = 0
    for lo, hi in spans:
        inside = []
        while i < len(ordered) and ordered[i].day < hi:
            inside.append(ordered[i])
            i += 1
        row = period_row(opening, inside, lo, hi)
        opening = row.ending
        rows.append(row)
    return rows


def period_row(opening: Opening, buckets: Iterable[Bucket], lo: date, hi: date) -> PeriodRow:
    """The row of one period from its opening standing and its buckets."""
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
    return PeriodRow(
        period_start=lo,
        period_end=hi,
        starting_mrr=opening.mrr,
        new=amounts[MovementType.NEW],
        expansion=amounts[MovementType.EXPANSION],
        contraction=amounts[MovementType.CONTRACTION],
        churn=amounts[MovementType.CHURN],
        reactivation=amounts[MovementType.REACTIVATION],
        starting_customers=opening.customers,
        new_customers=counts[MovementType.NEW],
        reactivated_customers=counts[MovementType.REACTIVATION],
        churned_customers=counts[MovementType.CHURN],
        expansion_by_kind=expansion_by_kind,
        contraction_by_kind=contraction_by_kind,
        churn_by_reason=dict(sorted(churn_by_reason.items())),
        delinquent_churn=delinquent,
    )
