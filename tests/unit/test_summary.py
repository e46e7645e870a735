"""The summary's figures and the 12-month projection, hand-computed."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

from reporting.rows import Bucket, Opening, period_row
from reporting.summary import projection, summary


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
    net, customer_rate = trailing.net_mrr_churn_rate, trailing.customer_churn_rate
    assert (net, customer_rate) == (Fraction(1, 20), Fraction(1, 20))
    doc = summary("usd", 95_000, 19, 1_200, trailing)
    assert doc["arr"] == 1_140_000
    assert doc["arpa"] == 5_000  # 95,000 / 19
    assert doc["ltv"] == 100_000  # ARPA 5,000 / 5 % monthly customer churn
    assert doc["scheduled_churn"] == 1_200
    assert doc["net_mrr_churn_rate"] == 0.05
    # Nothing won in the trailing window: no share of it.
    assert doc["expansion_share"] is None and doc["trailing_30d"]["expansion_share"] is None
    assert doc["projection"][11] == round(95_000 * Fraction(19, 20) ** 12)


def test_summary_without_customers_or_churn() -> None:
    trailing = period_row(Opening(0, 0), [], date(2024, 2, 3), date(2024, 3, 4))
    doc = summary("eur", 0, 0, 0, trailing)
    assert doc["arpa"] is None and doc["ltv"] is None
    assert doc["projection"] == [0] * 12
