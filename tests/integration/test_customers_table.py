"""The `customers` table (SPEC §9, §11): `customer.*` webhooks and the backfill's
customer list keep each customer's newest attributes; `customer.deleted` ends no
subscription."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import responses
from sqlalchemy import select

from models.customers import attributes_of
from models.db import transaction
from models.inbox import store_event
from models.tables import CustomerBalance, InboxEvent
from pipeline.backfill import backfill, client_for
from pipeline.jobs import apply_job
from pipeline.runtime import bootstrap
from tests import factories as f
from tests.integration.fake_stripe import FakeStripe

API = "http://stripe.mock"
NOW = 1767225600  # 2026-01-01
DAY = 86400


def customer(cid: str, created: int, country: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "customer",
        "created": created,
        "address": {"country": country} if country else None,
        "shipping": None,
        "metadata": {},
        "livemode": False,
        **extra,
    }


def customer_event(event_id: str, type_: str, at: int, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": type_,
        "created": at,
        "api_version": "2024-06-20",
        "livemode": False,
        "data": {"object": obj},
    }


@pytest.fixture
def keyed(settings):
    return settings.with_overrides(stripe_api_key="sk_test_customers", stripe_api_base=API)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    api = FakeStripe(
        [],
        [],
        customers=[
            customer("cus_de", NOW - 90 * DAY, "DE", metadata={"tier": "gold"}),
            customer("cus_none", NOW - 80 * DAY, None),
        ],
        page_size=1,
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(
            responses.GET, re.compile(re.escape(API) + r"/v1/.*"), callback=api.responses_callback
        )
        yield api


def stored(db) -> dict[str, tuple[Any, ...]]:
    with db() as s:
        found = attributes_of(s, ["cus_de", "cus_none", "cus_1"])
    return {k: (v["country"], v["metadata"], v["deleted"]) for k, v in found.items()}


def test_the_backfill_stores_every_listed_customer(db, keyed, fake) -> None:
    runtime = bootstrap(keyed)
    done = backfill(runtime, client_for(runtime), now=datetime.fromtimestamp(NOW, UTC))
    assert done.customers == 2
    assert stored(db) == {"cus_de": ("DE", {"tier": "gold"}, False), "cus_none": (None, {}, False)}
    again = backfill(runtime, client_for(runtime), now=datetime.fromtimestamp(NOW, UTC))
    assert again.synthetic_stored == 0
    assert stored(db)["cus_de"] == ("DE", {"tier": "gold"}, False)


def test_webhooks_keep_the_newest_attributes_in_any_order(db, post_event, run_worker) -> None:
    moved = customer_event("evt_moved", "customer.updated", NOW, customer("cus_1", NOW - DAY, "AT"))
    first = customer_event(
        "evt_first", "customer.created", NOW - DAY, customer("cus_1", NOW - DAY, "DE")
    )
    for event in (moved, first):  # the older one arrives last
        assert post_event(event).status_code == 200
    assert run_worker() == 0
    assert stored(db) == {"cus_1": ("AT", {}, False)}


def test_customer_deleted_ends_no_subscription(db, post_event, run_worker) -> None:
    price = f.price("price_basic", 2500)
    sub = f.subscription("sub_1", "cus_1", [f.item(price, item_id="si_1")], created=NOW - 10 * DAY)
    events = [
        f.event("evt_sub", "customer.subscription.created", NOW - 10 * DAY, sub),
        customer_event("evt_gone", "customer.deleted", NOW, customer("cus_1", NOW - DAY, "DE")),
    ]
    for event in events:
        assert post_event(event).status_code == 200
    assert run_worker() == 0
    with db() as s:
        mrr = s.scalars(select(CustomerBalance.mrr).where(CustomerBalance.customer_id == "cus_1"))
        assert list(mrr) == [2500]
    assert stored(db) == {"cus_1": ("DE", {}, True)}


def subscription_event(event_id: str, customer_id: str, at: int) -> dict[str, Any]:
    price = f.price("price_basic", 2500)
    sub = f.subscription(f"sub_{customer_id}", customer_id, [f.item(price)], created=at)
    return f.event(event_id, "customer.subscription.created", at, sub)


def deliver(db, runtime, event: dict[str, Any]) -> None:
    """Store one event and run the worker's job on it, as a worker would."""
    with transaction(db) as session:
        store_event(session, event, json.dumps(event))
    apply_job(runtime, event["id"])


def test_a_customer_never_seen_as_an_object_is_fetched_once(db, keyed, fake) -> None:
    """SPEC §11: with an API key, the worker fetches the attributes of a customer no
    `customer.*` event described (`GET /v1/customers/{id}`), once."""
    runtime = bootstrap(keyed)
    deliver(db, runtime, subscription_event("evt_1", "cus_de", NOW - DAY))
    assert stored(db) == {"cus_de": ("DE", {"tier": "gold"}, False)}
    fetched = [p for p, _ in fake.requests if p.startswith("/v1/customers/")]
    assert fetched == ["/v1/customers/cus_de"]
    deliver(db, runtime, subscription_event("evt_2", "cus_de", NOW))
    assert [p for p, _ in fake.requests if p.startswith("/v1/customers/")] == fetched
    # Stored as a synthetic event, applied (never pending), like the backfill's list.
    with db() as s:
        rows = s.execute(
            select(InboxEvent.type, InboxEvent.synthetic, InboxEvent.status).where(
                InboxEvent.type == "customer.updated"
            )
        ).all()
    assert [(t, syn, str(getattr(st, "value", st))) for t, syn, st in rows] == [
        ("customer.updated", True, "ignored")
    ]


def test_a_customer_stripe_does_not_have_stays_none_and_the_job_succeeds(db, keyed, fake) -> None:
    runtime = bootstrap(keyed)
    deliver(db, runtime, subscription_event("evt_1", "cus_gone", NOW - DAY))
    assert stored(db) == {}
    with db() as s:
        mrr = s.scalars(
            select(CustomerBalance.mrr).where(CustomerBalance.customer_id == "cus_gone")
        )
        assert list(mrr) == [2500]


def test_a_customer_known_from_a_webhook_is_not_fetched(db, keyed, fake) -> None:
    runtime = bootstrap(keyed)
    deliver(
        db,
        runtime,
        customer_event(
            "evt_c", "customer.created", NOW - 2 * DAY, customer("cus_de", NOW - 2 * DAY, "FR")
        ),
    )
    deliver(db, runtime, subscription_event("evt_1", "cus_de", NOW - DAY))
    assert not [p for p, _ in fake.requests if p.startswith("/v1/customers/")]
    assert stored(db) == {"cus_de": ("FR", {}, False)}


def test_without_a_key_no_customer_is_fetched(db, settings) -> None:
    with responses.RequestsMock():  # any HTTP call would raise
        deliver(db, bootstrap(settings), subscription_event("evt_1", "cus_de", NOW - DAY))
    assert stored(db) == {}
