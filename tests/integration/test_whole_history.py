"""Issue 18's acceptance: the whole history of an account from its invoices.

A world of 14 months (tests/world: trials that convert and that don't, seat changes
and upgrades mid-period with prorations pending and invoiced at once, cross-sell items,
an annual plan upgraded mid-year, forever discounts from the start and from a cycle
boundary, cancellations at period end and immediate, reactivations, USD and EUR) is
served by a Stripe stand-in at the HTTP layer (`responses`), in each API version's
shape. `mrr backfill` alone, with no webhook delivered, must give every monthly row,
every customer's and subscription's MRR and the cohort tables that delivering the
world's webhooks gives, on the suite's database (PostgreSQL and SQLite in CI).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import responses
from sqlalchemy import func, select

from models.tables import CustomerBalance, CustomerRow, InboxEvent, SubscriptionRow
from pipeline import enrich
from pipeline.backfill import backfill, client_for
from pipeline.replay import SourcedEvent, replay
from pipeline.reports import cohorts_report, movements_report, parse_query
from pipeline.runtime import Runtime, bootstrap
from tests.conftest import empty_tables
from tests.integration.fake_stripe import FakeStripe, holding
from tests.world import BASIL, CLOVER, LEGACY, World
from tests.world.calendar import boundary, utc
from tests.world.scenarios import NOW, central

API = "http://stripe.whole-history"
DAY = 86400
MONTHS = {"start": "2024-01-01", "end": "2025-04-01"}


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as m:
        yield m


def answer_with(mock: responses.RequestsMock, fake: FakeStripe) -> None:
    mock.add_callback(
        responses.GET, re.compile(re.escape(API) + r"/v1/.*"), callback=fake.responses_callback
    )


def figures(runtime: Runtime, currencies: list[str]) -> dict[str, Any]:
    """What issue 18 asks to be equal: the monthly rows and cohort tables per currency,
    each customer's balance and each subscription's standing."""
    doc: dict[str, Any] = {}
    for currency in currencies:
        query = parse_query({**MONTHS, "currency": currency, "period": "month"})
        doc[f"movements {currency}"] = movements_report(runtime, query)
        doc[f"cohorts {currency}"] = cohorts_report(runtime, query)
    with runtime.sessions() as s:
        doc["balances"] = sorted(
            (b.customer_id, b.currency, b.mrr, b.scheduled_churn, str(b.first_new_at))
            for b in s.scalars(select(CustomerBalance))
        )
        doc["subscriptions"] = sorted(
            (r.id, r.currency, r.status, r.mrr, r.scheduled_to_cancel)
            for r in s.scalars(select(SubscriptionRow))
        )
    return doc


def from_webhooks(runtime: Runtime, world: World) -> dict[str, Any]:
    """The reference: every webhook of the world through the intake, applied. The worker
    would have resolved basil discount ids while they were on the subscription: the
    cache holds what it fetched then."""
    known: dict[tuple[str, str], Any] = {}
    for discount in world.discounts().values():
        known[("discount", discount.id)] = {"coupon": discount.coupon.id}
    for coupon_id, coupon in world.coupons().items():
        known[("coupon", coupon_id)] = coupon
    enrich.cache_objects(runtime, known)
    events = [SourcedEvent("world", e, _raw(e)) for e in world.webhooks()]
    result = replay(runtime, events, sync=True)
    assert (result.failed, result.quarantined) == ({}, {})
    return figures(runtime, currencies(world))


def differences(found: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Where the two differ, one line per differing row or customer (readable failures)."""
    out = []
    for key in sorted(set(found) | set(expected)):
        a, b = found.get(key), expected.get(key)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list):
            out += [f"{key}: {x} != {y}" for x, y in zip(a, b, strict=False) if x != y]
            out += [f"{key}: only found {x}" for x in a[len(b) :]]
            out += [f"{key}: only expected {y}" for y in b[len(a) :]]
        elif isinstance(a, dict) and isinstance(b, dict) and "periods" in a:
            for ra, rb in zip(a["periods"], b["periods"], strict=False):
                if ra != rb:
                    diff = {k: (ra[k], rb.get(k)) for k in ra if ra[k] != rb.get(k)}
                    out.append(f"{key} {ra['period_start']}: {diff}")
        else:
            out.append(f"{key}: {a} != {b}")
    return out


def currencies(world: World) -> list[str]:
    return sorted({s["currency"] for s in world.subscriptions()})


def run_backfill(runtime: Runtime, **kw: Any) -> dict[str, int]:
    done = backfill(runtime, client_for(runtime), now=datetime.fromtimestamp(NOW, UTC), **kw)
    assert (done.failed, done.quarantined) == ({}, {})
    return done.document()


