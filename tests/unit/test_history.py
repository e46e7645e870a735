"""SPEC §9, pure: a subscription's whole history rebuilt from its invoices.

The central property: for a world of lifecycles, the ledger derived from the history of
every subscription (no stored event) equals the ledger derived from the webhooks Stripe
sent, month by month, customer by customer, cohort by cohort; and a history cut where the
stored events begin, followed by those events, equals the webhooks alone.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidEvent
from ledger.events import order_events, parse_event
from ledger.history import Guess, History, history
from ledger.invoices import UnresolvedPrice, invoice_catalog, read_invoices
from ledger.mrr import Catalog
from tests import factories as f
from tests.unit.test_architecture import loaded_after
from tests.unit.test_invoices import (
    CHANGE,
    CREATE,
    PAY_ITEM,
    PAY_PRICES,
    PAY_SUB,
    SWAP,
    SWAP_CLOVER,
)
from tests.world import BASIL, CLOVER, LEGACY, VERSIONS, World
from tests.world import ledgers as wl
from tests.world.calendar import boundary, days, utc
from tests.world.scenarios import NOW, START, central, random_world

START_PAY = 1682101993  # the pay subscription's start_date


def summary(h: History) -> list[tuple[Any, ...]]:
    """(type, created, status, [(price, quantity)], discount ids) of each event."""
    out = []
    for e in h.events:
        obj = e["data"]["object"]
        items = [(i["price"]["id"], i.get("quantity")) for i in obj["items"]["data"]]
        raw = list(obj.get("discounts") or [])
        if obj.get("discount"):  # legacy
            raw.append(obj["discount"])
        discounts = sorted({d if isinstance(d, str) else d["id"] for d in raw})
        out.append((e["type"].rsplit(".", 1)[1], e["created"], obj["status"], items, discounts))
    return out


def kinds(h: History) -> list[Guess]:
    return [a.kind for a in h.assumptions]


# --- the recorded swap, in both shapes -----------------------------------------------------


def pay_subscription(*, legacy: bool) -> dict[str, Any]:
    """The pay subscription as Stripe lists it after the swap (on the yearly price)."""
    annual = PAY_PRICES["small-annual"]
    item = f.item(annual, 1, item_id=PAY_ITEM, legacy=legacy, period=(CHANGE, 1713724396))
    sub = f.subscription(PAY_SUB, "cus_NkuahmIPvlZ9cf", [item], legacy=legacy, created=START_PAY)
    if legacy:
        sub["current_period_start"], sub["current_period_end"] = CHANGE, 1713724396
    return sub


def as_clover(invoice: dict[str, Any]) -> dict[str, Any]:
    """A legacy invoice of the recording in the clover shape (as SWAP_CLOVER is)."""
    out = {k: v for k, v in invoice.items() if k not in ("subscription", "discount", "lines")}
    out["parent"] = {
        "type": "subscription_details",
        "subscription_details": {"metadata": {}, "subscription": invoice["subscription"]},
    }
    lines = []
    for line in invoice["lines"]["data"]:
        details = {k: line[k] for k in ("subscription", "subscription_item", "proration")}
        lines.append(
            {
                "id": line["id"],
                "object": "line_item",
                "amount": line["amount"],
                "period": line["period"],
                "quantity": line["quantity"],
                "parent": {
                    "type": "subscription_item_details",
                    "subscription_item_details": details,
                },
                "pricing": {
                    "type": "price_details",
                    "price_details": {
                        "price": line["price"]["id"],
                        "product": line["price"]["product"],
                    },
                },
            }
        )
    out["lines"] = {"object": "list", "data": lines, "has_more": False}
    return out


MONTHLY = [("small-monthly", 1)]
ANNUAL = [("small-annual", 1)]


@pytest.mark.parametrize(
    ("legacy", "invoices", "until", "expected"),
    [
        pytest.param(
            True,
            [CREATE, SWAP],
            None,
            [
                ("created", START_PAY, "active", MONTHLY, []),
                ("updated", CHANGE, "active", ANNUAL, []),
            ],
            id="legacy: a credit and a whole new year are a cycle reset",
        ),
        pytest.param(
            False,
            [as_clover(CREATE), SWAP_CLOVER],
            None,
            [
                ("created", START_PAY, "active", MONTHLY, []),
                ("updated", CHANGE, "active", ANNUAL, []),
            ],
            id="clover: a credit and a remaining-time debit over the new year",
        ),
        pytest.param(
            True,
            [SWAP, CREATE],  # any order
            CHANGE,
            [("created", START_PAY, "active", MONTHLY, [])],
            id="cut at the first stored event: the swap is the stored events' to tell",
        ),
        pytest.param(True, [CREATE, SWAP], START_PAY, [], id="stored from the start: nothing"),
    ],
)
def test_the_recorded_swap(legacy, invoices, until, expected) -> None:
    h = history(
        pay_subscription(legacy=legacy),
        invoices,
        until=until,
        api_version="2022-11-15" if legacy else CLOVER,
        prices=PAY_PRICES,
    )
    assert summary(h) == expected
    assert h.assumptions == ()
    for envelope in h.events:
        event = parse_event(envelope)  # each one a valid event of its shape
        assert event.api_version == ("2022-11-15" if legacy else CLOVER)
    ledger = wl.derive(wl.subscription_events(h.events))
    if until is None:
        moves = [(m.type.value, m.amount, m.kind) for m in ledger["cus_NkuahmIPvlZ9cf"].movements]
        assert moves == [
            ("new", 2500, None),
            ("contraction", 2500 - round(25000 / 12), "downgrade"),
        ]


# --- lifecycles, one world each ----------------------------------------------------------

T0 = utc(2024, 1, 10, 9)


def one(version: str, script: Callable[[World, dict[str, Any]], None], until: int = NOW) -> World:
    w = World(version)
    c = {
        "pro": w.price("price_pro", 2500),
        "plus": w.price("price_plus", 5000),
        "addon": w.price("price_addon", 700),
        "pro_y": w.price("price_pro_y", 25000, interval="year"),
        "api": w.price("price_api", 3, metered=True),
        "f10": w.coupon("F10", percent_off=10.0),
    }
    c["cus"] = w.customer(T0 - 60)
    script(w, c)
    return w.run(until)


def month(k: int, anchor: int = T0) -> int:
    return boundary(anchor, "month", 1, k)


MID1, MID2 = month(1) + days(9), month(3) + days(17)
PRO = ("price_pro", 1)
CASES: list[
    tuple[str, Callable[[World, dict[str, Any]], None], list[tuple[Any, ...]], list[Guess]]
] = [
    (
        "seats with prorations pending, then invoiced at once",
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 3)]),
            w.set_quantity(s, MID1, c["pro"], 5),
            w.set_quantity(s, MID2, c["pro"], 2, "always_invoice"),
        ),
        [
            ("created", T0, "active", [("price_pro", 3)], []),
            ("updated", MID1, "active", [("price_pro", 5)], []),
            ("updated", MID2, "active", [("price_pro", 2)], []),
        ],
        [],
    ),
    (
        "an upgrade and a cross-sell item added then removed",
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 1)]),
            w.swap_price(s, MID1, c["pro"], c["plus"]),
            w.add_item(s, MID1 + days(3), c["addon"], 2),
            w.remove_item(s, MID2, c["addon"]),
        ),
        [
            ("created", T0, "active", [PRO], []),
            ("updated", MID1, "active", [("price_plus", 1)], []),
            ("updated", MID1 + days(3), "active", [("price_plus", 1), ("price_addon", 2)], []),
            ("updated", MID2, "active", [("price_plus", 1)], []),
        ],
        [],
    ),
    (
        "a trial that converts",
        lambda w, c: w.subscribe(c["cus"], T0, [(c["pro"], 1)], trial_days=14),
        [("created", T0, "trialing", [PRO], []), ("updated", T0 + days(14), "active", [PRO], [])],
        [],
    ),
    (
        "a trial canceled at its end",
        lambda w, c: w.subscribe(
            c["cus"], T0, [(c["pro"], 1)], trial_days=14, trial_outcome="cancel"
        ),
        [("created", T0, "trialing", [PRO], []), ("deleted", T0 + days(14), "canceled", [PRO], [])],
        [],
    ),
    (
        "a trial paused at its end (no payment method)",
        lambda w, c: w.subscribe(
            c["cus"], T0, [(c["pro"], 1)], trial_days=7, trial_outcome="pause"
        ),
        [("created", T0, "trialing", [PRO], []), ("updated", T0 + days(7), "paused", [PRO], [])],
        [],
    ),
    (
        "a cancellation at period end: requested, then ended",
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 1)]),
            w.cancel(s, MID2, at_period_end=True, feedback="too_expensive"),
        ),
        [
            ("created", T0, "active", [PRO], []),
            ("updated", MID2, "active", [PRO], []),  # cancel_at_period_end from then on
            ("deleted", month(4), "canceled", [PRO], []),
        ],
        [],
    ),
    (
        "an annual plan upgraded mid-year, invoiced at once",
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro_y"], 1)]),
            w.swap_price(
                s,
                MID2,
                c["pro_y"],
                w.price("price_plus_y", 50000, interval="year"),
                "always_invoice",
            ),
        ),
        [
            ("created", T0, "active", [("price_pro_y", 1)], []),
            ("updated", MID2, "active", [("price_plus_y", 1)], []),
        ],
        [],
    ),
    (
        "monthly to yearly: the cycle resets",
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 2)]),
            w.swap_price(s, MID1, c["pro"], c["pro_y"]),
        ),
        [
            ("created", T0, "active", [("price_pro", 2)], []),
            ("updated", MID1, "active", [("price_pro_y", 2)], []),
        ],
        [],
    ),
    (
        "a forever discount from a renewal, ended on a later renewal",
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 1)]),
            w.apply_coupon(s, month(2), c["f10"]),
            w.remove_discount(s, month(5)),
        ),
        [
            ("created", T0, "active", [PRO], []),
            ("updated", month(2), "active", [PRO], ["di_W000001"]),
            ("updated", month(5), "active", [PRO], []),
        ],
        [Guess.DISCOUNT_ENDED],  # exact here, but a mid-cycle end would look the same
    ),
    (
        "metered usage next to seats, one metered item added mid-period",
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 1), (c["api"], None)]),
            w.add_item(s, MID1, w.price("price_api2", 1, metered=True), None),
            w.set_quantity(s, MID2, c["pro"], 3),
        ),
        [
            ("created", T0, "active", [PRO, ("price_api", None)], []),
            ("updated", MID1, "active", [PRO, ("price_api", None), ("price_api2", None)], []),
            (
                "updated",
                MID2,
                "active",
                [("price_pro", 3), ("price_api", None), ("price_api2", None)],
                [],
            ),
        ],
        [],
    ),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("name", "script", "expected", "guesses"), CASES, ids=[c[0] for c in CASES]
)
def test_lifecycles(version, name, script, expected, guesses) -> None:
    w = one(version, script)
    assert w.skipped == []
    (h,) = wl.histories(w)
    assert summary(h) == expected
    assert kinds(h) == guesses
    assert_same_ledger(w, [h])


def assert_same_ledger(w: World, made: list[History], catalog: Catalog | None = None) -> None:
    catalog = catalog or wl.world_catalog(w)
    hooks = wl.derive(wl.subscription_events(w.webhooks()), catalog)
    mine = wl.derive(wl.subscription_events(e for h in made for e in h.events), catalog)
    assert wl.differences(wl.report(hooks), wl.report(mine)) == []


# --- the central world -----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_the_central_world_from_invoices_equals_its_webhooks(version: str) -> None:
    """Issue 18's equivalence over 14 months: every monthly row (all fields), every
    customer's MRR, scheduled churn and first `new`, every subscription's end state, the
    cohort flows and tables, in both currencies."""
    w = central(version)
    assert w.skipped == []
    made = wl.histories(w)
    guessed = {h.subscription_id: kinds(h) for h in made if h.assumed}
    assert guessed == {"sub_W000011": [Guess.DISCOUNT_ENDED]}  # ended on a renewal
    hooks = wl.report(wl.derive(wl.subscription_events(w.webhooks()), wl.world_catalog(w)))
    # The history needs no catalog: its events carry their discounts' coupons.
    ledgers = wl.derive(wl.subscription_events(e for h in made for e in h.events))
    assert all(not led.warnings for led in ledgers.values())
    mine = wl.report(ledgers)
    assert wl.differences(hooks, mine) == []
    assert hooks == mine
    assert sorted(mine["rows"]) == ["eur", "usd"]
    months = mine["rows"]["usd"]
    assert len(months) == 15
    # The world moves every figure the rows hold.
    totals = {k: sum(r[k] for r in months) for k in ("new", "expansion", "contraction", "churn")}
    assert all(totals.values()) and sum(r["reactivation"] for r in months)
    by_kind = {k for r in months for k, v in r["expansion_by_kind"].items() if v}
    by_kind |= {k for r in months for k, v in r["contraction_by_kind"].items() if v}
    assert by_kind >= {"seats", "upgrade", "downgrade", "cross_sell", "discount"}
    reasons = {k for r in months for k in r["churn_by_reason"]}
    assert reasons >= {"too_expensive", "switched_service", "unused"}


def cut_history(w: World, cut: int) -> tuple[list[History], list[Any], dict[str, int]]:
    """Stored = the webhooks from `cut` on; a history up to each subscription's first."""
    stored = [e for e in wl.subscription_events(w.webhooks()) if e.created >= cut]
    until: dict[str, int] = {}
    for e in stored:
        until[e.snapshot.id] = min(until.get(e.snapshot.id, e.created), e.created)
    return wl.histories(w, until), stored, until


