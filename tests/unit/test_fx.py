"""Figures in one reporting currency (SPEC §10) against hand-computed conversions, and
properties over random ledgers and rate tables."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reporting.cohorts import CohortFlow, cohort_table
from reporting.currencies import exponent
from reporting.errors import NoRate
from reporting.fx import (
    Converter,
    Native,
    converted_cohort_table,
    converted_period_rows,
    converted_rows,
    converted_summary,
    converted_trial_rows,
    round_half_even,
    split,
    unconverted,
)
from reporting.periods import Period, boundaries
from reporting.rates import RateHistory
from reporting.rows import KINDS, Bucket, Opening, period_rows
from reporting.trials import TrialRow

D = Decimal
F = Fraction


def history(table: Mapping[date, Mapping[str, str]]) -> RateHistory:
    """A history from {day: {currency: units per EUR}}, as the ECB file would give it."""
    rates: dict[str, dict[date, Decimal]] = {}
    for day, row in table.items():
        for currency, per_eur in row.items():
            rates.setdefault(currency, {})[day] = D(per_eur)
    return RateHistory(rates)


# 2024-03-08 is a Friday.
RATES = history(
    {
        date(2024, 3, 8): {"usd": "1.10", "jpy": "160.00", "kwd": "0.3400", "gbp": "0.85"},
        date(2024, 3, 11): {"usd": "1.50", "jpy": "160.00", "kwd": "0.3400", "gbp": "0.85"},
    }
)


@pytest.mark.parametrize(
    ("amount", "source", "target", "day", "expected", "why"),
    [
        (1000, "usd", "eur", date(2024, 3, 8), 909, "$10.00 / 1.10 = €9.0909"),
        (1000, "jpy", "usd", date(2024, 3, 8), 688, "¥1000 × 1.10/160 = $6.875: half-even"),
        (1001, "jpy", "usd", date(2024, 3, 8), 688, "¥1001 → $6.881875"),
        (10000, "usd", "jpy", date(2024, 3, 8), 14545, "$100 × 160/1.10 = ¥14545.45"),
        (1234, "kwd", "usd", date(2024, 3, 8), 399, "KD 1.234 × 1.10/0.34 = $3.9923"),
        (5000, "usd", "kwd", date(2024, 3, 8), 15455, "$50 × 0.34/1.10 = KD 15.454545"),
        (1000, "kwd", "jpy", date(2024, 3, 8), 471, "KD 1 × 160/0.34 = ¥470.59"),
        (8500, "gbp", "usd", date(2024, 3, 8), 11000, "£85 × 1.10/0.85 = $110, exactly"),
        (8500, "gbp", "usd", date(2024, 3, 10), 11000, "Sunday: Friday's rates"),
        (1, "eur", "usd", date(2024, 3, 11), 2, "1.5 cents: half-even up to 2"),
        (3, "eur", "usd", date(2024, 3, 11), 4, "4.5 cents: half-even down to 4"),
        (5, "eur", "usd", date(2024, 6, 1), 8, "7.5 cents after the newest: its rate"),
        (-3, "eur", "usd", date(2024, 3, 11), -4, "-4.5: to even"),
        (777, "usd", "usd", date(1990, 1, 1), 777, "a currency into itself needs no rate"),
        (0, "jpy", "usd", date(1990, 1, 1), 0, "nothing to convert needs no rate"),
    ],
)
def test_minor_units_convert_by_stripe_exponents_through_the_euro(
    amount: int, source: str, target: str, day: date, expected: int, why: str
) -> None:
    assert Converter(RATES, target).convert(amount, source, day) == expected, why


def test_a_factor_is_the_cross_rate_scaled_by_the_exponents() -> None:
    to_usd = Converter(RATES, "usd")
    # ¥1 → cents: 1.10/160 dollars = 110/160 cents; KD 0.001 → cents: 1.10/0.34/1000 × 100.
    assert to_usd.factor("jpy", date(2024, 3, 8)) == F("1.10") / F("160") * 100
    assert to_usd.factor("kwd", date(2024, 3, 8)) == F("1.10") / F("0.34") / 10
    assert to_usd.exact(1234, "kwd", date(2024, 3, 8)) == F(1234 * 110, 340)
    assert Converter(RATES, "jpy").factor("kwd", date(2024, 3, 8)) == F(160, 340)
    assert (exponent("jpy"), exponent("usd"), exponent("kwd")) == (0, 2, 3)


@pytest.mark.parametrize(
    ("target", "currency", "day", "message"),
    [
        ("aed", "usd", date(2024, 3, 8), "do not cover the reporting currency 'aed'"),
        ("usd", "aed", date(2024, 3, 8), "do not cover 'aed'"),
        (
            "usd",
            "jpy",
            date(2024, 3, 7),
            "no exchange rate for jpy into usd on or before 2024-03-07",
        ),
    ],
)
def test_a_conversion_without_a_rate_says_which(
    target: str, currency: str, day: date, message: str
) -> None:
    with pytest.raises(NoRate, match=message):
        Converter(RATES, target).convert(100, currency, day)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(7, 2, 4), (5, 2, 2), (-5, 2, -2), (-7, 2, -4), (1, 3, 0), (2, 3, 1), (-2, 3, -1), (9, 1, 9)],
)
def test_round_half_even(numerator: int, denominator: int, expected: int) -> None:
    assert round_half_even(numerator, denominator) == expected == round(F(numerator, denominator))


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [
        (1, {"a": F(1, 3), "b": F(1, 3), "c": F(1, 3)}, {"a": 1, "b": 0, "c": 0}),
        (8, {"a": F("2.6"), "b": F("3.7"), "c": F("1.7")}, {"a": 2, "b": 4, "c": 2}),
        (10, {"a": F("3.5"), "b": F("6.5")}, {"a": 4, "b": 6}),  # 10 = 3 + 6 + 1: a first
        (5, {"x": F(5), "y": F(0)}, {"x": 5, "y": 0}),
        (0, {}, {}),
    ],
)
def test_split_by_largest_remainder_sums_to_the_field(
    total: int, parts: dict[str, Fraction], expected: dict[str, int]
) -> None:
    shares = split(total, parts)
    assert shares == expected
    assert sum(shares.values()) == total


def test_split_refuses_a_total_that_is_not_the_rounded_sum() -> None:
    with pytest.raises(ValueError, match="not the rounded sum"):
        split(3, {"a": F(1, 2)})


def test_the_readme_example_a_euro_customer_at_1_10_then_1_05() -> None:
    # €100.00 MRR held all February; EUR/USD 1.10 on Jan 31, 1.05 on Feb 28 (the last
    # days before the boundaries): the customer did nothing, the euro fell.
    rates = history({date(2025, 1, 31): {"usd": "1.10"}, date(2025, 2, 28): {"usd": "1.05"}})
    result = converted_period_rows(
        {"eur": Native(Opening(10_000, 1), [])},
        Converter(rates, "usd"),
        date(2025, 2, 1),
        date(2025, 3, 1),
        Period.MONTH,
    )
    row = result.rows[0].to_json()
    assert (row["starting_mrr"], row["ending_mrr"]) == (11_000, 10_500)
    movements = ("new", "expansion", "contraction", "churn", "reactivation")
    assert [row[k] for k in movements] == [0, 0, 0, 0, 0]  # no movement
    assert row["fx_adjustment"] == -500  # the exchange-rate impact, kept apart
    assert (row["nrr"], row["grr"], row["net_mrr_churn_rate"]) == (1.0, 1.0, 0.0)
    assert list(row).index("fx_adjustment") == list(row).index("ending_mrr") - 1
    assert result.unconverted == {}


# Rates of March 2024 for a row in USD of EUR and JPY customers. Boundaries: Mar 1 takes
# Feb 29's rates, Apr 1 takes Mar 29's (Mar 30-31 is a weekend).
MARCH = history(
    {
        date(2024, 2, 23): {"usd": "1.07", "jpy": "161.00", "sek": "10.9"},
        date(2024, 2, 29): {"usd": "1.08", "jpy": "162.00", "sek": "11.0"},
        date(2024, 3, 5): {"usd": "1.09", "jpy": "163.50", "sek": "11.1"},
        date(2024, 3, 15): {"usd": "1.10", "jpy": "165.00"},
        date(2024, 3, 29): {"usd": "1.12", "jpy": "168.00"},
    }
)


def march_natives() -> dict[str, Native]:
    def b(day: int, type_: str, amount: int, **kw: object) -> Bucket:
        return Bucket(day=date(2024, 3, day), type=type_, amount=amount, count=1, **kw)  # type: ignore[arg-type]

    return {
        "eur": Native(
            Opening(10_000, 1),  # €100
            [b(5, "new", 5_000), b(16, "expansion", 333, kind="upgrade")],
        ),
        "jpy": Native(
            Opening(30_000, 2),  # ¥30,000
            [
                b(5, "expansion", 1_000, kind="seats"),
                b(16, "churn", 10_000, reason="too_expensive", delinquent=True),
            ],
        ),
        # The ECB stopped SEK in this history: left out, listed with its native MRR.
        "sek": Native(Opening(50_000, 4), [b(7, "new", 2_500)]),
        "aed": Native(Opening(0, 0), [b(7, "new", 700), b(20, "churn", 700)]),  # ends at 0
    }


def test_a_month_of_movements_in_two_currencies_converted_by_hand() -> None:
    result = converted_period_rows(
        march_natives(), Converter(MARCH, "usd"), date(2024, 3, 1), date(2024, 4, 1), Period.MONTH
    )
    row = result.rows[0]
    # Starting at Feb 29's rates: €100 × 1.08 = $108; ¥30,000 × 1.08/162 = $200.
    assert row.starting_mrr == 10_800 + 20_000
    # Mar 5: €50 × 1.09 = $54.50.
    assert row.new == 5_450
    # Mar 5: ¥1,000 × 1.09/163.5 = 666.67 cents (seats); Mar 16, a Saturday, at Mar 15's
    # rate: €3.33 × 1.10 = 366.3 cents (upgrade). 1032.97 → 1033, split 667 + 366.
    assert row.expansion == 1_033
    assert row.expansion_by_kind == {**dict.fromkeys(KINDS, 0), "seats": 667, "upgrade": 366}
    # Mar 16: ¥10,000 × 1.10/165 = 6666.67 cents.
    assert row.churn == 6_667
    assert row.churn_by_reason == {"too_expensive": 6_667}
    assert row.delinquent_churn == 6_667
    assert (row.contraction, row.reactivation) == (0, 0)
    # Ending at Mar 29's rates: €153.33 × 1.12 = 17172.96 cents; ¥21,000 × 1.12/168 =
    # 14000 cents; 31172.96 → 31173. The rest is what exchange rates did.
    assert row.ending_mrr == 31_173
    assert row.fx_adjustment == 31_173 - 30_800 - (5_450 + 1_033 - 6_667) == 557
    # Customers of the covered currencies only (SEK's four are left out).
    assert (row.starting_customers, row.ending_customers) == (3, 3)
    assert row.customer_churn_rate == F(1, 3)
    # Rates from the exact sums, not the rounded fields.
    churn = F(10_000) * F("1.10") / F(165) * 100
    expansion = F(1_000) * F("1.09") / F("163.5") * 100 + F("366.3")
    assert row.gross_mrr_churn_rate == churn / 30_800
    assert row.net_mrr_churn_rate == (churn - expansion) / 30_800
    assert row.quick_ratio == (5_450 + expansion) / churn
    assert row.expansion_share == expansion / (5_450 + expansion)
    assert result.unconverted == {"sek": 52_500}


def test_rows_chain_and_each_boundary_takes_the_last_day_before_it() -> None:
    result = converted_period_rows(
        march_natives(), Converter(MARCH, "usd"), date(2024, 3, 1), date(2024, 4, 1), Period.WEEK
    )
    rows = result.rows
    assert [r.period_start for r in rows][:2] == [date(2024, 2, 26), date(2024, 3, 4)]
    for before, after in itertools.pairwise(rows):
        assert before.ending_mrr == after.starting_mrr
        assert before.ending_customers == after.starting_customers
    # The week of Mar 4 ends at Sunday Mar 10, which takes Mar 5's rates.
    week = rows[1]
    eur, jpy = 15_000, 31_000
    assert week.ending_mrr == round(F(eur) * F("1.09") + F(jpy) * F("1.09") / F("163.5") * 100)


def test_into_the_same_currency_conversion_changes_nothing() -> None:
    natives = march_natives()
    jpy = natives["jpy"]
    converted = converted_period_rows(
        {"jpy": jpy}, Converter(MARCH, "jpy"), date(2024, 3, 1), date(2024, 4, 1), Period.WEEK
    )
    native = period_rows(jpy.opening, jpy.buckets, date(2024, 3, 1), date(2024, 4, 1), Period.WEEK)
    for c, n in zip(converted.rows, native, strict=True):
        doc = c.to_json()
        assert doc.pop("fx_adjustment") == 0
        assert doc == n.to_json()


def test_an_empty_report_before_the_first_rate_needs_no_rate() -> None:
    result = converted_period_rows(
        {"jpy": Native(Opening(), [])},
        Converter(MARCH, "usd"),
        date(1998, 1, 1),
        date(1998, 3, 1),
        Period.MONTH,
    )
    assert [r.ending_mrr for r in result.rows] == [0, 0]


def test_a_movement_before_the_first_rate_is_an_error_not_a_guess() -> None:
    natives = {"jpy": Native(Opening(), [Bucket(date(2024, 2, 1), "new", 100, 1)])}
    with pytest.raises(NoRate, match="jpy into usd on or before 2024-02-01"):
        converted_period_rows(
            natives, Converter(MARCH, "usd"), date(2024, 2, 1), date(2024, 3, 1), Period.MONTH
        )


def test_the_summary_converts_at_the_rate_of_its_day() -> None:
    natives = march_natives()
    day = date(2024, 3, 31)  # a Sunday: Mar 29's rates
    lo, hi = day - timedelta(days=29), day + timedelta(days=1)
    standing = {"eur": Opening(15_333, 2), "jpy": Opening(21_000, 1), "sek": Opening(52_500, 5)}
    trailing = {
        "eur": Native(Opening(10_000, 1), natives["eur"].buckets),
        "jpy": Native(Opening(30_000, 2), natives["jpy"].buckets),
        "sek": natives["sek"],
    }
    doc = converted_summary(
        Converter(MARCH, "usd"), day, standing, {"eur": 5_000, "jpy": 0}, trailing, lo, hi
    )
    mrr = F(15_333) * F("1.12") + F(21_000) * F("1.12") / 168 * 100  # 31172.96
    assert doc["currency"] == "usd"
    assert (doc["mrr"], doc["arr"]) == (31_173, 12 * 31_173)
    assert doc["customers"] == 3  # SEK's five are left out
    assert doc["arpa"] == round(mrr / 3)
    assert doc["scheduled_churn"] == 5_600  # €50 × 1.12
    assert doc["unconverted"] == {"sek": 52_500}
    # The window from Mar 2 (Mar 1's rates are Feb 29's) to the end of Mar 31: the same
    # flows and the same revaluation as March's row.
    window = doc["trailing_30d"]
    assert (window["new"], window["expansion"], window["churn"]) == (5_450, 1_033, 6_667)
    assert window["fx_adjustment"] == 31_173 - 30_800 - (5_450 + 1_033 - 6_667)
    churn = F(10_000) * F("1.10") / F(165) * 100
    net = (churn - F(1_000) * F("1.09") / F("163.5") * 100 - F("366.3")) / 30_800
    assert doc["projection"] == [round(mrr * (1 - net) ** k) for k in range(1, 13)]
    # A past as_of: scheduled churn is unknown.
    past = converted_summary(Converter(MARCH, "usd"), day, standing, None, trailing, lo, hi)
    assert past["scheduled_churn"] is None


def test_cohorts_convert_at_the_first_day_of_the_cohort_month() -> None:
    # January 1 is a holiday: the cohort of January takes Dec 29's rate, and keeps it.
    rates = history(
        {
            date(2023, 12, 29): {"usd": "1.10"},
            date(2024, 2, 1): {"usd": "1.30"},
            date(2024, 3, 1): {"usd": "0.90"},
        }
    )
    jan, feb, mar = date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)
    flows = {
        "eur": [
            CohortFlow(jan, jan, "new", 10_000, 2),
            CohortFlow(jan, feb, "expansion", 1_000, 1),
            CohortFlow(jan, mar, "churn", 4_000, 1),
            CohortFlow(feb, feb, "new", 3_000, 1),
        ],
        "usd": [CohortFlow(jan, jan, "new", 5_000, 1)],
        "sek": [CohortFlow(jan, jan, "new", 99_999, 9)],  # not covered: left out
    }
    table = converted_cohort_table(flows, Converter(rates, "usd"), jan, date(2024, 4, 1))
    january = table[0]
    assert january["customers"] == 3
    assert january["new_mrr"] == 11_000 + 5_000  # €100 × 1.10 + $50
    assert [m["mrr"] for m in january["months"]] == [16_000, 17_100, 12_700]
    assert [m["customers"] for m in january["months"]] == [3, 3, 2]
    # €1 of January's cohort is $1.10 in every month: the rate moved, retention did not.
    assert january["months"][1]["revenue_retention"] == round(17_100 / 16_000, 6)
    assert january["months"][2]["customer_retention"] == round(2 / 3, 6)
    february = table[1]
    assert february["new_mrr"] == 3_900  # €30 × 1.30
    assert february["months"][0]["revenue_retention"] == 1.0
    # One currency into itself: the native table.
    same = converted_cohort_table({"usd": flows["usd"]}, Converter(rates, "usd"), jan, mar)
    assert same == cohort_table(flows["usd"], jan, mar)


def test_unconverted_lists_uncovered_currencies_with_mrr() -> None:
    assert unconverted({"usd": 5, "sek": 0, "aed": 700, "jpy": 9}, MARCH) == {"aed": 700}
    total = Converter(MARCH, "usd").total({"eur": 100, "jpy": 162, "aed": 5}, date(2024, 2, 29))
    assert total == 108 + 108  # €1 × 1.08 and ¥162 × 1.08/162, in cents; AED left out


# ---------------------------------------------------------------------------------------
# Properties: random ledgers in random currencies, random rate tables.

FIRST = date(2024, 1, 1)
SPAN = 120  # days of ledger after FIRST
CURRENCIES = ("usd", "eur", "gbp", "jpy", "kwd", "chf", "sek", "aed")  # sek stops, aed never
TYPES = ("new", "expansion", "contraction", "churn", "reactivation")
REASONS = ("too_expensive", "unused", None)


@st.composite
def rate_tables(draw: st.DrawFn) -> dict[date, dict[str, str]]:
    """Rates on random days; the first day (before FIRST) and the newest carry every
    published currency but SEK, which stops early. Rates have up to 6 significant digits,
    as the ECB's."""
    days = sorted(draw(st.sets(st.integers(0, SPAN + 10), max_size=25)))
    newest = FIRST + timedelta(days=SPAN + 11)
    table: dict[date, dict[str, str]] = {}
    for i, day in enumerate(
        [FIRST - timedelta(days=3), *(FIRST + timedelta(days=d) for d in days), newest]
    ):
        row = {}
        for currency in ("usd", "gbp", "jpy", "kwd", "chf", "sek"):
            if currency == "sek" and day == newest:
                continue
            if i == 0 or day == newest or draw(st.booleans()):
                digits = draw(st.integers(1, 999_999))
                places = draw(st.integers(0, 6))
                row[currency] = str(Decimal(digits).scaleb(-places))
        table[day] = row
    return table


