"""One reporting currency (SPEC §10): native figures → figures in the reporting currency,
with the exchange-rate moves kept apart from the movements. Pure: rates come in.

How each figure converts:

* a movement at the rate of its UTC day (buckets are already per day);
* an MRR level at a period boundary at the rate of the last day before the boundary,
  the same for the row it ends and the row it starts, so rows chain;
* every field is the exact sum of its converted parts, rounded once (half-even); a
  breakdown is split from its rounded field by largest remainder, so it sums to it;
* `fx_adjustment` = converted ending − converted starting − converted movements: the
  revaluation of the MRR held through the period (and the unit that one rounding per
  field may leave), so `ending = starting + new + expansion + reactivation − contraction
  − churn + fx_adjustment` holds to the unit;
* rates (churn, NRR, GRR, quick ratio) from the exact converted sums;
* customers: the sums of the covered currencies' counts;
* a currency the rates do not cover is left out of every figure and listed, with its
  native MRR at the document's end, in `unconverted` (none at 0).

Every exact sum of a row shares one denominator (the least common multiple of its
factors' denominators), so a year of daily buckets is integer arithmetic, not Fractions.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import Any, TypeVar

from ledger.timeline import Kind, MovementType
from reporting.cohorts import CohortFlow, cohort_table
from reporting.currencies import exponent
from reporting.errors import NoRate
from reporting.periods import Period, boundaries
from reporting.rates import RateHistory
from reporting.rows import KINDS, Bucket, Opening, PeriodRow, ratio, rounded
from reporting.summary import summary
from reporting.trials import TrialRow

K = TypeVar("K", bound=Hashable)

#: One converted part of a row: movement type, kind or churn reason, delinquent.
Part = tuple[MovementType, str, bool]

_ONE_DAY = timedelta(days=1)


class Converter:
    """Minor units of any covered currency → minor units of `target`, at a day's rates.

    Holds a cache of factors per (currency, day): a report asks for each at most once.
    """

    def __init__(self, rates: RateHistory, target: str) -> None:
        """Raises `NoRate` when the rates do not cover `target` (SPEC §10: no rate on the
        history's newest day), since no figure could then be converted into it."""
        if not rates.covers(target):
            raise NoRate(
                f"the exchange rates do not cover the reporting currency {target!r} "
                f"(no rate on {rates.newest.isoformat()}, the newest day)"
            )
        self.rates = rates
        self.target = target
        self._factors: dict[tuple[str, date], Fraction] = {}

    def covers(self, currency: str) -> bool:
        """Whether `currency` converts (else it belongs in `unconverted`)."""
        return self.rates.covers(currency)

    def factor(self, currency: str, day: date) -> Fraction:
        """Minor units of the target per minor unit of `currency` at `day`'s rates: the
        cross rate through EUR scaled by the two currencies' Stripe exponents.

        Raises `NoRate` for a currency not covered, or a day before its first rate.
        """
        key = (currency, day)
        found = self._factors.get(key)
        if found is None:
            if not self.rates.covers(currency):
                raise NoRate(f"the exchange rates do not cover {currency!r}")
            rate = self.rates.rate(currency, self.target, day)
            if rate is None:
                raise NoRate(
                    f"no exchange rate for {currency} into {self.target} on or before "
                    f"{day.isoformat()}"
                )
            found = rate * Fraction(10) ** (exponent(self.target) - exponent(currency))
            self._factors[key] = found
        return found

    def exact(self, amount: int, currency: str, day: date) -> Fraction:
        """`amount` minor units of `currency` in minor units of the target, exactly; an
        amount of 0 needs no rate."""
        return Fraction(0) if amount == 0 else amount * self.factor(currency, day)

    def convert(self, amount: int, currency: str, day: date) -> int:
        """`amount` converted and rounded half-even to a minor unit of the target."""
        return round(self.exact(amount, currency, day))

    def exact_total(self, amounts: Mapping[str, int], day: date) -> Fraction:
        """The exact sum of the covered currencies' `amounts` at `day`'s rates;
        currencies not covered are left out (see `unconverted`)."""
        numerators, denominator = self.sums({(c, day): {None: a} for c, a in amounts.items()})
        return Fraction(numerators.get(None, 0), denominator)

    def total(self, amounts: Mapping[str, int], day: date) -> int:
        """`exact_total` rounded once (half-even): e.g. `/status`'s converted MRR."""
        return round(self.exact_total(amounts, day))

    def sums(self, cells: Mapping[tuple[str, date], Mapping[K, int]]) -> tuple[dict[K, int], int]:
        """Σ amount × factor per key over `cells` ({(currency, day): {key: amount}}),
        as integer numerators over one common denominator. Currencies not covered are
        skipped; an all-zero cell needs no rate."""
        weighted: list[tuple[Fraction, Mapping[K, int]]] = []
        for (currency, day), amounts in cells.items():
            if self.covers(currency) and any(amounts.values()):
                weighted.append((self.factor(currency, day), amounts))
        denominator = math.lcm(*(f.denominator for f, _ in weighted)) if weighted else 1
        numerators: dict[K, int] = defaultdict(int)
        for f, amounts in weighted:
            weight = f.numerator * (denominator // f.denominator)
            for key, amount in amounts.items():
                numerators[key] += amount * weight
        return numerators, denominator


def round_half_even(numerator: int, denominator: int) -> int:
    """`numerator / denominator` (denominator > 0) to the nearest integer, ties to even."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2):
        quotient += 1
    return quotient


def split(total: int, parts: Mapping[K, Fraction]) -> dict[K, int]:
    """Whole units for each exact part, summing to `total`, by largest remainder.

    Each part gets its floor; the units left go one each to the largest remainders
    (ties: the earlier key). `total` must be the rounded sum of the parts (so the units
    left number between 0 and the count of parts).
    """
    denominator = math.lcm(*(p.denominator for p in parts.values())) if parts else 1
    scaled = {k: p.numerator * (denominator // p.denominator) for k, p in parts.items()}
    return _split(total, scaled, denominator)


def _split(total: int, numerators: Mapping[K, int], denominator: int) -> dict[K, int]:
    shares = {k: n // denominator for k, n in numerators.items()}
    left = total - sum(shares.values())
    if not 0 <= left <= len(shares):
        raise ValueError(f"{total} is not the rounded sum of the parts")
    by_remainder = sorted(
        numerators, key=lambda k: numerators[k] - shares[k] * denominator, reverse=True
    )  # sorted() is stable: equal remainders keep the keys' order
    for k in by_remainder[:left]:
        shares[k] += 1
    return shares


@dataclass(frozen=True)
class Native:
    """One currency's movements as `reporting.rows` takes them: its MRR and paying
    customers at the first boundary, and its daily buckets (those before the first
    boundary or from the last on are ignored)."""

    opening: Opening
    buckets: Sequence[Bucket]


@dataclass(frozen=True)
class Exact:
    """A converted row's figures before rounding, for its rates."""

    starting_mrr: Fraction
    new: Fraction
    expansion: Fraction
    contraction: Fraction
    churn: Fraction
    reactivation: Fraction
    ending_mrr: Fraction


@dataclass(frozen=True, kw_only=True)
class ConvertedRow(PeriodRow):
    """A period row in the reporting currency: `fx_adjustment` is set, and the MRR rates
    come from the exact converted sums (`exact`), not from the rounded fields."""

    exact: Exact

    @property
    def gross_mrr_churn_rate(self) -> Fraction | None:
        e = self.exact
        return _exact_ratio(e.churn + e.contraction, e.starting_mrr)

    @property
    def net_mrr_churn_rate(self) -> Fraction | None:
        e = self.exact
        return _exact_ratio(e.churn + e.contraction - e.expansion - e.reactivation, e.starting_mrr)

    @property
    def quick_ratio(self) -> Fraction | None:
        e = self.exact
        return _exact_ratio(e.new + e.expansion + e.reactivation, e.churn + e.contraction)

    @property
    def expansion_share(self) -> Fraction | None:
        e = self.exact
        return _exact_ratio(e.expansion, e.new + e.expansion + e.reactivation)


@dataclass(frozen=True)
class ConvertedPeriods:
    """Rows in `currency`, and each currency left out with its native MRR at the end."""

    currency: str
    rows: list[ConvertedRow]
    unconverted: dict[str, int]


def converted_period_rows(
    natives: Mapping[str, Native],
    converter: Converter,
    start: date,
    end: date,
    period: Period,
) -> ConvertedPeriods:
    """One converted row per period of the snapped [start, end) (as `period_rows`).

    `natives` maps each currency to its opening at the *snapped* start and its buckets.
    """
    return converted_rows(natives, converter, boundaries(start, end, period))


def converted_rows(
    natives: Mapping[str, Native],
    converter: Converter,
    spans: Sequence[tuple[date, date]],
) -> ConvertedPeriods:
    """One converted row per consecutive `[lo, hi)` span (e.g. the summary's 30 days).

    Raises `NoRate` when a non-zero amount of a covered currency is dated before the
    history's first rate of that currency.
    """
    if not spans:
        return ConvertedPeriods(converter.target, [], {})
    first, last = spans[0][0], spans[-1][1]
    starts = [lo for lo, _ in spans]
    # Per span: {(currency, day): {part: amount}}, the counts per movement type, and
    # each currency's signed change of MRR.
    cells: list[dict[tuple[str, date], dict[Part, int]]] = [defaultdict(dict) for _ in spans]
    counts: list[dict[MovementType, int]] = [dict.fromkeys(MovementType, 0) for _ in spans]
    changes: list[dict[str, int]] = [defaultdict(int) for _ in spans]
    levels: dict[str, int] = {}
    customers = 0
    unconverted: dict[str, int] = {}
    parts_of: dict[tuple[str, str | None, str | None, bool], tuple[MovementType, int, Part]] = {}
    for currency, native in natives.items():
        covered = converter.covers(currency)
        mrr = native.opening.mrr
        if covered:
            levels[currency] = mrr
            customers += native.opening.customers
        span_of: dict[date, int] = {}
        for b in native.buckets:
            day = b.day
            if not first <= day < last:
                continue
            # One dict lookup per bucket for what its key means (a year is tens of
            # thousands of buckets over a few dozen keys).
            key = (b.type, b.kind, b.reason, b.delinquent)
            meaning = parts_of.get(key)
            if meaning is None:
                meaning = parts_of[key] = _part(b)
            movement, sign, part = meaning
            signed = sign * b.amount
            if not covered:
                mrr += signed
                continue
            i = span_of.get(day)
            if i is None:
                i = span_of[day] = bisect_right(starts, day) - 1
            parts = cells[i][(currency, day)]
            parts[part] = parts.get(part, 0) + b.amount
            counts[i][movement] += b.count
            changes[i][currency] += signed
        if not covered and mrr:
            unconverted[currency] = mrr

    rows = []
    starting = _level(converter, levels, first)
    for i, (lo, hi) in enumerate(spans):
        for currency, change in changes[i].items():
            levels[currency] += change
        ending = _level(converter, levels, hi)
        row = _row(converter, lo, hi, starting, ending, cells[i], counts[i], customers)
        rows.append(row)
        customers = row.ending_customers
        starting = ending
    return ConvertedPeriods(converter.target, rows, dict(sorted(unconverted.items())))


def converted_summary(
    converter: Converter,
    day: date,
    standing: Mapping[str, Opening],
    scheduled_churn: Mapping[str, int] | None,
    trailing: Mapping[str, Native],
    lo: date,
    hi: date,
) -> dict[str, Any]:
    """The `/reports/summary` figures in the reporting currency (SPEC §7, §10).

    `standing`: each currency's MRR and paying customers as of `as_of`, converted at the
    rate of `day` (`as_of`'s UTC date); `scheduled_churn` likewise (None: unknown, as
    for a past `as_of`); `trailing`: each currency's opening at `lo` and buckets of the
    trailing window [lo, hi). Returns `reporting.summary.summary`'s document with the
    reporting currency as `currency`, `fx_adjustment` in `trailing_30d`, and
    `unconverted` {currency: native MRR as of `as_of`}. The caller adds `as_of` and
    `currencies`, as for a native summary.
    """
    mrr = converter.exact_total({c: s.mrr for c, s in standing.items()}, day)
    customers = sum(s.customers for c, s in standing.items() if converter.covers(c))
    scheduled = converter.exact_total(scheduled_churn or {}, day)
    row = converted_rows(trailing, converter, [(lo, hi)]).rows[0]
    doc = summary(converter.target, mrr, customers, scheduled, row)
    if scheduled_churn is None:
        doc["scheduled_churn"] = None
    doc["unconverted"] = unconverted({c: s.mrr for c, s in standing.items()}, converter.rates)
    return doc


def converted_cohort_table(
    flows: Mapping[str, Iterable[CohortFlow]],
    converter: Converter,
    start: date,
    end: date,
) -> list[dict[str, Any]]:
    """`reporting.cohorts.cohort_table` over every covered currency, in the reporting
    currency: each cohort's amounts at the rate of the first day of the cohort's month,
    so exchange rates move no retention figure; customers summed. Flows of currencies
    not covered are left out (list them with `unconverted`)."""
    tables = {
        c: cohort_table(f, start, end) for c, f in sorted(flows.items()) if converter.covers(c)
    }
    combined = cohort_table([], start, end)
    for i, row in enumerate(combined):
        cohort = date.fromisoformat(row["cohort"] + "-01")
        natives = [(c, table[i]) for c, table in tables.items()]
        new_mrr = converter.exact_total({c: r["new_mrr"] for c, r in natives}, cohort)
        size = sum(r["customers"] for _, r in natives)
        row["customers"] = size
        row["new_mrr"] = round(new_mrr)
        for j, cell in enumerate(row["months"]):
            mrr = converter.exact_total({c: r["months"][j]["mrr"] for c, r in natives}, cohort)
            customers = sum(r["months"][j]["customers"] for _, r in natives)
            cell["customers"] = customers
            cell["customer_retention"] = rounded(ratio(customers, size))
            cell["mrr"] = round(mrr)
            cell["revenue_retention"] = rounded(_exact_ratio(mrr, new_mrr))
    return combined


def converted_trial_rows(
    natives: Mapping[str, Sequence[TrialRow]],
    converter: Converter,
    spans: Sequence[tuple[date, date]],
) -> list[TrialRow]:
    """Every currency's trial funnel (its rows over `spans`) as one: the counts of the
    covered currencies summed, as customers are, and the pipeline MRR at each span's end
    converted as an MRR level is, at the rate of the last day before it."""
    covered = {c: rows for c, rows in sorted(natives.items()) if converter.covers(c)}
    found = []
    for i, (lo, hi) in enumerate(spans):
        at_span = {c: rows[i] for c, rows in covered.items()}
        found.append(
            TrialRow(
                period_start=lo,
                period_end=hi,
                trials_started=sum(r.trials_started for r in at_span.values()),
                trials_converted=sum(r.trials_converted for r in at_span.values()),
                trials_lost=sum(r.trials_lost for r in at_span.values()),
                trial_pipeline_mrr=round(
                    _level(converter, {c: r.trial_pipeline_mrr for c, r in at_span.items()}, hi)
                ),
            )
        )
    return found


def unconverted(native_mrr: Mapping[str, int], rates: RateHistory) -> dict[str, int]:
    """The `unconverted` object of a converted document: each currency the rates do not
    cover, with its native MRR at the document's end; none listed at 0."""
    return {c: m for c, m in sorted(native_mrr.items()) if m and not rates.covers(c)}


def _part(b: Bucket) -> tuple[MovementType, int, Part]:
    """What a bucket's key means: its movement, the movement's sign, and the breakdown
    it adds to (its kind for expansion and contraction; reason and whether delinquent
    for churn)."""
    movement = MovementType(b.type)
    if movement is MovementType.CHURN:
        part: Part = (movement, b.reason or "unknown", b.delinquent)
    elif movement in (MovementType.EXPANSION, MovementType.CONTRACTION):
        part = (movement, b.kind or Kind.OTHER.value, False)
    else:
        part = (movement, "", False)
    return movement, movement.sign, part


def _level(converter: Converter, levels: Mapping[str, int], boundary: date) -> Fraction:
    """MRR levels at `boundary`, at the rate of the last day before it, exactly."""
    return converter.exact_total(levels, boundary - _ONE_DAY)


def _row(
    converter: Converter,
    lo: date,
    hi: date,
    starting: Fraction,
    ending: Fraction,
    cells: Mapping[tuple[str, date], Mapping[Part, int]],
    counts: Mapping[MovementType, int],
    customers: int,
) -> ConvertedRow:
    numerators, denominator = converter.sums(cells)
    by_type: dict[MovementType, int] = dict.fromkeys(MovementType, 0)
    for (movement, _, _), n in numerators.items():
        by_type[movement] += n
    field = {t: round_half_even(n, denominator) for t, n in by_type.items()}

    def parts(movement: MovementType, keys: Iterable[str]) -> dict[str, int]:
        found: dict[str, int] = dict.fromkeys(keys, 0)
        for (t, key, _), n in numerators.items():
            if t is movement:
                found[key] = found.get(key, 0) + n
        return _split(field[movement], found, denominator)

    # Churn split two ways, delinquent and voluntary, so that the delinquent share is
    # whole units of the rounded churn.
    delinquent = sum(n for (t, _, d), n in numerators.items() if t is MovementType.CHURN and d)
    voluntary = by_type[MovementType.CHURN] - delinquent
    churned = {True: delinquent, False: voluntary}
    delinquent_churn = _split(field[MovementType.CHURN], churned, denominator)[True]

    flows = (
        field[MovementType.NEW]
        + field[MovementType.EXPANSION]
        + field[MovementType.REACTIVATION]
        - field[MovementType.CONTRACTION]
        - field[MovementType.CHURN]
    )
    starting_mrr, ending_mrr = round(starting), round(ending)
    return ConvertedRow(
        period_start=lo,
        period_end=hi,
        starting_mrr=starting_mrr,
        new=field[MovementType.NEW],
        expansion=field[MovementType.EXPANSION],
        contraction=field[MovementType.CONTRACTION],
        churn=field[MovementType.CHURN],
        reactivation=field[MovementType.REACTIVATION],
        starting_customers=customers,
        new_customers=counts[MovementType.NEW],
        reactivated_customers=counts[MovementType.REACTIVATION],
        churned_customers=counts[MovementType.CHURN],
        expansion_by_kind=parts(MovementType.EXPANSION, KINDS),
        contraction_by_kind=parts(MovementType.CONTRACTION, KINDS),
        # Reasons in order, so that equal remainders go to the same reason every time.
        churn_by_reason=parts(MovementType.CHURN, _reasons(numerators)),
        delinquent_churn=delinquent_churn,
        fx_adjustment=ending_mrr - starting_mrr - flows,
        exact=Exact(
            starting_mrr=starting,
            new=Fraction(by_type[MovementType.NEW], denominator),
            expansion=Fraction(by_type[MovementType.EXPANSION], denominator),
            contraction=Fraction(by_type[MovementType.CONTRACTION], denominator),
            churn=Fraction(by_type[MovementType.CHURN], denominator),
            reactivation=Fraction(by_type[MovementType.REACTIVATION], denominator),
            ending_mrr=ending,
        ),
    )


def _reasons(numerators: Mapping[Part, int]) -> list[str]:
    return sorted({key for (t, key, _) in numerators if t is MovementType.CHURN})


def row_figure(
    row: PeriodRow,
    movement_type: MovementType,
    kind: str | None = None,
    reason: str | None = None,
    delinquent: bool | None = None,
) -> int | None:
    """The figure of `row` that a drill-down selects (SPEC §12): a movement type's
    field, one lever of `expansion_by_kind`/`contraction_by_kind`, one reason of
    `churn_by_reason`, `delinquent_churn` (or the voluntary rest); None when the
    selection is no single figure of the row (a reason and delinquency at once)."""
    if kind is not None:
        by_kind = (
            row.expansion_by_kind
            if movement_type is MovementType.EXPANSION
            else row.contraction_by_kind
        )
        return by_kind.get(kind, 0)
    if reason is not None and delinquent is not None:
        return None
    if reason is not None:
        return row.churn_by_reason.get(reason, 0)
    if delinquent is not None:
        return row.delinquent_churn if delinquent else row.churn - row.delinquent_churn
    return int(getattr(row, movement_type.value))


def allot(figure: int | None, exact: Sequence[Fraction]) -> list[int]:
    """Whole units for each exact converted amount, summing to `figure` (the rounded
    figure they make up; None: their sum rounded half-even) by largest remainder, ties
    to the earlier amount."""
    parts = dict(enumerate(exact))
    if figure is None:
        figure = round(sum(exact, Fraction(0)))
    return list(split(figure, parts).values()) if parts else []


def _exact_ratio(numerator: Fraction, denominator: Fraction) -> Fraction | None:
    return numerator / denominator if denominator else None
