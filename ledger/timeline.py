"""A customer's events → its MRR timeline → its ledger of movements (SPEC §2, §7).

`derive_ledger` is the heart of the product: a pure function of the *set* of events, so
delivery order, duplicates, concurrent workers and rebuilds all give the same ledger.

The customer's MRR (per currency) is sampled once per distinct event second, after
every event of that second has been applied in the documented order; a movement is the
difference between two consecutive samples. Sampling by second means a plan switch
done as "cancel A and create B" in one API call is one movement, not a churn and a
reactivation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from itertools import groupby
from typing import TYPE_CHECKING

from ledger.errors import InvalidValue
from ledger.events import SubscriptionEvent, order_events
from ledger.mrr import EMPTY_CATALOG, Catalog, Mrr, subscription_mrr
from ledger.snapshot import Snapshot
from ledger.synthetic import is_synthetic_id
from ledger.trials import TrialTransition, trial_transitions

if TYPE_CHECKING:
    from ledger.segments import ItemSegment

#: What one snapshot counts towards a ledger (`subscription_mrr`, or a segment's share).
Pricing = Callable[[Snapshot, Catalog], Mrr]


class MovementType(StrEnum):
    """What a change of a customer's MRR is (SPEC §7), and what it does to the totals.

    Every layer reads these two rules from here, the reports' SQL included.
    """

    NEW = "new"
    EXPANSION = "expansion"
    CONTRACTION = "contraction"
    CHURN = "churn"
    REACTIVATION = "reactivation"

    @property
    def sign(self) -> int:
        """+1 when the movement adds its amount to MRR, -1 when it takes it away."""
        return -1 if self in (MovementType.CONTRACTION, MovementType.CHURN) else 1

    @property
    def paying_delta(self) -> int:
        """What the movement does to the number of paying customers (MRR > 0)."""
        if self in (MovementType.NEW, MovementType.REACTIVATION):
            return 1
        return -1 if self is MovementType.CHURN else 0


class Kind(StrEnum):
    """The growth lever behind an expansion or a contraction."""

    SEATS = "seats"
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    CROSS_SELL = "cross_sell"
    DISCOUNT = "discount"
    OTHER = "other"


def churn_reason_key(feedback: str | None, reason: str | None) -> str:
    """SPEC §7: a churn counts under its feedback, else its reason, else `unknown`."""
    return feedback or reason or "unknown"


@dataclass(frozen=True)
class Movement:
    """One change of a customer's MRR in one currency. `amount` is positive, minor units."""

    customer_id: str
    currency: str
    seq: int
    occurred_at: int  # unix seconds: the events' `created`
    event_id: str
    subscription_id: str
    type: MovementType
    amount: int
    mrr_before: int
    mrr_after: int
    kind: Kind | None = None
    churn_reason: str | None = None
    churn_feedback: str | None = None
    delinquent: bool = False
    #: Every subscription whose MRR in this currency moved at this second, sorted.
    subscription_ids: tuple[str, ...] = ()
    #: The events behind the movement: those of this second of `subscription_ids`, by
    #: subscription, then in the order the ledger applied them (SPEC §12).
    event_ids: tuple[str, ...] = ()

    @property
    def events(self) -> tuple[tuple[str, bool], ...]:
        """`(event id, synthetic)` of every event behind the movement."""
        return tuple((e, is_synthetic_id(e)) for e in self.event_ids)

    @property
    def signed_amount(self) -> int:
        return self.type.sign * self.amount

    @property
    def reason_key(self) -> str | None:
        """What `churn_by_reason` groups this movement under; None unless a churn."""
        if self.type is not MovementType.CHURN:
            return None
        return churn_reason_key(self.churn_feedback, self.churn_reason)


@dataclass(frozen=True)
class SubscriptionState:
    """A subscription as its latest event leaves it."""

    id: str
    customer_id: str
    currency: str
    status: str
    mrr: int
    #: As of its latest event: a `cancel_at` already past by then schedules nothing.
    scheduled_to_cancel: bool
    last_event_id: str
    last_event_created: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Balance:
    """A customer's standing in one currency after its last event."""

    customer_id: str
    currency: str
    mrr: int
    scheduled_churn: int
    first_new_at: int | None


