"""Drill-down and activity (SPEC §12): every figure of a month's row is the sum of the
movements `/reports/movements/detail` lists for it, each naming events of its customer
at its second; `/reports/activity` is the latest movements, newest first."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from models.db import transaction
from models.inbox import store_event
from models.tables import InboxEvent
from pipeline.apply import apply_event_ids
from pipeline.runtime import bootstrap
from tests import factories as f
from tests.service.test_ops_reports import apply_fixtures

MARCH = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp())
DAY = 86400


def march_world(currency: str = "usd", tag: str = "", unit: int = 1000) -> list[dict[str, Any]]:
    """Many customers moving in one month: every type, several levers, churn reasons
    with feedback, with a reason only and with neither, a delinquent churn, a synthetic
    (backfilled) start and a same-second plan switch. `currency`, `tag` (in every id) and
    `unit` (the smallest price) give the same world in another currency, beside it."""
    events: list[dict[str, Any]] = []
    PRO = f.price(f"price_pro{tag}", unit, product="prod_pro", currency=currency)
    BIZ = f.price(f"price_biz{tag}", 4 * unit + 7, product="prod_biz", currency=currency)
    ADDON = f.price(f"price_addon{tag}", unit // 2 + 3, product="prod_addon", currency=currency)

    def _sub(cus: str, items: list[dict[str, Any]], sub_id: str = "", **kw: Any) -> dict:
        return f.subscription(sub_id or f"sub_{cus}", cus, items, currency=currency, **kw)

    def add(event_id: str, kind: str, at: int, obj: dict[str, Any]) -> None:
        events.append(f.event(event_id, f"customer.subscription.{kind}", at, obj))

    for n in range(12):
        cus, t = f"cus{tag}_m{n:02d}", MARCH + n * DAY + 3600
        start_id = f"bf_sub_{cus}_created_{t}" if n == 3 else f"evt_{cus}_1"
        add(start_id, "created", t, _sub(cus, [f.item(PRO, 2)]))
        later = t + 5 * DAY
        if n % 6 == 0:  # seats up
            add(f"evt_{cus}_2", "updated", later, _sub(cus, [f.item(PRO, 5)]))
        elif n % 6 == 1:  # seats down
            add(f"evt_{cus}_2", "updated", later, _sub(cus, [f.item(PRO, 1)]))
        elif n % 6 == 2:  # upgrade
            add(f"evt_{cus}_2", "updated", later, _sub(cus, [f.item(BIZ, 2)]))
        elif n % 6 == 3:  # cross-sell, a second subscription
            add(f"evt_{cus}_2", "created", later, _sub(cus, [f.item(ADDON)], f"sub_{cus}_b"))
        else:
            details = [
                {"comment": None, "feedback": "too_expensive", "reason": "cancellation_requested"},
                {"comment": None, "feedback": None, "reason": "cancellation_requested"},
                {"comment": None, "feedback": None, "reason": None},
                {"comment": None, "feedback": None, "reason": "payment_failed"},
            ][n % 4]
            obj = _sub(cus, [f.item(PRO, 2)], status="canceled", cancellation_details=details)
            add(f"evt_{cus}_2", "deleted", later, obj)
            if n == 4:  # comes back in the same month
                again = _sub(cus, [f.item(PRO)], f"sub{tag}_x")
                add(f"evt_{cus}_3", "created", later + 3 * DAY, again)
    # A plan switch as "cancel A, create B" in one second: one movement, two events.
    cus, t = f"cus{tag}_switch", MARCH + 2 * DAY
    add(f"evt{tag}_sw_1", "created", t, _sub(cus, [f.item(PRO)]))
    add(f"evt{tag}_sw_2", "deleted", t + DAY, _sub(cus, [f.item(PRO)], status="canceled"))
    add(f"evt{tag}_sw_3", "created", t + DAY, _sub(cus, [f.item(BIZ)], f"sub{tag}_switch_b"))
    # Two customers starting in one second, the month's last movements.
    for cus in (f"cus{tag}_tie_b", f"cus{tag}_tie_a"):
        add(f"evt_{cus}", "created", MARCH + 20 * DAY, _sub(cus, [f.item(PRO)]))
    return events


def store_and_apply(db, settings, events: list[dict[str, Any]]) -> None:
    ids = []
    for event in events:
        with transaction(db) as session:
            stored = store_event(session, event, json.dumps(event))
        if stored.pending:
            ids.append(stored.event_id)
    apply_event_ids(bootstrap(settings), ids, batch=0)


def figures(row: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """Every figure of a period row and the detail parameters that select it."""
    found = [(t, {"type": t}) for t in ("new", "expansion", "contraction", "churn", "reactivation")]
    for t in ("expansion", "contraction"):
        found += [(f"{t}_by_kind.{k}", {"type": t, "kind": k}) for k in row[f"{t}_by_kind"]]
    found += [
        (f"churn_by_reason.{r}", {"type": "churn", "reason": r}) for r in row["churn_by_reason"]
    ]
    found.append(("delinquent_churn", {"type": "churn", "delinquent": "true"}))
    return found


def value(row: dict[str, Any], name: str) -> int:
    for part in name.split("."):
        row = row[part]
    return int(row)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("currency", "start", "end"),
    [
        ("usd", "2024-01-01", "2024-08-01"),
        ("eur", "2024-01-01", "2024-08-01"),
        ("usd", "2025-03-01", "2025-05-01"),
    ],
)
def test_every_figure_of_a_month_is_the_sum_of_its_detail(
    currency, start, end, db, settings, client, auth
) -> None:
    apply_fixtures(db, settings)
    store_and_apply(db, settings, march_world())
    with db() as session:
        owner = dict(session.execute(select(InboxEvent.id, InboxEvent.customer_id)).all())
        created = dict(session.execute(select(InboxEvent.id, InboxEvent.created)).all())
    report = client.get(
        f"/reports/movements?period=month&start={start}&end={end}&currency={currency}",
        headers=auth,
    ).json
    checked = nonzero = 0
    for row in report["periods"]:
        for name, params in figures(row):
            query = "&".join(f"{k}={v}" for k, v in params.items())
            url = (
                f"/reports/movements/detail?start={row['period_start']}"
                f"&end={row['period_end']}&currency={currency}&{query}"
            )
            doc = client.get(url, headers=auth).json
            amounts = [m["amount"] for m in doc["movements"]]
            assert sum(amounts) == doc["amount"] == value(row, name), (url, doc)
            assert all(a > 0 for a in amounts)
            for m in doc["movements"]:
                assert m["type"] == params["type"] and m["native_currency"] == currency
                assert m["native_amount"] == m["amount"]
                assert m["events"], m
                second = int(datetime.fromisoformat(m["date"]).timestamp())
                for e in m["events"]:
                    assert owner[e["id"]] == m["customer_id"]
                    assert created[e["id"]] == second  # the events at the movement's second
                    assert e["synthetic"] == e["id"].startswith("bf_")
            checked += 1
            nonzero += bool(amounts)
    assert nonzero >= 5 and checked > nonzero


def test_the_detail_names_every_event_behind_a_movement(db, settings, client, auth) -> None:
    store_and_apply(db, settings, march_world())
    base = "/reports/movements/detail?start=2025-03-01&end=2025-04-01&currency=usd"
    new = client.get(f"{base}&type=new", headers=auth).json["movements"]
    backfilled = next(m for m in new if m["customer_id"] == "cus_m03")
    assert backfilled["events"] == [
        {"id": f"bf_sub_cus_m03_created_{MARCH + 3 * DAY + 3600}", "synthetic": True}
    ]
    switch = client.get(f"{base}&type=expansion&kind=cross_sell", headers=auth).json
    moved = next(m for m in switch["movements"] if m["customer_id"] == "cus_switch")
    assert moved["subscription_ids"] == ["sub_cus_switch", "sub_switch_b"]
    assert [e["id"] for e in moved["events"]] == ["evt_sw_2", "evt_sw_3"]
    unknown = client.get(f"{base}&type=churn&reason=unknown", headers=auth).json
    assert [m["customer_id"] for m in unknown["movements"]] == ["cus_m10"]
    assert unknown["movements"][0]["reason"] == "unknown"


@pytest.mark.parametrize(
    ("filters", "moving", "currencies"),
    [
        (["plan:price_pro"], 5, {"usd"}),  # the eur world's price is price_pro_eu
        (["product:prod_biz", "product:prod_addon"], 1, {"usd", "eur"}),  # one key: OR
        (["product:prod_pro", "interval:month"], 5, {"usd", "eur"}),  # two keys: AND
        (["plan:price_none"], 0, set()),
    ],
)
def test_every_figure_of_a_segment_is_the_sum_of_its_detail(
    filters, moving, currencies, db, settings, client, auth
) -> None:
    """SPEC §11, §12: with `filter` the detail lists the segment's movements, derived at
    report time as the segmented row's are, and they sum to its figures."""
    store_and_apply(db, settings, march_world() + march_world("eur", "_eu", 997))
    with db() as session:
        owner = dict(session.execute(select(InboxEvent.id, InboxEvent.customer_id)).all())
    segment = "".join(f"&filter={x}" for x in filters)
    report = client.get(
        f"/reports/movements?start=2025-03-01&end=2025-04-01&currency=usd{segment}", headers=auth
    ).json
    row = report["periods"][0]
    whole = client.get(
        "/reports/movements?start=2025-03-01&end=2025-04-01&currency=usd", headers=auth
    ).json["periods"][0]
    checked = 0
    for name, params in figures(row):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        url = f"/reports/movements/detail?start=2025-03-01&end=2025-04-01&currency=usd&{query}"
        doc = client.get(url + segment, headers=auth).json
        assert doc["filter"] == filters
        amounts = [m["amount"] for m in doc["movements"]]
        assert sum(amounts) == doc["amount"] == value(row, name), (url, doc)
        for m in doc["movements"]:
            assert m["native_currency"] == "usd" and m["events"]
            assert all(owner[e["id"]] == m["customer_id"] for e in m["events"])
        checked += bool(amounts)
        # The unfiltered detail of the same figure is the whole ledger's.
        assert client.get(url, headers=auth).json["amount"] == value(whole, name)
    assert checked >= moving and (checked == 0) == (moving == 0)
    # Converted (no currency): the usd segment at a rate of 1 beside the eur one.
    new = client.get(
        f"/reports/movements/detail?start=2025-03-01&end=2025-04-01&type=new{segment}",
        headers=auth,
    ).json
    assert new["currency"] == "usd"
    assert sum(m["amount"] for m in new["movements"]) == new["amount"]
    assert {m["native_currency"] for m in new["movements"]} == currencies
    mine = [m for m in new["movements"] if m["native_currency"] == "usd"]
    assert all(m["amount"] == m["native_amount"] for m in mine)


