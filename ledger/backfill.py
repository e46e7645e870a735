"""Opening histories for subscriptions whose beginning the inbox never saw, and the drift
of one subscription between the ledger and Stripe (SPEC §9).

Pure, like the rest of `ledger`: Stripe's objects and the stored events go in, synthetic
event envelopes and drift records come out, and the caller stores the events through
the same intake as webhooks, so the ledger stays a function of the stored events.
Nothing here reads the clock: callers pass the time Stripe's objects describe.

An opening history is at most three events, each dated by what Stripe states:

* `created` at `start_date`, carrying the earliest state that can be known: the earliest
  stored event's object with its `previous_attributes` undone (in that event's payload
  shape), or Stripe's current object when no event of the subscription is stored. A
  `canceled` state is taken as it was before the end: `active`, or `trialing` when it
  ended during a trial that began at `start_date`;
* `updated` at `trial_end`, when the trial began at `start_date` and ended before the
  next known state: the opening is `trialing` until then;
* `deleted` at `ended_at`, when the subscription ended before the earliest stored event
  and no stored event ends it.

What happened between `start_date` and the earliest stored event is flattened to those
dates. Ids are deterministic, so storing an opening twice adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.events import SubscriptionEvent, order_events
from ledger.mrr import EMPTY_CATALOG, Catalog, subscription_mrr
from ledger.snapshot import ENDED_STATUSES, Snapshot

#: Every synthetic event id starts so; Stripe's own start with `evt_`.
SYNTHETIC_PREFIX = "bf_"
CREATED = "customer.subscription.created"
UPDATED = "customer.subscription.updated"
DELETED = "customer.subscription.deleted"
#: What each synthetic event stands for, as it appears in its id.
KINDS = frozenset({"created", "updated", "trial", "deleted", "reconcile", "gone"})
#: Width of the inbox's id column.
MAX_ID_LENGTH = 255
#: RQ job ids (which carry event ids) allow letters, digits, `_` and `-` only.
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def synthetic_id(subscription_id: str, kind: str, at: int) -> str:
    """`bf_<subscription>_<kind>_<at>`: the same arguments always give the same id.

    At most 255 characters of letters, digits, `_` and `-`; a subscription id that
    needs shortening or has other characters is kept apart from others by a digest.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic event kind {kind!r}")
    safe = _UNSAFE.sub("-", subscription_id)
    suffix = f"_{kind}_{at}"
    if safe != subscription_id or len(SYNTHETIC_PREFIX) + len(safe) + len(suffix) > MAX_ID_LENGTH:
        digest = hashlib.sha256(subscription_id.encode()).hexdigest()[:16]
        room = MAX_ID_LENGTH - len(SYNTHETIC_PREFIX) - len(suffix) - len(digest) - 1
        safe = f"{safe[:room]}-{digest}"
    return f"{SYNTHETIC_PREFIX}{safe}{suffix}"


