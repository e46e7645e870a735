"""Fetching what webhooks lack from Stripe's API (mocked at the HTTP layer with `responses`)."""

from __future__ import annotations

import json

import pytest
import responses
import stripe
from responses import matchers
from sqlalchemy import func, select

from models.db import transaction
from models.inbox import store_event
from models.tables import EventStatus, InboxEvent, StripeObject, SubscriptionRow
from pipeline.apply import apply_event_ids
from pipeline.enrich import subscription_expand
from pipeline.runtime import bootstrap
from tests import factories as f
from tests.conftest import FIXTURES, NEEDS_API
from tests.integration.helpers import movement_rows

API = "http://stripe.mock"
T = 1704067200
TIERS = [
    {
        "flat_amount": 1000,
        "flat_amount_decimal": "1000",
        "unit_amount": 500,
        "unit_amount_decimal": "500",
        "up_to": 10,
    },
    {
        "flat_amount": None,
        "flat_amount_decimal": None,
        "unit_amount": 400,
        "unit_amount_decimal": "400",
        "up_to": None,
    },
]


@pytest.fixture
def keyed(settings):
    return settings.with_overrides(stripe_api_key="sk_test_123", stripe_api_base=API)


def apply(db, settings, event: dict) -> None:
    with transaction(db) as session:
        store_event(session, event, json.dumps(event))
    apply_event_ids(bootstrap(settings), [event["id"]], batch=0)


def tiered_event(event_id: str, customer: str, quantity: int = 5, legacy: bool = False) -> dict:
    p = f.price("price_tiered", None, billing_scheme="tiered", tiers_mode="volume")
    sub = f.subscription(
        f"sub_{customer}", customer, [f.item(p, quantity, legacy=legacy)], legacy=legacy
    )
    if legacy:  # a plan-only legacy item: the plan must be fetched
        for item in sub["items"]["data"]:
            del item["price"]
            item["plan"]["id"] = "plan_tiered"
    return f.event(event_id, "customer.subscription.created", T, sub)


def sub_mrr(db, sub_id: str) -> int:
    with db() as session:
        return (
            session.scalars(select(SubscriptionRow).where(SubscriptionRow.id == sub_id)).one().mrr
        )


@responses.activate
def test_price_tiers_are_fetched_once_and_cached(db, keyed) -> None:
    responses.get(
        f"{API}/v1/prices/price_tiered",
        json={
            "id": "price_tiered",
            "object": "price",
            "billing_scheme": "tiered",
            "tiers_mode": "volume",
            "tiers": TIERS,
            "currency": "usd",
        },
        match=[matchers.query_param_matcher({"expand[0]": "tiers"})],
    )
    apply(db, keyed, tiered_event("evt_t1", "cus_t1", 5))
    assert sub_mrr(db, "sub_cus_t1") == 3500  # 5 × 500 + 1000 flat
    apply(db, keyed, tiered_event("evt_t2", "cus_t2", 12))
    assert sub_mrr(db, "sub_cus_t2") == 4800  # 12 × 400
    assert len(responses.calls) == 1  # the second customer used the cache
    assert responses.calls[0].request.headers["Authorization"] == "Bearer sk_test_123"
    with db() as session:
        assert session.get(StripeObject, ("price", "price_tiered")) is not None
        assert session.get(InboxEvent, "evt_t1").warnings is None


@responses.activate
def test_legacy_plan_tiers_come_from_the_plans_endpoint(db, keyed) -> None:
    responses.get(
        f"{API}/v1/plans/plan_tiered",
        json={
            "id": "plan_tiered",
            "object": "plan",
            "billing_scheme": "tiered",
            "tiers_mode": "volume",
            "tiers": TIERS,
        },
        match=[matchers.query_param_matcher({"expand[0]": "tiers"})],
    )
    apply(db, keyed, tiered_event("evt_l1", "cus_l1", 5, legacy=True))
    assert sub_mrr(db, "sub_cus_l1") == 3500


@responses.activate
def test_basil_discount_ids_resolve_through_the_subscription(db, keyed) -> None:
    coupon = f.coupon("TEN", percent_off=10.0)
    expanded = {
        "id": "sub_initech",
        "object": "subscription",
        "discounts": [f.discount("di_initech_ten", coupon, clover=True)],
        "items": {"object": "list", "data": []},
    }
    responses.get(
        f"{API}/v1/subscriptions/sub_initech",
        json=expanded,
        match=[
            matchers.query_param_matcher(
                {
                    "expand[0]": "discounts",
                    "expand[1]": "discounts.source.coupon",
                    "expand[2]": "items.data.discounts",
                }
            )
        ],
    )
    basil = [*(FIXTURES / "2025-03-31.basil").glob("*.json"), *NEEDS_API.glob("*/*.json")]
    for path in sorted(basil, key=lambda p: p.name):
        apply(db, keyed, json.loads(path.read_text()))
    rows = [r for r in movement_rows(db) if r[0] == "cus_initech"]
    # 21100 eur with a forever 10 % coupon: 18990, a contraction of kind discount.
    assert rows[-1] == (
        "cus_initech",
        "eur",
        4,
        "2024-05-01",
        "contraction",
        2110,
        18990,
        "discount",
        None,
        False,
    )
    with db() as session:
        assert session.get(InboxEvent, "evt_ini_d").warnings is None
        kinds = set(session.scalars(select(StripeObject.kind)))
    assert kinds == {"discount", "coupon"}