@st.composite
def ledgers(draw: st.DrawFn) -> dict[str, Native]:
    natives = {}
    for currency in draw(st.sets(st.sampled_from(CURRENCIES), min_size=1, max_size=5)):
        buckets = [
            Bucket(
                day=FIRST + timedelta(days=draw(st.integers(-5, SPAN + 5))),
                type=draw(st.sampled_from(TYPES)),
                amount=draw(st.integers(1, 10**7)),
                count=draw(st.integers(1, 5)),
                kind=draw(st.sampled_from((*KINDS, None))),
                reason=draw(st.sampled_from(REASONS)),
                delinquent=draw(st.booleans()),
            )
            for _ in range(draw(st.integers(0, 25)))
        ]
        opening = Opening(draw(st.integers(0, 10**8)), draw(st.integers(0, 50)))
        natives[currency] = Native(opening, buckets)
    return natives


def oracle_factor(
    table: Mapping[date, Mapping[str, str]], currency: str, target: str, day: date
) -> Fraction:
    """The factor by a plain scan of the table: the latest rate on or before `day`."""

    def per_eur(c: str) -> Fraction:
        if c == "eur":
            return F(1)
        return F(table[max(d for d in table if d <= day and c in table[d])][c])

    if currency == target:
        return F(1)
    return per_eur(target) / per_eur(currency) * F(10) ** (exponent(target) - exponent(currency))


