"""Stripe invoices → plain typed values: what each billed a subscription for (SPEC §9).

An invoice tells which subscription items were billed, at which price and quantity,
over which service period, and which discounts applied. `ledger.history` rebuilds a
subscription's past from that; this module only reads. Both shapes are read, told
apart by the payload itself (not by a version string):

* legacy (API versions before 2025-03-31): the invoice's `subscription`; each line's
  `type` (`subscription`, or `invoiceitem` for prorations and one-off items), `price`
  (or `plan`, before prices existed) as an embedded object, `quantity`, `proration`,
  `proration_details`, `subscription`, `subscription_item`, `period`, `amount`,
  `discounts`; the invoice's `discount` (one Discount object, `coupon` embedded) and
  `discounts` (ids, or objects when listed with `expand[]=data.discounts`);
* basil and later (2025-03-31 on): the invoice's `parent.subscription_details.subscription`;
  each line's `parent.subscription_item_details` {`subscription`, `subscription_item`,
  `proration`, `proration_details`}, `pricing.price_details.price` (a price id; a Price
  object only when expanded, possible from 2025-12-15.clover) and `.product`,
  `quantity`, `period`, `amount`; the invoice's `discounts` (ids, or Discount objects
  when expanded: `coupon` embedded before 2025-09-30.clover, `source.coupon` from it).

What is left out, on purpose:

* draft invoices: their lines may still change (`read_invoices` drops them,
  `read_invoice` refuses them);
* invoices of no subscription (one-off invoices) and lines that are not a subscription
  item's (one-off invoice items: legacy `invoiceitem` lines without a
  `subscription_item` or not a proration, basil `parent.type: invoice_item_details`),
  and lines of another subscription; `Invoice.skipped_lines` counts them.

A line whose price is only an id is resolved through the `prices` the caller fetched
(each price once: `missing_prices` lists the ids to fetch); a price that cannot be
resolved is an `UnresolvedPrice` naming every such id, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from ledger.errors import InvalidInvoice, UnresolvedPrice
from ledger.mrr import Catalog
from ledger.snapshot import Coupon, parse_coupon

Json = Mapping[str, Any]
#: No objects (an immutable default).
NO_OBJECTS: Mapping[str, Json] = MappingProxyType({})


class Shape(StrEnum):
    """The payload shape an invoice came in."""

    LEGACY = "legacy"  # API versions before 2025-03-31
    BASIL = "basil"  # 2025-03-31.basil and later (clover included)


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One subscription item billed over `[start, end)` (unix seconds).

    `proration` lines date a change of the item at `start`: a `credit` ("Unused time
    on …") gives the item as it was before, a debit ("Remaining time on …") as it is
    from then on. Non-proration lines bill a whole service period: licensed items in
    advance, metered items in arrears (on the invoice after the period).
    """

    id: str
    subscription_item: str
    #: The Price object (or a legacy Plan), as the line embeds it or `prices` gives it.
    price: Json
    #: The subscription item's quantity; None for metered items (a metered line's
    #: quantity is the usage billed, not the item's) and when the line states none.
    quantity: int | None
    proration: bool
    credit: bool
    start: int
    end: int
    amount: int
    #: Ids of the discounts the line lists.
    discounts: tuple[str, ...] = ()
    #: Whether the price bills metered usage (in arrears) rather than licensed units.
    metered: bool = False

    @property
    def price_id(self) -> str:
        return str(self.price.get("id"))


@dataclass(frozen=True, slots=True)
class InvoiceDiscount:
    """A discount an invoice lists: a Discount object, or only its id when not expanded."""

    id: str
    #: The Discount object as the invoice gives it; None when listed by id only.
    object: Json | None
    start: int | None = None
    #: Set for `repeating` coupons: when the discount ends by itself.
    end: int | None = None
    coupon_id: str | None = None
    #: The Coupon object when the discount embeds it (legacy, basil; clover when
    #: `source.coupon` is expanded).
    coupon: Json | None = None
    subscription_item: str | None = None
    #: A customer's discount (`subscription` null): it is on no subscription object, so
    #: webhooks never show it and neither does a rebuilt history.
    customer_level: bool = False