def assert_cut_equals_webhooks(w: World, cut: int) -> None:
    made, stored, until = cut_history(w, cut)
    synthetic = wl.subscription_events(e for h in made for e in h.events)
    for event in synthetic:
        first = until.get(event.snapshot.id)
        assert first is None or event.created < first  # SPEC §2: before every stored event
    catalog = wl.world_catalog(w)
    hooks = wl.report(wl.derive(wl.subscription_events(w.webhooks()), catalog))
    both = wl.report(wl.derive(synthetic + stored, catalog))
    assert wl.differences(hooks, both) == []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "cut", [NOW - days(30), NOW - days(1), START + days(45), utc(2024, 7, 1)], ids=str
)
def test_a_history_cut_where_stored_events_begin_then_those_events_equals_the_webhooks(
    version: str, cut: int
) -> None:
    assert_cut_equals_webhooks(central(version), cut)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=10**9),
    version=st.sampled_from(VERSIONS),
    cut=st.integers(min_value=START, max_value=NOW),
)
def test_random_worlds_rebuilt_from_invoices_equal_their_webhooks(seed, version, cut) -> None:
    w = random_world(seed, version, customers=3)
    made = wl.histories(w)
    assert_same_ledger(w, made)
    assert_cut_equals_webhooks(w, cut)
    # Only what these worlds can do unseen is ever assumed.
    allowed = {Guess.DISCOUNT_ENDED, Guess.TRIAL_PAUSED}
    assert {a.kind for h in made for a in h.assumptions} <= allowed


