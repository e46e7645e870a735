"""Cohorts by month of first `new`: customer and revenue retention."""

from __future__ import annotations

from datetime import date

from reporting.cohorts import CohortFlow, cohort_table


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