@dataclass(frozen=True, slots=True)
class Invoice:
    """One finalized invoice of a subscription, reduced to what its history needs."""

    id: str
    subscription: str
    customer: str | None
    status: str | None
    created: int
    currency: str | None
    billing_reason: str | None
    shape: Shape
    lines: tuple[InvoiceLine, ...]
    #: The invoice's discounts, invoice-level first, then those only lines list.
    discounts: tuple[InvoiceDiscount, ...]
    skipped_lines: int = 0

    @property
    def discount_ids(self) -> frozenset[str]:
        return frozenset(d.id for d in self.discounts)


def invoice_subscription(obj: Json) -> str | None:
    """The subscription an invoice bills, in either shape; None for one-off invoices."""
    parent = obj.get("parent")
    if isinstance(parent, dict):  # basil+: parent.subscription_details.subscription
        details = parent.get("subscription_details")
        return _id(details.get("subscription")) if isinstance(details, dict) else None
    return _id(obj.get("subscription"))  # legacy


def read_invoices(objs: Iterable[Json], prices: Mapping[str, Json] = NO_OBJECTS) -> list[Invoice]:
    """Every non-draft subscription invoice of `objs`, read, oldest first (by `created`,
    then id). Drafts and one-off invoices are dropped. Raises `UnresolvedPrice` naming
    every price id `prices` lacks, `InvalidInvoice` for an unreadable invoice."""
    read: list[Invoice] = []
    missing: set[str] = set()
    for obj in objs:
        if obj.get("status") == "draft" or invoice_subscription(obj) is None:
            continue
        try:
            read.append(read_invoice(obj, prices))
        except UnresolvedPrice as exc:
            missing.update(exc.price_ids)
    if missing:
        raise UnresolvedPrice(missing)
    read.sort(key=lambda i: (i.created, i.id))
    return read


def read_invoice(obj: Json, prices: Mapping[str, Json] = NO_OBJECTS) -> Invoice:
    """One invoice of a subscription, read (see the module's docstring for what counts).

    Raises `InvalidInvoice` for a draft, an invoice of no subscription, or one whose
    `lines` has more than it embeds (page through `GET /v1/invoices/{id}/lines` and pass
    the invoice with every line); `UnresolvedPrice` for price ids `prices` lacks.
    """
    invoice_id = _id(obj.get("id"))
    if invoice_id is None:
        raise InvalidInvoice("an invoice has no id")
    if obj.get("status") == "draft":
        raise InvalidInvoice(f"invoice {invoice_id} is a draft: its lines may still change")
    subscription = invoice_subscription(obj)
    if subscription is None:
        raise InvalidInvoice(f"invoice {invoice_id} bills no subscription")
    lines_obj = obj.get("lines")
    data = lines_obj.get("data") if isinstance(lines_obj, dict) else None
    if not isinstance(data, list):
        raise InvalidInvoice(f"invoice {invoice_id} has no lines list")
    if isinstance(lines_obj, dict) and lines_obj.get("has_more"):
        raise InvalidInvoice(
            f"invoice {invoice_id} has more lines than it embeds: page through "
            f"GET /v1/invoices/{invoice_id}/lines and pass them all"
        )
    shape = Shape.BASIL if isinstance(obj.get("parent"), dict) else Shape.LEGACY
    created = obj.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        raise InvalidInvoice(f"invoice {invoice_id} has no integer created time")

    lines: list[InvoiceLine] = []
    skipped = 0
    unresolved: set[str] = set()
    line_discounts: list[Any] = []
    for raw in data:
        if not isinstance(raw, dict):
            raise InvalidInvoice(f"invoice {invoice_id} has a line that is not an object")
        try:
            line = _read_line(raw, subscription, shape, prices, invoice_id)
        except UnresolvedPrice as exc:
            unresolved.update(exc.price_ids)
            continue
        if line is None:
            skipped += 1
            continue
        lines.append(line)
        line_discounts.extend(raw.get("discounts") or ())
    if unresolved:
        raise UnresolvedPrice(unresolved)

    raw_discounts: list[Any] = []
    if shape is Shape.LEGACY and obj.get("discount") is not None:
        raw_discounts.append(obj["discount"])  # legacy only: one object, coupon embedded
    raw_discounts.extend(obj.get("discounts") or ())
    raw_discounts.extend(line_discounts)
    return Invoice(
        id=invoice_id,
        subscription=subscription,
        customer=_id(obj.get("customer")),
        status=_str(obj.get("status")),
        created=created,
        currency=_str(obj.get("currency")),
        billing_reason=_str(obj.get("billing_reason")),
        shape=shape,
        lines=tuple(lines),
        discounts=_merge_discounts(raw_discounts),
        skipped_lines=skipped,
    )