@responses.activate
def test_a_coupon_named_only_by_id_is_fetched(db, keyed) -> None:
    responses.get(f"{API}/v1/coupons/HALF", json=f.coupon("HALF", percent_off=50.0))
    disc = {
        **f.discount("di_h", f.coupon("HALF"), clover=True),
        "source": {"type": "coupon", "coupon": "HALF"},
    }
    sub = f.subscription("sub_h", "cus_h", [f.item(f.price("price_h", 3000))], discounts=[disc])
    apply(db, keyed, f.event("evt_h", "customer.subscription.created", T, sub))
    assert sub_mrr(db, "sub_h") == 1500


@responses.activate
def test_an_object_stripe_does_not_have_leaves_a_warning(db, keyed) -> None:
    responses.get(
        f"{API}/v1/prices/price_tiered",
        status=404,
        json={
            "error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": "No such price: 'price_tiered'",
            }
        },
    )
    apply(db, keyed, tiered_event("evt_404", "cus_404"))
    with db() as session:
        row = session.get(InboxEvent, "evt_404")
        assert row.status == EventStatus.PROCESSED
        assert "tiers of price price_tiered unknown" in row.warnings
        assert session.scalar(select(func.count()).select_from(StripeObject)) == 0


@responses.activate
def test_a_stripe_outage_fails_the_job_for_a_retry(db, keyed) -> None:
    responses.get(
        f"{API}/v1/prices/price_tiered",
        status=500,
        json={"error": {"type": "api_error", "message": "boom"}},
    )
    event = tiered_event("evt_500", "cus_500")
    with transaction(db) as session:
        store_event(session, event, json.dumps(event))
    with pytest.raises(Exception, match="boom"):
        apply_event_ids(bootstrap(keyed), ["evt_500"], batch=0)
    with db() as session:
        row = session.get(InboxEvent, "evt_500")
        assert row.attempts == 1 and "boom" in row.last_error
        half_written = select(SubscriptionRow).where(SubscriptionRow.id == "sub_cus_500")
        assert session.scalars(half_written).first() is None  # nothing half-written


def test_discount_expansions_follow_the_pinned_api_version() -> None:
    assert subscription_expand("2025-03-31.basil") == ["discounts", "items.data.discounts"]
    assert subscription_expand("2025-09-30.clover") == [
        "discounts",
        "discounts.source.coupon",
        "items.data.discounts",
    ]
    assert subscription_expand(stripe.api_version)[1] == "discounts.source.coupon"


def test_without_a_key_nothing_is_fetched_and_the_event_warns(db, settings) -> None:
    with responses.RequestsMock() as mock:  # any HTTP call would raise
        apply(db, settings, tiered_event("evt_nokey", "cus_nokey"))
        assert len(mock.calls) == 0
    with db() as session:
        assert session.get(InboxEvent, "evt_nokey").warnings is not None
    assert sub_mrr(db, "sub_cus_nokey") == 0


def test_two_workers_caching_the_same_price_at_once_both_succeed(db, settings) -> None:
    """Two hosts apply two customers on one price: both fetch it, both cache it. The
    second insert is ignored (it cost the event an attempt on a primary-key violation)."""
    import threading

    from pipeline.enrich import cache_objects

    runtime = bootstrap(settings)
    price = {("price", "price_shared"): {"id": "price_shared", "tiers": TIERS}}
    errors: list[BaseException] = []

    def second_worker() -> None:
        try:
            cache_objects(runtime, price)
        except BaseException as exc:
            errors.append(exc)

    with transaction(db) as first:
        from pipeline.enrich import _store

        _store(first, price)
        first.flush()  # the row is written, not yet committed
        other = threading.Thread(target=second_worker)
        other.start()
        other.join(timeout=1)  # on PostgreSQL it waits for this transaction
    other.join(timeout=30)
    assert not other.is_alive()
    assert errors == []
    with db() as session:
        assert session.scalar(select(func.count()).select_from(StripeObject)) == 1
