"""The whole history of one subscription, rebuilt from its invoices (SPEC §9).

Stripe's Events API keeps 30 days; invoices and the subscription object keep the rest.
`history` turns a subscription (Stripe's current object) and its invoices into the
synthetic `customer.subscription.*` events its webhooks would have carried, oldest
first, up to the earliest stored event of it (`until`), in the payload shape the
objects came in. The rules, in SPEC §9's words:

* every non-proration line states an item (price, quantity) billed over its `period`;
  lines of several invoices that start at the same moment are one state (metered usage
  is billed in arrears, on the next invoice); an item that a later billed period leaves
  out is gone at the end of its last period;
* a proration line dates a change of one item at its `period.start`: a credit
  ("Unused time on …") gives the item before, a debit ("Remaining time on …") from
  then on, a credit without a debit removes the item; items without a proration line
  are unchanged; non-proration lines starting at that moment (a billing-cycle reset,
  e.g. monthly → yearly, which bills a whole new period and has no debit) state the
  items; prorations not invoiced yet are read from the pending invoice items;
* the status is `trialing` from `trial_start` to `trial_end`, then what the invoice
  starting at `trial_end` bills (no such invoice: the trial did not convert: `paused`
  until something is billed again, or the end when it ended then);
* a discount is on the subscription from its `start` until the first invoice that bills
  a period without it (or its own `end`, for repeating coupons); customer-level
  discounts (on no subscription) are left out, as webhooks never show them;
* `canceled_at` of a subscription that was set to cancel later (`cancel_at_period_end`,
  `cancel_at`) dates that request; `ended_at`, with the subscription's
  `cancellation_details`, dates its end (a `customer.subscription.deleted` event);
* a subscription that is, or ended, `incomplete` never counted: its states say so;
* with no stored event (`until` None) the history runs to the current object: what the
  invoices do not show of it is dated at the start of its current period.

One event per state that changes something the ledger or an operator reads (items and
their prices and quantities, discounts, status, a scheduled cancellation): a renewal
that changes nothing adds no event. The first is `created` at `start_date`, later ones
`updated` at the moment they began, the end `deleted`. Ids are
`bf_<subscription>_<kind>_<unix time>` (`ledger.synthetic.synthetic_id`): the same inputs
give the same events, byte for byte, so storing a history twice adds nothing. Every
event is dated before `until`, so SPEC §2's order puts the stored events after them and
the first stored event carries the subscription on from the last synthetic state.

What invoices cannot show is assumed, documented in `Guess`, and reported per
subscription in `History.assumptions` (the `assumed` count of `mrr backfill`).

The envelopes share unchanged nested values (prices, metadata) with the inputs:
serialize them or treat them as read-only.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ledger.errors import InvalidEvent
from ledger.invoices import (
    NO_OBJECTS,
    Invoice,
    InvoiceDiscount,
    InvoiceLine,
    Json,
    PendingItem,
    discounts_by_id,
    read_discount,
    read_invoices,
    read_pending_items,
)
from ledger.snapshot import COUNTING_STATUSES, ENDED_STATUSES, customer_id_of
from ledger.synthetic import CREATED, DELETED, UPDATED, synthetic_event, synthetic_id

#: Far beyond any event time (`ledger.events.MAX_CREATED` is 2200-01-01).
_NEVER = 1 << 62
#: Top-level keys a state sets; `previous_attributes` lists those that changed.
_STATE_KEYS = (
    "status",
    "items",
    "plan",
    "quantity",
    "discount",
    "discounts",
    "current_period_start",
    "current_period_end",
    "cancel_at_period_end",
    "cancel_at",
    "canceled_at",
    "cancellation_details",
    "latest_invoice",
)
_NO_DETAILS: Mapping[str, Any] = {"comment": None, "feedback": None, "reason": None}


class Guess(StrEnum):
    """What a history had to assume because invoices cannot show it (README: "What
    invoices cannot show")."""

    #: No invoice bills the subscription: its current object stands for its whole life.
    NO_INVOICE = "no_invoice"
    #: Nothing was billed from `start_date` to the first invoice's period: the items
    #: first billed stand from `start_date` (a backdated start, a free first period).
    UNBILLED_START = "unbilled_start"
    #: An item changed, appeared or went away with no proration line (a change made
    #: with `proration_behavior=none`): dated at the first invoice that bills it.
    UNPRORATED_CHANGE = "unprorated_change"
    #: The current object differs from what the last invoice billed (a change since,
    #: without proration; a discount ended since): dated at its current period's start.
    CURRENT_STATE = "current_state"
    #: A status that no invoice records (`unpaid`, `paused`): dated at the current
    #: period's start.
    UNRECORDED_STATUS = "unrecorded_status"
    #: The trial ended without an invoice and the subscription did not end then: taken
    #: as `paused` until it was billed again (or ended).
    TRIAL_PAUSED = "trial_paused"
    #: The ended subscription's items differ from what was last billed: a change and
    #: the end in one period without an invoice; the end churns what was last billed.
    CHANGE_BEFORE_END = "change_before_end"
    #: A discount ended: dated at the first invoice that bills a period without it
    #: (exact when it ended on a renewal; an end mid-cycle shows no sooner).
    DISCOUNT_ENDED = "discount_ended"
    #: A discount listed by id only (invoices not listed with `expand[]=data.discounts`):
    #: dated at the first invoice that lists it.
    DISCOUNT_BY_ID = "discount_by_id"


@dataclass(frozen=True, slots=True)
class Assumption:
    """One thing a history assumed: what (`kind`), dated when (`at`, unix seconds), and
    a sentence naming the items, discounts or statuses concerned."""

    kind: Guess
    at: int
    detail: str


@dataclass(frozen=True, slots=True)
class History:
    """The synthetic events of one subscription, oldest first, and what they assume."""

    subscription_id: str
    customer_id: str
    events: tuple[dict[str, Any], ...]
    assumptions: tuple[Assumption, ...] = ()

    @property
    def assumed(self) -> bool:
        """Whether this subscription counts towards `assumed`."""
        return bool(self.assumptions)


def history(
    subscription: Json,
    invoices: Iterable[Json | Invoice],
    *,
    until: int | None,
    api_version: str | None,
    prices: Mapping[str, Json] = NO_OBJECTS,
    coupons: Mapping[str, Json] = NO_OBJECTS,
    pending: Iterable[Json | PendingItem] = (),
) -> History:
    """The synthetic events that tell `subscription`'s life before `until`.

    `subscription` is Stripe's current object of it (as `GET /v1/subscriptions?status=all`
    lists it), `invoices` its invoices (raw objects, every line listed, or already
    read `Invoice`s; drafts and other subscriptions' invoices are ignored), `until` the
    `created` of its earliest stored event (None when none is stored: the history then
    runs to the current object, or to its end), `api_version` the version the objects
    are rendered in (stamped on the envelopes). `prices` resolves lines that name a
    price by id, `coupons` discounts that name a coupon by id (their coupons are then
    embedded, so the events price without a fetch). `pending` are pending invoice items
    (`GET /v1/invoiceitems?pending=true`): the prorations of changes made since the last
    invoice; other subscriptions' are ignored, so an account's whole list may be passed,
    though reading it once (`read_pending_items`) and passing each subscription its own
    is cheaper.

    Pure and deterministic; raises `InvalidEvent` for an object that is not a
    subscription, `ledger.invoices.UnresolvedPrice` for prices `prices` lacks.
    """
    return _Builder(subscription, invoices, until, api_version, prices, coupons, pending).build()


@dataclass(frozen=True, slots=True)
class _Seen:
    """An item as one line states it, from `start` on."""

    start: int
    end: int
    price: Json
    quantity: int | None
    proration: bool
    order: int  # the line's place among all lines read: a later line wins a tie


@dataclass(slots=True)
class _Track:
    """One subscription item over the subscription's life."""

    id: str
    seen: list[_Seen] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    first: int = _NEVER
    gone: int = _NEVER  # when it went away (exclusive)
    rank: tuple[int, int, str] = (0, 0, "")

    def at(self, t: int) -> _Seen | None:
        """What the latest line starting at or before `t` states."""
        n = bisect_right(self.starts, t)
        return self.seen[n - 1] if n else None


@dataclass(frozen=True, slots=True)
class _Discount:
    id: str
    object: Json | None  # the Discount object, its coupon embedded when known
    item: str | None
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _ItemState:
    id: str
    price: Json
    quantity: int | None
    discounts: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str, int | None, tuple[str, ...]]:
        return (self.id, str(self.price.get("id")), self.quantity, self.discounts)


