"""SPEC §7 period rows, rates, summary and projection against hand-computed figures."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest

from reporting.cohorts import CohortFlow, cohort_table
from reporting.metrics import (
    Bucket,
    Opening,
    exact_rates,
    opening_before,
    period_row,
    period_rows,
    projection,
    summary,
)
from reporting.periods import Period, boundaries, floor, snap

D = date(2024, 3, 1)


def b(day: int, type_: str, amount: int, count: int = 1, **kw) -> Bucket:
    return Bucket(day=date(2024, 3, day), type=type_, amount=amount, count=count, **kw)


def test_net_negative_churn_month() -> None:
    # 10 customers, 100,000 MRR. Expansion 6,000 + reactivation 1,000 beat churn 3,000
    # + contraction 2,000: net MRR churn = (3000 + 2000 - 6000 - 1000) / 100000 = -2 %.
    row = period_row(
        Opening(100_000, 10),
        [
            b(3, "new", 5_000, 2),
            b(5, "expansion", 4_000, 3, kind="seats"),
            b(6, "expansion", 2_000, 1, kind="upgrade"),
            b(7, "reactivation", 1_000, 1),
            b(9, "contraction", 2_000, 1, kind="discount"),
            b(20, "churn", 2_000, 1, reason="too_expensive"),
            b(21, "churn", 1_000, 1, reason="unknown", delinquent=True),
        ],
        D,
        date(2024, 4, 1),
    )
    assert row["starting_mrr"] == 100_000
    assert row["ending_mrr"] == 100_000 + 5_000 + 6_000 + 1_000 - 2_000 - 3_000 == 107_000
    assert (row["starting_customers"], row["ending_customers"]) == (10, 11)
    assert (row["new_customers"], row["reactivated_customers"], row["churned_customers"]) == (
        2,
        1,
        2,
    )
    assert row["customer_churn_rate"] == 0.2
    assert row["gross_mrr_churn_rate"] == 0.05
    assert row["net_mrr_churn_rate"] == -0.02  # negative: net negative churn
    assert row["nrr"] == 1.02
    assert row["grr"] == 0.95
    assert row["quick_ratio"] == 2.4  # (5000 + 6000 + 1000) / (3000 + 2000)
    assert row["expansion_by_kind"] == {
        "seats": 4_000,
        "upgrade": 2_000,
        "downgrade": 0,
        "cross_sell": 0,
        "discount": 0,
        "other": 0,
    }
    assert row["contraction_by_kind"]["discount"] == 2_000
    assert row["churn_by_reason"] == {"too_expensive": 2_000, "unknown": 1_000}
    assert row["delinquent_churn"] == 1_000
    assert (row["period_start"], row["period_end"]) == ("2024-03-01", "2024-04-01")


def test_zero_denominators_are_null() -> None:
    row = period_row(Opening(0, 0), [b(2, "new", 3_000)], D, date(2024, 4, 1))
    for key in (
        "customer_churn_rate",
        "gross_mrr_churn_rate",
        "net_mrr_churn_rate",
        "nrr",
        "grr",
        "quick_ratio",
    ):
        assert row[key] is None, key
    assert row["ending_mrr"] == 3_000


def test_no_losses_has_null_quick_ratio_but_real_rates() -> None:
    row = period_row(Opening(1_000, 1), [b(2, "expansion", 500, kind="seats")], D, date(2024, 4, 1))
    assert row["quick_ratio"] is None
    assert row["net_mrr_churn_rate"] == -0.5
    assert row["gross_mrr_churn_rate"] == 0.0


def test_rows_chain_across_periods_and_skip_buckets_before_start() -> None:
    buckets = [
        Bucket(date(2024, 1, 5), "new", 1_000, 1),
        Bucket(date(2024, 2, 10), "expansion", 500, 1, kind="seats"),
        Bucket(date(2024, 3, 31), "churn", 1_500, 1, reason="unknown"),
        Bucket(date(2024, 4, 1), "new", 700, 1),
    ]
    opening = opening_before(buckets, date(2024, 2, 1))
    assert opening == Opening(1_000, 1)
    rows = period_rows(opening, buckets, date(2024, 2, 1), date(2024, 5, 1), Period.MONTH)
    assert [
        (r["period_start"], r["starting_mrr"], r["ending_mrr"], r["ending_customers"]) for r in rows
    ] == [
        ("2024-02-01", 1_000, 1_500, 1),
        ("2024-03-01", 1_500, 0, 0),
        ("2024-04-01", 0, 700, 1),
    ]


def test_projection_compounds_like_the_hand_table() -> None:
    table = projection(100_000, Fraction(5, 100))
    assert table[0] == 95_000
    assert table[1] == 90_250
    assert table[11] == 54_036  # 100,000 × 0.95^12 = 54,036.0...
    assert len(table) == 12
    assert projection(100_000, Fraction(-2, 100))[11] == 126_824  # net negative churn grows
    assert projection(5_000, None) == [5_000] * 12


def test_summary_figures() -> None:
    trailing = period_row(
        Opening(100_000, 20),
        [Bucket(date(2024, 3, 3), "churn", 5_000, 1, reason="unknown")],
        date(2024, 2, 3),
        date(2024, 3, 4),
    )
    net, customer_rate = exact_rates(trailing)
    assert (net, customer_rate) == (Fraction(1, 20), Fraction(1, 20))
    doc = summary("usd", 95_000, 19, 1_200, trailing, net, customer_rate)
    assert doc["arr"] == 1_140_000
    assert doc["arpa"] == 5_000  # 95,000 / 19
    assert doc["ltv"] == 100_000  # ARPA 5,000 / 5 % monthly customer churn
    assert doc["scheduled_churn"] == 1_200
    assert doc["net_mrr_churn_rate"] == 0.05
    assert doc["projection"][11] == round(95_000 * Fraction(19, 20) ** 12)


def test_summary_without_customers_or_churn() -> None:
    trailing = period_row(Opening(0, 0), [], date(2024, 2, 3), date(2024, 3, 4))
    doc = summary("eur", 0, 0, 0, trailing, *exact_rates(trailing))
    assert doc["arpa"] is None and doc["ltv"] is None
    assert doc["projection"] == [0] * 12


@pytest.mark.parametrize(
    ("start", "end", "period", "expected"),
    [
        (date(2024, 3, 15), date(2024, 5, 2), Period.MONTH, (date(2024, 3, 1), date(2024, 6, 1))),
        (date(2024, 3, 1), date(2024, 5, 1), Period.MONTH, (date(2024, 3, 1), date(2024, 5, 1))),
        (
            date(2024, 12, 15),
            date(2024, 12, 16),
            Period.MONTH,
            (date(2024, 12, 1), date(2025, 1, 1)),
        ),
        # 2024-03-13 is a Wednesday; ISO weeks start on Monday.
        (date(2024, 3, 13), date(2024, 3, 19), Period.WEEK, (date(2024, 3, 11), date(2024, 3, 25))),
        (date(2024, 3, 13), date(2024, 3, 14), Period.DAY, (date(2024, 3, 13), date(2024, 3, 14))),
    ],
)
def test_snap_widens_outward_with_end_exclusive(start, end, period, expected) -> None:
    assert snap(start, end, period) == expected


def test_boundaries_cover_the_range() -> None:
    spans = boundaries(date(2023, 11, 20), date(2024, 2, 2), Period.MONTH)
    assert [s.isoformat() for s, _ in spans] == [
        "2023-11-01",
        "2023-12-01",
        "2024-01-01",
        "2024-02-01",
    ]
    assert floor(date(2024, 1, 1), Period.WEEK) == date(2024, 1, 1)  # a Monday
    assert floor(date(2023, 12, 31), Period.WEEK) == date(2023, 12, 25)


def test_cohorts_retention_with_expansion_above_one() -> None:
    jan, feb, mar = date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)
    flows = [
        CohortFlow(jan, jan, "new", 2_000, 2),  # two customers, 1,000 each
        CohortFlow(jan, feb, "expansion", 500, 1),
        CohortFlow(jan, mar, "churn", 1_000, 1),
        CohortFlow(mar, mar, "new", 3_000, 1),
    ]
    table = cohort_table(flows, jan, date(2024, 4, 1))
    assert [(r["cohort"], r["customers"], r["new_mrr"]) for r in table] == [
        ("2024-01", 2, 2_000),
        ("2024-02", 0, 0),
        ("2024-03", 1, 3_000),
    ]
    jan_row = table[0]["months"]
    assert [
        (
            c["month"],
            c["offset"],
            c["customers"],
            c["customer_retention"],
            c["mrr"],
            c["revenue_retention"],
        )
        for c in jan_row
    ] == [
        ("2024-01", 0, 2, 1.0, 2_000, 1.0),
        ("2024-02", 1, 2, 1.0, 2_500, 1.25),  # expansion: revenue retention above 100 %
        ("2024-03", 2, 1, 0.5, 1_500, 0.75),
    ]
    assert table[1]["months"][0]["customer_retention"] is None  # an empty cohort
    assert len(table[2]["months"]) == 1


def test_terminal_money_respects_zero_decimal_currencies() -> None:
    from cli.render import money

    assert money(123456) == "1,234.56"
    assert money(-5, "eur") == "-0.05"
    assert money(5000, "jpy") == "5,000"
    assert money(None) == "—"
