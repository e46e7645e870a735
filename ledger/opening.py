"""Opening histories for subscriptions whose beginning the inbox never saw (SPEC §9).

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

from collections.abc import Iterable, Mapping
from typing import Any

from ledger.events import SubscriptionEvent, order_events
from ledger.synthetic import (
    CREATED,
    DELETED,
    UPDATED,
    clone,
    synthetic_event,
    synthetic_id,
    undo_previous,
)


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
        known, known_at, shape, ends = clone(current), as_of, api_version, False
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


def _time(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
