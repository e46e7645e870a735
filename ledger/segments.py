"""Segments by the keys of a subscription item (SPEC §11): `plan`, `product`, `interval`.
Pure.

A segment is the ledger of the matching items only: each snapshot counts the shares of
its matching items (`ledger.mrr.item_mrr`: a subscription-level discount spread in
proportion to the items' monthly amounts, the rounding remainder given to the largest
share, so that the shares sum to the subscription's MRR to the unit), and the movements
follow from that restricted timeline by the rules of SPEC §7 (`derive_ledger`). An
upgrade from plan A to plan B is then a churn of segment A and a new of segment B, and
the groups of one key sum to the whole customer's MRR at every moment, hence in
starting and ending MRR and in net new MRR of every period.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from ledger.events import Ordered, SubscriptionEvent, order_events
from ledger.mrr import EMPTY_CATALOG, Catalog, Mrr, priced_items
from ledger.snapshot import Item, Snapshot
from ledger.timeline import CustomerLedger, Movement, Pricing, derive_ledger
from ledger.trials import TrialTransition, trial_transitions

ITEM_KEYS = ("plan", "product", "interval")
#: The value of a key an item does not have.
NONE = "none"


class BadSegment(ValueError):
    """A filter or group-by that names no item key, or is not `KEY:VALUE`."""


def item_value(item: Item, key: str) -> str:
    """The item's value of `key`: its price (or legacy plan) id, its product id, or its
    interval (`month`, `month:3` when `interval_count` is not 1)."""
    price = item.price
    if key == "plan":
        return price.id or NONE
    if key == "product":
        return price.product or NONE
    if key == "interval":
        count = price.interval_count
        return price.interval if count == 1 else f"{price.interval}:{count}"
    raise BadSegment(f"unknown segment key {key!r}; item keys are {', '.join(ITEM_KEYS)}")


#: Keys of the customer (SPEC §11): its country, or a value of its Stripe metadata.
COUNTRY = "country"
METADATA = "metadata."
#: Longest metadata key Stripe accepts.
MAX_METADATA_KEY = 40


def is_customer_key(key: str) -> bool:
    return key == COUNTRY or key.startswith(METADATA)


def check_key(key: str) -> None:
    """Raise `BadSegment` unless `key` is an item key or a customer key."""
    if key in ITEM_KEYS or key == COUNTRY:
        return
    if key.startswith(METADATA):
        name = key.removeprefix(METADATA)
        if not name or len(name) > MAX_METADATA_KEY or any(c in name for c in '"\\\x00'):
            raise BadSegment(
                f"metadata key must be 1 to {MAX_METADATA_KEY} characters without quotes "
                f"or backslashes (got {name[:60]!r})"
            )
        return
    raise BadSegment(
        f"unknown segment key {key!r}; keys are {', '.join(ITEM_KEYS)}, "
        f"{COUNTRY} and {METADATA}NAME"
    )


@dataclass(frozen=True)
class Filter:
    """`filter=KEY:VALUE` parameters: the same key OR, different keys AND."""

    values: Mapping[str, frozenset[str]]

    @classmethod
    def parse(cls, raw: Iterable[str]) -> Filter:
        """From `KEY:VALUE` strings (split at the first colon, so `interval:month:3`)."""
        values: dict[str, set[str]] = {}
        for text in raw:
            key, sep, value = text.partition(":")
            if not sep or not key or not value:
                raise BadSegment(f"filter must be KEY:VALUE (got {text!r})")
            check_key(key)
            values.setdefault(key, set()).add(value)
        return cls({k: frozenset(v) for k, v in values.items()})

    @property
    def items(self) -> Filter:
        """The filters on item keys only."""
        return Filter({k: v for k, v in self.values.items() if not is_customer_key(k)})

    @property
    def customers(self) -> dict[str, frozenset[str]]:
        """The filters on customer keys only."""
        return {k: v for k, v in self.values.items() if is_customer_key(k)}

    def matches(self, item: Item) -> bool:
        """Whether an item passes the item keys (customer keys are not the item's)."""
        return all(
            item_value(item, key) in wanted
            for key, wanted in self.values.items()
            if not is_customer_key(key)
        )


EVERY_ITEM = Filter({})


class Shares:
    """Each snapshot's item shares and whole MRR, computed once for every segment that
    prices it (a grouped report prices each event once per group)."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[Snapshot, Mrr, tuple[int, ...]]] = {}

    def of(self, snapshot: Snapshot, catalog: Catalog) -> tuple[Mrr, tuple[int, ...]]:
        hit = self._seen.get(id(snapshot))
        if hit is not None and hit[0] is snapshot:
            return hit[1], hit[2]
        whole, shares = priced_items(snapshot, catalog)  # with its warnings and refusals
        self._seen[id(snapshot)] = (snapshot, whole, shares)  # keeps it alive: ids stay unique
        return whole, shares


def segment_pricing(
    matches: Filter,
    group_by: str | None = None,
    value: str | None = None,
    shares: Shares | None = None,
) -> Pricing:
    """What a snapshot counts in the segment of the items that pass `matches` (and,
    with `group_by`, whose value of that key is `value`)."""
    memo = shares or Shares()

    def pricing(snapshot: Snapshot, catalog: Catalog) -> Mrr:
        whole, shares = memo.of(snapshot, catalog)
        amount = sum(
            share
            for item, share in zip(snapshot.items, shares, strict=True)
            if matches.matches(item) and (group_by is None or item_value(item, group_by) == value)
        )
        return Mrr(amount, snapshot.currency, whole.warnings)

    return pricing


def segment_trials(
    customer_id: str,
    events: Iterable[SubscriptionEvent],
    matches: Filter = EVERY_ITEM,
    group_by: str | None = None,
    value: str | None = None,
    catalog: Catalog = EMPTY_CATALOG,
    shares: Shares | None = None,
) -> tuple[TrialTransition, ...]:
    """The trials of the segment: those of subscriptions whose snapshot at the trial's
    start has a matching item, worth what the matching items would count."""

    def belongs(snapshot: Snapshot) -> bool:
        return any(
            matches.matches(item) and (group_by is None or item_value(item, group_by) == value)
            for item in snapshot.items
        )

    pricing = segment_pricing(matches, group_by, value, shares)
    return trial_transitions(customer_id, events, catalog, pricing, belongs)


def group_values(events: Iterable[SubscriptionEvent], key: str, matches: Filter) -> set[str]:
    """Every value of `key` among the matching items the events show."""
    return {
        item_value(item, key) for e in events for item in e.snapshot.items if matches.matches(item)
    }


def segment_ledger(
    customer_id: str,
    events: Iterable[SubscriptionEvent],
    matches: Filter = EVERY_ITEM,
    catalog: Catalog = EMPTY_CATALOG,
    shares: Shares | None = None,
) -> CustomerLedger:
    """The customer's ledger of the items that pass `matches`."""
    return derive_ledger(customer_id, events, catalog, segment_pricing(matches, shares=shares))


def grouped_ledgers(
    customer_id: str,
    events: Iterable[SubscriptionEvent],
    group_by: str,
    matches: Filter = EVERY_ITEM,
    catalog: Catalog = EMPTY_CATALOG,
    shares: Shares | None = None,
) -> dict[str, CustomerLedger]:
    """The customer's ledger per value of `group_by` among the matching items."""
    events = list(events)
    item_value_check(group_by)
    memo = shares or Shares()
    return {
        value: derive_ledger(
            customer_id, events, catalog, segment_pricing(matches, group_by, value, memo)
        )
        for value in sorted(group_values(events, group_by, matches))
    }


def item_value_check(key: str) -> None:
    if key not in ITEM_KEYS:
        raise BadSegment(f"unknown segment key {key!r}; item keys are {', '.join(ITEM_KEYS)}")


@dataclass(frozen=True)
class ItemSegment:
    """A customer's ledger in the segment of one value of one item key, as stored for
    reports to sum by SQL.

    `whole`: every item of every snapshot of the customer has this value, so the
    segment's ledger is the customer's whole ledger (its movements and trials are not
    repeated here). Otherwise `movements` and `trials` are the segment's own.
    """

    key: str
    value: str
    whole: bool
    movements: tuple[Movement, ...] = ()
    trials: tuple[TrialTransition, ...] = ()


def item_segments(
    customer_id: str,
    events: Iterable[SubscriptionEvent],
    catalog: Catalog = EMPTY_CATALOG,
    trials: bool = True,
    shares: Shares | None = None,
) -> tuple[ItemSegment, ...]:
    """The customer's ledger per value of every item key (SPEC §11), for every value
    its snapshots' items show: what `grouped_ledgers` and `segment_trials` derive, at a
    fraction of the cost.

    Most customers keep one plan, product and interval: a key whose every item in every
    snapshot has one value is `whole` and costs no derivation (a snapshot without items
    makes it not whole: the segment would price it 0 and leave its trial out). Otherwise
    the events are ordered once; each snapshot's shares are summed per value once per
    key; and a value's ledger is derived from the events of the subscriptions that ever
    had it only (the others count 0 in it throughout, so they move nothing). `trials`
    False: the customer's ledger has no trial, so no segment has one. Raises
    `InvalidValue` (with `event_id`) as `derive_ledger` does. `shares`: snapshots priced
    already (`derive_with_segments`).
    """
    ordered = Ordered(order_events(events))
    shares = shares or Shares()
    found: list[ItemSegment] = []
    #: Per key derived so far: each item's value (in event and item order), and the
    #: segments by value.
    derived: list[tuple[list[str], dict[str, ItemSegment]]] = []
    for key in ITEM_KEYS:
        values: dict[str, set[str]] = {}  # value -> subscriptions that had it
        bare = False
        every: list[str] = []
        for event in ordered:
            items = event.snapshot.items
            bare = bare or not items
            for item in items:
                value = item_value(item, key)
                every.append(value)
                values.setdefault(value, set()).add(event.snapshot.id)
        if len(values) == 1 and not bare:
            found.append(ItemSegment(key, next(iter(values)), whole=True))
            continue
        twin = next(
            ((m, mine) for others, mine in derived if (m := _bijection(every, others)) is not None),
            None,
        )
        if twin is not None:
            # Its values split the items as an earlier key's do (product as plan, when
            # each product has one price): each value's ledger is its twin's.
            mapping, segments = twin
            for value in sorted(values):
                segment = segments[mapping[value]]
                found.append(ItemSegment(key, value, False, segment.movements, segment.trials))
            continue
        per_value = _PerValue(key, shares, catalog)
        for value in sorted(values):
            subscriptions = values[value]
            mine = Ordered(e for e in ordered if e.snapshot.id in subscriptions)
            pricing = per_value.pricing(value)
            ledger = derive_ledger(customer_id, mine, catalog, pricing)
            found_trials: tuple[TrialTransition, ...] = ()
            if trials:
                belongs = per_value.belongs(value)
                found_trials = trial_transitions(customer_id, mine, catalog, pricing, belongs)
            found.append(ItemSegment(key, value, False, ledger.movements, found_trials))
        derived.append((every, {s.value: s for s in found if s.key == key}))
    return tuple(found)


def _bijection(values: list[str], others: list[str]) -> dict[str, str] | None:
    """The one-to-one map from `values` to `others` (two keys' values of the same items,
    in the same order), or None when they do not correspond one to one."""
    forward: dict[str, str] = {}
    backward: dict[str, str] = {}
    for value, other in zip(values, others, strict=True):
        if forward.setdefault(value, other) != other or backward.setdefault(other, value) != value:
            return None
    return forward


class _PerValue:
    """Each snapshot's MRR per value of one item key, computed once for every value."""

    def __init__(self, key: str, shares: Shares, catalog: Catalog) -> None:
        self.key = key
        self.shares = shares
        self.catalog = catalog
        self._seen: dict[int, tuple[Snapshot, Mrr, dict[str, int]]] = {}

    def of(self, snapshot: Snapshot, catalog: Catalog) -> tuple[Mrr, dict[str, int]]:
        hit = self._seen.get(id(snapshot))
        if hit is not None and hit[0] is snapshot:
            return hit[1], hit[2]
        whole, shares = self.shares.of(snapshot, catalog)
        sums: dict[str, int] = {}
        for item, share in zip(snapshot.items, shares, strict=True):
            value = item_value(item, self.key)
            sums[value] = sums.get(value, 0) + share
        self._seen[id(snapshot)] = (snapshot, whole, sums)
        return whole, sums

    def pricing(self, value: str) -> Pricing:
        def pricing(snapshot: Snapshot, catalog: Catalog) -> Mrr:
            whole, sums = self.of(snapshot, catalog)
            return Mrr(sums.get(value, 0), snapshot.currency, whole.warnings)

        return pricing

    def belongs(self, value: str) -> Callable[[Snapshot], bool]:
        """Whether a snapshot has an item of `value`."""

        def belongs(snapshot: Snapshot) -> bool:
            return value in self.of(snapshot, self.catalog)[1]

        return belongs


def derive_with_segments(
    customer_id: str, events: Iterable[SubscriptionEvent], catalog: Catalog = EMPTY_CATALOG
) -> CustomerLedger:
    """`derive_ledger` with the ledger's item segments (what a worker stores): the events
    ordered once and each snapshot priced once, whole and per item, for the ledger, its
    trials and every segment."""
    ordered = Ordered(order_events(events))
    shares = Shares()

    def pricing(snapshot: Snapshot, catalog: Catalog) -> Mrr:
        return shares.of(snapshot, catalog)[0]  # subscription_mrr's answer

    ledger = derive_ledger(customer_id, ordered, catalog, pricing)
    trials = trial_transitions(customer_id, ordered, catalog, pricing)
    found = item_segments(customer_id, ordered, catalog, trials=bool(trials), shares=shares)
    return replace(ledger, trials=trials, segments=found)
