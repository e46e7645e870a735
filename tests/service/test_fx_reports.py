"""Converted reports over HTTP on a real database (SPEC §10): a ledger in usd, eur, gbp,
jpy and aed (a currency the ECB does not publish) against an independent computation
from the shipped ECB history; `currency=xxx` stays native."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from itertools import pairwise

import pytest

from models.db import transaction
from models.inbox import store_event
from pipeline.apply import apply_event_ids
from pipeline.runtime import bootstrap
from reporting.rates import shipped_history
from tests import factories as f

#: (customer, currency, [(day, monthly amount or None for a cancellation)]).
LEDGER = [
    ("cus_us", "usd", [(date(2024, 1, 10), 10000), (date(2024, 2, 15), 15000)]),
    ("cus_eu", "eur", [(date(2024, 1, 20), 9000), (date(2024, 3, 5), None)]),
    ("cus_gb", "gbp", [(date(2024, 2, 3), 5000), (date(2024, 4, 18), 4000)]),
    ("cus_jp", "jpy", [(date(2024, 1, 25), 3000), (date(2024, 3, 12), 4500)]),
    ("cus_ae", "aed", [(date(2024, 1, 15), 20000)]),
]
EXPONENT = {"usd": 2, "eur": 2, "gbp": 2, "jpy": 0, "aed": 2}


def _at(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp())


def ledger_events() -> list[dict]:
    events = []
    for customer, currency, steps in LEDGER:
        sub_id = f"sub_{customer}"
        items: list[dict] = []
        for n, (day, amount) in enumerate(steps):
            if amount is None:
                sub = f.subscription(sub_id, customer, items, currency=currency, status="canceled")
                events.append(
                    f.event(f"evt_{customer}_{n}", "customer.subscription.deleted", _at(day), sub)
                )
                continue
            p = f.price(f"price_{customer}_{n}", amount, currency=currency)
            items = [f.item(p, item_id=f"si_{customer}")]
            sub = f.subscription(
                sub_id, customer, items, currency=currency, created=_at(steps[0][0])
            )
            kind = "created" if n == 0 else "updated"
            events.append(
                f.event(f"evt_{customer}_{n}", f"customer.subscription.{kind}", _at(day), sub)
            )
    return events


def apply(db, settings, events) -> None:
    ids = []
    for event in events:
        with transaction(db) as session:
            stored = store_event(session, event, json.dumps(event))
        ids.append(stored.event_id)
    for event_id in ids:
        apply_event_ids(bootstrap(settings), [event_id], batch=0)


def factor(currency: str, day: date) -> Fraction:
    """US cents per minor unit of `currency` on `day`, straight from the ECB rates."""
    h = shipped_history()
    usd, other = h.per_eur("usd", day), h.per_eur(currency, day)
    assert usd is not None and other is not None
    return Fraction(usd) / Fraction(other) * Fraction(10) ** (2 - EXPONENT[currency])


def level(day: date) -> dict[str, int]:
    """Each currency's native MRR at the start of `day`."""
    mrr = {}
    for _, currency, steps in LEDGER:
        mrr[currency] = 0
        for d, amount in steps:
            if d < day:
                mrr[currency] = amount or 0
    return mrr


def expected_month(lo: date, hi: date) -> dict[str, int]:
    """An independent converted month: levels at the last day before each boundary,
    each movement at its own day's rate, each field rounded once."""
    covered = ("usd", "eur", "gbp", "jpy")
    start = sum(level(lo)[c] * factor(c, lo - timedelta(days=1)) for c in covered)
    end = sum(level(hi)[c] * factor(c, hi - timedelta(days=1)) for c in covered)
    flows = {
        "new": Fraction(0),
        "expansion": Fraction(0),
        "contraction": Fraction(0),
        "churn": Fraction(0),
    }
    for _, currency, steps in LEDGER:
        if currency not in covered:
            continue
        before = 0
        for day, amount in steps:
            after = amount or 0
            if lo <= day < hi:
                key = (
                    "new"
                    if before == 0
                    else "churn"
                    if after == 0
                    else "expansion"
                    if after > before
                    else "contraction"
                )
                flows[key] += abs(after - before) * factor(currency, day)
            before = after
    fields = {k: round(v) for k, v in flows.items()}
    starting, ending = round(start), round(end)
    moved = fields["new"] + fields["expansion"] - fields["contraction"] - fields["churn"]
    return {
        "starting_mrr": starting,
        **fields,
        "ending_mrr": ending,
        "fx_adjustment": ending - starting - moved,
    }


IDENTITY = (
    "starting_mrr",
    "new",
    "expansion",
    "reactivation",
    "contraction",
    "churn",
    "fx_adjustment",
)