SIGN = {"new": 1, "expansion": 1, "reactivation": 1, "contraction": -1, "churn": -1}


@settings(max_examples=150, deadline=None)
@given(
    table=rate_tables(),
    natives=ledgers(),
    target=st.sampled_from(("usd", "eur", "gbp", "jpy", "kwd")),
    period=st.sampled_from(tuple(Period)),
    start=st.integers(0, SPAN - 1),
    length=st.integers(1, 60),
)
def test_every_converted_row_closes_chains_and_matches_an_exact_oracle(
    table: dict[date, dict[str, str]],
    natives: dict[str, Native],
    target: str,
    period: Period,
    start: int,
    length: int,
) -> None:
    lo = FIRST + timedelta(days=start)
    hi = lo + timedelta(days=length)
    rates = history(table)
    covered = {c for c in natives if rates.covers(c)}
    result = converted_period_rows(natives, Converter(rates, target), lo, hi, period)
    spans = boundaries(lo, hi, period)
    first = spans[0][0]

    def level(boundary: date) -> Fraction:
        total = F(0)
        for c in covered:
            n = natives[c]
            mrr = n.opening.mrr + sum(
                SIGN[b.type] * b.amount for b in n.buckets if first <= b.day < boundary
            )
            if mrr:
                total += mrr * oracle_factor(table, c, target, boundary - timedelta(days=1))
        return total

    docs = [row.to_json() for row in result.rows]
    assert len(docs) == len(spans)
    for doc, (a, b) in zip(docs, spans, strict=True):
        inside = [(c, x) for c in covered for x in natives[c].buckets if a <= x.day < b]

        def exact(type_: str, inside: list[tuple[str, Bucket]] = inside) -> Fraction:
            return sum(
                (
                    x.amount * oracle_factor(table, c, target, x.day)
                    for c, x in inside
                    if x.type == type_
                ),
                F(0),
            )

        # The identity, to the unit, on the JSON a consumer reads.
        assert doc["ending_mrr"] == (
            doc["starting_mrr"]
            + doc["new"]
            + doc["expansion"]
            + doc["reactivation"]
            - doc["contraction"]
            - doc["churn"]
            + doc["fx_adjustment"]
        )
        # Levels at the boundaries' rates, flows at their days' rates: each rounded once.
        assert doc["starting_mrr"] == round(level(a))
        assert doc["ending_mrr"] == round(level(b))
        for type_ in TYPES:
            assert doc[type_] == round(exact(type_))
        # Breakdowns sum to their fields, each part within a unit of its exact value.
        for key, type_ in (
            ("expansion_by_kind", "expansion"),
            ("contraction_by_kind", "contraction"),
        ):
            assert sum(doc[key].values()) == doc[type_]
            for kind, share in doc[key].items():
                part = sum(
                    (
                        x.amount * oracle_factor(table, c, target, x.day)
                        for c, x in inside
                        if x.type == type_ and (x.kind or "other") == kind
                    ),
                    F(0),
                )
                assert abs(share - part) < 1
        assert sum(doc["churn_by_reason"].values()) == doc["churn"]
        delinquent = sum(
            (
                x.amount * oracle_factor(table, c, target, x.day)
                for c, x in inside
                if x.type == "churn" and x.delinquent
            ),
            F(0),
        )
        assert abs(doc["delinquent_churn"] - delinquent) < 1
        assert 0 <= doc["delinquent_churn"] <= doc["churn"]
        # Customers: sums of the covered currencies' counts.
        assert doc["new_customers"] == sum(x.count for _, x in inside if x.type == "new")
        assert doc["churned_customers"] == sum(x.count for _, x in inside if x.type == "churn")
    for before, after in itertools.pairwise(docs):
        assert before["ending_mrr"] == after["starting_mrr"]
        assert before["ending_customers"] == after["starting_customers"]
    last = spans[-1][1]
    expected_unconverted = {}
    for c, n in natives.items():
        if c not in covered:
            mrr = n.opening.mrr + sum(
                SIGN[b.type] * b.amount for b in n.buckets if first <= b.day < last
            )
            if mrr:
                expected_unconverted[c] = mrr
    assert result.unconverted == expected_unconverted