def undo_previous(obj: Mapping[str, Any], previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The object as it was before the change an event's `previous_attributes` describes.

    Values listed in `previous` are put back: nested objects key by key, lists and
    scalars whole (Stripe lists the whole old `items.data`). A null stands for a value
    that was null or absent, as in the ordering rule's chain. `obj` is not modified.
    """
    result: dict[str, Any] = _clone(obj)
    if previous:
        _put_back(result, previous)
    return result


def _put_back(target: dict[str, Any], previous: Mapping[str, Any]) -> None:
    for key, old in previous.items():
        current = target.get(key)
        if isinstance(old, dict) and isinstance(current, dict):
            _put_back(current, old)
        else:
            target[key] = _clone(old)


def synthetic_event(
    event_id: str,
    event_type: str,
    created: int,
    obj: Mapping[str, Any],
    *,
    api_version: str | None,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A Stripe event envelope around `obj`, shaped like the ones Stripe sends. It holds
    `obj` and `previous` themselves, not copies."""
    data: dict[str, Any] = {"object": obj}
    if previous:
        data["previous_attributes"] = previous
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": bool(obj.get("livemode")),
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def opening_history(
    stored: Iterable[SubscriptionEvent],
    current: Mapping[str, Any] | None,
    *,
    as_of: int,
    api_version: str | None,
) -> list[dict[str, Any]]:
    """The synthetic events that open one subscription's history, oldest first.

    `stored` are the stored events of that subscription, `current` Stripe's object of
    it as of `as_of` (unix seconds; None when Stripe did not list it), `api_version`
    the shape `current` is rendered in. Returns [] when a `created` event of it is
    stored already or nothing is known of it. Deterministic, ids included.
    """
    events = order_events(stored)
    if any(e.type == CREATED for e in events):
        return []
    if events:
        first = events[0]
        known = undo_previous(first.object, first.previous_attributes)
        known_at = first.created
        shape = first.api_version
        ends = any(e.type == DELETED for e in events)
    elif current is not None:
        known, known_at, shape, ends = _clone(current), as_of, api_version, False
    else:
        return []
    sub_id = str(known.get("id"))
    started = _time(known, "start_date")
    start = min(started or _time(known, "created") or known_at, known_at)
    trial_start, trial_end = _time(known, "trial_start"), _time(known, "trial_end")
    trial_from_start = trial_end is not None and trial_start is not None and trial_start == started

    opening = known
    end: int | None = None
    if known.get("status") == "canceled":
        ended_at = _time(known, "ended_at") or _time(known, "canceled_at") or start
        during_trial = trial_end is not None and trial_from_start and ended_at <= trial_end
        opening = {**known, "status": "trialing" if during_trial else "active", "ended_at": None}
        if not ends:  # no stored event ends it: it ended before the earliest of them
            end = max(start, min(ended_at, known_at))
    next_known = end if end is not None else known_at
    trial = (
        trial_end is not None
        and trial_from_start
        and opening.get("status") != "trialing"
        and start < trial_end < next_known
    )

    history = [
        synthetic_event(
            synthetic_id(sub_id, "created", start),
            CREATED,
            start,
            {**opening, "status": "trialing"} if trial else opening,
            api_version=shape,
        )
    ]
    if trial and trial_end is not None:
        history.append(
            synthetic_event(
                synthetic_id(sub_id, "trial", trial_end),
                UPDATED,
                trial_end,
                opening,
                previous={"status": "trialing"},
                api_version=shape,
            )
        )
    if end is not None:
        history.append(
            synthetic_event(
                synthetic_id(sub_id, "deleted", end), DELETED, end, known, api_version=shape
            )
        )
    return history


def _clone(value: Any) -> Any:
    """A deep copy of JSON data; several times faster than `copy.deepcopy`, which took
    most of an opening's time."""
    return json.loads(json.dumps(value))


def _time(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def fix_event(current: Mapping[str, Any], now: int, *, api_version: str | None) -> dict[str, Any]:
    """`mrr reconcile --fix`: Stripe's current object as an `updated` event dated `now`."""
    sub_id = str(current.get("id"))
    return synthetic_event(
        synthetic_id(sub_id, "reconcile", now),
        UPDATED,
        now,
        _clone(current),
        api_version=api_version,
    )


def gone_event(last: Mapping[str, Any], now: int, *, api_version: str | None) -> dict[str, Any]:
    """`mrr reconcile --fix` for a subscription Stripe no longer has: its last stored
    object as a `deleted` event dated `now`, which ends it (SPEC §7)."""
    event_id = synthetic_id(str(last.get("id")), "gone", now)
    return synthetic_event(event_id, DELETED, now, _clone(last), api_version=api_version)


@dataclass(frozen=True)
class Standing:
    """One side's view of a subscription: status, currency and MRR in minor units."""

    status: str
    currency: str
    mrr: int


def standing(snapshot: Snapshot, catalog: Catalog = EMPTY_CATALOG) -> Standing:
    """A subscription object (Stripe's current one) priced as the ledger prices events."""
    return Standing(
        snapshot.effective_status, snapshot.currency, subscription_mrr(snapshot, catalog).amount
    )


@dataclass(frozen=True)
class Drift:
    """How the ledger's view of one subscription differs from Stripe's."""

    subscription_id: str
    ledger: Standing | None
    stripe: Standing | None
    #: |ledger MRR − Stripe MRR| per currency (each side's MRR when currencies differ);
    #: empty when only the status differs.
    amounts: Mapping[str, int]


def compare(subscription_id: str, ledger: Standing | None, stripe: Standing | None) -> Drift | None:
    """The drift of one subscription, or None when the ledger agrees with Stripe.

    `stripe` is None for a subscription Stripe does not have: a ledger that holds it
    ended, with no MRR, agrees.
    """
    if ledger == stripe:
        return None
    gone_and_ended = ledger is not None and ledger.mrr == 0 and ledger.status in ENDED_STATUSES
    if stripe is None and gone_and_ended:
        return None
    amounts: dict[str, int] = defaultdict(int)
    if ledger is not None and stripe is not None and ledger.currency == stripe.currency:
        amounts[ledger.currency] = abs(ledger.mrr - stripe.mrr)
    else:
        for side in (ledger, stripe):
            if side is not None:
                amounts[side.currency] += side.mrr
    return Drift(subscription_id, ledger, stripe, {c: a for c, a in sorted(amounts.items()) if a})


def total_drift(drifts: Iterable[Drift]) -> dict[str, int]:
    """Σ |ledger MRR − Stripe MRR| per currency, minor units (SPEC §9)."""
    totals: dict[str, int] = defaultdict(int)
    for drift in drifts:
        for currency, amount in drift.amounts.items():
            totals[currency] += amount
    return dict(sorted(totals.items()))
