"""SPEC §7 period rows and their rates against hand-computed figures."""

from __future__ import annotations

from datetime import date

from reporting.periods import Period
from reporting.rows import Bucket, Opening, opening_before, period_row, period_rows

D = date(2024, 3, 1)
E = date(2024, 4, 1)


def row_json(opening: Opening, buckets: list[Bucket], lo: date, hi: date) -> dict:
    return period_row(opening, buckets, lo, hi).to_json()


def b(day: int, type_: str, amount: int, count: int = 1, **kw) -> Bucket:
    return Bucket(day=date(2024, 3, day), type=type_, amount=amount, count=count, **kw)


def test_net_negative_churn_month() -> None:
    # 10 customers, 100,000 MRR. Expansion 6,000 + reactivation 1,000 beat churn 3,000
    # + contraction 2,000: net MRR churn = (3000 + 2000 - 6000 - 1000) / 100000 = -2 %.
    row = row_json(
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
    assert row["expansion_share"] == 0.5  # 6000 / (5000 + 6000 + 1000)
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
    row = row_json(Opening(0, 0), [b(2, "new", 3_000)], D, date(2024, 4, 1))
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
    row = row_json(Opening(1_000, 1), [b(2, "expansion", 500, kind="seats")], D, date(2024, 4, 1))
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
    rows = [
        r.to_json()
        for r in period_rows(opening, buckets, date(2024, 2, 1), date(2024, 5, 1), Period.MONTH)
    ]
    assert [
        (r["period_start"], r["starting_mrr"], r["ending_mrr"], r["ending_customers"]) for r in rows
    ] == [
        ("2024-02-01", 1_000, 1_500, 1),
        ("2024-03-01", 1_500, 0, 0),
        ("2024-04-01", 0, 700, 1),
    ]


def test_expansion_share_is_null_when_nothing_was_won() -> None:
    row = row_json(Opening(10_000, 2), [b(4, "churn", 1_000, reason="unknown")], D, E)
    assert row["expansion_share"] is None
    assert row_json(Opening(), [], D, date(2024, 4, 1))["expansion_share"] is None


def test_expansion_share_of_wins_without_expansion_is_zero() -> None:
    row = row_json(Opening(), [b(2, "new", 3_000), b(9, "reactivation", 1_000)], D, E)
    assert row["expansion_share"] == 0.0