# --- issue 18, acceptance 4 ------------------------------------------------------------------


def test_an_ended_basil_discount_is_resolved_from_the_invoices() -> None:
    """A basil subscription's forever discount ends inside the 30-day window: the stored
    renewal before that names the discount by id, which no subscription resolves any
    more. The invoices (listed with `expand[]=data.discounts`) resolve it."""
    anchor = utc(2024, 6, 20, 10)
    window = NOW - days(30)
    renewal_in_window = boundary(anchor, "month", 1, 8)  # 2025-02-20
    assert window < renewal_in_window < NOW
    w = World(BASIL)
    pro = w.price("price_pro", 4000)
    coupon = w.coupon("FOREVER25", percent_off=25.0)
    cus = w.customer(anchor - 60)
    sub = w.subscribe(cus, anchor, [(pro, 2)], coupon=coupon)
    w.remove_discount(sub, renewal_in_window + days(9))
    w.run(NOW)

    made, stored, until = cut_history(w, window)
    assert until == {sub: renewal_in_window}
    assert stored[0].object["discounts"] == ["di_W000001"]  # an id, as basil sends it
    invoices = read_invoices(w.invoices(sub), w.prices())
    catalog = invoice_catalog(invoices, w.coupons())
    synthetic = wl.subscription_events(e for h in made for e in h.events)
    fixed = wl.derive(synthetic + stored, catalog)
    assert fixed[cus].warnings == {}
    hooks = wl.derive(wl.subscription_events(w.webhooks()), wl.world_catalog(w))
    assert wl.differences(wl.report(hooks), wl.report(fixed)) == []
    months = wl.report(fixed)["rows"]["usd"]
    assert sum(r["contraction"] for r in months) == 0
    assert sum(r["expansion_by_kind"]["discount"] for r in months) == 2000  # 25 % of 8000
    # Without the invoices' discounts the stored renewal is priced without its discount.
    unresolved = wl.derive(synthetic + stored, Catalog())
    assert unresolved[cus].warnings