def test_a_bad_detail_filter_is_a_400(client, auth) -> None:
    base = "/reports/movements/detail?start=2025-03-01&end=2025-04-01&type=new"
    for bad in ("planet:x", "plan", "plan:"):
        response = client.get(f"{base}&filter={bad}", headers=auth)
        assert response.status_code == 400, bad
        assert response.json["error"]["code"] == "bad_query"


@pytest.mark.parametrize(
    "query",
    [
        "start=2025-03-01&end=2025-04-01",  # no type
        "start=2025-03-01&type=new",  # no end
        "start=2025-03-01&end=2025-04-01&type=growth",
        "start=2025-03-01&end=2025-04-01&type=new&kind=seats",
        "start=2025-03-01&end=2025-04-01&type=expansion&kind=magic",
        "start=2025-03-01&end=2025-04-01&type=new&reason=unknown",
        "start=2025-03-01&end=2025-04-01&type=churn&delinquent=maybe",
        "start=2025-04-01&end=2025-03-01&type=new",
        "start=2025-03-01&end=2025-04-01&type=new&currency=dollars",
        "start=2025-03-01&end=2025-04-01&type=new&period=month",
    ],
)
def test_a_bad_detail_query_is_a_400(query, client, auth) -> None:
    response = client.get(f"/reports/movements/detail?{query}", headers=auth)
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_query"


