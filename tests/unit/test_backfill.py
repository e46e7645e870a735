"""SPEC §9, pure: undoing `previous_attributes`, openings, drift (synthetic, opening, drift)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from ledger.drift import Standing, compare, standing, total_drift
from ledger.events import order_events, parse_event
from ledger.mrr import subscription_mrr
from ledger.snapshot import parse_subscription
from ledger.synthetic import (
    CREATED,
    fix_event,
    gone_event,
    synthetic_event,
    synthetic_id,
    undo_previous,
)
from tests import factories as f

DAY = 86400
NOW = 1735689600  # 2025-01-01
TWO_YEARS_AGO = NOW - 730 * DAY
BASIC = f.price("price_basic", 1000, product="prod_basic")
PRO = f.price("price_pro", 3000, product="prod_pro")


def sub(items: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    """A subscription started two years ago, as Stripe's object shows it."""
    start = kw.pop("start", TWO_YEARS_AGO)
    return f.subscription("sub_1", "cus_1", items or [f.item(BASIC)], created=start, **kw)


def canceled(obj: dict[str, Any], at: int) -> dict[str, Any]:
    return {**obj, "status": "canceled", "ended_at": at, "canceled_at": at}


def trial(obj: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    return {**obj, "trial_start": start, "trial_end": end}


def ev(event_id: str, kind: str, at: int, obj: dict[str, Any], prev: dict[str, Any] | None = None):
    envelope = f.event(event_id, f"customer.subscription.{kind}", at, obj, previous_attributes=prev)
    return parse_event(envelope)


# --- ids ------------------------------------------------------------------------------


def test_synthetic_ids_are_deterministic_and_fit_the_inbox_and_rq() -> None:
    assert synthetic_id("sub_1", "created", 1700000000) == "bf_sub_1_created_1700000000"
    assert synthetic_id("sub_1", "created", 1700000000) == synthetic_id(
        "sub_1", "created", 1700000000
    )
    odd = [synthetic_id(s, "deleted", 5) for s in ("sub/a", "sub.a", "sub a", "x" * 400)]
    for event_id in odd:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,255}", event_id), event_id
    assert len(set(odd[:3])) == 3  # replaced characters never merge two subscriptions
    assert len(odd[3]) == 255


def test_synthetic_id_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown synthetic event kind"):
        synthetic_id("sub_1", "whatever", 1)


# --- undoing previous_attributes ------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "previous", "expected"),
    [
        ({"status": "active"}, {"status": "trialing"}, {"status": "trialing"}),
        ({"status": "active"}, None, {"status": "active"}),
        ({"cancel_at": 5}, {"cancel_at": None}, {"cancel_at": None}),
        (
            {"metadata": {"a": "1", "b": "2"}},
            {"metadata": {"b": None}},
            {"metadata": {"a": "1", "b": None}},
        ),
        (
            {"items": {"data": [1, 2], "url": "u"}},
            {"items": {"data": [1]}},
            {"items": {"data": [1], "url": "u"}},
        ),
        ({"discount": None}, {"discount": {"id": "di"}}, {"discount": {"id": "di"}}),
        (
            {"quantity": 5, "plan": {"id": "b"}},
            {"quantity": 3, "plan": {"id": "a"}},
            {"quantity": 3, "plan": {"id": "a"}},
        ),
    ],
)
def test_undo_previous(obj, previous, expected) -> None:
    before = copy.deepcopy(obj)
    assert undo_previous(obj, previous) == expected
    assert obj == before  # the event's own object is left alone


def test_an_undone_object_is_what_the_ordering_chain_links_to() -> None:
    later = sub([f.item(BASIC, 5)])
    previous = {"items": copy.deepcopy(sub([f.item(BASIC, 3)])["items"])}
    update = ev("evt_u", "updated", NOW - DAY, later, previous)
    created = synthetic_event(
        synthetic_id("sub_1", "created", TWO_YEARS_AGO),
        CREATED,
        TWO_YEARS_AGO,
        undo_previous(later, previous),
        api_version=None,
    )
    first = parse_event(created)
    assert first.object["items"]["data"][0]["quantity"] == 3
    # Even within one second, the update follows the opening it undoes.
    same_second = parse_event({**created, "created": update.created})
    assert [e.id for e in order_events([update, same_second])] == [created["id"], "evt_u"]


# --- reconcile ------------------------------------------------------------------------

A = Standing("active", "usd", 1000)


@pytest.mark.parametrize(
    ("ledger", "stripe", "amounts"),
    [
        (A, A, None),
        (A, Standing("active", "usd", 1500), {"usd": 500}),
        (A, Standing("past_due", "usd", 1000), {}),
        (A, Standing("canceled", "usd", 0), {"usd": 1000}),
        (A, Standing("active", "eur", 900), {"eur": 900, "usd": 1000}),
        (None, A, {"usd": 1000}),
        (None, Standing("canceled", "usd", 0), {}),
        (A, None, {"usd": 1000}),
        (Standing("canceled", "usd", 0), None, None),
        (Standing("trialing", "usd", 0), None, {}),
    ],
)
def test_compare_one_subscription(ledger, stripe, amounts) -> None:
    drift = compare("sub_1", ledger, stripe)
    if amounts is None:
        assert drift is None
    else:
        assert drift is not None and dict(drift.amounts) == amounts


def test_total_drift_sums_per_currency() -> None:
    drifts = [
        compare("a", A, Standing("active", "usd", 1500)),
        compare("b", A, Standing("active", "eur", 900)),
        compare("c", A, Standing("past_due", "usd", 1000)),
    ]
    assert total_drift(d for d in drifts if d is not None) == {"eur": 900, "usd": 1500}


def test_standing_prices_stripes_object_like_the_ledger() -> None:
    assert standing(parse_subscription(sub([f.item(BASIC, 3)]))) == Standing("active", "usd", 3000)
    assert standing(parse_subscription(canceled(sub(), NOW))) == Standing("canceled", "usd", 0)


def test_fix_events_are_dated_now_and_deterministic() -> None:
    fixed = parse_event(fix_event(canceled(sub(), NOW - DAY), NOW, api_version=None))
    assert (fixed.id, fixed.type, fixed.created) == (
        f"bf_sub_1_reconcile_{NOW}",
        "customer.subscription.updated",
        NOW,
    )
    assert subscription_mrr(fixed.snapshot).amount == 0
    gone = parse_event(gone_event(sub(), NOW, api_version=None))
    assert (gone.id, gone.type, gone.snapshot.effective_status) == (
        f"bf_sub_1_gone_{NOW}",
        "customer.subscription.deleted",
        "canceled",
    )
