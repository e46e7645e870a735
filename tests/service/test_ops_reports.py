"""Ops and report endpoints: bearer auth, SPEC §7 figures over HTTP, JSON errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from fractions import Fraction

import pytest

from models.db import transaction
from models.inbox import store_event
from pipeline.apply import apply_event_ids
from pipeline.runtime import bootstrap
from reporting.rates import shipped_history
from service.app import create_app
from tests.conftest import OPS_TOKEN, load_fixture_events

PROTECTED = [
    "/status",
    "/reports/summary",
    "/reports/movements",
    "/reports/cohorts",
    "/reports/trials",
    "/reports/customers/cus_acme",
]


def apply_fixtures(db, settings) -> None:
    """Store the fixture events and apply them inline, as `mrr replay --sync` does."""
    ids = []
    for event in load_fixture_events():
        with transaction(db) as session:
            stored = store_event(session, event, json.dumps(event))
        if stored.pending:
            ids.append(stored.event_id)
    for event_id in ids:
        apply_event_ids(bootstrap(settings), [event_id], batch=0)


def test_healthz_is_open(client) -> None:
    assert client.get("/healthz").json == {"ok": True}


@pytest.mark.parametrize("path", PROTECTED)
def test_ops_endpoints_need_the_bearer_token(path, client) -> None:
    missing = client.get(path)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.json["error"]["code"] == "unauthorized"
    wrong = client.get(path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    basic = client.get(path, headers={"Authorization": f"Basic {OPS_TOKEN}"})
    assert basic.status_code == 401


@pytest.mark.parametrize("path", PROTECTED)
def test_ops_endpoints_are_closed_without_a_configured_token(path, settings) -> None:
    client = create_app(settings.with_overrides(ops_token=None)).test_client()
    response = client.get(path, headers={"Authorization": "Bearer anything"})
    assert response.status_code == 503
    assert response.json["error"]["code"] == "ops_disabled"


def test_movements_report_matches_the_hand_computed_months(db, settings, client, auth) -> None:
    apply_fixtures(db, settings)
    response = client.get(
        "/reports/movements?period=month&start=2024-01-01&end=2024-07-01&currency=usd",
        headers=auth,
    )
    assert response.status_code == 200
    doc = response.json
    assert (doc["currency"], doc["period"], doc["start"], doc["end"]) == (
        "usd",
        "month",
        "2024-01-01",
        "2024-07-01",
    )
    got = [
        (
            r["period_start"],
            r["starting_mrr"],
            r["new"],
            r["expansion"],
            r["contraction"],
            r["churn"],
            r["reactivation"],
            r["ending_mrr"],
            r["starting_customers"],
            r["ending_customers"],
            r["churned_customers"],
        )
        for r in doc["periods"]
    ]
    assert got == [
        # acme new 4500 + globex new 10000 + umbrella new 14333
        ("2024-01-01", 0, 28833, 0, 0, 0, 0, 28833, 0, 3, 0),
        # acme seats +3000, umbrella discount -666
        ("2024-02-01", 28833, 0, 3000, 666, 0, 0, 31167, 3, 3, 0),
        # acme upgrade +5000, globex delinquent churn 10000
        ("2024-03-01", 31167, 0, 5000, 0, 10000, 0, 26167, 3, 2, 1),
        # acme discount -2500, umbrella churn 13667
        ("2024-04-01", 26167, 0, 0, 2500, 13667, 0, 10000, 2, 1, 1),
        # globex comes back with a new subscription
        ("2024-05-01", 10000, 0, 0, 0, 0, 8000, 18000, 1, 2, 0),
        # acme churns at the end of its period
        ("2024-06-01", 18000, 0, 0, 0, 10000, 0, 8000, 2, 1, 1),
    ]
    march = doc["periods"][2]
    assert march["customer_churn_rate"] == round(1 / 3, 6)
    assert march["delinquent_churn"] == 10000
    assert march["churn_by_reason"] == {"unknown": 10000}
    assert march["expansion_by_kind"]["upgrade"] == 5000
    assert march["net_mrr_churn_rate"] == round((10000 - 5000) / 31167, 6)
    may = doc["periods"][4]
    assert may["reactivated_customers"] == 1 and may["quick_ratio"] is None


def test_weekly_and_daily_periods_snap_outward(db, settings, client, auth) -> None:
    apply_fixtures(db, settings)
    weekly = client.get(
        "/reports/movements?period=week&start=2024-01-10&end=2024-01-17&currency=usd", headers=auth
    ).json
    assert (weekly["start"], weekly["end"]) == ("2024-01-08", "2024-01-22")
    # umbrella 14333 on 01-10; acme 4500 on 01-15 and globex 10000 on 01-20
    assert [r["new"] for r in weekly["periods"]] == [14333, 14500]
    daily = client.get(
        "/reports/movements?period=day&start=2024-01-15&end=2024-01-16&currency=usd", headers=auth
    ).json
    assert [r["new"] for r in daily["periods"]] == [4500]


def test_eur_is_its_own_ledger(db, settings, client, auth) -> None:
    apply_fixtures(db, settings)
    doc = client.get(
        "/reports/movements?start=2024-01-01&end=2024-05-01&currency=eur", headers=auth
    ).json
    assert [r["ending_mrr"] for r in doc["periods"]] == [0, 9800, 11300, 21100]
    assert doc["periods"][3]["expansion_by_kind"]["seats"] == 9800


def test_summary_now_and_as_of(db, settings, client, auth) -> None:
    apply_fixtures(db, settings)
    now = client.get("/reports/summary?currency=usd", headers=auth).json
    assert (now["currency"], now["mrr"], now["arr"], now["customers"], now["arpa"]) == (
        "usd",
        8000,
        96000,
        1,
        8000,
    )
    assert now["scheduled_churn"] == 0
    assert {c["currency"]: c["mrr"] for c in now["currencies"]} == {"usd": 8000, "eur": 21100}
    assert now["projection"] == [8000] * 12  # nothing moved in the trailing 30 days
    past = client.get("/reports/summary?currency=usd&as_of=2024-03-25", headers=auth).json
    assert (past["mrr"], past["customers"]) == (26167, 2)
    assert past["scheduled_churn"] is None
    # Trailing 30 days to 2024-03-25: opening 2024-02-25 was 31167 with 3 customers;
    # +5000 upgrade, -10000 churn.
    assert past["trailing_30d"]["period_start"] == "2024-02-25"
    assert past["customer_churn_rate"] == round(1 / 3, 6)
    assert past["net_mrr_churn_rate"] == round(5000 / 31167, 6)
    # Without `currency`: every currency converted into REPORTING_CURRENCY (usd) at the
    # rate of today's UTC date (the shipped ECB history's latest), EUR crossed as is.
    default = client.get("/reports/summary", headers=auth).json
    usd_per_eur = Fraction(shipped_history().per_eur("usd", datetime.now(UTC).date()))
    assert default["currency"] == "usd"
    assert default["mrr"] == round(8000 + 21100 * usd_per_eur)
    assert default["arr"] == 12 * default["mrr"]
    assert default["customers"] == sum(c["customers"] for c in default["currencies"])
    assert default["unconverted"] == {}
    assert default["trailing_30d"]["fx_adjustment"] == 0  # both held still: no revaluation
    assert {c["currency"]: c["mrr"] for c in default["currencies"]} == {"usd": 8000, "eur": 21100}


def test_summary_on_an_empty_ledger(client, auth) -> None:
    doc = client.get("/reports/summary", headers=auth).json
    assert (doc["currency"], doc["mrr"], doc["customers"], doc["arpa"]) == ("usd", 0, 0, None)
    native = client.get("/reports/summary?currency=gbp", headers=auth).json
    assert (native["currency"], native["mrr"], native["customers"]) == ("gbp", 0, 0)
    assert "unconverted" not in native and "fx_adjustment" not in native["trailing_30d"]


def test_customer_report_and_unknown_customer(db, settings, client, auth) -> None:
    apply_fixtures(db, settings)
    doc = client.get("/reports/customers/cus_globex", headers=auth).json
    assert doc["mrr"] == {"usd": 8000}
    assert [m["type"] for m in doc["movements"]] == ["new", "churn", "reactivation"]
    assert doc["movements"][1]["delinquent"] is True
    assert [t["mrr"] for t in doc["timeline"]] == [10000, 0, 8000]
    assert {s["id"]: s["status"] for s in doc["subscriptions"]} == {
        "sub_globex1": "unpaid",
        "sub_globex2": "active",
    }
    missing = client.get("/reports/customers/cus_nobody", headers=auth)
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "unknown_customer"


@pytest.mark.parametrize(
    "query",
    [
        "period=year",
        "period=",
        "start=",
        "as_of=",
        "start=2024-13-01",
        "end=yesterday",
        "currency=dollars",
        "currency=u1d",
        "start=2024-05-01&end=2024-04-01",
        "start=2024-05-01&end=2024-05-01",
        "as_of=not-a-date",
        "period=day&start=2000-01-01&end=2024-01-01",
    ],
)
@pytest.mark.parametrize("endpoint", ["movements", "cohorts", "summary", "trials"])
def test_bad_report_parameters_are_json_400(query, endpoint, client, auth) -> None:
    if endpoint == "summary" and query.startswith("period=day&start=2000"):
        pytest.skip("a long range is only too long for the reports that list periods")
    response = client.get(f"/reports/{endpoint}?{query}", headers=auth)
    assert response.status_code == 400, (endpoint, query)
    assert response.json["error"]["code"] == "bad_query"
    assert response.json["error"]["message"]


def test_unknown_url_is_a_json_404(client) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_cohorts_report(db, settings, client, auth) -> None:
    apply_fixtures(db, settings)
    doc = client.get(
        "/reports/cohorts?currency=usd&start=2024-01-01&end=2024-07-01", headers=auth
    ).json
    assert (doc["start"], doc["end"]) == ("2024-01-01", "2024-07-01")
    january = doc["cohorts"][0]
    # acme 4500, globex 10000, umbrella 14333 all start in January.
    assert (january["cohort"], january["customers"], january["new_mrr"]) == ("2024-01", 3, 28833)
    assert [(c["customers"], c["mrr"]) for c in january["months"]] == [
        (3, 28833),
        (3, 31167),
        (2, 26167),
        (1, 10000),
        (2, 18000),
        (1, 8000),
    ]
    assert january["months"][1]["revenue_retention"] == round(31167 / 28833, 6)  # > 1
    assert january["months"][2]["customer_retention"] == round(2 / 3, 6)
    assert all(c["customers"] == 0 for c in doc["cohorts"][1:])
    eur = client.get(
        "/reports/cohorts?currency=eur&start=2024-01-01&end=2024-05-01", headers=auth
    ).json
    assert [(c["cohort"], c["customers"], c["new_mrr"]) for c in eur["cohorts"]] == [
        ("2024-01", 0, 0),
        ("2024-02", 1, 9800),
        ("2024-03", 0, 0),
        ("2024-04", 0, 0),
    ]
    assert eur["cohorts"][1]["months"][-1]["revenue_retention"] == round(21100 / 9800, 6)


def test_trials_report_and_the_trial_keys_of_period_rows(db, settings, client, auth) -> None:
    apply_fixtures(db, settings)
    # Acme's trial (3 seats at 15.00) starts on Jan 1 and converts on Jan 15.
    jan_1 = "start=2024-01-01&end=2024-01-08&period=day&currency=usd"
    daily = client.get(f"/reports/trials?{jan_1}", headers=auth).json
    assert daily["periods"][0]["trials_started"] == 1
    assert [r["trial_pipeline_mrr"] for r in daily["periods"]] == [4_500] * 7
    query = "start=2024-01-01&end=2024-03-01&currency=usd"
    doc = client.get(f"/reports/trials?{query}", headers=auth).json
    assert doc["periods"] == [
        {
            "period_start": "2024-01-01",
            "period_end": "2024-02-01",
            "trials_started": 1,
            "trials_converted": 1,
            "trials_lost": 0,
            "trial_conversion_rate": 1.0,
            "trial_pipeline_mrr": 0,
        },
        {
            "period_start": "2024-02-01",
            "period_end": "2024-03-01",
            "trials_started": 0,
            "trials_converted": 0,
            "trials_lost": 0,
            "trial_conversion_rate": None,
            "trial_pipeline_mrr": 0,
        },
    ]
    movements = client.get(f"/reports/movements?{query}", headers=auth).json
    for row, trial in zip(movements["periods"], doc["periods"], strict=True):
        assert {k: row[k] for k in trial} == trial
    csv = client.get(f"/reports/trials?{query}&format=csv", headers=auth).get_data(as_text=True)
    assert csv.splitlines()[0].startswith("period_start,period_end,trials_started")
    assert len(csv.splitlines()) == 3


def test_unknown_parameters_are_refused(client, auth) -> None:
    response = client.get("/reports/summary?currnecy=eur", headers=auth)
    assert response.status_code == 400
    assert "unknown parameter 'currnecy'" in response.json["error"]["message"]
    assert client.get("/reports/summary?period=month", headers=auth).status_code == 400


def test_status_reports_redis_and_database_outages(settings, tmp_path, auth) -> None:
    redis_down = create_app(settings.with_overrides(redis_url="redis://127.0.0.1:1/0"))
    doc = redis_down.test_client().get("/status", headers=auth).json
    assert doc["redis"] is False and doc["database"] is True
    assert doc["inbox"]["received"] == 0
    assert any("redis unreachable" in w for w in doc["warnings"])
    db_down = create_app(
        settings.with_overrides(database_url=f"sqlite:///{tmp_path}/missing/dir/x.db")
    )
    doc = db_down.test_client().get("/status", headers=auth).json
    assert doc["database"] is False and doc["redis"] is True
    assert doc["inbox"] is None
    assert doc["warnings"] == ["database unreachable"]


def test_status_counts_oldest_pending_and_queue(post_event, client, auth) -> None:
    for event in load_fixture_events()[:3]:
        post_event(event)
    doc = client.get("/status", headers=auth).json
    assert doc["inbox"]["pending"] == 3 and doc["inbox"]["received"] == 3
    assert doc["inbox"]["oldest_pending_age_s"] >= 0
    assert doc["queue"]["depth"] == 3
    assert doc["last_event"]["processed_at"] is None
    assert doc["lag_s"] is None


def test_movements_grouped_by_an_item_key_sum_to_the_whole(db, settings, client, auth) -> None:
    apply_fixtures(db, settings)
    query = "start=2024-01-01&end=2024-07-01&currency=usd"
    whole = client.get(f"/reports/movements?{query}", headers=auth).json
    for key in ("plan", "product", "interval"):
        doc = client.get(f"/reports/movements?{query}&group_by={key}", headers=auth).json
        assert doc["group_by"] == key and doc["groups"]
        ends = [g["periods"][-1]["ending_mrr"] for g in doc["groups"]]
        assert ends == sorted(ends, reverse=True)
        for n, row in enumerate(whole["periods"]):
            assert doc["periods"][n]["ending_mrr"] == row["ending_mrr"]
            for field in ("starting_mrr", "ending_mrr"):
                assert sum(g["periods"][n][field] for g in doc["groups"]) == row[field], key
    plans = client.get(f"/reports/movements?{query}&group_by=plan", headers=auth).json
    trials = client.get(f"/reports/trials?{query}", headers=auth).json
    for row, trial in zip(plans["periods"], trials["periods"], strict=True):
        assert {k: row[k] for k in trial} == trial  # the whole keeps every trial
    assert sum(g["periods"][0]["trials_started"] for g in plans["groups"]) == 1  # acme's
    first, second = plans["groups"][0], plans["groups"][1]
    one = client.get(f"/reports/movements?{query}&filter=plan:{first['value']}", headers=auth).json
    assert one["periods"] == first["periods"]
    both = client.get(
        f"/reports/movements?{query}&filter=plan:{first['value']}&filter=plan:{second['value']}",
        headers=auth,
    ).json
    assert both["periods"][-1]["ending_mrr"] == (
        first["periods"][-1]["ending_mrr"] + second["periods"][-1]["ending_mrr"]
    )
    none = client.get(
        f"/reports/movements?{query}&filter=plan:{first['value']}&filter=interval:day",
        headers=auth,
    ).json
    assert all(r["ending_mrr"] == 0 for r in none["periods"])  # different keys AND
    csv = client.get(f"/reports/movements?{query}&group_by=plan&format=csv", headers=auth)
    header = csv.get_data(as_text=True).splitlines()[0]
    assert "group.key" in header and "group.value" in header
    for bad in ("filter=plan", "group_by=colour"):
        response = client.get(f"/reports/movements?{query}&{bad}", headers=auth)
        assert response.status_code == 400, bad