# --- what invoices cannot show: each assumption ------------------------------------------------


def test_a_change_without_proration_is_dated_at_the_invoice_that_bills_it() -> None:
    w = one(
        LEGACY,
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 2)]),
            w.set_quantity(s, MID1, c["pro"], 6, "none"),
        ),
    )
    (h,) = wl.histories(w)
    assert summary(h)[1][:4] == ("updated", month(2), "active", [("price_pro", 6)])
    assert [(a.kind, a.at) for a in h.assumptions] == [(Guess.UNPRORATED_CHANGE, month(2))]
    assert "si_W000001" in h.assumptions[0].detail
    hooks = wl.derive(wl.subscription_events(w.webhooks()))
    mine = wl.derive(wl.subscription_events(h.events))
    assert [m.occurred_at for m in hooks[h.customer_id].movements] == [T0, MID1]
    assert [m.occurred_at for m in mine[h.customer_id].movements] == [T0, month(2)]
    assert hooks[h.customer_id].balances == mine[h.customer_id].balances


def test_a_change_without_proration_since_the_last_invoice_is_dated_at_the_current_period() -> None:
    late = month(14) + days(3)
    w = one(
        CLOVER,
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 2)]),
            w.set_quantity(s, late, c["pro"], 1, "none"),
        ),
    )
    (h,) = wl.histories(w)
    assert summary(h)[-1][:4] == ("updated", month(14), "active", [("price_pro", 1)])
    assert kinds(h) == [Guess.CURRENT_STATE]


