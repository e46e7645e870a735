"""A customer's attributes from `customer.*` events (ledger.customers)."""

from __future__ import annotations

from typing import Any

from ledger.customers import customer_attributes, newest


def event(event_id: str, type_: str, created: int, **obj: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": type_,
        "created": created,
        "data": {"object": {"id": "cus_1", "object": "customer", **obj}},
    }


def test_the_attributes_segments_read() -> None:
    read = customer_attributes(
        event(
            "evt_1",
            "customer.updated",
            100,
            address={"country": "DE", "city": "Berlin"},
            shipping={"address": {"country": "FR"}},
            metadata={"plan_tier": "gold", "seats": 3},
        )
    )
    assert read is not None
    assert (read.id, read.country, read.shipping_country) == ("cus_1", "DE", "FR")
    assert read.metadata == {"plan_tier": "gold", "seats": "3"}
    assert (read.deleted, read.at, read.event_id) == (False, 100, "evt_1")


def test_a_customer_without_address_or_metadata() -> None:
    read = customer_attributes(event("evt_1", "customer.created", 100, address=None))
    assert read is not None
    assert (read.country, read.shipping_country, read.metadata) == (None, None, {})


def test_customer_deleted_marks_it_deleted_and_keeps_its_attributes() -> None:
    read = customer_attributes(event("evt_9", "customer.deleted", 300, address={"country": "US"}))
    assert read is not None
    assert (read.deleted, read.country) == (True, "US")


def test_other_events_and_unreadable_ones_state_nothing() -> None:
    assert customer_attributes(event("evt_1", "customer.subscription.updated", 1)) is None
    assert customer_attributes({"type": "customer.updated", "data": {"object": None}}) is None
    assert customer_attributes({**event("evt_1", "customer.updated", 1), "created": "x"}) is None


def test_the_newest_event_wins_in_any_order() -> None:
    old = customer_attributes(event("evt_a", "customer.updated", 100, address={"country": "DE"}))
    new = customer_attributes(event("evt_b", "customer.updated", 200, address={"country": "AT"}))
    assert old is not None and new is not None
    assert newest([new, old]) == newest([old, new]) == [new]
