"""The trial funnel (SPEC §7) from its definitions: each lifecycle's transitions, the
per-period rows, and invariance under delivery order and duplicates."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.timeline import derive_ledger
from ledger.trials import trial_transitions
from reporting.periods import Period
from reporting.trials import pipeline_before, trial_buckets, trial_rows
from tests import factories as f
from tests.unit.timelines import PLUS, PRO, T, ev, sub

DAY = 86_400
PRO2 = [f.item(PRO, 2)]  # 2 seats at 10.00: worth 2,000 a month as active


def lifecycle(*steps: tuple[str, str, int]) -> list:
    """Events of sub_1 (2 × PRO) from (event type, status, day offset) steps."""
    return [
        ev(f"evt_{i}", kind, T + day * DAY, sub(PRO2, status=status))
        for i, (kind, status, day) in enumerate(steps)
    ]


def funnel(events: list) -> list[tuple[str, int, int, str | None]]:
    """(transition, day offset, pipeline delta, ended status) of each transition."""
    return [
        (t.transition.value, (t.occurred_at - T) // DAY, t.pipeline_delta, t.ended_status)
        for t in trial_transitions("cus_1", events)
    ]


# SPEC §7: started at the first `trialing` event, ended at the event that leaves it;
# converted into active/past_due, lost into anything else.
CASES = {
    "converts to active": (
        [("created", "trialing", 0), ("updated", "active", 14)],
        [("started", 0, 2_000, None), ("converted", 14, -2_000, "active")],
    ),
    "converts past_due (counts MRR)": (
        [("created", "trialing", 0), ("updated", "past_due", 14)],
        [("started", 0, 2_000, None), ("converted", 14, -2_000, "past_due")],
    ),
    "canceled during the trial": (
        [("created", "trialing", 0), ("updated", "canceled", 5)],
        [("started", 0, 2_000, None), ("lost", 5, -2_000, "canceled")],
    ),
    "deleted during the trial": (
        [("created", "trialing", 0), ("deleted", "trialing", 6)],
        [("started", 0, 2_000, None), ("lost", 6, -2_000, "canceled")],
    ),
    "paused without a payment method, resumed later: lost": (
        [
            ("created", "trialing", 0),
            ("paused", "paused", 14),
            ("resumed", "active", 30),
        ],
        [("started", 0, 2_000, None), ("lost", 14, -2_000, "paused")],
    ),
    "unpaid after the trial": (
        [("created", "trialing", 0), ("updated", "unpaid", 14)],
        [("started", 0, 2_000, None), ("lost", 14, -2_000, "unpaid")],
    ),
    "incomplete_expired": (
        [("created", "trialing", 0), ("updated", "incomplete_expired", 14)],
        [("started", 0, 2_000, None), ("lost", 14, -2_000, "incomplete_expired")],
    ),
    "first seen trialing on an update": (
        [("created", "incomplete", 0), ("updated", "trialing", 1), ("updated", "active", 8)],
        [("started", 1, 2_000, None), ("converted", 8, -2_000, "active")],
    ),
    "never trialing": ([("created", "active", 0), ("updated", "canceled", 9)], []),
    "still trialing": (
        [("created", "trialing", 0), ("updated", "trialing", 3)],
        [("started", 0, 2_000, None)],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_lifecycle_gives_its_transitions(name: str) -> None:
    steps, expected = CASES[name]
    assert funnel(lifecycle(*steps)) == expected


def test_a_seat_change_during_the_trial_reprices_the_pipeline() -> None:
    events = [
        ev("evt_a", "created", T, sub(PRO2, status="trialing")),
        ev("evt_b", "updated", T + 2 * DAY, sub([f.item(PRO, 2), f.item(PLUS)], status="trialing")),
        ev("evt_c", "updated", T + 9 * DAY, sub([f.item(PRO, 2), f.item(PLUS)], status="active")),
    ]
    assert funnel(events) == [
        ("started", 0, 2_000, None),
        ("repriced", 2, 3_000, None),
        ("converted", 9, -5_000, "active"),
    ]


def test_the_ledger_keeps_the_trials_and_a_trial_earns_no_mrr() -> None:
    ledger = derive_ledger(
        "cus_1", lifecycle(("created", "trialing", 0), ("updated", "active", 14))
    )
    assert [t.transition.value for t in ledger.trials] == ["started", "converted"]
    assert [(m.type.value, m.occurred_at) for m in ledger.movements] == [("new", T + 14 * DAY)]


def test_rows_per_period_count_the_funnel_and_carry_the_pipeline() -> None:
    # Three trials start in January (2,000 each); in February one converts, one is
    # canceled; the third is still trialing at the end of February.
    events = []
    for n, end in (("1", "active"), ("2", "canceled"), ("3", None)):
        events.append(ev(f"s{n}", "created", T + DAY, sub(PRO2, f"sub_{n}", status="trialing")))
        if end:
            obj = sub(PRO2, f"sub_{n}", status=end)
            events.append(ev(f"e{n}", "updated", T + 40 * DAY, obj))
    buckets = trial_buckets(trial_transitions("cus_1", events))
    jan, feb, mar = date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)
    rows = [r.to_json() for r in trial_rows(0, buckets, jan, mar, Period.MONTH)]
    assert [(r["trials_started"], r["trials_converted"], r["trials_lost"]) for r in rows] == [
        (3, 0, 0),
        (0, 1, 1),
    ]
    assert [r["trial_conversion_rate"] for r in rows] == [None, 0.5]
    assert [r["trial_pipeline_mrr"] for r in rows] == [6_000, 2_000]
    # Opening from the buckets before a boundary gives the same February row.
    (again,) = trial_rows(pipeline_before(buckets, feb), buckets, feb, mar, Period.MONTH)
    assert again.to_json() == rows[1]


statuses = st.sampled_from(
    ["trialing", "active", "past_due", "canceled", "paused", "unpaid", "incomplete_expired"]
)
lifecycles = st.lists(
    st.tuples(st.sampled_from(["sub_1", "sub_2"]), statuses, st.integers(0, 60)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(steps=lifecycles, data=st.data())
def test_the_funnel_is_invariant_under_order_and_duplicates(steps, data) -> None:
    events = [
        ev(f"evt_{i}", "updated", T + day * DAY, sub(PRO2, sub_id, status=status))
        for i, (sub_id, status, day) in enumerate(steps)
    ]
    extra = data.draw(st.lists(st.sampled_from(events), max_size=4))
    shuffled = data.draw(st.permutations(events + extra))
    assert trial_transitions("cus_1", shuffled) == trial_transitions("cus_1", events)
    transitions = trial_transitions("cus_1", events)
    # Each subscription starts at most one trial, ends it at most once, and the pipeline
    # is the worth of the trials still running.
    for sub_id in ("sub_1", "sub_2"):
        mine = [t.transition.value for t in transitions if t.subscription_id == sub_id]
        assert mine.count("started") <= 1
        assert mine.count("converted") + mine.count("lost") <= mine.count("started")
    running = sum(
        1
        for sub_id in ("sub_1", "sub_2")
        if [t.transition.value for t in transitions if t.subscription_id == sub_id] == ["started"]
    )
    assert sum(t.pipeline_delta for t in transitions) == 2_000 * running