def test_activity_is_the_latest_movements_newest_first(db, settings, client, auth) -> None:
    apply_fixtures(db, settings)
    store_and_apply(db, settings, march_world())
    everything = client.get("/reports/activity?limit=500", headers=auth).json["movements"]
    keys = [(m["date"], m["customer_id"]) for m in everything]
    assert keys == sorted(keys, key=lambda k: (-datetime.fromisoformat(k[0]).timestamp(), k[1]))
    # Every movement of the ledger, in both currencies.
    assert {m["native_currency"] for m in everything} == {"usd", "eur"}
    default = client.get("/reports/activity", headers=auth).json
    assert default["limit"] == 50 and default["movements"] == everything[:50]
    three = client.get("/reports/activity?limit=3", headers=auth).json["movements"]
    assert three == everything[:3]
    # Ties by customer id: two customers moving in one second.
    assert [m["customer_id"] for m in three] == ["cus_tie_a", "cus_tie_b", "cus_m11"]
    assert all(m["events"] for m in everything)


@pytest.mark.parametrize("limit", ["0", "501", "-1", "ten", "", "1.5"])
def test_a_bad_activity_limit_is_a_400(limit, client, auth) -> None:
    response = client.get(f"/reports/activity?limit={limit}", headers=auth)
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_query"


