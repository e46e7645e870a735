"""Every payload under ../shared/stripe-samples parses, or is refused with a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.errors import InvalidEvent
from ledger.events import parse_event
from ledger.mrr import subscription_mrr
from ledger.snapshot import parse_coupon, parse_discount, parse_price, parse_subscription

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "stripe-samples"
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/stripe-samples absent")


def load(rel: str) -> dict:
    return json.loads((SAMPLES / rel).read_text())


@pytest.mark.parametrize(
    ("rel", "status", "mrr"),
    [
        ("legacy-2020-03-02/subscription_created.json", "active", 0),  # 0-usd price, 2 items
        ("legacy-2020-03-02/subscription_updated.json", "active", 0),
        ("legacy-2020-03-02/subscription_deleted.json", "canceled", 0),
    ],
)
def test_legacy_event_envelopes_parse(rel: str, status: str, mrr: int) -> None:
    event = parse_event(load(rel))
    assert event.snapshot.status == status
    assert event.snapshot.customer == "cus_IhGfebO16cMIGN"
    assert subscription_mrr(event.snapshot).amount == mrr


@pytest.mark.parametrize(
    ("name", "mrr"),
    [("0001", 2000), ("0002", 4000), ("0003", 2000), ("0004", 6000)],
)
def test_dj_stripe_bare_subscriptions_price_from_items(name: str, mrr: int) -> None:
    sub = load(f"dj-stripe-legacy/subscription_sub_fakefakefakefakefake{name}.json")
    assert subscription_mrr(parse_subscription(sub)).amount == mrr


@pytest.mark.parametrize(
    "rel",
    sorted(p.name for p in (SAMPLES / "pay-data-only").glob("*.json")) if SAMPLES.is_dir() else [],
)
def test_data_only_payloads_are_refused_as_events_but_their_object_parses(rel: str) -> None:
    data = load(f"pay-data-only/{rel}")
    with pytest.raises(InvalidEvent, match="no string id or type"):
        parse_event(data)
    snapshot = parse_subscription(data["object"])  # plan-shaped `price` objects
    assert snapshot.customer == "cus_00000000000000"
    assert subscription_mrr(snapshot).amount >= 0


def test_data_only_created_prices_its_plan_shaped_price() -> None:
    sub = load("pay-data-only/subscription.created.json")["object"]
    snapshot = parse_subscription(sub)
    assert snapshot.status == "active"
    assert subscription_mrr(snapshot).amount == 600  # 300 usd x quantity 2


def test_openapi_objects_parse() -> None:
    sub = parse_subscription(load("openapi-objects/subscription.json"))
    assert sub.currency == "usd"
    # transform_quantity divides by a huge placeholder, rounding down: 0 units.
    assert subscription_mrr(sub).amount == 0
    assert parse_price(load("openapi-objects/price.json"), "price").unit_amount == 2000
    assert parse_price(load("openapi-objects/plan.json"), "plan").unit_amount == 2000
    coupon = parse_coupon(load("openapi-objects/coupon.json"))
    assert coupon is not None and str(coupon.percent_off) == "25.5"
    discount = parse_discount(load("openapi-objects/discount.json"))
    assert discount is not None and discount.coupon is None  # source.coupon is null
    item = load("openapi-objects/subscription_item.json")
    assert parse_price(item["price"], "item").interval == "month"


def test_non_subscription_event_is_refused_clearly() -> None:
    with pytest.raises(InvalidEvent, match=r"plan\.created does not carry a subscription"):
        parse_event(load("openapi-objects/event.json"))