def test_an_unpaid_status_no_invoice_records_is_dated_at_the_current_period() -> None:
    w = one(
        BASIL,
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 1)]),
            w.mark_unpaid(s, month(6) + days(20)),
        ),
    )
    (h,) = wl.histories(w)
    current = w.subscriptions()[0]["items"]["data"][0]["current_period_start"]
    assert summary(h)[-1][:3] == ("updated", current, "unpaid")
    assert [(a.kind, a.at) for a in h.assumptions] == [(Guess.UNRECORDED_STATUS, current)]
    churn = wl.derive(wl.subscription_events(h.events))[h.customer_id].movements[-1]
    assert (churn.type.value, churn.delinquent) == ("churn", True)


def test_a_change_then_the_end_in_one_period_churns_what_was_last_billed() -> None:
    w = one(
        LEGACY,
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 2)]),
            w.set_quantity(s, MID2, c["pro"], 4),  # pending, never invoiced
            w.cancel(s, MID2 + days(5), feedback="unused"),
        ),
    )
    (h,) = wl.histories(w)
    assert [e[:3] for e in summary(h)] == [
        ("created", T0, "active"),
        ("deleted", MID2 + days(5), "canceled"),
    ]
    assert [(a.kind, a.at) for a in h.assumptions] == [(Guess.CHANGE_BEFORE_END, MID2 + days(5))]
    churn = wl.derive(wl.subscription_events(h.events))[h.customer_id].movements[-1]
    assert (churn.type.value, churn.amount, churn.churn_feedback) == ("churn", 5000, "unused")


