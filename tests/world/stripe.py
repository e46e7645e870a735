"""`World`: a scripted Stripe account, run in time order (see the package docstring)."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import Any

from tests.world import render
from tests.world.calendar import date_text, next_boundary
from tests.world.model import (
    LEGACY,
    Coupon,
    Customer,
    Discount,
    Invoice,
    Item,
    Line,
    Price,
    Subscription,
)

#: Scripted actions at a moment run before what Stripe does by itself at that moment
#: (a renewal, a trial's end), as an API call just before the renewal would.
_ACTION, _AUTOMATIC = 0, 1
PRORATION_BEHAVIORS = ("create_prorations", "always_invoice", "none")


class World:
    """A Stripe account whose customers and subscriptions follow a script.

    Script it with the methods below (each takes the moment `at`, unix seconds, and may
    be called in any order), then `run(now)`. Afterwards `webhooks()` are the events
    Stripe would have sent, `subscriptions()`, `invoices()`, `customers()`, `prices()`
    and `coupons()` what its API lists, all in the shape of `version`.
    """

    def __init__(self, version: str = LEGACY, seed: int = 0) -> None:
        self.version = version
        self.rng = random.Random(seed)
        self.now = 0
        self._prices: dict[str, Price] = {}
        self._coupons: dict[str, Coupon] = {}
        self._customers: dict[str, Customer] = {}
        self._subs: dict[str, Subscription] = {}
        self._invoices: list[Invoice] = []
        self._events: list[dict[str, Any]] = []
        self._queue: list[tuple[int, int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._counters: dict[str, int] = {}
        self._applied: list[Discount] = []
        #: Scripted actions that could not apply when their moment came (and why).
        self.skipped: list[tuple[int, str]] = []

    # --- catalog ------------------------------------------------------------------------

    def price(
        self,
        price_id: str,
        unit_amount: int,
        *,
        currency: str = "usd",
        interval: str = "month",
        interval_count: int = 1,
        metered: bool = False,
        product: str | None = None,
    ) -> Price:
        p = Price(
            price_id,
            product or f"prod_{price_id.removeprefix('price_')}",
            currency,
            unit_amount,
            interval,
            interval_count,
            "metered" if metered else "licensed",
        )
        self._prices[price_id] = p
        return p

    def coupon(
        self,
        coupon_id: str,
        *,
        percent_off: float | None = None,
        amount_off: int | None = None,
        currency: str | None = None,
        duration: str = "forever",
    ) -> Coupon:
        c = Coupon(coupon_id, duration, percent_off, amount_off, currency)
        self._coupons[coupon_id] = c
        return c

    # --- the script ----------------------------------------------------------------------

    def customer(self, at: int, *, currency: str = "usd", name: str | None = None) -> str:
        customer_id = self._id("cus")
        label = name or f"Customer {customer_id[-4:]}"
        self._schedule(at, _ACTION, self._create_customer, customer_id, currency, label)
        return customer_id

    def update_customer(self, customer_id: str, at: int, **changes: Any) -> None:
        self._schedule(at, _ACTION, self._update_customer, customer_id, changes)

    def subscribe(
        self,
        customer_id: str,
        at: int,
        items: Iterable[tuple[Price, int | None]],
        *,
        trial_days: int | None = None,
        trial_outcome: str = "convert",
        coupon: Coupon | None = None,
    ) -> str:
        """A new subscription (its id now, so later steps can name it). `trial_outcome`:
        at the trial's end it converts, is canceled, or is paused (no payment method)."""
        sub_id = self._id("sub")
        self._schedule(
            at,
            _ACTION,
            self._create,
            sub_id,
            customer_id,
            list(items),
            trial_days,
            trial_outcome,
            coupon,
        )
        return sub_id

    def set_quantity(
        self,
        sub_id: str,
        at: int,
        price: Price,
        quantity: int,
        proration: str = "create_prorations",
    ) -> None:
        self._schedule(at, _ACTION, self._set_quantity, sub_id, price, quantity, proration)

    def swap_price(
        self, sub_id: str, at: int, old: Price, new: Price, proration: str = "create_prorations"
    ) -> None:
        """Change one item's price (an upgrade or a downgrade); a new billing interval
        resets the billing cycle and is invoiced at once, whatever `proration` says."""
        self._schedule(at, _ACTION, self._swap_price, sub_id, old, new, proration)

    def add_item(
        self,
        sub_id: str,
        at: int,
        price: Price,
        quantity: int | None = 1,
        proration: str = "create_prorations",
    ) -> None:
        self._schedule(at, _ACTION, self._add_item, sub_id, price, quantity, proration)

    def remove_item(
        self, sub_id: str, at: int, price: Price, proration: str = "create_prorations"
    ) -> None:
        self._schedule(at, _ACTION, self._remove_item, sub_id, price, proration)

    def apply_coupon(self, sub_id: str, at: int, coupon: Coupon) -> None:
        self._schedule(at, _ACTION, self._apply_coupon, sub_id, coupon)

    def remove_discount(self, sub_id: str, at: int) -> None:
        self._schedule(at, _ACTION, self._remove_discount, sub_id)

    def cancel(
        self,
        sub_id: str,
        at: int,
        *,
        at_period_end: bool = False,
        reason: str = "cancellation_requested",
        feedback: str | None = None,
        comment: str | None = None,
    ) -> None:
        details = {"comment": comment, "feedback": feedback, "reason": reason}
        self._schedule(at, _ACTION, self._cancel, sub_id, at_period_end, details)

    def mark_unpaid(self, sub_id: str, at: int) -> None:
        """Payment retries exhausted: the subscription is `unpaid` (no invoice says so;
        later invoices stay drafts, which are not listed)."""
        self._schedule(at, _ACTION, self._mark_unpaid, sub_id)

    def run(self, until: int) -> World:
        """Play everything scheduled up to and including `until`; the world's clock
        then stands at `until`."""
        while self._queue and self._queue[0][0] <= until:
            at, _, _, fn, args = heapq.heappop(self._queue)
            self.now = at
            fn(*args)
        self.now = until
        return self

    # --- what Stripe shows afterwards ----------------------------------------------------

    def webhooks(self) -> list[dict[str, Any]]:
        """Every event Stripe sent, in the order it sent them."""
        return list(self._events)

    def subscriptions(self) -> list[dict[str, Any]]:
        """`GET /v1/subscriptions?status=all`: every subscription as it is now, newest first."""
        subs = sorted(self._subs.values(), key=lambda s: (s.created, s.id), reverse=True)
        return [render.subscription(s, self.version) for s in subs]

    def invoices(
        self,
        subscription: str | None = None,
        *,
        expand_discounts: bool = True,
        expand_coupons: bool = False,
    ) -> list[dict[str, Any]]:
        """`GET /v1/invoices` (of one subscription when given), newest first, every line
        embedded; discounts expanded as `expand[]=data.discounts` asks."""
        invoices = [i for i in self._invoices if subscription in (None, i.subscription)]
        invoices.sort(key=lambda i: (i.created, i.id), reverse=True)
        return [
            render.invoice(
                i, self.version, expand_discounts=expand_discounts, expand_coupons=expand_coupons
            )
            for i in invoices
        ]

    def pending_invoice_items(self) -> list[dict[str, Any]]:
        """`GET /v1/invoiceitems?pending=true`: prorations no invoice carries yet."""
        return [
            render.invoice_item(line, sub, self.version)
            for sub in sorted(self._subs.values(), key=lambda s: s.id)
            for line in sub.pending
        ]

    def customers(self) -> list[dict[str, Any]]:
        custs = sorted(self._customers.values(), key=lambda c: (c.created, c.id), reverse=True)
        return [render.customer(c) for c in custs]

    def prices(self) -> dict[str, dict[str, Any]]:
        return {p.id: render.price(p) for p in self._prices.values()}

    def coupons(self) -> dict[str, dict[str, Any]]:
        return {c.id: render.coupon(c) for c in self._coupons.values()}

    def discounts(self) -> dict[str, Discount]:
        """Every discount ever applied, by id (what `GET /v1/subscriptions/{id}` with
        `expand[]=discounts` resolves while it is on the subscription)."""
        found: dict[str, Discount] = {}
        for inv in self._invoices:
            for d in inv.discounts:
                found[d.id] = d
        for sub in self._subs.values():
            if sub.discount is not None:
                found[sub.discount.id] = sub.discount
        for d in self._applied:
            found[d.id] = d
        return found

    def subscription(self, sub_id: str) -> Subscription:
        return self._subs[sub_id]

    # --- what happens -------------------------------------------------------------------

    def _create_customer(self, customer_id: str, currency: str, name: str) -> None:
        slug = name.lower().replace(" ", ".")
        cust = Customer(customer_id, self.now, f"{slug}@example.com", name, currency)
        self._customers[customer_id] = cust
        self._emit("customer.created", render.customer(cust))

    def _update_customer(self, customer_id: str, changes: dict[str, Any]) -> None:
        cust = self._customers.get(customer_id)
        if cust is None:
            self.skipped.append((self.now, f"no customer {customer_id}"))
            return
        before = render.customer(cust)
        for key, value in changes.items():
            setattr(cust, key, value)
        after = render.customer(cust)
        self._emit("customer.updated", after, render.previous_attributes(before, after))

    def _create(
        self,
        sub_id: str,
        customer_id: str,
        items: list[tuple[Price, int | None]],
        trial_days: int | None,
        trial_outcome: str,
        coupon: Coupon | None,
    ) -> None:
        now = self.now
        currency = items[0][0].currency
        sub_items = [self._item(p, q) for p, q in items]
        sub = Subscription(
            id=sub_id,
            customer=customer_id,
            currency=currency,
            created=now,
            items=sub_items,
            status="active",
            anchor=now,
            period_start=now,
            period_end=now,
            trial_outcome=trial_outcome,
        )
        self._subs[sub_id] = sub
        if coupon is not None:
            sub.discount = self._discount(sub, coupon)
        if trial_days:
            sub.status = "trialing"
            sub.trial_start, sub.trial_end = now, now + trial_days * 86_400
            sub.anchor = sub.period_end = sub.trial_end
            lines = [
                self._line(
                    i,
                    i.price,
                    i.quantity,
                    now,
                    sub.trial_end,
                    0,
                    f"Trial period for {i.price.product}",
                )
                for i in sub.items
                if not i.price.metered
            ]
            for i in sub.items:
                i.usage_since = sub.trial_end  # usage during the trial is not billed
            self._invoice(sub, "subscription_create", lines, now, now)
            self._schedule(sub.trial_end, _AUTOMATIC, self._trial_end, sub_id, sub.trial_end)
        else:
            sub.period_end = self._next(sub, now)
            self._invoice(sub, "subscription_create", self._period_lines(sub), now, now)
            self._schedule(sub.period_end, _AUTOMATIC, self._cycle, sub_id, sub.period_end)
        self._emit("customer.subscription.created", self._render(sub))

    def _trial_end(self, sub_id: str, trial_end: int) -> None:
        sub = self._subs[sub_id]
        if sub.ended or sub.trial_end != trial_end or sub.status != "trialing":
            return
        before = self._render(sub)
        if sub.trial_outcome == "cancel":
            # trial_settings.end_behavior.missing_payment_method = cancel
            self._end(sub, {"comment": None, "feedback": None, "reason": "cancellation_requested"})
            return
        if sub.trial_outcome == "pause":
            # … = pause: no invoice, `paused` until the customer adds a payment method.
            sub.status = "paused"
            after = self._render(sub)
            self._emit("customer.subscription.paused", after)
            self._emit(
                "customer.subscription.updated", after, render.previous_attributes(before, after)
            )
            return
        sub.status = "active"
        sub.period_start, sub.period_end = trial_end, self._next(sub, trial_end)
        self._invoice(sub, "subscription_cycle", self._period_lines(sub), trial_end, trial_end)
        self._schedule(sub.period_end, _AUTOMATIC, self._cycle, sub_id, sub.period_end)
        self._updated(sub, before)

    def _cycle(self, sub_id: str, boundary: int) -> None:
        sub = self._subs[sub_id]
        if sub.ended or sub.period_end != boundary:
            return  # canceled, or the cycle was reset since
        if sub.cancel_at_period_end:
            self._end(sub, dict(sub.cancellation))
            return
        before = self._render(sub)
        old_start = sub.period_start
        sub.period_start, sub.period_end = boundary, self._next(sub, boundary)
        if sub.status == "unpaid":
            pass  # invoices of an unpaid subscription stay drafts: none is listed
        else:
            lines = sub.pending + self._usage_lines(sub, boundary) + self._period_lines(sub)
            sub.pending = []
            self._invoice(sub, "subscription_cycle", lines, old_start, boundary)
        self._schedule(sub.period_end, _AUTOMATIC, self._cycle, sub_id, sub.period_end)
        self._updated(sub, before)

    def _set_quantity(self, sub_id: str, price: Price, quantity: int, proration: str) -> None:
        sub = self._live(sub_id)
        item = sub.item_of(price.id) if sub else None
        if sub is None or item is None or item.quantity == quantity or price.metered:
            self.skipped.append((self.now, f"set_quantity {sub_id} {price.id}"))
            return
        before = self._render(sub)
        old = (item.price, item.quantity)
        item.quantity = quantity
        self._prorate(sub, [(item, old, (item.price, quantity))], proration)
        self._updated(sub, before)

    def _swap_price(self, sub_id: str, old: Price, new: Price, proration: str) -> None:
        sub = self._live(sub_id)
        item = sub.item_of(old.id) if sub else None
        if sub is None or item is None or sub.item_of(new.id) is not None:
            self.skipped.append((self.now, f"swap_price {sub_id} {old.id}"))
            return
        if new.currency != sub.currency or old.metered or new.metered:
            raise ValueError("swap_price takes licensed prices of the subscription's currency")
        before = self._render(sub)
        if (new.interval, new.interval_count) != (old.interval, old.interval_count):
            if len(sub.items) != 1:
                raise ValueError("the world resets the cycle of one-item subscriptions only")
            self._reset(sub, item, new)
        else:
            previous = (item.price, item.quantity)
            item.price = new
            self._prorate(sub, [(item, previous, (new, item.quantity))], proration)
        self._updated(sub, before)

    def _add_item(self, sub_id: str, price: Price, quantity: int | None, proration: str) -> None:
        sub = self._live(sub_id)
        if sub is None or sub.item_of(price.id) is not None:
            self.skipped.append((self.now, f"add_item {sub_id} {price.id}"))
            return
        if price.currency != sub.currency or (price.interval, price.interval_count) != sub.interval:
            raise ValueError("add_item takes prices of the subscription's currency and interval")
        before = self._render(sub)
        item = self._item(price, None if price.metered else quantity)
        sub.items.append(item)
        if not price.metered:
            self._prorate(sub, [(item, None, (price, item.quantity))], proration)
        self._updated(sub, before)

    def _remove_item(self, sub_id: str, price: Price, proration: str) -> None:
        sub = self._live(sub_id)
        item = sub.item_of(price.id) if sub else None
        if sub is None or item is None or len(sub.items) == 1 or price.metered:
            self.skipped.append((self.now, f"remove_item {sub_id} {price.id}"))
            return
        before = self._render(sub)
        sub.items.remove(item)
        self._prorate(sub, [(item, (item.price, item.quantity), None)], proration)
        self._updated(sub, before)

    def _apply_coupon(self, sub_id: str, coupon: Coupon) -> None:
        sub = self._live(sub_id)
        if sub is None or sub.discount is not None:
            self.skipped.append((self.now, f"apply_coupon {sub_id}"))
            return
        before = self._render(sub)
        sub.discount = self._discount(sub, coupon)
        self._updated(sub, before)

    def _remove_discount(self, sub_id: str) -> None:
        sub = self._live(sub_id)
        if sub is None or sub.discount is None:
            self.skipped.append((self.now, f"remove_discount {sub_id}"))
            return
        before = self._render(sub)
        sub.discount = None
        self._updated(sub, before)

    def _cancel(self, sub_id: str, at_period_end: bool, details: dict[str, Any]) -> None:
        sub = self._subs.get(sub_id)
        if sub is None or sub.ended or sub.cancel_at_period_end:
            self.skipped.append((self.now, f"cancel {sub_id}"))
            return
        if not at_period_end or sub.status == "paused":
            sub.canceled_at = self.now
            self._end(sub, details)
            return
        before = self._render(sub)
        sub.cancel_at_period_end = True
        sub.canceled_at = self.now
        sub.cancellation = details
        self._updated(sub, before)

    def _mark_unpaid(self, sub_id: str) -> None:
        sub = self._live(sub_id)
        if sub is None or sub.status != "active":
            self.skipped.append((self.now, f"mark_unpaid {sub_id}"))
            return
        before = self._render(sub)
        sub.status = "unpaid"
        latest = next((i for i in self._invoices if i.id == sub.latest_invoice), None)
        if latest is not None:
            latest.status = "open"
        self._updated(sub, before)

    def _end(self, sub: Subscription, details: dict[str, Any]) -> None:
        """The subscription ends now: no final invoice (`invoice_now` and `prorate`
        default to false), pending prorations are left out."""
        sub.status = "canceled"
        sub.ended_at = self.now
        if sub.canceled_at is None:
            sub.canceled_at = self.now
        sub.cancellation = details
        sub.pending = []
        self._emit("customer.subscription.deleted", self._render(sub))

    # --- invoicing --------------------------------------------------------------------

    def _prorate(
        self,
        sub: Subscription,
        changes: list[
            tuple[Item, tuple[Price, int | None] | None, tuple[Price, int | None] | None]
        ],
        proration: str,
    ) -> None:
        """Proration invoice items for changes made now: a credit for the unused time of
        each item as it was, a debit for the remaining time as it is, both over
        [now, current period end); pending until the next invoice, or invoiced now
        with `always_invoice`. Amounts follow the share of the period left, to the
        second, net of a percentage discount."""
        if proration == "none" or sub.status == "trialing":
            return
        now, start, end = self.now, sub.period_start, sub.period_end
        if now >= end:
            return  # nothing left of the period
        share = Fraction(end - now, end - start)
        when = date_text(now)
        for item, old, new in changes:
            if old is not None:
                price, quantity = old
                amount = -self._prorated(sub, price, quantity, share)
                text = f"Unused time on {_units(quantity)}{price.product} after {when}"
                credit = self._line(item, price, quantity, now, end, amount, text, proration=True)
                credit.credited = sub.billed.get(item.id)
                sub.pending.append(credit)
            if new is not None:
                price, quantity = new
                amount = self._prorated(sub, price, quantity, share)
                text = f"Remaining time on {_units(quantity)}{price.product} after {when}"
                sub.pending.append(
                    self._line(item, price, quantity, now, end, amount, text, proration=True)
                )
        if proration == "always_invoice":
            lines, sub.pending = sub.pending, []
            self._invoice(sub, "subscription_update", lines, now, now)

    def _reset(self, sub: Subscription, item: Item, new: Price) -> None:
        """A new billing interval: the unused time is credited, usage so far billed, and
        a whole new period billed from now, at once (Stripe invoices such a change
        immediately); the billing cycle is anchored at now."""
        now = self.now
        if now < sub.period_end:
            share = Fraction(sub.period_end - now, sub.period_end - sub.period_start)
            text = (
                f"Unused time on {_units(item.quantity)}{item.price.product} after {date_text(now)}"
            )
            amount = -self._prorated(sub, item.price, item.quantity, share)
            credit = self._line(
                item, item.price, item.quantity, now, sub.period_end, amount, text, proration=True
            )
            credit.credited = sub.billed.get(item.id)
            sub.pending.append(credit)
        item.price = new
        usage = self._usage_lines(sub, now)
        sub.anchor, sub.period_start = now, now
        sub.period_end = self._next(sub, now)
        lines = sub.pending + usage + self._period_lines(sub)
        sub.pending = []
        self._invoice(sub, "subscription_update", lines, now, now)
        self._schedule(sub.period_end, _AUTOMATIC, self._cycle, sub.id, sub.period_end)

    def _period_lines(self, sub: Subscription) -> list[Line]:
        """The licensed items billed for the current period, in advance."""
        lines = []
        for item in sub.items:
            if item.price.metered:
                continue
            quantity = 1 if item.quantity is None else item.quantity
            amount = item.price.unit_amount * quantity
            text = f"{quantity} × {item.price.product} (at {_money(item.price)})"
            line = self._line(
                item, item.price, item.quantity, sub.period_start, sub.period_end, amount, text
            )
            line.discount_amounts = self._discount_amounts(sub, amount)
            lines.append(line)
        return lines

    def _usage_lines(self, sub: Subscription, until: int) -> list[Line]:
        """Metered items' usage since it was last billed, in arrears."""
        lines = []
        for item in sub.items:
            if not item.price.metered or item.usage_since >= until:
                continue
            usage = self.rng.randrange(0, 1000)
            amount = usage * item.price.unit_amount
            text = f"{usage} × {item.price.product} (at {_money(item.price)})"
            line = self._line(item, item.price, usage, item.usage_since, until, amount, text)
            line.discount_amounts = self._discount_amounts(sub, amount)
            lines.append(line)
            item.usage_since = until
        return lines

    def _invoice(
        self, sub: Subscription, reason: str, lines: list[Line], period_start: int, period_end: int
    ) -> Invoice:
        invoice_id = self._id("in")
        for line in lines:
            if not line.proration:
                sub.billed[line.item] = (invoice_id, line.id)
        inv = Invoice(
            id=invoice_id,
            number=f"{sub.customer.removeprefix('cus_')[:8].upper()}-{len(self._invoices) + 1:04d}",
            subscription=sub.id,
            customer=sub.customer,
            currency=sub.currency,
            created=self.now,
            billing_reason=reason,
            lines=lines,
            discounts=[sub.discount] if sub.discount else [],
            period_start=period_start,
            period_end=period_end,
        )
        self._invoices.append(inv)
        sub.latest_invoice = invoice_id
        return inv

    def _line(
        self,
        item: Item,
        price: Price,
        quantity: int | None,
        start: int,
        end: int,
        amount: int,
        description: str,
        *,
        proration: bool = False,
    ) -> Line:
        return Line(
            id=self._id("il"),
            item=item.id,
            price=price,
            quantity=quantity,
            proration=proration,
            start=start,
            end=end,
            amount=amount,
            description=description,
            invoice_item=self._id("ii") if proration else None,
        )

    def _prorated(
        self, sub: Subscription, price: Price, quantity: int | None, share: Fraction
    ) -> int:
        amount = Fraction(price.unit_amount * (1 if quantity is None else quantity)) * share
        coupon = sub.discount.coupon if sub.discount else None
        if coupon is not None and coupon.percent_off is not None:
            amount *= 1 - Fraction(str(coupon.percent_off)) / 100
        return round(amount)

    def _discount_amounts(self, sub: Subscription, amount: int) -> tuple[tuple[str, int], ...]:
        d = sub.discount
        if d is None:
            return ()
        if d.coupon.percent_off is not None:
            return ((d.id, round(Fraction(amount) * Fraction(str(d.coupon.percent_off)) / 100)),)
        if d.coupon.amount_off is not None:
            return ((d.id, min(d.coupon.amount_off, amount)),)
        return ()

    # --- plumbing -----------------------------------------------------------------------

    def _item(self, price: Price, quantity: int | None) -> Item:
        return Item(self._id("si"), price, None if price.metered else quantity, self.now, self.now)

    def _discount(self, sub: Subscription, coupon: Coupon) -> Discount:
        d = Discount(self._id("di"), coupon, self.now, sub.customer, sub.id)
        self._applied.append(d)
        return d

    def _next(self, sub: Subscription, after: int) -> int:
        interval, count = sub.interval
        return next_boundary(sub.anchor, interval, count, after)

    def _live(self, sub_id: str) -> Subscription | None:
        """The subscription if a change can apply to it: not ended, and not `paused`
        (Stripe takes no update of a paused subscription but its resumption)."""
        sub = self._subs.get(sub_id)
        return None if sub is None or sub.ended or sub.status == "paused" else sub

    def _render(self, sub: Subscription) -> dict[str, Any]:
        return render.subscription(sub, self.version)

    def _updated(self, sub: Subscription, before: dict[str, Any]) -> None:
        after = self._render(sub)
        previous = render.previous_attributes(before, after)
        if previous:
            self._emit("customer.subscription.updated", after, previous)

    def _emit(
        self, event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> None:
        event_id = self._id("evt")
        self._events.append(
            render.event(event_id, event_type, self.now, obj, self.version, previous)
        )

    def _schedule(self, at: int, phase: int, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, phase, self._seq, fn, args))

    def _id(self, prefix: str) -> str:
        n = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = n
        return f"{prefix}_W{n:06d}"


def _units(quantity: int | None) -> str:
    return f"{quantity} × " if quantity not in (None, 1) else ""


def _money(price: Price) -> str:
    symbol = {"usd": "$", "eur": "€"}.get(price.currency, price.currency.upper() + " ")
    every = (
        price.interval if price.interval_count == 1 else f"{price.interval_count} {price.interval}s"
    )
    return f"{symbol}{price.unit_amount / 100:.2f} / {every}"