@settings(max_examples=60, deadline=None)
@given(natives=ledgers(), period=st.sampled_from(tuple(Period)), start=st.integers(0, SPAN - 1))
def test_with_constant_rates_only_rounding_is_left_for_fx_adjustment(
    natives: dict[str, Native], period: Period, start: int
) -> None:
    # No rate moves: the revaluation is 0, and what is left of one rounding per field is
    # at most half a unit for each of the seven rounded figures.
    rates = history(
        {
            FIRST - timedelta(days=400): {
                "usd": "1.0831",
                "gbp": "0.8562",
                "jpy": "158.41",
                "kwd": "0.3327",
                "chf": "0.9412",
            }
        }
    )
    lo = FIRST + timedelta(days=start)
    result = converted_period_rows(
        natives, Converter(rates, "usd"), lo, lo + timedelta(days=45), period
    )
    for row in result.rows:
        assert row.fx_adjustment is not None and abs(row.fx_adjustment) <= 3


@settings(max_examples=60, deadline=None)
@given(natives=ledgers(), start=st.integers(0, SPAN - 1))
def test_one_span_is_the_sum_of_its_parts(natives: dict[str, Native], start: int) -> None:
    # The summary's trailing window: one row over an arbitrary span, same rules.
    rates = history(
        {
            FIRST - timedelta(days=3): {
                "usd": "1.1",
                "gbp": "0.9",
                "jpy": "150",
                "kwd": "0.33",
                "chf": "0.95",
            }
        }
    )
    lo = FIRST + timedelta(days=start)
    hi = lo + timedelta(days=30)
    one = converted_rows(natives, Converter(rates, "gbp"), [(lo, hi)]).rows[0]
    days = converted_rows(
        natives,
        Converter(rates, "gbp"),
        [(lo + timedelta(days=i), lo + timedelta(days=i + 1)) for i in range(30)],
    ).rows
    assert one.starting_mrr == days[0].starting_mrr and one.ending_mrr == days[-1].ending_mrr
    assert one.new_customers == sum(d.new_customers for d in days)


