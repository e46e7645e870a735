"""CSV of report documents (SPEC §4, §12): parsed back with the `csv` module, every cell
equals its JSON value, read independently of the flattening code."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

import pytest

from ledger.timeline import Kind, Movement, MovementType
from reporting.cohorts import CohortFlow, cohort_table
from reporting.periods import Period
from reporting.rows import Opening, buckets_from_movements, period_rows
from reporting.summary import summary
from reporting.tabular import to_csv

DAY = 86400
JAN = 1_704_067_200  # 2024-01-01


def movement(seq: int, at: int, type_: MovementType, amount: int, **kw: Any) -> Movement:
    return Movement(
        customer_id="cus_1",
        currency="usd",
        seq=seq,
        occurred_at=at,
        event_id=f"evt_{seq}",
        subscription_id="sub_1",
        type=type_,
        amount=amount,
        mrr_before=0,
        mrr_after=amount,
        **kw,
    )


MOVES = [
    movement(1, JAN + DAY, MovementType.NEW, 5000),
    movement(2, JAN + 40 * DAY, MovementType.EXPANSION, 1000, kind=Kind.SEATS),
    movement(
        3,
        JAN + 70 * DAY,
        MovementType.CHURN,
        6000,
        churn_reason="cancellation_requested",
        churn_feedback='too "expensive", really',
    ),
]


def parse(text: str) -> list[dict[str, str]]:
    assert text.endswith("\r\n")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def as_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def period_document() -> dict[str, Any]:
    rows = period_rows(
        Opening(), buckets_from_movements(MOVES), date(2024, 1, 1), date(2024, 4, 1), Period.MONTH
    )
    return {"currency": "usd", "periods": [r.to_json() for r in rows]}


def test_period_rows_one_line_each_nested_objects_dotted() -> None:
    doc = period_document()
    lines = parse(to_csv(doc))
    assert len(lines) == len(doc["periods"]) == 3
    for line, row in zip(lines, doc["periods"], strict=True):
        for key, value in row.items():
            if isinstance(value, dict):
                for sub, amount in value.items():
                    assert line[f"{key}.{sub}"] == as_cell(amount)
            else:
                assert line[key] == as_cell(value), key
    assert lines[2]['churn_by_reason.too "expensive", really'] == "6000"  # quoted, RFC 4180
    assert lines[0]["customer_churn_rate"] == ""  # null is an empty cell


def test_the_header_is_the_rows_json_keys_in_order() -> None:
    """The keys of the rows in order; a key only some rows have (a churn reason) comes
    where its first row puts it, after the keys of the rows before."""
    doc = period_document()
    header = next(csv.reader(io.StringIO(to_csv(doc))))
    expected: list[str] = []
    for row in doc["periods"]:
        for key, value in row.items():
            for name in [f"{key}.{k}" for k in value] if isinstance(value, dict) else [key]:
                if name not in expected:
                    expected.append(name)
    assert header == expected


def test_cohorts_are_one_line_per_cohort_and_month() -> None:
    flows = [
        CohortFlow(date(2024, 1, 1), date(2024, 1, 1), "new", 5000, 1),
        CohortFlow(date(2024, 1, 1), date(2024, 3, 1), "churn", 5000, 1),
    ]
    cohorts = cohort_table(flows, date(2024, 1, 1), date(2024, 4, 1))
    lines = parse(to_csv({"currency": "usd", "cohorts": cohorts}))
    cells = [(c, m) for c in cohorts for m in c["months"]]
    assert len(lines) == len(cells) == 3 + 2 + 1
    for line, (cohort, month) in zip(lines, cells, strict=True):
        assert line["cohort"] == cohort["cohort"]
        assert line["new_mrr"] == str(cohort["new_mrr"])
        assert line["month"] == month["month"] and line["offset"] == str(month["offset"])
        assert line["mrr"] == str(month["mrr"])
        assert line["month.customers"] == str(month["customers"])  # the month's, apart
        assert line["customers"] == str(cohort["customers"])


def test_a_document_without_rows_is_one_line_and_lists_are_space_separated() -> None:
    period = period_document()["periods"]
    from reporting.rows import period_row

    trailing = period_row(Opening(5000, 1), [], date(2024, 3, 1), date(2024, 3, 31))
    doc = summary("usd", 5000, 1, 0, trailing)
    lines = parse(to_csv(doc))
    assert len(lines) == 1 and period
    assert lines[0]["mrr"] == "5000"
    assert lines[0]["projection"] == " ".join(str(v) for v in doc["projection"])
    assert lines[0]["trailing_30d.period_start"] == "2024-03-01"


@pytest.mark.parametrize("flag", [True, False])
def test_movements_with_lists_of_objects_and_booleans(flag: bool) -> None:
    doc = {
        "movements": [
            {
                "customer_id": "cus_1",
                "subscription_ids": ["sub_1", "sub_2"],
                "delinquent": flag,
                "events": [{"id": "evt_1", "synthetic": False}],
            }
        ]
    }
    line = parse(to_csv(doc))[0]
    assert line["subscription_ids"] == "sub_1 sub_2"
    assert line["delinquent"] == ("true" if flag else "false")
    assert line["events"] == '{"id":"evt_1","synthetic":false}'


def test_a_grouped_document_adds_group_columns_after_the_whole() -> None:
    whole = period_document()
    doc = {
        **whole,
        "groups": [
            {"key": "plan", "value": "price_a", **whole},
            {"key": "plan", "value": "none", **whole},
        ],
    }
    lines = parse(to_csv(doc))
    assert len(lines) == 9
    assert [(x["group.key"], x["group.value"]) for x in lines[::3]] == [
        ("", ""),
        ("plan", "price_a"),
        ("plan", "none"),
    ]
    header = next(csv.reader(io.StringIO(to_csv(doc))))
    assert header[:2] == ["group.key", "group.value"]
    assert "key" not in header and "value" not in header