@dataclass(frozen=True, slots=True)
class PendingItem:
    """A proration invoice item no invoice carries yet (the changes since the last
    invoice made with `create_prorations`), as a line of `subscription`."""

    subscription: str
    line: InvoiceLine


def item_subscription(obj: Json) -> str | None:
    """The subscription of an invoice item, in either shape: an invoice item names it
    exactly as an invoice does (`subscription`, basil+ `parent.subscription_details`)."""
    return invoice_subscription(obj)


def read_pending_items(
    objs: Iterable[Json], prices: Mapping[str, Json] = NO_OBJECTS
) -> list[PendingItem]:
    """The proration invoice items of `GET /v1/invoiceitems?pending=true` that belong to
    a subscription item, as lines; others (one-off items, items already invoiced) are
    left out. Raises `UnresolvedPrice` like `read_invoices`."""
    found: list[PendingItem] = []
    missing: set[str] = set()
    for obj in objs:
        subscription = item_subscription(obj)
        if subscription is None or obj.get("invoice") or not obj.get("proration"):
            continue
        parent = obj.get("parent")
        if isinstance(parent, dict):  # basil+: the item under parent.subscription_details
            details = parent.get("subscription_details")
            item = _id(details.get("subscription_item")) if isinstance(details, dict) else None
        else:
            item = _id(obj.get("subscription_item"))
        if item is None:
            continue
        # An invoice item reads as the line it will become: same period, price, amount.
        as_line = {**obj, "subscription_item": item, "subscription": subscription}
        try:
            line = _read_line(as_line, subscription, Shape.LEGACY, prices, "(pending)")
        except UnresolvedPrice as exc:
            missing.update(exc.price_ids)
            continue
        if line is not None:
            found.append(PendingItem(subscription, line))
    if missing:
        raise UnresolvedPrice(missing)
    return found


def missing_prices(objs: Iterable[Json], prices: Mapping[str, Json] = NO_OBJECTS) -> set[str]:
    """Ids of the prices that subscription lines (of invoices, or pending invoice items)
    name by id only and `prices` lacks: what to fetch, once each, before reading them
    (basil+ lines carry price ids)."""
    wanted: set[str] = set()
    for obj in objs:
        if obj.get("object") == "invoiceitem":
            price = _line_price(obj)
            if isinstance(price, str) and price not in prices:
                wanted.add(price)
            continue
        if obj.get("status") == "draft" or invoice_subscription(obj) is None:
            continue
        lines = obj.get("lines")
        for raw in lines.get("data") or () if isinstance(lines, dict) else ():
            if not isinstance(raw, dict):
                continue
            price = _line_price(raw)
            if isinstance(price, str) and price not in prices:
                wanted.add(price)
    return wanted


