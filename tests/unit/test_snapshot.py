"""Subscription payloads the ledger refuses, each with the field it names."""

from __future__ import annotations

import pytest

from ledger.errors import InvalidEvent
from ledger.events import parse_event
from tests import factories as f
from tests.unit.timelines import PRO, T, sub

# --- ordering -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.pop("created"), "no integer created"),
        (lambda e: e["data"].pop("object"), "not a JSON object"),
        (lambda e: e["data"]["object"].update(object="invoice"), "not a subscription"),
        (lambda e: e["data"]["object"].pop("customer"), "has no customer"),
        (lambda e: e["data"]["object"].update(status="weird"), "unknown status"),
        (lambda e: e["data"]["object"].pop("items"), "has no items"),
        (lambda e: e["data"]["object"]["items"]["data"][0].pop("price"), "has no price or plan"),
        (lambda e: e["data"]["object"]["items"]["data"][0].update(quantity=-1), "bad quantity"),
        (
            lambda e: e["data"]["object"]["items"]["data"][0]["price"]["recurring"].update(
                interval="fortnight"
            ),
            "no recurring interval",
        ),
        (
            lambda e: e["data"]["object"]["items"]["data"][0]["price"].update(
                unit_amount_decimal="abc"
            ),
            "not a number",
        ),
        (lambda e: e.update(type="customer.created"), "does not carry a subscription"),
    ],
)
def test_malformed_subscriptions_are_refused_with_a_named_field(mutate, message) -> None:
    event = f.event("evt_bad", "customer.subscription.updated", T, sub([f.item(PRO)]))
    mutate(event)
    with pytest.raises(InvalidEvent, match=message):
        parse_event(event)
