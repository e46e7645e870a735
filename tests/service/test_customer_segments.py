"""Segments by customer keys (SPEC §11): `country` and `metadata.NAME` as of now, from
`customer.*` webhooks; groups that sum to the whole field by field; filters combined
(AND across keys, OR within one); the detail of a segment's figure; the trial funnel."""

from __future__ import annotations

from typing import Any

import pytest

from tests import factories as f
from tests.integration.test_customers_table import customer, customer_event
from tests.service.test_drill import DAY, MARCH, store_and_apply

PRO = f.price("price_pro", 1000, product="prod_pro")
BIZ = f.price("price_biz", 4007, product="prod_biz")
EUR = f.price("price_pro_eu", 900, product="prod_pro", currency="eur")
RANGE = "start=2025-03-01&end=2025-05-01"


def world() -> list[dict[str, Any]]:
    """Six customers in March and April: in Germany, France (metadata tier gold), one
    who moved from Germany to Austria, one known only by its shipping address, one
    never seen as an object, one paying in euros."""
    events: list[dict[str, Any]] = []

    def sub(cus: str, items: list[dict[str, Any]], n: int, at: int, kind: str, **kw: Any) -> None:
        obj = f.subscription(f"sub_{cus}", cus, items, **kw)
        events.append(f.event(f"evt_{cus}_{n}", f"customer.subscription.{kind}", at, obj))

    def known(cus: str, n: int, at: int, country: str | None, **extra: Any) -> None:
        obj = customer(cus, MARCH - DAY, country, **extra)
        kind = "customer.created" if n == 0 else "customer.updated"
        events.append(customer_event(f"evt_{cus}_c{n}", kind, at, obj))

    known("cus_de", 0, MARCH, "DE")
    sub("cus_de", [f.item(PRO, 3)], 1, MARCH + DAY, "created")
    sub("cus_de", [f.item(PRO, 3), f.item(BIZ)], 2, MARCH + 20 * DAY, "updated")  # cross-sell
    known("cus_fr", 0, MARCH, "FR", metadata={"tier": "gold"})
    sub("cus_fr", [f.item(BIZ, 2)], 1, MARCH + 2 * DAY, "created")
    sub("cus_fr", [f.item(BIZ, 2)], 2, MARCH + 40 * DAY, "deleted", status="canceled")
    known("cus_moves", 0, MARCH, "DE", metadata={"tier": "gold"})
    sub("cus_moves", [f.item(PRO)], 1, MARCH + 3 * DAY, "created")
    sub("cus_moves", [f.item(PRO, 2)], 2, MARCH + 35 * DAY, "updated")
    known("cus_moves", 1, MARCH + 50 * DAY, "AT", metadata={"tier": "gold"})  # now in Austria
    known("cus_ship", 0, MARCH, None, shipping={"address": {"country": "DE"}})
    sub("cus_ship", [f.item(PRO, 5)], 1, MARCH + 4 * DAY, "created")
    sub("cus_unseen", [f.item(BIZ)], 1, MARCH + 5 * DAY, "created")
    known("cus_eu", 0, MARCH, "FR")
    sub("cus_eu", [f.item(EUR, 2)], 1, MARCH + 6 * DAY, "created", currency="eur")
    trial = f.subscription("sub_cus_trial", "cus_trial", [f.item(PRO)], status="trialing")
    events.append(f.event("evt_cus_trial_1", "customer.subscription.created", MARCH + DAY, trial))
    known("cus_trial", 0, MARCH, "DE")
    return events


@pytest.fixture
def loaded(db, settings) -> None:
    store_and_apply(db, settings, world())