def discounts_by_id(invoices: Iterable[Invoice]) -> dict[str, InvoiceDiscount]:
    """Every discount the invoices list, by id; an expanded object wins over a bare id.

    A discount that has ended is on no subscription any more, so `GET
    /v1/subscriptions/{id}` cannot resolve it; its invoices still can (SPEC §9).
    """
    found: dict[str, InvoiceDiscount] = {}
    for invoice in invoices:
        for discount in invoice.discounts:
            known = found.get(discount.id)
            if known is None or _richness(discount) > _richness(known):
                found[discount.id] = discount
    return found


def missing_coupons(
    invoices: Iterable[Invoice], coupons: Mapping[str, Json] = NO_OBJECTS
) -> set[str]:
    """Ids of coupons the invoices' discounts name by id only (clover's `source.coupon`
    unexpanded) and `coupons` lacks: coupons are immutable, fetch each once."""
    return {
        d.coupon_id
        for d in discounts_by_id(invoices).values()
        if d.coupon is None and d.coupon_id is not None and d.coupon_id not in coupons
    }


def invoice_catalog(
    invoices: Iterable[Invoice],
    coupons: Mapping[str, Json] = NO_OBJECTS,
    base: Catalog | None = None,
) -> Catalog:
    """`base` (or an empty catalog) with every discount the invoices know resolved to its
    coupon: what stored basil+ events, which name discounts by id, need to be priced
    when the discount has ended (SPEC §9). `coupons` supplies coupons named by id."""
    base = base or Catalog()
    discount_coupons = dict(base.discount_coupons)
    parsed: dict[str, Coupon] = dict(base.coupons)
    for discount in discounts_by_id(invoices).values():
        if discount.coupon_id is None:
            continue
        discount_coupons.setdefault(discount.id, discount.coupon_id)
        raw = discount.coupon if discount.coupon is not None else coupons.get(discount.coupon_id)
        coupon = parse_coupon(raw)
        if coupon is not None:
            parsed.setdefault(coupon.id, coupon)
    return Catalog(tiers=base.tiers, coupons=parsed, discount_coupons=discount_coupons)


def read_discount(raw: Any) -> InvoiceDiscount | None:
    """A discount as an invoice (or a subscription) lists it: an id, or a Discount object
    with `coupon` (before 2025-09-30.clover) or `source.coupon` (clover+), each an
    embedded Coupon or its id. None for anything else."""
    if isinstance(raw, str) and raw:
        return InvoiceDiscount(id=raw, object=None)
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        return None
    coupon_raw = raw.get("coupon")
    source = raw.get("source")
    if coupon_raw is None and isinstance(source, dict):  # clover: source.coupon
        coupon_raw = source.get("coupon")
    coupon = coupon_raw if isinstance(coupon_raw, dict) else None
    coupon_id = _id(coupon_raw)
    level = "subscription" in raw and raw.get("subscription") is None
    return InvoiceDiscount(
        id=str(raw["id"]),
        object=raw,
        start=_int(raw.get("start")),
        end=_int(raw.get("end")),
        coupon_id=coupon_id,
        coupon=coupon,
        subscription_item=_id(raw.get("subscription_item")),
        customer_level=level and raw.get("subscription_item") is None,
    )


