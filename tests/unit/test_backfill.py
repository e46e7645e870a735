"""SPEC §9, pure: undoing `previous_attributes`, openings, drift (synthetic, opening, drift)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from ledger.drift import Standing, compare, standing, total_drift
from ledger.events import order_events, parse_event
from ledger.mrr import subscription_mrr
from ledger.opening import opening_history
from ledger.snapshot import parse_subscription
from ledger.synthetic import fix_event, gone_event, synthetic_id, undo_previous
from ledger.timeline import derive_ledger
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


def history(stored: list[Any], current: dict[str, Any] | None) -> list[tuple[str, str, int, str]]:
    """(id, type, created, status) of the opening events, checking each one parses."""
    made = opening_history(stored, current, as_of=NOW, api_version=f.CLOVER_VERSION)
    for envelope in made:
        parse_event(envelope)
    return [
        (e["id"], e["type"].rsplit(".", 1)[1], e["created"], e["data"]["object"]["status"])
        for e in made
    ]


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
    (created,) = opening_history([update], later, as_of=NOW, api_version=None)
    opening = parse_event(created)
    assert opening.object["items"]["data"][0]["quantity"] == 3
    # Even within one second, the update follows the opening it undoes.
    same_second = parse_event({**created, "created": update.created})
    assert [e.id for e in order_events([update, same_second])] == [created["id"], "evt_u"]


# --- opening histories ------------------------------------------------------------------

ACTIVE = sub()
TRIAL_DONE = trial(sub(), TWO_YEARS_AGO, TWO_YEARS_AGO + 14 * DAY)
TRIALING = trial(sub(status="trialing", start=NOW - 3 * DAY), NOW - 3 * DAY, NOW + 11 * DAY)
CANCELED_YEAR_AGO = canceled(sub(), NOW - 365 * DAY)
CANCELED_IN_TRIAL = canceled(
    trial(sub(), TWO_YEARS_AGO, TWO_YEARS_AGO + 14 * DAY), TWO_YEARS_AGO + 14 * DAY
)
EXPIRED = sub(status="incomplete_expired")
TRIAL_LATER = trial(sub(), TWO_YEARS_AGO + DAY, TWO_YEARS_AGO + 15 * DAY)  # not from start


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (ACTIVE, [("bf_sub_1_created_1672617600", "created", TWO_YEARS_AGO, "active")]),
        (
            TRIAL_DONE,
            [
                ("bf_sub_1_created_1672617600", "created", TWO_YEARS_AGO, "trialing"),
                ("bf_sub_1_trial_1673827200", "updated", TWO_YEARS_AGO + 14 * DAY, "active"),
            ],
        ),
        (
            TRIALING,
            [("bf_sub_1_created_1735430400", "created", NOW - 3 * DAY, "trialing")],
        ),
        (
            CANCELED_YEAR_AGO,
            [
                ("bf_sub_1_created_1672617600", "created", TWO_YEARS_AGO, "active"),
                ("bf_sub_1_deleted_1704153600", "deleted", NOW - 365 * DAY, "canceled"),
            ],
        ),
        (
            CANCELED_IN_TRIAL,
            [
                ("bf_sub_1_created_1672617600", "created", TWO_YEARS_AGO, "trialing"),
                ("bf_sub_1_deleted_1673827200", "deleted", TWO_YEARS_AGO + 14 * DAY, "canceled"),
            ],
        ),
        (
            EXPIRED,
            [("bf_sub_1_created_1672617600", "created", TWO_YEARS_AGO, "incomplete_expired")],
        ),
        (TRIAL_LATER, [("bf_sub_1_created_1672617600", "created", TWO_YEARS_AGO, "active")]),
    ],
    ids=[
        "active",
        "trial from start, converted",
        "still trialing",
        "canceled a year ago",
        "canceled during its trial",
        "incomplete_expired",
        "trial not from start",
    ],
)
def test_opening_from_stripes_current_object(current, expected) -> None:
    assert history([], current) == expected


def test_nothing_to_open_when_created_is_stored_or_nothing_is_known() -> None:
    created = ev("evt_c", "created", NOW - DAY, sub())
    update = ev("evt_u", "updated", NOW, sub([f.item(PRO)]), {"items": sub()["items"]})
    assert history([update, created], sub([f.item(PRO)])) == []
    assert history([], None) == []


def test_opening_undoes_the_earliest_stored_event_in_its_own_shape() -> None:
    basil_now = sub([f.item(PRO)])
    legacy_first = sub([f.item(BASIC, 5, legacy=True)], legacy=True)
    legacy_later = sub([f.item(BASIC, 7, legacy=True)], legacy=True)
    first = f.event(
        "evt_1",
        "customer.subscription.updated",
        NOW - 20 * DAY,
        legacy_later,
        previous_attributes={"quantity": 5, "items": copy.deepcopy(legacy_first["items"])},
        api_version=f.LEGACY_VERSION,
    )
    second = f.event(
        "evt_2",
        "customer.subscription.updated",
        NOW - 10 * DAY,
        basil_now,
        previous_attributes={"items": copy.deepcopy(legacy_later["items"])},
    )
    stored = [parse_event(second), parse_event(first)]
    (created,) = opening_history(stored, basil_now, as_of=NOW, api_version=f.CLOVER_VERSION)
    assert created["api_version"] == f.LEGACY_VERSION
    assert created["created"] == TWO_YEARS_AGO
    assert created["data"]["object"]["quantity"] == 5
    assert "previous_attributes" not in created["data"]
    assert subscription_mrr(parse_event(created).snapshot).amount == 5000


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (  # canceled inside the window: the real deletion ends it
            [ev("evt_d", "deleted", NOW - 5 * DAY, canceled(sub(), NOW - 5 * DAY))],
            [("bf_sub_1_created_1672617600", "created", TWO_YEARS_AGO, "active")],
        ),
        (  # an update of a subscription that had ended before the window
            [
                ev(
                    "evt_m",
                    "updated",
                    NOW - 5 * DAY,
                    {**canceled(sub(), NOW - 40 * DAY), "metadata": {"a": "1"}},
                    {"metadata": {"a": None}},
                )
            ],
            [
                ("bf_sub_1_created_1672617600", "created", TWO_YEARS_AGO, "active"),
                ("bf_sub_1_deleted_1732233600", "deleted", NOW - 40 * DAY, "canceled"),
            ],
        ),
        (  # the trial converts inside the window: the real update shows it
            [
                ev(
                    "evt_t",
                    "updated",
                    NOW - 5 * DAY,
                    trial(sub(start=NOW - 19 * DAY), NOW - 19 * DAY, NOW - 5 * DAY),
                    {"status": "trialing"},
                )
            ],
            [("bf_sub_1_created_1734048000", "created", NOW - 19 * DAY, "trialing")],
        ),
        (  # the trial converted before the window
            [
                ev(
                    "evt_q",
                    "updated",
                    NOW - 5 * DAY,
                    sub([f.item(BASIC, 2)]),
                    {"items": sub()["items"]},
                )
            ],
            [("bf_sub_1_created_1672617600", "created", TWO_YEARS_AGO, "active")],
        ),
    ],
    ids=["deleted in window", "ended before window", "trial ends in window", "plain update"],
)
def test_opening_before_stored_events(stored, expected) -> None:
    assert history(stored, None) == expected


def test_trial_from_start_that_converted_before_the_earliest_stored_event() -> None:
    now_obj = trial(sub([f.item(BASIC, 2)]), TWO_YEARS_AGO, TWO_YEARS_AGO + 14 * DAY)
    before = trial(sub(), TWO_YEARS_AGO, TWO_YEARS_AGO + 14 * DAY)
    update = ev("evt_q", "updated", NOW - 5 * DAY, now_obj, {"items": before["items"]})
    made = opening_history([update], now_obj, as_of=NOW, api_version=None)
    ledger = derive_ledger("cus_1", [*map(parse_event, made), update])
    assert [(m.type.value, m.occurred_at, m.mrr_after) for m in ledger.movements] == [
        ("new", TWO_YEARS_AGO + 14 * DAY, 1000),
        ("expansion", NOW - 5 * DAY, 2000),
    ]


@pytest.mark.parametrize(
    "current", [ACTIVE, TRIAL_DONE, TRIALING, CANCELED_YEAR_AGO, CANCELED_IN_TRIAL, EXPIRED]
)
def test_an_opened_ledger_ends_where_stripe_is(current) -> None:
    made = opening_history([], current, as_of=NOW, api_version=None)
    ledger = derive_ledger("cus_1", [parse_event(e) for e in made])
    (state,) = ledger.subscriptions
    stripe = standing(parse_subscription(current))
    assert (state.status, state.mrr) == (stripe.status, stripe.mrr)
    # Deterministic: the same inputs give the same events, ids included.
    assert opening_history([], current, as_of=NOW, api_version=None) == made


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