def get(client, auth, url: str) -> dict[str, Any]:
    response = client.get(url, headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def summed(rows: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Field by field sums of several segments' rows (numbers and breakdowns)."""
    total: list[dict[str, Any]] = []
    for at_period in zip(*rows, strict=True):
        row: dict[str, Any] = {}
        for key, value in at_period[0].items():
            if isinstance(value, int) and not isinstance(value, bool):
                row[key] = sum(r[key] for r in at_period)
            elif isinstance(value, dict):
                keys = {k for r in at_period for k in r[key]}
                row[key] = {k: sum(r[key].get(k, 0) for r in at_period) for k in keys}
        total.append(row)
    return total


def sums_only(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return summed([rows])


@pytest.mark.parametrize("key", ["country", "metadata.tier"])
def test_groups_of_a_customer_key_sum_to_the_whole_field_by_field(key, loaded, client, auth):
    whole = get(client, auth, f"/reports/movements?{RANGE}&currency=usd")
    grouped = get(client, auth, f"/reports/movements?{RANGE}&currency=usd&group_by={key}")
    assert grouped["periods"] == whole["periods"]  # the document keeps the whole's rows
    groups = {g["value"]: g["periods"] for g in grouped["groups"]}
    expected = {"country": {"DE", "FR", "AT", "none"}, "metadata.tier": {"gold", "none"}}
    assert set(groups) == expected[key]
    assert summed(list(groups.values())) == sums_only(whole["periods"])
    # Sorted by the last period's ending MRR, descending.
    ends = [g["periods"][-1]["ending_mrr"] for g in grouped["groups"]]
    assert ends == sorted(ends, reverse=True)


def test_attributes_are_as_of_now_and_filters_combine(loaded, client, auth) -> None:
    def rows(query: str) -> list[dict[str, Any]]:
        return get(client, auth, f"/reports/movements?{RANGE}&currency=usd&{query}")["periods"]

    de = rows("filter=country:DE")
    # Germany: cus_de (3 × 10.00, then + 40.07) and cus_ship (shipping address, 5 × 10.00);
    # cus_moves lives in Austria now, so none of its history is Germany's.
    assert [r["ending_mrr"] for r in de] == [3000 + 4007 + 5000, 3000 + 4007 + 5000]
    assert de[0]["new"] == 8000 and de[0]["expansion"] == 4007
    assert de[0]["expansion_by_kind"]["cross_sell"] == 4007
    assert rows("filter=country:AT")[1]["ending_mrr"] == 2000
    # The same key ORs, different keys AND.
    either = rows("filter=country:DE&filter=country:AT")
    assert summed([either]) == summed([de, rows("filter=country:AT")])
    gold_at = rows("filter=country:AT&filter=metadata.tier:gold")
    assert gold_at == rows("filter=country:AT")
    assert rows("filter=country:DE&filter=metadata.tier:gold")[1]["ending_mrr"] == 0
    # A customer never seen as an object is `none` for every key.
    assert rows("filter=country:none")[0]["new"] == 4007
    # With an item key too: Germany's plan pro only (its biz item left out).
    pro_de = rows("filter=country:DE&filter=plan:price_pro")
    assert [r["ending_mrr"] for r in pro_de] == [8000, 8000]


def test_converted_customer_segments(loaded, client, auth) -> None:
    whole = get(client, auth, f"/reports/movements?{RANGE}")
    grouped = get(client, auth, f"/reports/movements?{RANGE}&group_by=country")
    assert grouped["currency"] == "usd" and grouped["rates"] and "unconverted" in grouped
    groups = {g["value"]: g["periods"] for g in grouped["groups"]}
    # France holds the euro customer: converted beside cus_fr's dollars.
    usd_fr = get(client, auth, f"/reports/movements?{RANGE}&currency=usd&filter=country:FR")
    assert groups["FR"][0]["new"] > usd_fr["periods"][0]["new"]
    # Each group is rounded once, like the whole: the sums agree to a unit per group.
    total = summed(list(groups.values()))
    for mine, theirs in zip(total, whole["periods"], strict=True):
        for field in ("starting_mrr", "ending_mrr", "new", "expansion", "churn"):
            assert abs(mine[field] - theirs[field]) <= len(groups), field


def test_a_customer_segments_detail_sums_to_its_figure(loaded, client, auth) -> None:
    for query, currency in (("filter=country:DE", "&currency=usd"), ("filter=country:FR", "")):
        row = get(client, auth, f"/reports/movements?{RANGE}{currency}&{query}")["periods"][0]
        for figure in ("new", "expansion", "churn"):
            detail = get(
                client,
                auth,
                f"/reports/movements/detail?start={row['period_start']}"
                f"&end={row['period_end']}&type={figure}{currency}&{query}",
            )
            assert detail["amount"] == row[figure], (query, figure)
            assert sum(m["amount"] for m in detail["movements"]) == row[figure]
    de = get(
        client,
        auth,
        "/reports/movements/detail?start=2025-03-01&end=2025-04-01&type=new"
        "&currency=usd&filter=country:DE",
    )
    assert {m["customer_id"] for m in de["movements"]} == {"cus_de", "cus_ship"}


def test_the_trial_funnel_by_customer_key(loaded, client, auth) -> None:
    doc = get(client, auth, f"/reports/trials?{RANGE}&currency=usd&group_by=country")
    groups = {g["value"]: g["periods"] for g in doc["groups"]}
    assert groups["DE"][0]["trials_started"] == 1
    assert groups["DE"][0]["trial_pipeline_mrr"] == 1000
    assert (
        sum(g[0]["trials_started"] for g in groups.values()) == doc["periods"][0]["trials_started"]
    )
    assert set(doc["periods"][0]) == {
        "period_start",
        "period_end",
        "trials_started",
        "trials_converted",
        "trials_lost",
        "trial_conversion_rate",
        "trial_pipeline_mrr",
    }


@pytest.mark.parametrize(
    "query",
    ["group_by=planet", "filter=metadata.:x", 'filter=metadata.a"b:x', "filter=address:DE"],
)
def test_a_bad_segment_key_is_a_400(query, client, auth) -> None:
    response = client.get(f"/reports/movements?{RANGE}&{query}", headers=auth)
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_query"


def test_a_customer_with_a_trial_only_is_in_its_country_with_an_item_key_too(
    loaded, client, auth
) -> None:
    """cus_trial has no movement yet: its attributes still place it, in the SQL path
    (customer keys) and the derived one (an item key too) alike."""
    by_sql = get(client, auth, f"/reports/trials?{RANGE}&currency=usd&filter=country:DE")
    derived = get(
        client,
        auth,
        f"/reports/trials?{RANGE}&currency=usd&filter=country:DE&filter=plan:price_pro",
    )
    assert by_sql["periods"][0]["trials_started"] == 1
    assert derived["periods"][0]["trials_started"] == 1
    assert derived["periods"][0]["trial_pipeline_mrr"] == 1000