@dataclass(frozen=True)
class CustomerLedger:
    customer_id: str
    movements: tuple[Movement, ...]
    subscriptions: tuple[SubscriptionState, ...]
    balances: tuple[Balance, ...]
    #: Warnings per event id (events priced without details the payload lacked).
    warnings: Mapping[str, tuple[str, ...]]
    #: Its subscriptions' trial transitions (`ledger.trials`), in event order.
    trials: tuple[TrialTransition, ...] = ()
    #: Its ledgers by item key (`ledger.segments.item_segments`), when asked for.
    segments: tuple[ItemSegment, ...] = ()


@dataclass(frozen=True)
class _Priced:
    snapshot: Snapshot
    mrr: int
    event: SubscriptionEvent


def derive_ledger(
    customer_id: str,
    events: Iterable[SubscriptionEvent],
    catalog: Catalog = EMPTY_CATALOG,
    pricing: Pricing = subscription_mrr,
) -> CustomerLedger:
    """The customer's whole ledger from the set of its subscription events.

    Events of other customers are a programming error (ValueError). Duplicate event
    ids count once. Pure and deterministic. `pricing` is what a snapshot counts: its
    MRR, or (a segment, `ledger.segments`) the part of it its matching items count.
    """
    ordered = order_events(events)
    for event in ordered:
        if event.customer != customer_id:
            raise ValueError(f"event {event.id} belongs to {event.customer}, not {customer_id}")

    state: dict[str, _Priced] = {}
    totals: dict[str, int] = defaultdict(int)
    first_new: dict[str, int] = {}
    seq: dict[str, int] = defaultdict(int)
    warnings: dict[str, tuple[str, ...]] = {}
    movements: list[Movement] = []

    for second, batch in groupby(ordered, key=lambda e: e.created):
        changes: dict[str, tuple[_Priced | None, _Priced]] = {}
        applied: dict[str, list[str]] = defaultdict(list)
        for event in batch:
            try:
                result = pricing(event.snapshot, catalog)
            except InvalidValue as exc:
                exc.event_id = event.id  # the caller quarantines that event, not the customer
                raise
            if result.warnings:
                warnings[event.id] = result.warnings
            sub_id = event.snapshot.id
            applied[sub_id].append(event.id)
            before = changes[sub_id][0] if sub_id in changes else state.get(sub_id)
            priced = _Priced(event.snapshot, result.amount, event)
            changes[sub_id] = (before, priced)
            state[sub_id] = priced

        deltas: dict[str, list[tuple[int, str, _Priced | None, _Priced]]] = defaultdict(list)
        for sub_id, (before, after) in sorted(changes.items()):
            if before is not None and before.snapshot.currency != after.snapshot.currency:
                deltas[before.snapshot.currency].append((-before.mrr, sub_id, before, after))
                deltas[after.snapshot.currency].append((after.mrr, sub_id, before, after))
                continue
            old = before.mrr if before is not None else 0
            if after.mrr != old:
                deltas[after.snapshot.currency].append((after.mrr - old, sub_id, before, after))

        for currency in sorted(deltas):
            contributions = deltas[currency]
            net = sum(d for d, *_ in contributions)
            if net == 0:
                continue
            mrr_before = totals[currency]
            mrr_after = mrr_before + net
            totals[currency] = mrr_after
            seq[currency] += 1
            movements.append(
                _movement(
                    customer_id,
                    currency,
                    seq[currency],
                    second,
                    mrr_before,
                    mrr_after,
                    contributions,
                    first_new,
                    applied,
                )
            )

    return CustomerLedger(
        customer_id=customer_id,
        movements=tuple(movements),
        subscriptions=tuple(
            SubscriptionState(
                id=sub_id,
                customer_id=customer_id,
                currency=p.snapshot.currency,
                status=p.snapshot.effective_status,
                mrr=p.mrr,
                scheduled_to_cancel=p.snapshot.scheduled_to_cancel(p.event.created),
                last_event_id=p.event.id,
                last_event_created=p.event.created,
                warnings=warnings.get(p.event.id, ()),
            )
            for sub_id, p in sorted(state.items())
        ),
        balances=_balances(customer_id, state, totals, first_new),
        warnings=warnings,
        # A segment's trials are its own (`ledger.segments.segment_trials`).
        trials=trial_transitions(customer_id, ordered, catalog)
        if pricing is subscription_mrr
        else (),
    )