def _raw(event: dict[str, Any]) -> str:
    import json

    return json.dumps(event)


@pytest.mark.parametrize("version", [LEGACY, BASIL, CLOVER])
def test_a_backfill_alone_gives_every_month_exactly(version, db, settings, mock) -> None:
    world = central(version)
    keyed = settings.with_overrides(stripe_api_key="sk_test_history", stripe_api_base=API)
    expected = from_webhooks(bootstrap(settings), world)
    assert expected["subscriptions"], "the world has subscriptions"
    empty_tables(db)

    fake = holding(world)
    answer_with(mock, fake)
    counts = run_backfill(bootstrap(keyed))

    found = figures(bootstrap(keyed), currencies(world))
    assert differences(found, expected) == []
    assert counts["subscriptions"] == len(world.subscriptions())
    assert counts["invoices"] == len(world.invoices())
    assert counts["customers"] == len(world.customers())
    assert counts["api_calls"] == len(fake.requests)

    # A second run adds nothing.
    again = run_backfill(bootstrap(keyed))
    assert (again["events_stored"], again["synthetic_stored"], again["applied"]) == (0, 0, 0)
    assert again["opened"] == 0
    assert figures(bootstrap(keyed), currencies(world)) == expected


def test_a_first_backfill_on_postgresql_applies_by_the_bulk_path(
    db, settings, mock, monkeypatch
) -> None:
    """An account's first backfill derives the whole ledger as `mrr rebuild` does on
    PostgreSQL (the threshold lowered to this small world): the same figures, and the
    customer events it leaves pending still recorded."""
    if db.kw["bind"].dialect.name != "postgresql":
        pytest.skip("the bulk path is PostgreSQL's")
    import pipeline.bulk_rebuild
    from pipeline import backfill as use_case

    world = central(CLOVER)
    keyed = settings.with_overrides(stripe_api_key="sk_test_history", stripe_api_base=API)
    expected = from_webhooks(bootstrap(settings), world)
    empty_tables(db)
    runs = []
    real = pipeline.bulk_rebuild.bulk_rebuild

    def counted(*args: Any, **kw: Any) -> Any:
        runs.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(use_case, "BULK_MIN_CUSTOMERS", 1)
    monkeypatch.setattr(pipeline.bulk_rebuild, "bulk_rebuild", counted)
    answer_with(mock, holding(world))
    counts = run_backfill(bootstrap(keyed))

    assert runs == [1]
    assert differences(figures(bootstrap(keyed), currencies(world)), expected) == []
    assert counts["applied"] > 0
    with db() as s:
        assert s.scalar(select(func.count()).where(InboxEvent.status == "pending")) == 0
        assert s.scalar(select(func.count()).select_from(CustomerRow)) == len(world.customers())
    again = run_backfill(bootstrap(keyed))
    assert (again["synthetic_stored"], again["applied"]) == (0, 0)
    assert runs == [1], "nothing pending: no second rebuild"


def test_a_backfill_killed_halfway_finishes_on_the_next_run(db, settings, mock) -> None:
    world = central(BASIL)
    keyed = settings.with_overrides(stripe_api_key="sk_test_history", stripe_api_base=API)
    fake = holding(world)
    answer_with(mock, fake)
    run_backfill(bootstrap(keyed))
    expected = figures(bootstrap(keyed), currencies(world))
    with db() as s:
        ids = set(s.scalars(select(InboxEvent.id)))
    empty_tables(db)

    # Killed once the first page of histories is stored, before anything is applied.
    def die(stage: str, n: int) -> None:
        if stage == "histories stored":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_backfill(bootstrap(keyed), progress=die)
    run_backfill(bootstrap(keyed))

    assert figures(bootstrap(keyed), currencies(world)) == expected
    with db() as s:
        assert set(s.scalars(select(InboxEvent.id))) == ids


# --- acceptance 2: the window's webhooks too, in any order ------------------------------


def window_webhooks(world: World) -> list[dict[str, Any]]:
    return [e for e in world.webhooks() if e["created"] >= NOW - 30 * DAY]


