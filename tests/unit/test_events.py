"""Event order (SPEC §2): created < updated < deleted, previous_attributes chains, pure."""

from __future__ import annotations

import copy

from ledger.events import order_events
from tests import factories as f
from tests.unit.timelines import PRO, T, ev, moves, sub

# --- ordering -------------------------------------------------------------------------


def test_same_second_created_before_updated_whatever_the_ids() -> None:
    created = ev("evt_z", "created", T, sub([f.item(PRO)], status="incomplete"))
    updated = ev("evt_a", "updated", T, sub([f.item(PRO)]), {"status": "incomplete"})
    assert [e.id for e in order_events([updated, created])] == ["evt_z", "evt_a"]
    assert moves(updated, created) == [("new", 1000, 1000, None)]


def test_same_second_deleted_comes_last() -> None:
    deleted = ev("evt_a", "deleted", T + 5, sub([f.item(PRO)], status="canceled"))
    updated = ev("evt_b", "updated", T + 5, sub([f.item(PRO, 2)]), {"quantity": 1})
    created = ev("evt_c", "created", T, sub([f.item(PRO)]))
    assert [e.id for e in order_events([deleted, updated, created])] == ["evt_c", "evt_b", "evt_a"]
    assert moves(deleted, updated, created) == [("new", 1000, 1000, None), ("churn", 1000, 0, None)]


def test_two_updates_in_one_second_follow_the_previous_attributes_chain() -> None:
    one, two, three = (sub([f.item(PRO, q)]) for q in (1, 2, 3))
    first = ev("evt_y", "updated", T + 9, two, {"items": copy.deepcopy(one["items"])})
    second = ev("evt_x", "updated", T + 9, three, {"items": copy.deepcopy(two["items"])})
    base = ev("evt_0", "created", T, one)
    assert [e.id for e in order_events([second, first, base])] == ["evt_0", "evt_y", "evt_x"]
    assert moves(second, base, first)[-1] == ("expansion", 2000, 3000, "seats")


def test_chain_on_status_values_with_three_links() -> None:
    s = {st: sub([f.item(PRO)], status=st) for st in ("incomplete", "active", "past_due")}
    a = ev("evt_3", "updated", T, s["active"], {"status": "incomplete"})
    b = ev("evt_1", "updated", T, s["past_due"], {"status": "active"})
    c = ev("evt_2", "updated", T, s["active"], {"status": "past_due"})
    order = [e.id for e in order_events([a, b, c])]
    assert order.index("evt_3") < order.index("evt_1") < order.index("evt_2")


def test_contradictory_chain_falls_back_to_id_order() -> None:
    a = ev("evt_b", "updated", T, sub([f.item(PRO, 2)]), {"items": sub([f.item(PRO, 1)])["items"]})
    b = ev("evt_a", "updated", T, sub([f.item(PRO, 1)]), {"items": sub([f.item(PRO, 2)])["items"]})
    assert [e.id for e in order_events([a, b])] == ["evt_a", "evt_b"]


def test_duplicates_count_once() -> None:
    e = ev("evt_1", "created", T, sub([f.item(PRO)]))
    assert moves(e, e, e) == [("new", 1000, 1000, None)]


# --- movements --------------------------------------------------------------------------


def test_long_same_second_chains_are_walked_in_chain_order() -> None:
    subs = [sub([f.item(PRO, q)]) for q in range(1, 12)]
    ids = [f"evt_{c}" for c in "kjihgfedcba"]  # id order is the reverse of the chain
    chain = [
        ev(ids[q], "updated", T + 9, subs[q], {"items": copy.deepcopy(subs[q - 1]["items"])})
        for q in range(1, 11)
    ]
    base = ev("evt_base", "created", T, subs[0])
    ordered = order_events([*reversed(chain), base])
    assert [e.id for e in ordered] == ["evt_base", *ids[1:]]
    assert moves(base, *chain)[-1] == ("expansion", 10000, 11000, "seats")
