"""Movements with kinds and churn details (SPEC §7) from a customer's events, pure."""

from __future__ import annotations

import pytest

from ledger.events import parse_event
from ledger.timeline import Kind, MovementType, derive_ledger
from tests import factories as f
from tests.unit.timelines import ADDON, PLUS, PRO, T, ev, moves, sub

# --- ordering -------------------------------------------------------------------------


def test_lifecycle_new_expansion_contraction_churn_reactivation() -> None:
    events = [
        ev("e1", "created", T, sub([f.item(PRO, 2)])),
        ev("e2", "updated", T + 10, sub([f.item(PRO, 5)]), {"quantity": 2}),
        ev("e3", "updated", T + 20, sub([f.item(PRO, 3)]), {"quantity": 5}),
        ev("e4", "deleted", T + 30, sub([f.item(PRO, 3)], status="canceled")),
        ev("e5", "created", T + 40, sub([f.item(PRO, 1)], sub_id="sub_2")),
    ]
    assert moves(*events) == [
        ("new", 2000, 2000, None),
        ("expansion", 3000, 5000, "seats"),
        ("contraction", 2000, 3000, "seats"),
        ("churn", 3000, 0, None),
        ("reactivation", 1000, 1000, None),
    ]


@pytest.mark.parametrize(
    ("before", "after", "movement", "kind"),
    [
        ([f.item(PRO, 1)], [f.item(PLUS, 1, item_id="si_pro")], "expansion", "upgrade"),
        ([f.item(PLUS, 1)], [f.item(PRO, 1, item_id="si_plus")], "contraction", "downgrade"),
        ([f.item(PRO, 1)], [f.item(PRO, 1), f.item(ADDON, 1)], "expansion", "cross_sell"),
        ([f.item(PRO, 1), f.item(ADDON, 1)], [f.item(PRO, 1)], "contraction", "cross_sell"),
        ([f.item(PRO, 1)], [f.item(PRO, 4)], "expansion", "seats"),
        (
            [f.item(PRO, 1), f.item(ADDON, 1)],
            [f.item(PLUS, 2, item_id="si_pro"), f.item(ADDON)],
            "expansion",
            "upgrade",
        ),
    ],
)
def test_kind_comes_from_diffing_consecutive_snapshots(before, after, movement, kind) -> None:
    got = moves(ev("e1", "created", T, sub(before)), ev("e2", "updated", T + 1, sub(after)))
    assert got[-1][0] == movement and got[-1][3] == kind


def test_discount_added_and_ended_is_kind_discount() -> None:
    half = f.coupon("HALF", percent_off=50.0)
    got = moves(
        ev("e1", "created", T, sub([f.item(PRO, 2)])),
        ev("e2", "updated", T + 1, sub([f.item(PRO, 2)], discounts=[f.discount("d", half)])),
        ev("e3", "updated", T + 2, sub([f.item(PRO, 2)])),
    )
    assert got[1:] == [
        ("contraction", 1000, 1000, "discount"),
        ("expansion", 1000, 2000, "discount"),
    ]


def test_second_subscription_while_paying_is_cross_sell() -> None:
    got = moves(
        ev("e1", "created", T, sub([f.item(PRO)])),
        ev("e2", "created", T + 5, sub([f.item(ADDON)], sub_id="sub_2")),
        ev("e3", "deleted", T + 9, sub([f.item(ADDON)], sub_id="sub_2", status="canceled")),
    )
    assert got[1:] == [
        ("expansion", 500, 1500, "cross_sell"),
        ("contraction", 500, 1000, "cross_sell"),
    ]


def test_price_change_with_same_amount_is_no_movement() -> None:
    same = f.price("price_pro_v2", 1000, product="prod_pro")
    assert moves(
        ev("e1", "created", T, sub([f.item(PRO)])),
        ev("e2", "updated", T + 5, sub([f.item(same, item_id="si_pro")])),
    ) == [("new", 1000, 1000, None)]


def test_plan_switch_by_cancel_and_create_in_one_second_is_one_movement() -> None:
    got = moves(
        ev("e1", "created", T, sub([f.item(PRO)])),
        ev("e2", "deleted", T + 60, sub([f.item(PRO)], status="canceled")),
        ev("e3", "created", T + 60, sub([f.item(PLUS)], sub_id="sub_2")),
    )
    assert got == [("new", 1000, 1000, None), ("expansion", 2000, 3000, "cross_sell")]


def test_churn_carries_cancellation_details_and_delinquency() -> None:
    details = {"comment": None, "feedback": "switched_service", "reason": "cancellation_requested"}
    ledger = derive_ledger(
        "cus_1",
        [
            ev("e1", "created", T, sub([f.item(PRO)])),
            ev(
                "e2",
                "deleted",
                T + 5,
                sub([f.item(PRO)], status="canceled", cancellation_details=details),
            ),
            ev("e3", "created", T + 9, sub([f.item(PRO)], sub_id="sub_2")),
            ev(
                "e4",
                "updated",
                T + 20,
                sub([f.item(PRO)], sub_id="sub_2", status="unpaid"),
                {"status": "past_due"},
            ),
            ev("e5", "created", T + 30, sub([f.item(PRO)], sub_id="sub_3")),
            ev(
                "e6",
                "deleted",
                T + 40,
                sub(
                    [f.item(PRO)],
                    sub_id="sub_3",
                    status="canceled",
                    cancellation_details={"reason": "payment_failed"},
                ),
            ),
        ],
    )
    churns = [m for m in ledger.movements if m.type is MovementType.CHURN]
    assert [(m.churn_reason, m.churn_feedback, m.delinquent) for m in churns] == [
        ("cancellation_requested", "switched_service", False),
        (None, None, True),  # unpaid
        ("payment_failed", None, True),
    ]
    assert [m.type for m in ledger.movements].count(MovementType.REACTIVATION) == 2


