"""Segments by item keys (SPEC §11): item-restricted movements, the discount split, and
the sums that must hold between the groups and the whole."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.events import parse_event
from ledger.mrr import item_mrr, subscription_mrr
from ledger.segments import (
    BadSegment,
    Filter,
    derive_with_segments,
    grouped_ledgers,
    item_segments,
    segment_ledger,
    segment_trials,
)
from ledger.snapshot import parse_subscription
from ledger.timeline import derive_ledger
from reporting.periods import Period, snap
from reporting.rows import Opening, buckets_from_movements, day_of, period_rows
from tests import factories as f
from tests.lifecycles import build_events
from tests.unit.test_properties import customer_st
from tests.unit.timelines import ADDON, PLUS, PRO, T, ev, sub

QUARTERLY = f.price("price_q", 3000, interval="month", interval_count=3, product="prod_pro")


def moves_of(ledger) -> list[tuple[str, int, str | None]]:
    return [(m.type.value, m.amount, m.kind.value if m.kind else None) for m in ledger.movements]


def test_a_plan_change_is_a_churn_of_the_old_plan_and_a_new_of_the_new() -> None:
    events = [
        ev("e1", "created", T, sub([f.item(PRO, 1)])),
        ev("e2", "updated", T + 100, sub([f.item(PLUS, 1)])),
    ]
    whole = derive_ledger("cus_1", events)
    assert moves_of(whole) == [("new", 1000, None), ("expansion", 2000, "upgrade")]
    groups = grouped_ledgers("cus_1", events, "plan")
    assert {k: moves_of(v) for k, v in groups.items()} == {
        "price_pro": [("new", 1000, None), ("churn", 1000, None)],
        "price_plus": [("new", 3000, None)],
    }


def test_a_seat_change_on_one_item_moves_only_its_segment() -> None:
    events = [
        ev("e1", "created", T, sub([f.item(PRO, 2), f.item(ADDON, 1)])),
        ev("e2", "updated", T + 100, sub([f.item(PRO, 5), f.item(ADDON, 1)])),
    ]
    groups = grouped_ledgers("cus_1", events, "plan")
    assert moves_of(groups["price_pro"]) == [("new", 2000, None), ("expansion", 3000, "seats")]
    assert moves_of(groups["price_addon"]) == [("new", 500, None)]


def test_a_cross_sell_is_an_expansion_of_the_whole_and_a_new_of_its_product() -> None:
    events = [
        ev("e1", "created", T, sub([f.item(PRO, 1)])),
        ev("e2", "updated", T + 100, sub([f.item(PRO, 1), f.item(ADDON, 1)])),
    ]
    assert moves_of(derive_ledger("cus_1", events))[1] == ("expansion", 500, "cross_sell")
    groups = grouped_ledgers("cus_1", events, "product")
    assert moves_of(groups["prod_addon"]) == [("new", 500, None)]
    assert moves_of(groups["prod_pro"]) == [("new", 1000, None)]


def test_a_subscription_discount_is_spread_over_the_items_pro_rata() -> None:
    # 10.00 + 5.00 + 5.00 less 3.33 a month: 1667 cents, split 2:1:1 → 833.5, 416.75,
    # 416.75, rounded half-even 834, 417, 417 = 1668: one more than the subscription's
    # 1667, so the remainder (−1) goes to the largest share.
    off = f.coupon("OFF", amount_off=333, currency="usd")
    obj = sub(
        [f.item(PRO, 1), f.item(ADDON, 1), f.item(ADDON, 1, item_id="si_addon_2")],
        discounts=[f.discount("di_off", off)],
    )
    snapshot = parse_subscription(obj)
    assert subscription_mrr(snapshot).amount == 1667
    assert item_mrr(snapshot) == (833, 417, 417)


def test_a_discount_on_the_items_it_applies_to_stays_with_them() -> None:
    half = f.coupon("HALF", percent_off=50.0, products=["prod_addon"])
    obj = sub([f.item(PRO, 1), f.item(ADDON, 1)], discounts=[f.discount("di_h", half)])
    assert item_mrr(parse_subscription(obj)) == (1000, 250)


def test_a_status_that_counts_nothing_has_no_shares() -> None:
    obj = sub([f.item(PRO, 1), f.item(ADDON, 1)], status="trialing")
    assert item_mrr(parse_subscription(obj)) == (0, 0)


def test_interval_values_and_filters() -> None:
    events = [ev("e1", "created", T, sub([f.item(PRO, 1), f.item(QUARTERLY, 1)]))]
    groups = grouped_ledgers("cus_1", events, "interval")
    assert {k: moves_of(v) for k, v in groups.items()} == {
        "month": [("new", 1000, None)],
        "month:3": [("new", 1000, None)],
    }
    # Different keys AND, the same key OR.
    both = Filter.parse(["product:prod_pro", "interval:month:3"])
    assert moves_of(segment_ledger("cus_1", events, both)) == [("new", 1000, None)]
    either = Filter.parse(["interval:month:3", "interval:month"])
    assert moves_of(segment_ledger("cus_1", events, either)) == [("new", 2000, None)]
    nothing = Filter.parse(["plan:price_plus"])
    assert moves_of(segment_ledger("cus_1", events, nothing)) == []


@pytest.mark.parametrize("raw", ["plan", "plan:", ":x", "country_code:DE", "nope:1"])
def test_a_bad_filter_is_refused(raw: str) -> None:
    with pytest.raises(BadSegment):
        Filter.parse([raw])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subs=customer_st, key=st.sampled_from(["plan", "product", "interval"]))
def test_item_groups_sum_to_the_whole_in_levels_and_net_new_mrr(subs, key) -> None:
    events = [parse_event(e) for e in build_events("cus_p", subs)]
    whole = derive_ledger("cus_p", events)
    groups = grouped_ledgers("cus_p", events, key)
    days = [day_of(m.occurred_at) for m in whole.movements]
    for g in groups.values():
        days += [day_of(m.occurred_at) for m in g.movements]
    if not days:
        return
    lo, hi = snap(min(days), max(days) + timedelta(days=1), Period.MONTH)
    for currency in ("usd", "eur"):

        def rows(movements, currency=currency):
            mine = [m for m in movements if m.currency == currency]
            return period_rows(Opening(), buckets_from_movements(mine), lo, hi, Period.MONTH)

        reference = rows(whole.movements)
        sums: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for g in groups.values():
            for n, row in enumerate(rows(g.movements)):
                sums[n][0] += row.starting_mrr
                sums[n][1] += row.ending_mrr
                sums[n][2] += row.ending_mrr - row.starting_mrr
        for n, row in enumerate(reference):
            expected = [row.starting_mrr, row.ending_mrr, row.ending_mrr - row.starting_mrr]
            assert sums[n] == expected, (currency, n)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ledgers=st.lists(customer_st, min_size=1, max_size=4),
    values=st.lists(st.sampled_from(["DE", "FR", "none"]), min_size=4, max_size=4),
)
def test_customer_groups_sum_to_the_whole_field_by_field(ledgers, values) -> None:
    """SPEC §11: every customer is in exactly one group of a customer key, so every
    field of the groups' rows (amounts, counts, breakdowns) sums to the whole's."""
    movements = {}
    for n, subs in enumerate(ledgers):
        customer = f"cus_{n}"
        events = [parse_event(e) for e in build_events(customer, subs)]
        movements[customer] = derive_ledger(customer, events).movements
    days = [day_of(m.occurred_at) for ms in movements.values() for m in ms]
    if not days:
        return
    lo, hi = snap(min(days), max(days) + timedelta(days=1), Period.MONTH)
    group_of = {c: values[n] for n, c in enumerate(sorted(movements))}

    def rows(customers: list[str], currency: str) -> list[dict]:
        mine = [m for c in customers for m in movements[c] if m.currency == currency]
        found = period_rows(Opening(), buckets_from_movements(mine), lo, hi, Period.MONTH)
        return [r.to_json() for r in found]

    for currency in ("usd", "eur"):
        whole = rows(sorted(movements), currency)
        parts = [
            rows([c for c in movements if group_of[c] == value], currency)
            for value in sorted(set(group_of.values()))
        ]
        for n, row in enumerate(whole):
            for field, value in row.items():
                if isinstance(value, dict):
                    for k, amount in value.items():
                        assert amount == sum(p[n][field].get(k, 0) for p in parts), field
                elif isinstance(value, int) and not isinstance(value, bool):
                    assert value == sum(p[n][field] for p in parts), field


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subs=customer_st)
def test_stored_item_segments_are_the_derived_ones(subs) -> None:
    """What a worker stores per item value (`item_segments`, a `whole` segment standing
    for the customer's own ledger) is what a report would derive from the events."""
    events = [parse_event(e) for e in build_events("cus_s", subs)]
    whole = derive_ledger("cus_s", events)
    stored = item_segments("cus_s", events)
    together = derive_with_segments("cus_s", events)  # what workers store, priced once
    assert replace(together, segments=()) == whole
    assert together.segments == item_segments("cus_s", events, trials=bool(whole.trials))
    for key in ("plan", "product", "interval"):
        mine = {s.value: s for s in stored if s.key == key}
        derived = grouped_ledgers("cus_s", events, key)
        assert set(mine) == set(derived)
        for value, ledger in derived.items():
            segment = mine[value]
            trials = segment_trials("cus_s", events, group_by=key, value=value)
            if segment.whole:
                assert len(mine) == 1
                assert ledger.movements == whole.movements
                assert trials == whole.trials
            else:
                assert segment.movements == ledger.movements
                assert segment.trials == trials


def test_a_customer_on_one_plan_is_whole_and_a_plan_change_is_not() -> None:
    one = [
        ev("e1", "created", T, sub([f.item(PRO, 1)])),
        ev("e2", "updated", T + 100, sub([f.item(PRO, 3)])),
    ]
    assert [(s.key, s.value, s.whole) for s in item_segments("cus_1", one)] == [
        ("plan", "price_pro", True),
        ("product", "prod_pro", True),
        ("interval", "month", True),
    ]
    changed = [
        ev("e1", "created", T, sub([f.item(PRO, 1)])),
        ev("e2", "updated", T + 100, sub([f.item(PLUS, 1)])),
    ]
    plans = {s.value: s for s in item_segments("cus_1", changed) if s.key == "plan"}
    assert not any(s.whole for s in plans.values())
    assert moves_of(plans["price_pro"]) == [("new", 1000, None), ("churn", 1000, None)]
    assert moves_of(plans["price_plus"]) == [("new", 3000, None)]
