"""Each subscription's trial: when it began, how it ended, and what it would be worth
(SPEC §7, the trial funnel). Pure.

A trial starts at the event that first shows the subscription `trialing` and ends at
the event whose status leaves `trialing`, each dated at that event's `created`. It is
`converted` when it leaves into a status that counts MRR (`active`, `past_due`), `lost`
otherwise (`canceled`, `paused`, `incomplete_expired`, `unpaid`, or a
`customer.subscription.deleted` event). A subscription has one trial: one that ended
`paused` and resumes later stays lost (the resume is a `new` movement of the ledger),
and a later `trialing` status starts nothing.

While a trial runs it carries a *pipeline* MRR: the MRR the subscription would count if
it converted as it is, computed by `ledger.mrr` with the status taken as `active`. The
transitions record the pipeline's changes as deltas (like movements record MRR's), so
the pipeline at any boundary is the sum of the deltas before it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from ledger.errors import InvalidValue
from ledger.events import SubscriptionEvent, order_events
from ledger.mrr import EMPTY_CATALOG, Catalog, Mrr, subscription_mrr
from ledger.snapshot import COUNTING_STATUSES, Snapshot

TRIALING = "trialing"


class Transition(StrEnum):
    """What happened to a trial at one event."""

    STARTED = "started"
    CONVERTED = "converted"
    LOST = "lost"
    #: Still trialing, but what it would be worth changed (seats, price, currency).
    REPRICED = "repriced"


@dataclass(frozen=True)
class TrialTransition:
    customer_id: str
    subscription_id: str
    currency: str
    #: Per (customer, subscription): 1, 2, … in the order the transitions happened.
    seq: int
    occurred_at: int  # the event's `created`, unix seconds
    event_id: str
    transition: Transition
    #: The change of the pipeline MRR in `currency` (minor units): + at a start, − at
    #: its end, either way when repriced.
    pipeline_delta: int
    #: The status the trial ended in (converted/lost), else None.
    ended_status: str | None = None


def pipeline_mrr(
    snapshot: Snapshot,
    catalog: Catalog = EMPTY_CATALOG,
    pricing: Callable[[Snapshot, Catalog], Mrr] = subscription_mrr,
) -> int:
    """What a trialing subscription would count if it converted as it is: the MRR
    rules of SPEC §7 (or a segment's `pricing`) with its status taken as `active`. A
    price the ledger cannot sum (malformed, or a status-0 subscription's price that was
    never checked) gives 0: the trial is still counted, its worth is not guessed."""
    try:
        return pricing(replace(snapshot, status="active", ended=False), catalog).amount
    except InvalidValue:
        return 0


def trial_transitions(
    customer_id: str,
    events: Iterable[SubscriptionEvent],
    catalog: Catalog = EMPTY_CATALOG,
    pricing: Callable[[Snapshot, Catalog], Mrr] = subscription_mrr,
    belongs: Callable[[Snapshot], bool] | None = None,
) -> tuple[TrialTransition, ...]:
    """The trial transitions of every subscription of the customer, in event order.

    A pure function of the *set* of events (duplicates count once, delivery order does
    not matter): the events are put in the ledger's own order (`order_events`). For a
    segment (SPEC §11), `belongs` says whether the snapshot that starts a trial is in
    it (a trial of the segment's items) and `pricing` what its pipeline is worth.
    """
    # Per subscription: (currency, pipeline) while trialing, "done" once its trial ended.
    open_: dict[str, tuple[str, int]] = {}
    done: set[str] = set()
    seq: dict[str, int] = defaultdict(int)
    out: list[TrialTransition] = []

    def emit(
        event: SubscriptionEvent,
        currency: str,
        transition: Transition,
        delta: int,
        ended: str | None = None,
    ) -> None:
        sub_id = event.snapshot.id
        seq[sub_id] += 1
        out.append(
            TrialTransition(
                customer_id=customer_id,
                subscription_id=sub_id,
                currency=currency,
                seq=seq[sub_id],
                occurred_at=event.created,
                event_id=event.id,
                transition=transition,
                pipeline_delta=delta,
                ended_status=ended,
            )
        )

    for event in order_events(events):
        snap = event.snapshot
        sub_id = snap.id
        if sub_id in done:
            continue
        status = snap.effective_status
        trialing = status == TRIALING and not snap.ended
        if sub_id not in open_:
            if trialing:
                if belongs is not None and not belongs(snap):
                    done.add(sub_id)  # its one trial is another segment's
                    continue
                worth = pipeline_mrr(snap, catalog, pricing)
                open_[sub_id] = (snap.currency, worth)
                emit(event, snap.currency, Transition.STARTED, worth)
            continue
        currency, worth = open_[sub_id]
        if trialing:
            now_worth = pipeline_mrr(snap, catalog, pricing)
            if snap.currency != currency:
                emit(event, currency, Transition.REPRICED, -worth)
                emit(event, snap.currency, Transition.REPRICED, now_worth)
            elif now_worth != worth:
                emit(event, currency, Transition.REPRICED, now_worth - worth)
            open_[sub_id] = (snap.currency, now_worth)
            continue
        converted = status in COUNTING_STATUSES
        emit(
            event,
            currency,
            Transition.CONVERTED if converted else Transition.LOST,
            -worth,
            status,
        )
        del open_[sub_id]
        done.add(sub_id)
    return tuple(out)