def identity_holds(row: dict) -> bool:
    return row["ending_mrr"] == (
        row["starting_mrr"]
        + row["new"]
        + row["expansion"]
        + row["reactivation"]
        - row["contraction"]
        - row["churn"]
        + row["fx_adjustment"]
    )


def test_converted_months_equal_an_independent_computation(db, settings, client, auth) -> None:
    apply(db, settings, ledger_events())
    doc = client.get("/reports/movements?start=2024-01-01&end=2024-06-01", headers=auth).json
    assert doc["currency"] == "usd"
    assert doc["unconverted"] == {"aed": 20000}  # listed, never summed
    assert doc["rates"]["source"] == "shipped"
    rows = doc["periods"]
    assert len(rows) == 5
    for row in rows:
        lo, hi = date.fromisoformat(row["period_start"]), date.fromisoformat(row["period_end"])
        got = {k: row[k] for k in expected_month(lo, hi)}
        assert got == expected_month(lo, hi), row["period_start"]
        assert identity_holds(row)
        assert sum(row["expansion_by_kind"].values()) == row["expansion"]
        assert sum(row["churn_by_reason"].values()) == row["churn"]
    for before, after in pairwise(rows):
        assert before["ending_mrr"] == after["starting_mrr"]  # rows chain
    # aed's customer is left out of the counts too: 3 covered customers joined in January.
    assert rows[0]["new_customers"] == 3
    assert rows[0]["fx_adjustment"] != 0 or rows[1]["fx_adjustment"] != 0  # rates moved


@pytest.mark.parametrize("period", ["week", "day"])
def test_converted_rows_chain_and_close_to_the_unit(period, db, settings, client, auth) -> None:
    apply(db, settings, ledger_events())
    doc = client.get(
        f"/reports/movements?period={period}&start=2024-01-01&end=2024-04-01", headers=auth
    ).json
    rows = doc["periods"]
    assert all(identity_holds(r) for r in rows)
    assert all(a["ending_mrr"] == b["starting_mrr"] for a, b in pairwise(rows))


def test_a_named_currency_stays_native(db, settings, client, auth) -> None:
    apply(db, settings, ledger_events())
    doc = client.get(
        "/reports/movements?currency=gbp&start=2024-01-01&end=2024-06-01", headers=auth
    ).json
    assert doc["currency"] == "gbp" and "unconverted" not in doc
    assert [
        (r["starting_mrr"], r["new"], r["contraction"], r["ending_mrr"]) for r in doc["periods"]
    ] == [
        (0, 0, 0, 0),
        (0, 5000, 0, 5000),
        (5000, 0, 0, 5000),
        (5000, 0, 1000, 4000),
        (4000, 0, 0, 4000),
    ]
    assert all("fx_adjustment" not in r for r in doc["periods"])
    aed = client.get("/reports/summary?currency=aed", headers=auth).json
    assert (aed["mrr"], aed["customers"]) == (20000, 1)


def test_converted_summary_and_cohorts(db, settings, client, auth) -> None:
    apply(db, settings, ledger_events())
    summary = client.get("/reports/summary?as_of=2024-05-31", headers=auth).json
    day = date(2024, 5, 31)
    mrr = level(day + timedelta(days=1))
    exact = sum(mrr[c] * factor(c, day) for c in ("usd", "gbp", "jpy"))
    assert (summary["currency"], summary["mrr"]) == ("usd", round(exact))
    assert summary["arr"] == 12 * summary["mrr"]
    assert summary["customers"] == 3  # usd, gbp, jpy; aed left out, eur churned
    assert summary["unconverted"] == {"aed": 20000}
    assert {c["currency"] for c in summary["currencies"]} == {"usd", "gbp", "jpy", "aed", "eur"}
    cohorts = client.get("/reports/cohorts?start=2024-01-01&end=2024-03-01", headers=auth).json
    january = cohorts["cohorts"][0]
    first = date(2024, 1, 1)
    new = 10000 * factor("usd", first) + 9000 * factor("eur", first) + 3000 * factor("jpy", first)
    assert (january["cohort"], january["customers"], january["new_mrr"]) == (
        "2024-01",
        3,
        round(new),
    )
    assert cohorts["unconverted"] == {"aed": 20000}


def test_csv_of_a_converted_report_has_fx_adjustment(db, settings, client, auth) -> None:
    apply(db, settings, ledger_events())
    text = client.get(
        "/reports/movements?start=2024-01-01&end=2024-03-01&format=csv", headers=auth
    ).get_data(as_text=True)
    header = text.splitlines()[0].split(",")
    assert "fx_adjustment" in header
    assert header.index("fx_adjustment") == header.index("ending_mrr") - 1


