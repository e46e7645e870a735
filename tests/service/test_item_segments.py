"""Segments by item keys stored at apply time (SPEC §11): what a report sums by SQL
over `customer_segments`, `segment_movements`, `segment_trials` and `segment_daily`
equals what it would derive from the stored events, for every combination the stored
rows answer; and the reports by an item key come out of the stored rows."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

import pytest

from ledger.segments import Filter
from pipeline.reports import Query, _derived_segments, sql_segments, stored_plan
from tests.integration.test_customers_table import customer, customer_event
from tests.lifecycles import random_events
from tests.service.test_drill import store_and_apply

LO, HI = date(2024, 3, 1), date(2025, 3, 1)
COUNTRIES = ("DE", "FR", None)


@pytest.fixture
def random_world(db, settings) -> list[dict[str, Any]]:
    """Forty random customers (several prices, items, discounts, currencies, trials,
    cancellations), most with a country."""
    events = random_events(seed=31, customers=40)
    rng = random.Random(31)
    for n in range(40):
        country = rng.choice(COUNTRIES)
        if country is not None:
            obj = customer(f"cus_r{n}", 1704067200, country)
            events.append(customer_event(f"evt_c{n}", "customer.created", 1704067200, obj))
    store_and_apply(db, settings, events)
    return events


def values_of(events: list[dict[str, Any]], key: str) -> list[str]:
    field = {"plan": "id", "product": "product"}[key]
    found = {
        item["price"][field]
        for e in events
        if e["type"].startswith("customer.subscription.")
        for item in e["data"]["object"]["items"]["data"]
    }
    return sorted(found)


def rows_by_value(segments: dict[str | None, Any], query: Query) -> dict[str | None, Any]:
    """Each segment's period rows in the query's currency, all-zero segments left out
    (the derived path lists a value whose movements all fall outside the range)."""
    found = {}
    for value, segment in segments.items():
        rows, _ = segment.rows(query, LO, HI, None)
        if value is None or any(v for r in rows for v in r.values() if isinstance(v, int)):
            found[value] = rows
    return found


def cases(events: list[dict[str, Any]]) -> list[tuple[list[str], str | None]]:
    plans, products = values_of(events, "plan"), values_of(events, "product")
    return [
        ([], "plan"),
        ([], "product"),
        ([], "interval"),
        ([f"plan:{plans[0]}"], None),
        ([f"plan:{plans[1]}"], "plan"),
        ([f"plan:{plans[1]}"], "country"),
        ([f"product:{products[0]}"], "country"),
        (["country:DE"], "plan"),
        (["country:DE", "country:FR"], "product"),
        (["country:FR", f"plan:{plans[2]}"], None),
        (["country:none", f"plan:{plans[0]}"], "country"),
    ]


@pytest.mark.parametrize("currency", ["usd", "eur"])
def test_stored_item_segments_equal_the_derived_ones(random_world, db, currency) -> None:
    events = random_world
    grouped_by_plan = 0
    for filters, group in cases(events):
        matches = Filter.parse(filters)
        stored, items = stored_plan(matches, group)
        assert stored, (filters, group)
        query = Query(currency=currency, filters=tuple(filters), group_by=group)
        with db() as session:
            derived = _derived_segments(session, matches, group, LO)
            expected = rows_by_value(derived, query)
            for monthly in (False, True):  # daily buckets, or summed per month by SQL
                args = (matches.customers, group, LO, HI, items, monthly)
                summed = sql_segments(session, *args)
                assert rows_by_value(summed, query) == expected, (filters, group, monthly)
        if group == "plan" and not filters:
            grouped_by_plan = len(expected) - 1
    assert grouped_by_plan >= (3 if currency == "usd" else 1)  # several plans moved


@pytest.mark.parametrize(
    ("filters", "group"),
    [
        (["plan:a", "plan:b"], None),  # two values of one item key: movements of their own
        (["plan:a", "product:b"], None),  # two item keys
        (["plan:a"], "product"),  # a filter on one item key, grouped by another
    ],
)
def test_what_is_not_stored_is_derived(filters, group) -> None:
    assert stored_plan(Filter.parse(filters), group) == (False, None)


def test_a_report_by_plan_reads_the_stored_rows(random_world, client, auth, db) -> None:
    """The report by plan over HTTP: its groups sum to the whole in MRR levels, and
    match the derived segments (a report the stored rows answer never parses events)."""
    url = f"/reports/movements?period=month&start={LO}&end={HI}&currency=usd&group_by=plan"
    response = client.get(url, headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    doc = response.json
    assert len(doc["groups"]) >= 3
    for n, row in enumerate(doc["periods"]):
        for field in ("starting_mrr", "ending_mrr"):
            assert sum(g["periods"][n][field] for g in doc["groups"]) == row[field]
    with db() as session:
        derived = _derived_segments(session, Filter.parse([]), "plan", LO)
    query = Query(currency="usd", group_by="plan")
    expected = {v: rows for v, rows in rows_by_value(derived, query).items() if v is not None}
    moved = {
        g["value"]: g["periods"]
        for g in doc["groups"]
        if any(v for r in g["periods"] for v in r.values() if isinstance(v, int))
    }
    assert moved == expected


def get(client, auth, url: str, status: int = 200) -> dict[str, Any]:
    response = client.get(url, headers=auth)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.json


@pytest.mark.parametrize("key", ["plan", "product", "country"])
def test_the_summary_by_segment_sums_to_the_whole(random_world, client, auth, key) -> None:
    """`/reports/summary?group_by=…`: the groups' MRR sums to the whole's, which is the
    account's; for a customer key the paying customers sum too (SPEC §11)."""
    as_of = "as_of=2024-12-31T23:59:59Z&currency=usd"
    whole = get(client, auth, f"/reports/summary?{as_of}")
    grouped = get(client, auth, f"/reports/summary?{as_of}&group_by={key}")
    assert grouped["mrr"] == whole["mrr"] > 0
    assert grouped["customers"] == whole["customers"]
    assert grouped["group_by"] == key and len(grouped["groups"]) >= 2
    assert sum(g["mrr"] for g in grouped["groups"]) == whole["mrr"]
    assert [g["mrr"] for g in grouped["groups"]] == sorted(
        (g["mrr"] for g in grouped["groups"]), reverse=True
    )
    if key == "country":
        assert sum(g["customers"] for g in grouped["groups"]) == whole["customers"]
        for field in ("new", "expansion", "contraction", "churn", "reactivation"):
            parts = sum(g["trailing_30d"][field] for g in grouped["groups"])
            assert parts == whole["trailing_30d"][field]
    for group in grouped["groups"]:  # each group is the report filtered to its value
        alone = get(client, auth, f"/reports/summary?{as_of}&filter={key}:{group['value']}")
        assert alone["mrr"] == group["mrr"]
        assert alone["trailing_30d"] == group["trailing_30d"]


def test_the_summary_of_a_plan_is_its_movements_ending_mrr(random_world, client, auth) -> None:
    plan = values_of(random_world, "plan")[0]
    movements = get(
        client,
        auth,
        f"/reports/movements?period=month&start=2024-01-01&end=2025-01-01"
        f"&currency=usd&filter=plan:{plan}",
    )
    summary = get(
        client, auth, f"/reports/summary?as_of=2024-12-31T23:59:59Z&currency=usd&filter=plan:{plan}"
    )
    assert summary["mrr"] == movements["periods"][-1]["ending_mrr"]
    assert summary["scheduled_churn"] is None  # known per customer, not per segment
    assert summary["filter"] == [f"plan:{plan}"]


def test_cohorts_refuse_a_segment_rather_than_answer_for_everyone(client, auth) -> None:
    """Cohorts by segment are not built yet (a segment's cohort is the month of its own
    first `new`): refused, never the whole account's cohorts under a segment's name."""
    doc = get(client, auth, "/reports/cohorts?group_by=plan", status=400)
    assert "unknown parameter 'group_by'" in doc["error"]["message"]
