"""Stripe events as the ledger sees them, and the deterministic order they apply in (SPEC §2)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise, permutations
from typing import Any

from ledger.errors import InvalidEvent, InvalidValue
from ledger.snapshot import Snapshot, parse_subscription

SUBSCRIPTION_EVENT_TYPES = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "customer.subscription.trial_will_end",
    }
)

#: Event times the ledger accepts: 2000-01-01 to 2200-01-01 (UTC, unix seconds).
MIN_CREATED, MAX_CREATED = 946_684_800, 7_258_118_400

#: Within one `created` second: created < updated/paused/resumed/trial_will_end < deleted.
_LIFECYCLE_RANK = {
    "customer.subscription.created": 0,
    "customer.subscription.deleted": 2,
}


def is_subscription_event(event_type: str) -> bool:
    """Whether events of this type move the ledger (every other type is stored and ignored)."""
    return event_type in SUBSCRIPTION_EVENT_TYPES


def lifecycle_rank(event_type: str) -> int:
    return _LIFECYCLE_RANK.get(event_type, 1)


@dataclass(frozen=True)
class SubscriptionEvent:
    """One `customer.subscription.*` event, parsed: its snapshot and its place in time."""

    id: str
    type: str
    created: int
    snapshot: Snapshot
    #: The raw `data.object` and `data.previous_attributes`, for the same-second chain rule.
    object: Mapping[str, Any]
    previous_attributes: Mapping[str, Any] | None
    #: The API version the payload is rendered in (its shape), when the envelope says.
    api_version: str | None = None

    @property
    def customer(self) -> str:
        return self.snapshot.customer


def parse_event(payload: Any) -> SubscriptionEvent:
    """Parse a whole Stripe event envelope carrying a subscription.

    Raises `InvalidEvent` for a non-subscription type, a missing `created` or a
    subscription the ledger cannot price.
    """
    if not isinstance(payload, dict):
        raise InvalidEvent("event is not a JSON object")
    event_id = payload.get("id")
    event_type = payload.get("type")
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        raise InvalidEvent("event has no string id or type")
    if not is_subscription_event(event_type):
        raise InvalidEvent(f"event {event_id} of type {event_type} does not carry a subscription")
    created = payload.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        raise InvalidEvent(f"event {event_id} has no integer created time")
    if not MIN_CREATED <= created < MAX_CREATED:
        raise InvalidValue(f"event {event_id} has a created time out of range: {created}")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise InvalidEvent(f"event {event_id} has no data object")
    obj = data.get("object")
    # A deletion ends the subscription whatever its status field says (SPEC §7).
    ended = event_type == "customer.subscription.deleted"
    snapshot = parse_subscription(obj, ended=ended)  # raises unless obj is a subscription
    assert isinstance(obj, dict)
    previous = data.get("previous_attributes")
    api_version = payload.get("api_version")
    return SubscriptionEvent(
        id=event_id,
        type=event_type,
        created=created,
        snapshot=snapshot,
        object=obj,
        previous_attributes=previous if isinstance(previous, dict) and previous else None,
        api_version=api_version if isinstance(api_version, str) else None,
    )


class Ordered(list[SubscriptionEvent]):
    """Distinct events already in `order_events`' order (or the events of some of their
    subscriptions, which keep it): `order_events` returns them as they are."""


def order_events(events: Iterable[SubscriptionEvent]) -> list[SubscriptionEvent]:
    """Distinct events in the order they apply: a pure function of the *set* given.

    Sorted by `created`, then lifecycle rank, then subscription; events of one
    subscription that tie on both are ordered by the `previous_attributes` chain (an
    event whose previous values equal another's new values comes after it), and the
    event id breaks whatever ties remain.
    """
    if isinstance(events, Ordered):
        return events
    unique = {e.id: e for e in events}
    groups: dict[tuple[int, int, str], list[SubscriptionEvent]] = defaultdict(list)
    for event in unique.values():
        groups[(event.created, lifecycle_rank(event.type), event.snapshot.id)].append(event)
    ordered: list[SubscriptionEvent] = []
    for key in sorted(groups):
        ordered.extend(_chain_order(groups[key]))
    return ordered


#: Largest same-second group ordered by exhaustive search; larger ones walk greedily.
_EXHAUSTIVE_CHAIN = 7


def _chain_order(group: list[SubscriptionEvent]) -> list[SubscriptionEvent]:
    """Order one subscription's same-second, same-rank events along their chain.

    The chosen order has the most consecutive links (an event whose previous values
    equal its predecessor's new values); ties go to the smallest sequence of ids, so
    contradictory or missing chains still give one deterministic order.
    """
    if len(group) == 1:
        return group
    group = sorted(group, key=lambda e: e.id)
    links = {(a.id, b.id) for a in group for b in group if a is not b and _follows(b, a)}
    if len(group) <= _EXHAUSTIVE_CHAIN:
        # permutations() of a sorted list come in lexicographic order and max() keeps
        # the first best one: the tie-break by ids is built in.
        best = max(
            permutations(group),
            key=lambda order: sum((x.id, y.id) in links for x, y in pairwise(order)),
        )
        return list(best)
    placed: list[SubscriptionEvent] = []
    left = list(group)
    while left:
        prev = placed[-1].id if placed else None
        nxt = next((e for e in left if (prev, e.id) in links), None)
        if nxt is None:  # start (or restart) a chain where nothing left leads in
            nxt = next((e for e in left if not any((o.id, e.id) in links for o in left)), left[0])
        placed.append(nxt)
        left.remove(nxt)
    return placed


def _follows(later: SubscriptionEvent, earlier: SubscriptionEvent) -> bool:
    previous = later.previous_attributes
    return previous is not None and _matches(previous, earlier.object)


def _matches(previous: Any, current: Any) -> bool:
    """Whether `current` holds the values `previous` lists (a null stands for an absent key)."""
    if isinstance(previous, Mapping):
        if current is None:
            current = {}
        if not isinstance(current, Mapping):
            return False
        return all(_matches(v, current.get(k)) for k, v in previous.items())
    if isinstance(previous, list):
        return (
            isinstance(current, list)
            and len(previous) == len(current)
            and all(_matches(p, c) for p, c in zip(previous, current, strict=True))
        )
    return bool(previous == current)