def test_a_trial_that_ended_without_an_invoice_and_later_ended_is_taken_as_paused() -> None:
    w = one(
        LEGACY,
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 1)], trial_days=7, trial_outcome="pause"),
            w.cancel(s, T0 + days(40)),
        ),
    )
    (h,) = wl.histories(w)
    assert [e[:3] for e in summary(h)] == [
        ("created", T0, "trialing"),
        ("updated", T0 + days(7), "paused"),
        ("deleted", T0 + days(40), "canceled"),
    ]
    assert [(a.kind, a.at) for a in h.assumptions] == [(Guess.TRIAL_PAUSED, T0 + days(7))]


def test_a_discount_ended_mid_cycle_is_dated_at_the_next_invoice() -> None:
    w = one(
        BASIL,
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 1)], coupon=c["f10"]),
            w.remove_discount(s, MID2),
        ),
    )
    (h,) = wl.histories(w)
    assert summary(h)[1][:2] == ("updated", month(4))
    assert [(a.kind, a.at) for a in h.assumptions] == [(Guess.DISCOUNT_ENDED, month(4))]


def test_discounts_listed_by_id_only_are_dated_at_the_first_invoice_listing_them() -> None:
    w = one(
        LEGACY,
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 1)]),
            w.apply_coupon(s, MID1, c["f10"]),
        ),
    )
    sub = w.subscriptions()[0]
    basil_like = {k: v for k, v in sub.items() if k != "discount"}  # no embedded object
    invoices = w.invoices(expand_discounts=False)
    for invoice in invoices:
        invoice["discount"] = None
    h = history(basil_like, invoices, until=None, api_version=LEGACY)
    assert summary(h)[1][:2] == ("updated", month(2))
    assert kinds(h) == [Guess.DISCOUNT_BY_ID]


def test_no_invoice_at_all_keeps_the_current_object_from_the_start() -> None:
    sub = f.subscription("sub_1", "cus_1", [f.item(f.price("price_a", 900))], created=T0)
    h = history(sub, [], until=None, api_version=BASIL)
    assert [e[:3] for e in summary(h)] == [("created", T0, "active")]
    assert kinds(h) == [Guess.NO_INVOICE]


def test_nothing_billed_from_the_start_date_is_assumed_from_the_first_billing() -> None:
    early = START_PAY - days(10)  # a backdated start
    sub = {**pay_subscription(legacy=True), "start_date": early}
    h = history(sub, [CREATE, SWAP], until=None, api_version="2022-11-15")
    assert summary(h)[0][:4] == ("created", early, "active", MONTHLY)
    assert kinds(h) == [Guess.UNBILLED_START]


def test_assumptions_after_until_are_the_stored_events_business() -> None:
    w = one(
        LEGACY,
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 2)]),
            w.set_quantity(s, MID2, c["pro"], 6, "none"),
        ),
    )
    sub = w.subscriptions()[0]
    common = {"api_version": LEGACY, "prices": w.prices()}
    assert kinds(history(sub, w.invoices(), until=None, **common)) == [Guess.UNPRORATED_CHANGE]
    assert kinds(history(sub, w.invoices(), until=MID2, **common)) == []


# --- contracts ---------------------------------------------------------------------------------


def test_same_inputs_same_bytes_and_inputs_untouched() -> None:
    w = central(CLOVER)
    sub = next(s for s in w.subscriptions() if s["id"] == "sub_W000006")
    invoices = w.invoices(sub["id"])
    before = copy.deepcopy((sub, invoices))
    first = history(sub, invoices, until=None, api_version=CLOVER, prices=w.prices())
    second = history(
        sub, list(reversed(invoices)), until=None, api_version=CLOVER, prices=w.prices()
    )
    assert json.dumps(first.events, sort_keys=True) == json.dumps(second.events, sort_keys=True)
    assert (sub, invoices) == before
    ids = [e["id"] for e in first.events]
    assert len(set(ids)) == len(ids)
    for envelope in first.events:
        kind = envelope["type"].rsplit(".", 1)[1]
        assert envelope["id"] == f"bf_sub_W000006_{kind}_{envelope['created']}"
        assert re.fullmatch(r"bf_[A-Za-z0-9_-]+", envelope["id"])