def test_a_converted_figure_is_the_sum_of_its_detail_in_the_reporting_currency(
    db, settings, client, auth
) -> None:
    """Without `currency` (SPEC §10, §12): the same month in usd, eur, jpy and a currency
    the rates do not cover; each movement converts at its day's rate and the amounts
    sum to the converted row's figure to the unit."""
    world = march_world()
    world += march_world("eur", "_eu", 997)
    world += march_world("jpy", "_jp", 1313)
    world += march_world("ngn", "_ng", 50_000)  # no ECB rate: left out, listed
    store_and_apply(db, settings, world)
    report = client.get("/reports/movements?start=2025-03-01&end=2025-04-01", headers=auth).json
    assert report["currency"] == "usd" and "ngn" in report["unconverted"]
    row = report["periods"][0]
    checked = 0
    for name, params in figures(row):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        url = f"/reports/movements/detail?start=2025-03-01&end=2025-04-01&{query}"
        doc = client.get(url, headers=auth).json
        assert doc["currency"] == "usd"
        amounts = [m["amount"] for m in doc["movements"]]
        assert sum(amounts) == doc["amount"] == value(row, name), (url, doc)
        natives = {m["native_currency"] for m in doc["movements"]}
        assert natives <= {"usd", "eur", "jpy"}
        if doc["movements"]:
            assert natives == {"usd", "eur", "jpy"} and "ngn" in doc["unconverted"]
            checked += 1
        for m in doc["movements"]:
            if m["native_currency"] == "usd":
                assert m["amount"] == m["native_amount"]
            else:
                assert m["amount"] != m["native_amount"] and m["amount"] >= 0
    assert checked >= 8
    # A selection that is no single figure of the row: its amounts are the exact sum
    # rounded once.
    both = client.get(
        "/reports/movements/detail?start=2025-03-01&end=2025-04-01&type=churn"
        "&reason=payment_failed&delinquent=true",
        headers=auth,
    ).json
    assert both["count"] == 3 and both["amount"] == sum(m["amount"] for m in both["movements"])