def test_currencies_are_separate_timelines() -> None:
    eur = f.price("price_eur", 900, currency="eur", product="prod_eur")
    ledger = derive_ledger(
        "cus_1",
        [
            ev("e1", "created", T, sub([f.item(PRO)])),
            ev("e2", "created", T + 1, sub([f.item(eur)], sub_id="sub_eur", currency="eur")),
        ],
    )
    assert [(m.currency, m.type.value, m.amount) for m in ledger.movements] == [
        ("usd", "new", 1000),
        ("eur", "new", 900),
    ]
    assert {b.currency: b.mrr for b in ledger.balances} == {"usd": 1000, "eur": 900}


def test_scheduled_churn_keeps_mrr_until_the_end() -> None:
    ledger = derive_ledger(
        "cus_1",
        [
            ev("e1", "created", T, sub([f.item(PRO)])),
            ev(
                "e2",
                "updated",
                T + 5,
                sub([f.item(PRO)], cancel_at_period_end=True),
                {"cancel_at_period_end": False},
            ),
        ],
    )
    assert len(ledger.movements) == 1
    (balance,) = ledger.balances
    assert (balance.mrr, balance.scheduled_churn) == (1000, 1000)


def test_a_cancel_at_already_past_schedules_nothing() -> None:
    ledger = derive_ledger(
        "cus_1",
        [
            ev("e1", "created", T, sub([f.item(PRO)], cancel_at=T + 100)),
            ev("e2", "created", T, sub([f.item(PLUS)], sub_id="sub_2", cancel_at=T - 1)),
        ],
    )
    (balance,) = ledger.balances
    assert (balance.mrr, balance.scheduled_churn) == (4000, 1000)
    assert {s.id: s.scheduled_to_cancel for s in ledger.subscriptions} == {
        "sub_1": True,
        "sub_2": False,
    }


def test_a_deletion_ends_the_subscription_whatever_its_status_says() -> None:
    ledger = derive_ledger(
        "cus_1",
        [
            ev("e1", "created", T, sub([f.item(PRO)])),
            ev("e2", "deleted", T + 9, sub([f.item(PRO)], status="active")),
        ],
    )
    assert [(m.type.value, m.amount) for m in ledger.movements] == [("new", 1000), ("churn", 1000)]
    (state,) = ledger.subscriptions
    assert (state.status, state.mrr) == ("canceled", 0)


def test_a_canceled_subscription_with_a_malformed_price_is_still_a_churn() -> None:
    broken = sub([f.item(PRO)], status="canceled")
    broken["items"]["data"][0]["price"]["recurring"]["interval"] = "fortnight"
    assert moves(
        ev("e1", "created", T, sub([f.item(PRO)])),
        ev("e2", "deleted", T + 9, broken),
    ) == [("new", 1000, 1000, None), ("churn", 1000, 0, None)]


def test_trial_is_zero_until_it_converts() -> None:
    assert moves(
        ev("e1", "created", T, sub([f.item(PRO)], status="trialing")),
        ev("e2", "trial_will_end", T + 5, sub([f.item(PRO)], status="trialing")),
        ev("e3", "updated", T + 9, sub([f.item(PRO)]), {"status": "trialing"}),
    ) == [("new", 1000, 1000, None)]


def test_paused_and_resumed() -> None:
    assert moves(
        ev("e1", "created", T, sub([f.item(PRO)])),
        ev("e2", "paused", T + 5, sub([f.item(PRO)], status="paused")),
        ev("e3", "resumed", T + 9, sub([f.item(PRO)])),
    ) == [("new", 1000, 1000, None), ("churn", 1000, 0, None), ("reactivation", 1000, 1000, None)]


def test_events_of_another_customer_are_rejected() -> None:
    other = parse_event(
        f.event(
            "e9",
            "customer.subscription.created",
            T,
            f.subscription("sub_9", "cus_9", [f.item(PRO)]),
        )
    )
    with pytest.raises(ValueError, match="belongs to cus_9"):
        derive_ledger("cus_1", [other])


def test_kinds_are_the_spec_levers() -> None:
    assert {k.value for k in Kind} == {
        "seats",
        "upgrade",
        "downgrade",
        "cross_sell",
        "discount",
        "other",
    }


def test_a_movement_names_every_event_of_its_second_behind_it() -> None:
    ledger = derive_ledger(
        "cus_1",
        [
            ev("e1", "created", T, sub([f.item(PRO)])),
            ev("e2", "deleted", T + 60, sub([f.item(PRO)], status="canceled")),
            ev("bf_sub_2_created_1", "created", T + 60, sub([f.item(PLUS)], sub_id="sub_2")),
            ev("e4", "updated", T + 60, sub([f.item(PLUS)], sub_id="sub_3", status="trialing")),
        ],
    )
    first, switch = ledger.movements
    assert (first.subscription_ids, first.event_ids) == (("sub_1",), ("e1",))
    # sub_3's trial moved nothing: its event is not behind the movement.
    assert switch.subscription_ids == ("sub_1", "sub_2")
    assert switch.events == (("e2", False), ("bf_sub_2_created_1", True))