def test_customer_report_converts_at_todays_rate(db, settings, client, auth) -> None:
    apply(db, settings, ledger_events())
    doc = client.get("/reports/customers/cus_jp", headers=auth).json
    today = datetime.now(UTC).date()
    assert doc["mrr"] == {"jpy": 4500}
    assert doc["converted"] == {
        "currency": "usd",
        "mrr": round(4500 * factor("jpy", today)),
        "unconverted": {},
    }
    aed = client.get("/reports/customers/cus_ae", headers=auth).json
    assert aed["converted"] == {"currency": "usd", "mrr": 0, "unconverted": {"aed": 20000}}

    from tests.service.test_dashboard import sign_in

    sign_in(client)
    page = client.get("/dashboard/customers/cus_jp").get_data(as_text=True)
    converted = doc["converted"]["mrr"]
    assert f"(≈ {converted // 100}.{converted % 100:02d} USD at today's ECB rate)" in page


def test_a_reporting_currency_without_rates_is_a_clear_error(db, settings, auth) -> None:
    from service.app import create_app

    client = create_app(settings.with_overrides(reporting_currency="aed")).test_client()
    response = client.get("/reports/summary", headers=auth)
    assert response.status_code == 422
    assert "'aed'" in response.json["error"]["message"]
    assert client.get("/reports/summary?currency=aed", headers=auth).status_code == 200
    warnings = client.get("/status", headers=auth).json["warnings"]
    assert any(w.startswith("REPORTING_CURRENCY aed has no exchange rate") for w in warnings)


def test_status_names_the_rates_and_warns_about_unconverted_and_stale(
    db, settings, client, auth, tmp_path
) -> None:
    from click.testing import CliRunner

    from cli.main import cli
    from service.app import create_app

    apply(db, settings, ledger_events())
    doc = client.get("/status", headers=auth).json
    assert doc["fx"] == {"reporting_currency": "usd", "source": "shipped", "newest": "2026-10-30"}
    aed = [w for w in doc["warnings"] if w.startswith("aed ")]
    assert len(aed) == 1 and "no exchange rate" in aed[0]
    assert not any("days old" in w for w in doc["warnings"])  # FX_RATES_URL unset

    rates = tmp_path / "rates.csv"
    rates.write_text("Date,USD,AED,\n2024-01-02,1.10,4.04,\n")
    env = {"DATABASE_URL": settings.database_url, "FX_RATES_URL": str(rates)}
    assert CliRunner(env=env).invoke(cli, ["fx", "update"]).exit_code == 0
    watched = create_app(settings.with_overrides(fx_rates_url=str(rates))).test_client()
    doc = watched.get("/status", headers=auth).json
    assert doc["fx"]["source"] == "stored" and doc["fx"]["newest"] == "2024-01-02"
    assert any("days old (2024-01-02, stored)" in w for w in doc["warnings"])
    # These rates cover aed and no longer gbp or jpy (eur is the base: always covered).
    named = {w.split()[0] for w in doc["warnings"] if "has no exchange rate" in w}
    assert named == {"gbp", "jpy"}


def test_the_dashboard_shows_converted_figures_and_exchange_rates_apart(
    db, settings, client
) -> None:
    from tests.service.test_dashboard import marks, sign_in

    apply(db, settings, ledger_events())
    sign_in(client)
    html = client.get("/dashboard?start=2024-01-01&end=2024-06-01&focus=2024-03-01").get_data(
        as_text=True
    )
    doc = client.get("/reports/movements?period=month&start=2024-01-01&end=2024-06-01").json
    rows = doc["periods"]
    assert '<option value="" selected>All, in USD</option>' in html
    assert 'href="/reports/movements?period=month&amp;start=2024-01-01&amp;end=2024-06-01"' in html
    assert "Left out, no exchange rate: 200.00 AED" in html
    drawn = marks(html, "mrr")
    line, rest = drawn[: len(rows)], drawn[len(rows) :]
    assert line == [r["ending_mrr"] for r in rows]
    fx = [r["fx_adjustment"] for r in rows]
    assert rest[-len(rows) :] == fx  # the exchange-rate chart, one bar a period, apart
    assert sorted(rest[: -len(rows)]) == sorted(  # the movements, without the adjustment
        s * r[k]
        for r in rows
        for k, s in (("new", 1), ("expansion", 1), ("contraction", -1), ("churn", -1))
        if r[k]
    )
    march = rows[2]
    assert marks(html, "waterfall") == [
        march["starting_mrr"],
        march["new"],
        march["expansion"],
        march["reactivation"],
        -march["contraction"],
        -march["churn"],
        march["fx_adjustment"],
        march["ending_mrr"],
    ]
    native = client.get("/dashboard?currency=gbp&start=2024-01-01&end=2024-06-01").get_data(
        as_text=True
    )
    assert '<option value="gbp" selected>GBP only' in native
    assert "Exchange-rate adjustment" not in native and "k-fx" not in native