def _read_line(
    raw: Json, subscription: str, shape: Shape, prices: Mapping[str, Json], invoice_id: str
) -> InvoiceLine | None:
    """A subscription item's line, or None for a line that is not one (skipped)."""
    if shape is Shape.BASIL:
        # basil+: parent.type names the branch; only subscription items count (one-off
        # invoice items are `invoice_item_details`, even with a subscription).
        parent = raw.get("parent")
        if not isinstance(parent, dict) or parent.get("type") != "subscription_item_details":
            return None
        details = parent.get("subscription_item_details")
        if not isinstance(details, dict):
            return None
        line_sub = _id(details.get("subscription"))
        item = _id(details.get("subscription_item"))
        proration = bool(details.get("proration"))
        proration_details = details.get("proration_details")
    else:
        # legacy: `subscription` lines bill a period; prorations are `invoiceitem` lines
        # that name the subscription item; other invoice items are one-off.
        item = _id(raw.get("subscription_item"))
        line_sub = _id(raw.get("subscription"))
        proration = bool(raw.get("proration"))
        proration_details = raw.get("proration_details")
        if raw.get("type") == "invoiceitem" and not proration:
            return None
    if item is None or (line_sub is not None and line_sub != subscription):
        return None

    line_id = _id(raw.get("id")) or "?"
    price = _line_price(raw)
    if isinstance(price, str):
        resolved = prices.get(price)
        if resolved is None:
            raise UnresolvedPrice([price])
        price = resolved
    if not isinstance(price, dict) or not isinstance(price.get("id"), str):
        raise InvalidInvoice(f"invoice {invoice_id} line {line_id} has no price")
    period = raw.get("period")
    start = _int(period.get("start")) if isinstance(period, dict) else None
    end = _int(period.get("end")) if isinstance(period, dict) else None
    if start is None or end is None:
        raise InvalidInvoice(f"invoice {invoice_id} line {line_id} has no period")
    amount = _int(raw.get("amount")) or 0
    quantity = _int(raw.get("quantity"))
    metered = _usage_type(price) == "metered"
    if metered:
        quantity = None  # the usage billed, not the item's quantity
    credit = amount < 0
    if proration and amount == 0:
        # A zero proration (a free price, a 100 % coupon): a credit reverses an earlier
        # debit, which `credited_items` names; the description is the last resort.
        credited = (
            proration_details.get("credited_items") if isinstance(proration_details, dict) else None
        )
        description = raw.get("description")
        credit = bool(credited) or (
            isinstance(description, str) and description.startswith("Unused time")
        )
    listed = raw.get("discounts")
    discounts = tuple(d.id for d in map(read_discount, listed) if d) if listed else ()
    return InvoiceLine(
        id=line_id,
        subscription_item=item,
        price=price,
        quantity=quantity,
        proration=proration,
        credit=credit,
        start=start,
        end=end,
        amount=amount,
        discounts=discounts,
        metered=metered,
    )


def _line_price(raw: Json) -> Any:
    """The line's price: basil+ `pricing.price_details.price`, legacy `price` or `plan`."""
    pricing = raw.get("pricing")
    if isinstance(pricing, dict):
        details = pricing.get("price_details")
        if isinstance(details, dict):
            return details.get("price")
        return None
    price = raw.get("price")
    if price is None:
        price = raw.get("plan")  # before prices (API 2020-08-27 and earlier)
    return price


def _merge_discounts(raws: Iterable[Any]) -> tuple[InvoiceDiscount, ...]:
    merged: dict[str, InvoiceDiscount] = {}
    for raw in raws:
        discount = read_discount(raw)
        if discount is None:
            continue
        known = merged.get(discount.id)
        if known is None or _richness(discount) > _richness(known):
            merged[discount.id] = discount
    return tuple(merged.values())


def _richness(discount: InvoiceDiscount) -> int:
    return (discount.object is not None) + (discount.coupon is not None)


def _usage_type(price: Json) -> str:
    recurring = price.get("recurring")
    if isinstance(recurring, dict) and recurring.get("usage_type"):
        return str(recurring["usage_type"])
    return str(price.get("usage_type") or "licensed")  # a legacy plan


# The three below run for every field of every line: exact type checks (a bool is not
# an int here) keep them cheap.


def _id(value: Any) -> str | None:
    """An id given as a string or as an expanded object."""
    if type(value) is str:
        return value or None
    if isinstance(value, dict):  # stripe-python parses responses into OrderedDicts
        inner = value.get("id")
        return inner if type(inner) is str and inner else None
    return None


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _str(value: Any) -> str | None:
    return value if type(value) is str and value else None