@dataclass(frozen=True, slots=True)
class _State:
    at: int
    status: str
    items: tuple[_ItemState, ...]
    discounts: tuple[str, ...]
    scheduled: bool

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.status, tuple(i.key for i in self.items), self.discounts, self.scheduled)

    @property
    def item_keys(self) -> frozenset[tuple[str, str, int | None]]:
        return frozenset((i.id, str(i.price.get("id")), i.quantity) for i in self.items)


class _Builder:
    """One `history` call: reads the inputs once, then walks the moments of change."""

    def __init__(
        self,
        subscription: Json,
        invoices: Iterable[Json | Invoice],
        until: int | None,
        api_version: str | None,
        prices: Mapping[str, Json],
        coupons: Mapping[str, Json],
        pending: Iterable[Json | PendingItem],
    ) -> None:
        if not isinstance(subscription, dict) or subscription.get("object") != "subscription":
            raise InvalidEvent("history needs a subscription object")
        sub_id = subscription.get("id")
        customer = customer_id_of(subscription)
        if not isinstance(sub_id, str) or not sub_id or customer is None:
            raise InvalidEvent("the subscription has no id or no customer")
        self.sub = subscription
        self.sub_id = sub_id
        self.customer = customer
        self.until = until
        self.api_version = api_version
        self.coupons = coupons
        self.assumptions: list[Assumption] = []

        given = list(invoices)
        raw = [i for i in given if not isinstance(i, Invoice)]
        read = [i for i in given if isinstance(i, Invoice)] + read_invoices(raw, prices)
        self.invoices = sorted(
            (i for i in read if i.subscription == sub_id), key=lambda i: (i.created, i.id)
        )
        self.invoice_times = [i.created for i in self.invoices]
        listed = list(pending)
        items = [p for p in listed if isinstance(p, PendingItem)]
        items += read_pending_items([p for p in listed if not isinstance(p, PendingItem)], prices)
        self.pending = sorted(
            (p.line for p in items if p.subscription == sub_id), key=lambda ln: (ln.start, ln.id)
        )

        status = str(subscription.get("status") or "active")
        self.status = status
        self.incomplete = status in ("incomplete", "incomplete_expired")
        created = _time(subscription, "created")
        self.start = _time(subscription, "start_date") or created or 0
        self.ended_at: int | None = None
        if status in ENDED_STATUSES:
            ended = _time(subscription, "ended_at") or _time(subscription, "canceled_at")
            self.ended_at = max(ended if ended is not None else self.start, self.start)
        self.trial_start = _time(subscription, "trial_start")
        self.trial_end = _time(subscription, "trial_end")
        self.legacy = any(k in subscription for k in ("current_period_start", "plan", "discount"))
        items_obj = subscription.get("items")
        data = items_obj.get("data") if isinstance(items_obj, dict) else None
        self.current_items: list[Json] = [
            i for i in data or () if isinstance(i, dict) and isinstance(i.get("id"), str)
        ]
        self.current_by_id = {str(i["id"]): i for i in self.current_items}

    # --- reading the invoices ----------------------------------------------------------

    def build(self) -> History:
        self._read_lines()
        self._read_discounts()
        self._read_status()
        states = self._states()
        events = self._events(states)
        # What happened from `until` on is the stored events' to tell.
        limit = _NEVER if self.until is None else self.until
        kept = tuple(a for a in self.assumptions if a.at < limit)
        return History(self.sub_id, self.customer, tuple(events), kept)

    def _stop(self) -> int:
        """States begin before this moment: `until`, or the end."""
        stop = _NEVER if self.until is None else self.until
        if self.ended_at is not None:
            stop = min(stop, self.ended_at)
        return stop

    def _read_lines(self) -> None:
        tracks: dict[str, _Track] = {}
        credits: dict[tuple[str, int], InvoiceLine] = {}
        debits: set[tuple[str, int]] = set()
        periods: set[tuple[str, int]] = set()
        licensed_starts: dict[int, int] = {}
        metered_starts: list[int] = []
        horizon = _NEVER if self.ended_at is None else self.ended_at
        order = 0
        lines = [line for invoice in self.invoices for line in invoice.lines] + self.pending
        for line in lines:
            # Lines from the end on (a final invoice's credits) tell nothing the end
            # does not.
            if line.start >= horizon:
                continue
            order += 1
            key = (line.subscription_item, line.start)
            if line.proration and line.credit:
                credits.setdefault(key, line)
                continue
            track = tracks.setdefault(line.subscription_item, _Track(line.subscription_item))
            track.seen.append(
                _Seen(line.start, line.end, line.price, line.quantity, line.proration, order)
            )
            if line.proration:
                debits.add(key)
            else:
                periods.add(key)
                if line.metered:
                    metered_starts.append(line.start)
                else:
                    licensed_starts[line.start] = max(
                        licensed_starts.get(line.start, line.end), line.end
                    )
        self.prorated = debits | set(credits)
        self.period_starts = sorted(licensed_starts)
        self.period_ends = [licensed_starts[s] for s in self.period_starts]

        billed_before = sorted(licensed_starts)
        for (item, t), line in sorted(credits.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            known = tracks.get(item)
            if known is not None:
                track = known
            else:
                # Credited but never billed: added without proration and removed with
                # it. It stood from the start of the period it was credited in.
                n = bisect_right(billed_before, t)
                since = billed_before[n - 1] if n else self.start
                track = tracks[item] = _Track(item)
                track.seen.append(_Seen(since, t, line.price, line.quantity, False, 0))
                self._assume(
                    Guess.UNPRORATED_CHANGE,
                    since,
                    f"item {item} ({line.price_id}) is credited at {t} but never billed: "
                    f"taken as there from {since}",
                )
            if (item, t) in debits or (item, t) in periods:
                continue  # changed, or re-billed by a cycle reset: not removed
            if any(s.start > t for s in track.seen):
                continue
            track.gone = min(track.gone, t)

        last_metered = max(metered_starts, default=None)
        last_licensed = max(licensed_starts, default=None)
        self.line_starts = {s.start for tr in tracks.values() for s in tr.seen}
        for track in tracks.values():
            track.seen.sort(key=lambda s: (s.start, s.order))
            last_end = max(s.end for s in track.seen)
            # Keep where the item changes: a renewal that bills it as before adds nothing.
            changes = [track.seen[0]]
            for seen in track.seen[1:]:
                before = changes[-1]
                if seen.quantity != before.quantity or seen.price.get("id") != before.price.get(
                    "id"
                ):
                    changes.append(seen)
                elif seen.start == before.start:
                    changes[-1] = seen  # the later line of one moment wins
            track.seen = changes
            track.starts = [s.start for s in changes]
            track.first = changes[0].start
            if track.gone != _NEVER or track.id in self.current_by_id:
                continue
            # An item billed no more is gone when a later period is billed without it;
            # with no later period billed (licensed items are billed in advance, metered
            # usage after its period), its current period is simply not over yet.
            later = last_metered if _is_metered(track.seen[-1].price) else last_licensed
            if later is not None and later >= last_end:
                track.gone = last_end

        if not tracks and self.current_items:
            # Nothing billed: the current object stands from the start.
            for current in self.current_items:
                track = tracks[str(current["id"])] = _Track(str(current["id"]))
                price = current.get("price") or current.get("plan") or {}
                track.seen.append(_Seen(self.start, _NEVER, price, _quantity(current), False, 0))
                track.starts = [self.start]
                track.first = self.start
            if self.start < self._stop():
                self._assume(
                    Guess.NO_INVOICE,
                    self.start,
                    "no invoice bills it: its current items stand from start_date",
                )

        earliest = min((t.first for t in tracks.values()), default=self.start)
        if earliest > self.start:
            for track in tracks.values():
                if track.first == earliest:
                    track.first = self.start
            if self.start < self._stop():
                self._assume(
                    Guess.UNBILLED_START,
                    self.start,
                    f"nothing billed from start_date to {earliest}: the items first billed "
                    "stand from start_date",
                )
        position = {str(i["id"]): n for n, i in enumerate(self.current_items)}
        for track in tracks.values():
            track.rank = (track.first, position.get(track.id, len(position)), track.id)
        self.tracks = sorted(tracks.values(), key=lambda tr: tr.rank)

    def _read_discounts(self) -> None:
        known = discounts_by_id(self.invoices)
        for raw in _listed_discounts(self.sub):
            found = read_discount(raw)
            if found is not None and (found.id not in known or known[found.id].object is None):
                known[found.id] = found
        on_current = {d.id for d in (read_discount(r) for r in _listed_discounts(self.sub)) if d}

        # Invoices that bill a period list the subscription's discounts of that moment;
        # an invoice of prorations only may not.
        billing: list[tuple[int, frozenset[str]]] = []
        for invoice in self.invoices:
            moment = _billing_moment(invoice)
            if moment is not None:
                billing.append((moment, invoice.discount_ids))
        billing.sort(key=lambda b: b[0])

        discounts: list[_Discount] = []
        for discount in sorted(known.values(), key=lambda d: d.id):
            if discount.customer_level:
                continue
            start = discount.start
            if start is None:
                listed = [m for m, ids in billing if discount.id in ids]
                if not listed:
                    continue  # only on the current object, by id: the current state tells
                start = listed[0]
                self._assume(
                    Guess.DISCOUNT_BY_ID,
                    start,
                    f"discount {discount.id} is listed by id only: dated at the first "
                    "invoice that lists it",
                )
            start = max(start, self.start)
            # A repeating coupon's own end: passed, unless it is still on the subscription.
            end = _NEVER if discount.end is None or discount.id in on_current else discount.end
            # Else its end is the first period billed without it. One that the last invoice
            # lists and the subscription no more ended since: with no stored event, the
            # current state dates that (`_reconcile`).
            for moment, ids in billing:
                if moment > start and discount.id not in ids:
                    if moment < end:
                        end = moment
                        self._assume(
                            Guess.DISCOUNT_ENDED,
                            moment,
                            f"discount {discount.id} ended: dated at the first invoice without it",
                        )
                    break
            if end <= start:
                continue
            discounts.append(
                _Discount(
                    discount.id,
                    self._with_coupon(discount),
                    discount.subscription_item,
                    start,
                    end,
                )
            )
        self.discounts = discounts
        self.discount_objects = {d.id: d.object for d in discounts}
        for discount in known.values():
            self.discount_objects.setdefault(discount.id, self._with_coupon(discount))

    def _with_coupon(self, discount: InvoiceDiscount) -> Json | None:
        """The Discount object with its coupon embedded when `coupons` has it."""
        obj = discount.object
        if obj is None or discount.coupon is not None or discount.coupon_id is None:
            return obj
        coupon = self.coupons.get(discount.coupon_id)
        if coupon is None:
            return obj
        source = obj.get("source")
        if isinstance(source, dict) and "coupon" not in obj:  # clover: source.coupon
            return {**obj, "source": {**source, "coupon": coupon}}
        return {**obj, "coupon": coupon}

    def _read_status(self) -> None:
        """When the subscription was set to cancel later, and whether a trial converted."""
        sub = self.sub
        canceled_at = _time(sub, "canceled_at")
        scheduled = bool(sub.get("cancel_at_period_end")) or _time(sub, "cancel_at") is not None
        self.scheduled_at: int | None = None
        before_end = self.ended_at is None or (canceled_at or 0) < self.ended_at
        if scheduled and canceled_at is not None and before_end:
            self.scheduled_at = max(canceled_at, self.start)

        self.paused_from: int | None = None
        self.paused_until = _NEVER
        start, end = self.trial_start, self.trial_end
        if start is None or end is None or end <= start or self.status == "trialing":
            return
        if self.ended_at is not None and self.ended_at <= end:
            return  # it ended in its trial (or as it ended)
        starts = sorted(s for s in self.line_starts if s >= end)
        if starts and starts[0] == end:
            return  # billed from the trial's end: converted
        self.paused_from = end
        self.paused_until = starts[0] if starts else _NEVER
        if self.status != "paused" or self.paused_until != _NEVER:
            self._assume(
                Guess.TRIAL_PAUSED,
                end,
                "the trial ended without an invoice: taken as paused until billed again",
            )

    # --- the states --------------------------------------------------------------------

    def _states(self) -> list[_State]:
        stop = self._stop()
        moments = {self.start}
        for track in self.tracks:
            moments.add(track.first)
            moments.update(track.starts)
            if track.gone != _NEVER:
                moments.add(track.gone)
        for d in self.discounts:
            moments.update((d.start, d.end))
        for t in (self.trial_start, self.trial_end, self.scheduled_at, self.paused_from):
            if t is not None:
                moments.add(t)
        if self.paused_until != _NEVER:
            moments.add(self.paused_until)

        states: list[_State] = []
        billing = set(self.period_starts)
        # A subscription that ended in the second it began still began (then ended).
        wanted = [m for m in moments if self.start <= m < stop]
        if not wanted and self._ends() and self.ended_at == self.start:
            wanted = [self.start]
        for t in sorted(wanted):
            state = self._state_at(t)
            if states and state.key == states[-1].key:
                continue
            if states and t in billing and t != self.trial_end:
                self._check_unprorated(states[-1], state)
            states.append(state)

        if states and self.until is None and self.ended_at is None:
            self._reconcile(states, self._current_moment())
        if states and self._ends():
            self._check_end(states[-1])
        return states

    def _ends(self) -> bool:
        """Whether the history ends the subscription (it ended before `until`)."""
        end = self.ended_at
        return end is not None and (self.until is None or end < self.until)

    def _state_at(self, t: int) -> _State:
        items: list[_ItemState] = []
        for track in self.tracks:
            if not track.first <= t < track.gone:
                continue
            seen = track.at(t) or track.seen[0]
            item_discounts = tuple(
                d.id for d in self.discounts if d.item == track.id and d.start <= t < d.end
            )
            items.append(_ItemState(track.id, seen.price, seen.quantity, item_discounts))
        discounts = tuple(d.id for d in self.discounts if d.item is None and d.start <= t < d.end)
        scheduled = self.scheduled_at is not None and t >= self.scheduled_at
        return _State(t, self._status_at(t), tuple(items), discounts, scheduled)

    def _status_at(self, t: int) -> str:
        if self.incomplete:
            return "incomplete"
        trial_start, trial_end = self.trial_start, self.trial_end
        if trial_start is not None and trial_end is not None and trial_start <= t < trial_end:
            return "trialing"
        if self.paused_from is not None and self.paused_from <= t < self.paused_until:
            return "paused"
        return "active"

    def _check_unprorated(self, before: _State, after: _State) -> None:
        """At a renewal, a licensed item that changed without a proration line."""
        old = {i.id: i for i in before.items if not _is_metered(i.price)}
        new = {i.id: i for i in after.items if not _is_metered(i.price)}
        changed = sorted(
            item
            for item in old.keys() | new.keys()
            if (old.get(item) is None) != (new.get(item) is None)
            or (item in old and item in new and old[item].key[1:3] != new[item].key[1:3])
        )
        unexplained = [i for i in changed if (i, after.at) not in self.prorated]
        if unexplained:
            self._assume(
                Guess.UNPRORATED_CHANGE,
                after.at,
                f"items {', '.join(unexplained)} changed without a proration line: dated at "
                "the first invoice that bills them",
            )

    def _current_moment(self) -> int | None:
        """The start of the current object's billing period (the latest moment Stripe
        states about it), or None when it states none."""
        sub = self.sub
        start = _time(sub, "current_period_start")  # legacy: on the subscription
        if start is None:  # basil+: on each item
            starts = [_time(i, "current_period_start") for i in self.current_items]
            start = max((s for s in starts if s is not None), default=None)
        return start

    def _current_state(self, t: int) -> _State:
        """The current object as a state (its discounts as the invoices know them)."""
        items = []
        for item in self.current_items:
            price = item.get("price") or item.get("plan") or {}
            ids = tuple(
                sorted({d.id for d in (read_discount(r) for r in item.get("discounts") or ()) if d})
            )
            items.append(_ItemState(str(item["id"]), price, _quantity(item), ids))
        position = {tr.id: tr.rank for tr in self.tracks}
        items.sort(key=lambda i: position.get(i.id, (t, len(position), i.id)))
        item_level = {d for i in items for d in i.discounts}
        # Legacy objects list a discount twice: as `discount` and in `discounts`.
        discounts = tuple(
            sorted(
                {
                    d.id
                    for d in (read_discount(r) for r in _listed_discounts(self.sub))
                    if d and d.id not in item_level and not d.customer_level
                }
            )
        )
        return _State(t, self.status, tuple(items), discounts, self.scheduled_at is not None)

    def _reconcile(self, states: list[_State], current_at: int | None) -> None:
        """The last state leads into the current object: what differs is dated at its
        current period's start (or at the last state, when that is later)."""
        last = states[-1]
        at = max(last.at, current_at if current_at is not None else last.at)
        current = self._current_state(at)
        if current.key == last.key:
            return
        counting = {last.status, current.status} <= COUNTING_STATUSES
        differs = []
        if current.key[1] != last.key[1]:
            differs.append("items")
        if current.discounts != last.discounts:
            differs.append("discounts")
        if current.scheduled != last.scheduled:
            differs.append("scheduled cancellation")
        if differs:
            self._assume(
                Guess.CURRENT_STATE,
                at,
                f"the current object's {', '.join(differs)} differ from what was last billed",
            )
        if current.status != last.status and not counting:
            self._assume(
                Guess.UNRECORDED_STATUS,
                at,
                f"status {current.status}, which no invoice records",
            )
        if at == last.at:
            states[-1] = current
        else:
            states.append(current)

    def _check_end(self, last: _State) -> None:
        if not self.current_items or self.ended_at is None:
            return
        ended = {
            (str(i["id"]), str((i.get("price") or i.get("plan") or {}).get("id")), _quantity(i))
            for i in self.current_items
        }
        if ended != last.item_keys:
            self._assume(
                Guess.CHANGE_BEFORE_END,
                self.ended_at,
                "the ended subscription's items differ from what was last billed: the "
                "change is not dated, the end churns what was last billed",
            )

    # --- the events --------------------------------------------------------------------

    def _events(self, states: list[_State]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        previous: dict[str, Any] | None = None
        for state in states:
            obj = self._object(state)
            if previous is None:
                event_id = synthetic_id(self.sub_id, "created", state.at)
                events.append(
                    synthetic_event(event_id, CREATED, state.at, obj, api_version=self.api_version)
                )
            else:
                changed = {
                    k: previous.get(k)
                    for k in _STATE_KEYS
                    if k in obj and obj[k] != previous.get(k)
                }
                event_id = synthetic_id(self.sub_id, "updated", state.at)
                events.append(
                    synthetic_event(
                        event_id,
                        UPDATED,
                        state.at,
                        obj,
                        api_version=self.api_version,
                        previous=changed,
                    )
                )
            previous = obj
        end = self.ended_at
        if end is not None and self._ends() and previous is not None:
            sub = self.sub
            final = {
                **previous,
                "status": self.status,
                "ended_at": end,
                "canceled_at": sub.get("canceled_at"),
                "cancel_at": sub.get("cancel_at"),
                "cancel_at_period_end": sub.get("cancel_at_period_end", False),
                "cancellation_details": sub.get("cancellation_details", _NO_DETAILS),
            }
            event_id = synthetic_id(self.sub_id, "deleted", end)
            events.append(
                synthetic_event(event_id, DELETED, end, final, api_version=self.api_version)
            )
        return events

    def _object(self, state: _State) -> dict[str, Any]:
        """The subscription as it was in `state`, in the current object's shape."""
        sub = self.sub
        obj: dict[str, Any] = dict(sub)
        period = self._period(state.at)
        items = [self._item(i, period) for i in state.items]
        wrapper = sub.get("items")
        obj["items"] = {
            **(wrapper if isinstance(wrapper, dict) else {"object": "list", "has_more": False}),
            "data": items,
            "total_count": len(items),
        }
        obj["status"] = state.status
        obj["ended_at"] = None
        scheduled = state.scheduled
        obj["cancel_at_period_end"] = bool(sub.get("cancel_at_period_end")) and scheduled
        obj["cancel_at"] = sub.get("cancel_at") if scheduled else None
        obj["canceled_at"] = sub.get("canceled_at") if scheduled else None
        obj["cancellation_details"] = (
            sub.get("cancellation_details", _NO_DETAILS) if scheduled else dict(_NO_DETAILS)
        )
        n = bisect_right(self.invoice_times, state.at)
        obj["latest_invoice"] = self.invoices[n - 1].id if n else None
        discounts = [self._discount_value(d) for d in state.discounts]
        if self.legacy:
            obj["current_period_start"], obj["current_period_end"] = period
            objects = [d for d in discounts if isinstance(d, dict)]
            obj["discount"] = objects[0] if objects else None
            if "discounts" in sub:
                obj["discounts"] = discounts
            if "plan" in sub or "quantity" in sub:
                single = items[0] if len(items) == 1 else None
                obj["plan"] = single.get("plan") if single else None
                obj["quantity"] = single.get("quantity") if single else None
        else:
            obj["discounts"] = discounts
        return obj

    def _item(self, state: _ItemState, period: tuple[int, int]) -> dict[str, Any]:
        base = self.current_by_id.get(state.id)
        if base is not None:
            item = dict(base)
        else:
            item = {
                "id": state.id,
                "object": "subscription_item",
                "created": period[0],
                "metadata": {},
                "subscription": self.sub_id,
                "tax_rates": [],
            }
        item["price"] = state.price
        if self.legacy:
            plan = item.get("plan")
            if not (isinstance(plan, dict) and plan.get("id") == state.price.get("id")):
                item["plan"] = _plan_of(state.price)
        else:
            item["current_period_start"], item["current_period_end"] = period
        if not self.legacy or "discounts" in item:
            item["discounts"] = [self._discount_value(d) for d in state.discounts]
        if state.quantity is None:
            item.pop("quantity", None)
        else:
            item["quantity"] = state.quantity
        return item

    def _discount_value(self, discount_id: str) -> Any:
        """The Discount object, or its id when the invoices give no more."""
        obj = self.discount_objects.get(discount_id)
        return obj if obj is not None else discount_id

    def _period(self, t: int) -> tuple[int, int]:
        """The billing period `t` falls in: the latest licensed period started by then."""
        n = bisect_right(self.period_starts, t)
        if not n:
            return (self.start, self.start)
        return (self.period_starts[n - 1], self.period_ends[n - 1])

    def _assume(self, kind: Guess, at: int, detail: str) -> None:
        self.assumptions.append(Assumption(kind, at, detail))


def _billing_moment(invoice: Invoice) -> int | None:
    """When an invoice bills a period: its licensed lines' start (billed in advance), or
    the end of its metered lines (billed after); None for prorations only."""
    licensed = [ln.start for ln in invoice.lines if not ln.proration and not ln.metered]
    if licensed:
        return min(licensed)
    metered = [ln.end for ln in invoice.lines if not ln.proration and ln.metered]
    return max(metered) if metered else None


def _listed_discounts(obj: Json) -> list[Any]:
    """The discounts a subscription object lists: legacy `discount`, and `discounts`."""
    found: list[Any] = []
    if obj.get("discount") is not None:
        found.append(obj["discount"])
    found.extend(obj.get("discounts") or ())
    return found


def _is_metered(price: Json) -> bool:
    recurring = price.get("recurring")
    if isinstance(recurring, dict):
        return recurring.get("usage_type") == "metered"
    return price.get("usage_type") == "metered"


def _quantity(item: Json) -> int | None:
    price = item.get("price") or item.get("plan") or {}
    if _is_metered(price):
        return None
    quantity = item.get("quantity")
    return quantity if isinstance(quantity, int) and not isinstance(quantity, bool) else None


def _plan_of(price: Json) -> dict[str, Any]:
    """The legacy `plan` view of a price, as API versions before basil embed it."""
    if price.get("object") == "plan":
        return dict(price)
    recurring = price.get("recurring")
    recurring = recurring if isinstance(recurring, dict) else {}
    return {
        "id": price.get("id"),
        "object": "plan",
        "active": price.get("active", True),
        "aggregate_usage": recurring.get("aggregate_usage"),
        "amount": price.get("unit_amount"),
        "amount_decimal": price.get("unit_amount_decimal"),
        "billing_scheme": price.get("billing_scheme", "per_unit"),
        "created": price.get("created"),
        "currency": price.get("currency"),
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count", 1),
        "livemode": price.get("livemode", False),
        "metadata": price.get("metadata", {}),
        "nickname": price.get("nickname"),
        "product": price.get("product"),
        "tiers_mode": price.get("tiers_mode"),
        "transform_usage": price.get("transform_quantity"),
        "trial_period_days": recurring.get("trial_period_days"),
        "usage_type": recurring.get("usage_type", "licensed"),
    }


def _time(obj: Json, key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
