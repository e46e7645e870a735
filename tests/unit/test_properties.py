"""Hypothesis properties of the pure core over generated subscription lifecycles.

* any permutation and duplication of a customer's events gives the identical ledger;
* per period, starting + Σ movements = ending, and periods chain;
* customer MRR = Σ of its subscriptions' MRR, per currency.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.events import parse_event
from ledger.timeline import derive_ledger
from reporting.periods import Period, snap
from reporting.rows import Opening, buckets_from_movements, day_of, period_rows
from tests.lifecycles import STATUSES, STEPS, build_events

snapshot_st = st.fixed_dictionaries(
    {
        "status": st.sampled_from(STATUSES),
        "prices": st.lists(st.sampled_from(range(4)), min_size=1, max_size=3, unique=True),
        "quantity": st.integers(min_value=0, max_value=7),
        "discount": st.booleans(),
        "cancel_at_period_end": st.booleans(),
        # Small time steps, including 0, so same-second bursts are common.
        "step": st.sampled_from(STEPS),
    }
)
subscription_st = st.fixed_dictionaries(
    {
        "eur": st.booleans(),
        "start": st.integers(min_value=0, max_value=86400 * 200),
        "snapshots": st.lists(snapshot_st, min_size=1, max_size=6),
        "deleted": st.booleans(),
    }
)
customer_st = st.lists(subscription_st, min_size=1, max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subs=customer_st, data=st.data())
def test_any_permutation_and_duplication_gives_the_same_ledger(subs, data) -> None:
    parsed = [parse_event(e) for e in build_events("cus_p", subs)]
    reference = derive_ledger("cus_p", parsed)
    extra = data.draw(st.lists(st.sampled_from(parsed), max_size=len(parsed)))
    shuffled = data.draw(st.permutations(parsed + extra))
    assert derive_ledger("cus_p", shuffled) == reference


@settings(max_examples=150, deadline=None)
@given(subs=customer_st)
def test_customer_mrr_is_the_sum_of_its_subscriptions(subs) -> None:
    ledger = derive_ledger("cus_p", [parse_event(e) for e in build_events("cus_p", subs)])
    by_currency: dict[str, int] = defaultdict(int)
    for s in ledger.subscriptions:
        by_currency[s.currency] += s.mrr
    assert {b.currency: b.mrr for b in ledger.balances} == dict(by_currency)
    last: dict[str, int] = {}
    for m in ledger.movements:
        assert m.mrr_after == m.mrr_before + m.signed_amount
        assert m.mrr_before == last.get(m.currency, 0)  # movements chain per currency
        assert m.amount > 0
        last[m.currency] = m.mrr_after
    for b in ledger.balances:
        assert last.get(b.currency, 0) == b.mrr


@settings(max_examples=100, deadline=None)
@given(
    customers=st.lists(customer_st, min_size=1, max_size=4),
    period=st.sampled_from(list(Period)),
    offset=st.integers(min_value=0, max_value=120),
)
def test_starting_plus_movements_is_ending_for_every_period(customers, period, offset) -> None:
    movements = []
    final: dict[str, int] = defaultdict(int)
    paying: dict[str, int] = defaultdict(int)
    for n, subs in enumerate(customers):
        ledger = derive_ledger(f"cus_{n}", [parse_event(e) for e in build_events(f"cus_{n}", subs)])
        movements.extend(ledger.movements)
        for b in ledger.balances:
            final[b.currency] += b.mrr
            paying[b.currency] += b.mrr > 0
    for currency in ("usd", "eur"):
        mine = [m for m in movements if m.currency == currency]
        buckets = buckets_from_movements(mine)
        start, end = snap(date(2024, 1, 1) + timedelta(days=offset), date(2024, 12, 31), period)
        before = [b for b in buckets if b.day < start]
        opening = Opening(
            sum(
                b.amount * (1 if b.type in ("new", "expansion", "reactivation") else -1)
                for b in before
            ),
            sum(
                b.count * {"new": 1, "reactivation": 1, "churn": -1}.get(b.type, 0) for b in before
            ),
        )
        rows = [r.to_json() for r in period_rows(opening, buckets, start, end, period)]
        for prev, row in pairwise(rows):
            assert row["starting_mrr"] == prev["ending_mrr"]
            assert row["starting_customers"] == prev["ending_customers"]
        for row in rows:
            flows = row["new"] + row["expansion"] + row["reactivation"] - row["contraction"]
            assert row["ending_mrr"] == row["starting_mrr"] + flows - row["churn"]
            assert sum(row["expansion_by_kind"].values()) == row["expansion"]
            assert sum(row["contraction_by_kind"].values()) == row["contraction"]
            assert sum(row["churn_by_reason"].values()) == row["churn"]
            assert row["ending_mrr"] >= 0 and row["ending_customers"] >= 0
        after = [
            m for m in mine if day_of(m.occurred_at) >= date.fromisoformat(rows[-1]["period_end"])
        ]
        if not after:
            assert rows[-1]["ending_mrr"] == final[currency]
            assert rows[-1]["ending_customers"] == paying[currency]