def test_updates_say_what_changed_and_order_after_what_they_change() -> None:
    w = one(
        BASIL,
        lambda w, c: (
            s := w.subscribe(c["cus"], T0, [(c["pro"], 3)]),
            w.set_quantity(s, MID1, c["pro"], 5),
        ),
    )
    (h,) = wl.histories(w)
    created, updated = h.events
    previous = updated["data"]["previous_attributes"]
    assert previous["items"]["data"][0]["quantity"] == 3
    assert "latest_invoice" in previous
    # Moved into one second, the chain of previous_attributes still orders them.
    same_second = {
        **updated,
        "created": created["created"],
        "type": "customer.subscription.updated",
    }
    early = {**created, "type": "customer.subscription.updated", "id": "bf_x"}
    ordered = order_events([parse_event(same_second), parse_event(early)])
    assert [e.id for e in ordered] == ["bf_x", updated["id"]]


def test_an_end_in_the_second_it_began() -> None:
    sub = f.subscription("sub_1", "cus_1", [f.item(f.price("price_a", 900))], created=T0)
    ended = {**sub, "status": "canceled", "ended_at": T0, "canceled_at": T0}
    h = history(ended, [], until=None, api_version=BASIL)
    events = [parse_event(e) for e in h.events]
    assert [e.type.rsplit(".", 1)[1] for e in order_events(reversed(events))] == [
        "created",
        "deleted",
    ]


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        ({"object": "invoice"}, InvalidEvent),
        ({"object": "subscription", "id": "sub_1"}, InvalidEvent),
    ],
)
def test_refuses_what_is_not_a_subscription(obj, error) -> None:
    with pytest.raises(error):
        history(obj, [], until=None, api_version=None)


def test_unresolved_prices_are_reported_not_guessed() -> None:
    with pytest.raises(UnresolvedPrice, match="small-annual"):
        history(pay_subscription(legacy=False), [SWAP_CLOVER], until=None, api_version=CLOVER)


def test_random_worlds_are_deterministic() -> None:
    a, b = random_world(7, BASIL), random_world(7, BASIL)
    assert a.webhooks() == b.webhooks()
    assert a.invoices() == b.invoices()
    seeds = random.Random(1).sample(range(1000), 3)
    assert len({json.dumps(random_world(s).webhooks()) for s in seeds}) == 3


def test_the_history_and_the_invoice_reader_are_pure() -> None:
    infrastructure = {"flask", "sqlalchemy", "redis", "rq", "stripe", "requests", "models"}
    assert loaded_after(["ledger.history", "ledger.invoices"], infrastructure) == []


@pytest.mark.parametrize(
    ("subscription_field", "applied"),
    [(PAY_SUB, True), (None, False)],  # a customer's discount is on no subscription
)
def test_only_the_subscriptions_own_discounts_make_its_history(subscription_field, applied) -> None:
    discount = {**f.discount("di_1", f.coupon("F50", percent_off=50.0)), "start": START_PAY}
    discount["subscription"] = subscription_field
    create = {**copy.deepcopy(CREATE), "discount": discount, "discounts": ["di_1"]}
    swap = {**copy.deepcopy(SWAP), "discount": discount, "discounts": ["di_1"]}
    sub = pay_subscription(legacy=True)
    sub["discount"] = discount if applied else None  # a customer's is not the subscription's
    h = history(sub, [create, swap], until=None, api_version=LEGACY)
    assert h.assumptions == ()
    first = summary(h)[0]
    assert first[4] == (["di_1"] if applied else [])
    led = wl.derive(wl.subscription_events(h.events))["cus_NkuahmIPvlZ9cf"]
    assert led.movements[0].amount == (1250 if applied else 2500)