def _movement(
    customer_id: str,
    currency: str,
    seq: int,
    second: int,
    mrr_before: int,
    mrr_after: int,
    contributions: list[tuple[int, str, _Priced | None, _Priced]],
    first_new: dict[str, int],
    applied: Mapping[str, list[str]],
) -> Movement:
    net = mrr_after - mrr_before
    # The subscription that moved most in the net direction speaks for the movement.
    lead = max(contributions, key=lambda c: (c[0] if net > 0 else -c[0], c[1]))
    delta, sub_id, before, after = lead
    kind: Kind | None = None
    reason = feedback = None
    delinquent = False
    if mrr_before == 0:
        movement_type = MovementType.REACTIVATION if currency in first_new else MovementType.NEW
        first_new.setdefault(currency, second)
    elif mrr_after == 0:
        movement_type = MovementType.CHURN
        snap = after.snapshot
        reason, feedback = snap.cancellation_reason, snap.cancellation_feedback
        delinquent = reason == "payment_failed" or snap.status == "unpaid"
    else:
        movement_type = MovementType.EXPANSION if net > 0 else MovementType.CONTRACTION
        kind = _change_kind(before, after, delta)
    subs = tuple(sorted({c[1] for c in contributions}))
    return Movement(
        customer_id=customer_id,
        currency=currency,
        seq=seq,
        occurred_at=second,
        event_id=after.event.id,
        subscription_id=sub_id,
        type=movement_type,
        amount=abs(net),
        mrr_before=mrr_before,
        mrr_after=mrr_after,
        kind=kind,
        churn_reason=reason,
        churn_feedback=feedback,
        delinquent=delinquent,
        subscription_ids=subs,
        event_ids=tuple(e for s in subs for e in applied.get(s, ())),
    )


def _change_kind(before: _Priced | None, after: _Priced, delta: int) -> Kind:
    """Why one subscription's MRR moved, from its two consecutive snapshots."""
    if before is None or before.mrr == 0 or after.mrr == 0:
        return Kind.CROSS_SELL  # a subscription started or stopped counting
    old, new = before.snapshot, after.snapshot
    if len(old.items) != len(new.items):
        return Kind.CROSS_SELL  # a product added to or removed from the subscription
    old_prices = sorted((i.price.id or "", i.price.unit_amount or 0) for i in old.items)
    new_prices = sorted((i.price.id or "", i.price.unit_amount or 0) for i in new.items)
    if old_prices != new_prices:
        return Kind.UPGRADE if delta > 0 else Kind.DOWNGRADE
    if sorted(_quantities(old)) != sorted(_quantities(new)):
        return Kind.SEATS
    if _discount_keys(old) != _discount_keys(new):
        return Kind.DISCOUNT
    return Kind.OTHER


def _quantities(snap: Snapshot) -> list[tuple[str, int]]:
    return [(i.price.id or "", 1 if i.quantity is None else i.quantity) for i in snap.items]


def _discount_keys(snap: Snapshot) -> frozenset[str]:
    refs = list(snap.discounts) + [d for i in snap.items for d in i.discounts]
    return frozenset(r.id or r.coupon_id or (r.coupon.id if r.coupon else "") for r in refs)


def _balances(
    customer_id: str,
    state: dict[str, _Priced],
    totals: dict[str, int],
    first_new: dict[str, int],
) -> tuple[Balance, ...]:
    scheduled: dict[str, int] = defaultdict(int)
    for p in state.values():
        if p.snapshot.scheduled_to_cancel(p.event.created):
            scheduled[p.snapshot.currency] += p.mrr
    currencies = sorted(set(totals) | {p.snapshot.currency for p in state.values()})
    return tuple(
        Balance(customer_id, c, totals.get(c, 0), scheduled.get(c, 0), first_new.get(c))
        for c in currencies
    )