def test_activity_converts_each_movement_into_the_reporting_currency(
    db, settings, client, auth
) -> None:
    store_and_apply(db, settings, march_world() + march_world("eur", "_eu", 997))
    doc = client.get("/reports/activity?limit=500", headers=auth).json
    assert doc["currency"] == "usd" and doc["rates"]["newest"]
    eur = [m for m in doc["movements"] if m["native_currency"] == "eur"]
    usd = [m for m in doc["movements"] if m["native_currency"] == "usd"]
    assert eur and usd and all(m["amount"] == m["native_amount"] for m in usd)
    # EUR was worth more than a dollar in March 2025.
    assert all(m["amount"] > m["native_amount"] for m in eur)


def trials_world(currency: str, tag: str, unit: int) -> list[dict[str, Any]]:
    """Three trials in March: one converts, one is canceled, one still runs at the end."""
    plan = f.price(f"price_trial{tag}", unit, currency=currency)
    events = []
    for n, (then, status) in enumerate([("active", "active"), ("canceled", "canceled")]):
        cus, t = f"cus{tag}_t{n}", MARCH + n * DAY
        sub = f.subscription(f"sub_{cus}", cus, [f.item(plan)], currency=currency)
        events.append(f.event(f"evt_{cus}_1", "customer.subscription.created", t, sub))
        events[-1]["data"]["object"]["status"] = "trialing"
        ended = f.subscription(f"sub_{cus}", cus, [f.item(plan)], currency=currency, status=status)
        kind = "deleted" if then == "canceled" else "updated"
        events.append(f.event(f"evt_{cus}_2", f"customer.subscription.{kind}", t + 9 * DAY, ended))
    cus = f"cus{tag}_t2"
    running = f.subscription(f"sub_{cus}", cus, [f.item(plan, 2)], currency=currency)
    running["status"] = "trialing"
    events.append(f.event(f"evt_{cus}_1", "customer.subscription.created", MARCH + DAY, running))
    return events


def test_the_converted_trial_funnel_sums_every_currency(db, settings, client, auth) -> None:
    """SPEC §7, §10: without `currency` the funnel counts every covered currency's trials
    and converts the pipeline MRR at each period's end, in `/reports/trials` and in the
    converted movement rows alike."""
    world = trials_world("usd", "", 1000) + trials_world("eur", "_eu", 900)
    world += trials_world("ngn", "_ng", 50_000)  # no ECB rate: left out, listed
    store_and_apply(db, settings, world)
    query = "start=2025-03-01&end=2025-05-01"
    usd, eur = (
        client.get(f"/reports/trials?{query}&currency={c}", headers=auth).json["periods"]
        for c in ("usd", "eur")
    )
    assert [(r["trials_started"], r["trials_converted"], r["trials_lost"]) for r in usd] == [
        (3, 1, 1),
        (0, 0, 0),
    ]
    doc = client.get(f"/reports/trials?{query}", headers=auth).json
    assert doc["currency"] == "usd" and doc["rates"]["newest"]
    assert "ngn" in doc["unconverted"]
    for row, mine, theirs in zip(doc["periods"], usd, eur, strict=True):
        for key in ("trials_started", "trials_converted", "trials_lost"):
            assert row[key] == mine[key] + theirs[key]
        # €18.00 of pipeline is worth more than $18.00 and less than $25.00 in 2025.
        assert mine["trial_pipeline_mrr"] == 2000 and theirs["trial_pipeline_mrr"] == 1800
        assert 2000 + 1800 < row["trial_pipeline_mrr"] < 2000 + 2500
    assert doc["periods"][0]["trial_conversion_rate"] == 0.5
    movements = client.get(f"/reports/movements?{query}", headers=auth).json
    for row, trial in zip(movements["periods"], doc["periods"], strict=True):
        assert {k: row[k] for k in trial} == trial