def test_a_converted_trial_funnel_sums_counts_and_converts_the_pipeline_at_each_end() -> None:
    """SPEC §7, §10: the counts of every covered currency summed; the pipeline MRR at a
    period's end converted at the rate of its last day; a currency not covered left
    out."""
    spans = [(date(2024, 3, 1), date(2024, 3, 8)), (date(2024, 3, 8), date(2024, 3, 15))]

    def rows(*cells: tuple[int, int, int, int]) -> list[TrialRow]:
        return [
            TrialRow(lo, hi, started, converted, lost, pipeline)
            for (lo, hi), (started, converted, lost, pipeline) in zip(spans, cells, strict=True)
        ]

    natives = {
        "eur": rows((2, 1, 0, 10_000), (0, 0, 1, 12_000)),  # €100, then €120
        "jpy": rows((1, 0, 1, 16_350), (3, 1, 0, 0)),  # ¥16,350 = €100 at 163.50
        "ngn": rows((5, 5, 5, 999_999), (5, 5, 5, 999_999)),  # no rate: left out
    }
    found = converted_trial_rows(natives, Converter(MARCH, "usd"), spans)
    # Both ends' last days (March 7 and 14) take March 5's rates: usd 1.09 per euro.
    assert [(r.trials_started, r.trials_converted, r.trials_lost) for r in found] == [
        (3, 1, 1),
        (3, 1, 1),
    ]
    assert [r.trial_pipeline_mrr for r in found] == [10_900 + 10_900, 13_080]
    assert found[0].trial_conversion_rate == F(1, 2)
    assert [(r.period_start, r.period_end) for r in found] == spans
    # No currency at all: rows of zeros, one per span.
    empty = converted_trial_rows({}, Converter(MARCH, "usd"), spans)
    assert [r.to_json(dates=False)["trials_started"] for r in empty] == [0, 0]