@pytest.mark.parametrize("order", ["webhooks first", "backfill first", "interleaved"])
def test_live_webhooks_of_the_window_in_any_order_change_nothing(order, db, settings, mock) -> None:
    world = central(BASIL)
    keyed = settings.with_overrides(stripe_api_key="sk_test_history", stripe_api_base=API)
    answer_with(mock, holding(world))
    run_backfill(bootstrap(keyed))
    expected = figures(bootstrap(keyed), currencies(world))
    empty_tables(db)

    live = window_webhooks(world)
    assert len(live) >= 5, "the window holds webhooks"
    random.Random(order).shuffle(live)
    half = len(live) // 2
    deliveries = {
        "webhooks first": [live, None],
        "backfill first": [None, live],
        "interleaved": [live[:half], None, live[half:]],
    }[order]
    for batch in deliveries:
        if batch is None:
            run_backfill(bootstrap(keyed))
        else:
            result = replay(
                bootstrap(keyed), [SourcedEvent("live", e, _raw(e)) for e in batch], sync=True
            )
            assert (result.failed, result.quarantined) == ({}, {})

    assert differences(figures(bootstrap(keyed), currencies(world)), expected) == []


# --- acceptance 4: a basil forever discount that ended inside the window ----------------


def test_a_discount_that_ended_in_the_window_still_prices_the_months_before(
    db, settings, mock
) -> None:
    """The old backfill undid the window's removal event into an opening state that
    named the discount by id only; Stripe's subscription no longer has it, so October
    was priced at full price. The invoices know the discount (SPEC §9)."""
    world = World(BASIL, 7)
    pro = world.price("price_pro", 2500, product="prod_pro")
    twenty = world.coupon("FOREVER20", percent_off=20.0)
    anchor = utc(2024, 9, 2, 10)
    customer = world.customer(anchor - DAY, name="Juliet")
    sub = world.subscribe(customer, anchor, [(pro, 1)], coupon=twenty)
    ended = boundary(anchor, "month", 1, 6)  # 2025-03-02, inside the window
    seats = ended - 10 * DAY  # a change inside the window while the discount was on
    assert seats >= NOW - 30 * DAY
    world.set_quantity(sub, seats, pro, 2)
    world.remove_discount(sub, ended)
    world.run(NOW)
    keyed = settings.with_overrides(stripe_api_key="sk_test_history", stripe_api_base=API)
    expected = from_webhooks(bootstrap(settings), world)
    empty_tables(db)

    answer_with(mock, holding(world))
    run_backfill(bootstrap(keyed))

    found = figures(bootstrap(keyed), ["usd"])
    assert differences(found, expected) == []
    october = next(
        r for r in found["movements usd"]["periods"] if r["period_start"] == "2024-10-01"
    )
    assert october["ending_mrr"] == 2000  # 25.00 less 20 %
    march = next(r for r in found["movements usd"]["periods"] if r["period_start"] == "2025-03-01")
    february = next(
        r for r in found["movements usd"]["periods"] if r["period_start"] == "2025-02-01"
    )
    # Two seats at 25.00 less 20 %: the event names the discount by id only, and only the
    # invoices still know its coupon.
    assert (february["ending_mrr"], february["expansion_by_kind"]["seats"]) == (4000, 2000)
    assert (march["expansion"], march["expansion_by_kind"]["discount"]) == (1000, 1000)


def test_a_backfill_process_killed_midway_gives_the_same_ledger_when_run_again(
    db, settings
) -> None:
    """`mrr backfill` as a real process against the stand-in over HTTP, killed with
    SIGKILL once it has stored the customers and before the histories, then run again to
    its end: the
    same figures and the same inbox as one run that was never interrupted."""
    import signal
    import subprocess

    from tests.integration.fake_stripe import serve
    from tests.integration.processes import BIN, ROOT, cli_json, process_env

    world = central(BASIL)
    fake = holding(world)
    with serve(fake) as base:
        env = {
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "STRIPE_API_KEY": "sk_test_history",
            "STRIPE_API_BASE": base,
        }
        cli_json(env, "backfill")
        expected = figures(bootstrap(settings), currencies(world))
        with db() as s:
            ids = set(s.scalars(select(InboxEvent.id)))
        empty_tables(db)

        fake.delay_s = 0.2  # slow enough to be caught between two pages
        proc = subprocess.Popen(
            [str(BIN / "mrr"), "backfill", "--json"],
            env=process_env(env),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                with db() as s:
                    count = select(func.count()).where(InboxEvent.synthetic.is_(True))
                    if (s.scalar(count) or 0) > 0:
                        break  # the customers are stored; invoices are being listed
                time.sleep(0.01)
            assert proc.poll() is None, "the backfill ended before it could be killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        with db() as s:
            assert set(s.scalars(select(InboxEvent.id))) < ids, "killed before its end"

        fake.delay_s = 0.0
        cli_json(env, "backfill")

    assert differences(figures(bootstrap(settings), currencies(world)), expected) == []
    with db() as s:
        assert set(s.scalars(select(InboxEvent.id))) == ids
