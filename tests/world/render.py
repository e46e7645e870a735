"""The world's objects as Stripe's API shows them, per API version.

Field names and nesting follow Stripe's API reference and the samples of
../shared/stripe-samples (see its README's "Invoice line shapes"): legacy versions
(before 2025-03-31) embed `price` and `plan` in invoice lines and carry `subscription`,
`proration`, `type` and `subscription_item` on them, a singular `discount` next to
`discounts`, and subscription-level billing periods; basil (2025-03-31) and later put
lines' origins under `parent.subscription_item_details`, their price under
`pricing.price_details` (an id), invoices' subscription under
`parent.subscription_details`, and billing periods on the items; clover (2025-09-30)
moves a Discount's coupon to `source.coupon`.
"""

from __future__ import annotations

from typing import Any

from tests.world.model import (
    CLOVER,
    Coupon,
    Customer,
    Discount,
    Invoice,
    Item,
    Line,
    Price,
    Subscription,
    is_legacy,
)


def price(p: Price) -> dict[str, Any]:
    return {
        "id": p.id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": p.created,
        "currency": p.currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": p.nickname,
        "product": p.product,
        "recurring": {
            "aggregate_usage": None,
            "interval": p.interval,
            "interval_count": p.interval_count,
            "meter": None,
            "trial_period_days": None,
            "usage_type": p.usage_type,
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": p.unit_amount,
        "unit_amount_decimal": str(p.unit_amount),
    }


def plan(p: Price) -> dict[str, Any]:
    """The legacy `plan` view of a price."""
    return {
        "id": p.id,
        "object": "plan",
        "active": True,
        "aggregate_usage": None,
        "amount": p.unit_amount,
        "amount_decimal": str(p.unit_amount),
        "billing_scheme": "per_unit",
        "created": p.created,
        "currency": p.currency,
        "interval": p.interval,
        "interval_count": p.interval_count,
        "livemode": False,
        "metadata": {},
        "nickname": p.nickname,
        "product": p.product,
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": p.usage_type,
    }


def coupon(c: Coupon) -> dict[str, Any]:
    return {
        "id": c.id,
        "object": "coupon",
        "amount_off": c.amount_off,
        "created": c.created,
        "currency": c.currency,
        "duration": c.duration,
        "duration_in_months": None,
        "livemode": False,
        "max_redemptions": None,
        "metadata": {},
        "name": c.id,
        "percent_off": c.percent_off,
        "redeem_by": None,
        "times_redeemed": 1,
        "valid": True,
    }


def discount(d: Discount, version: str, *, expand_coupon: bool = False) -> dict[str, Any]:
    """A Discount: `coupon` embedded before clover; clover's `source.coupon` is an id
    unless expanded (`expand[]=…discounts.source.coupon`)."""
    obj: dict[str, Any] = {
        "id": d.id,
        "object": "discount",
        "checkout_session": None,
        "customer": d.customer,
        "end": None,
        "invoice": None,
        "invoice_item": None,
        "promotion_code": None,
        "start": d.start,
        "subscription": d.subscription,
    }
    if not is_legacy(version):
        obj["subscription_item"] = None
    if version >= CLOVER:
        source_coupon: Any = coupon(d.coupon) if expand_coupon else d.coupon.id
        obj["source"] = {"type": "coupon", "coupon": source_coupon}
    else:
        obj["coupon"] = coupon(d.coupon)
    return obj


def customer(c: Customer) -> dict[str, Any]:
    return {
        "id": c.id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": c.created,
        "currency": c.currency,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "email": c.email,
        "invoice_prefix": c.id.removeprefix("cus_")[:8].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": dict(c.metadata),
        "name": c.name,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def subscription_item(item: Item, sub: Subscription, version: str) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": item.id,
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": item.created,
        "discounts": [],
        "metadata": {},
        "price": price(item.price),
        "subscription": sub.id,
        "tax_rates": [],
    }
    if item.quantity is not None:
        obj["quantity"] = item.quantity
    if is_legacy(version):
        obj["plan"] = plan(item.price)
    else:  # basil+: billing periods live on the items
        obj["current_period_start"] = sub.period_start
        obj["current_period_end"] = sub.period_end
    return obj


def subscription(sub: Subscription, version: str) -> dict[str, Any]:
    items = [subscription_item(i, sub, version) for i in sub.items]
    obj: dict[str, Any] = {
        "id": sub.id,
        "object": "subscription",
        "application": None,
        "billing_cycle_anchor": sub.anchor,
        "cancel_at": None,
        "cancel_at_period_end": sub.cancel_at_period_end,
        "canceled_at": sub.canceled_at,
        "cancellation_details": dict(sub.cancellation),
        "collection_method": "charge_automatically",
        "created": sub.created,
        "currency": sub.currency,
        "customer": sub.customer,
        "days_until_due": None,
        "default_payment_method": None,
        "description": None,
        "ended_at": sub.ended_at,
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "total_count": len(items),
            "url": f"/v1/subscription_items?subscription={sub.id}",
        },
        "latest_invoice": sub.latest_invoice,
        "livemode": False,
        "metadata": {},
        "pause_collection": None,
        "start_date": sub.created,
        "status": sub.status,
        "trial_end": sub.trial_end,
        "trial_start": sub.trial_start,
    }
    if is_legacy(version):
        obj["current_period_start"] = sub.period_start
        obj["current_period_end"] = sub.period_end
        obj["discount"] = discount(sub.discount, version) if sub.discount else None
        obj["discounts"] = [sub.discount.id] if sub.discount else []
        single = items[0] if len(items) == 1 else None
        obj["plan"] = single["plan"] if single else None
        obj["quantity"] = single.get("quantity") if single else None
    else:  # webhooks and lists carry discounts as ids
        obj["discounts"] = [sub.discount.id] if sub.discount else []
    return obj


def invoice(
    inv: Invoice, version: str, *, expand_discounts: bool = True, expand_coupons: bool = False
) -> dict[str, Any]:
    """An invoice with every line; discounts as objects when listed with
    `expand[]=data.discounts` (the default, as the backfill lists them)."""
    lines = [_line(line, inv, version) for line in inv.lines]
    discounts: list[Any] = [
        discount(d, version, expand_coupon=expand_coupons) if expand_discounts else d.id
        for d in inv.discounts
    ]
    obj: dict[str, Any] = {
        "id": inv.id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "World",
        "amount_due": max(inv.total, 0),
        "amount_paid": max(inv.total, 0) if inv.status == "paid" else 0,
        "amount_remaining": 0 if inv.status == "paid" else max(inv.total, 0),
        "attempt_count": 1,
        "attempted": True,
        "auto_advance": False,
        "billing_reason": inv.billing_reason,
        "collection_method": "charge_automatically",
        "created": inv.created,
        "currency": inv.currency,
        "customer": inv.customer,
        "customer_email": None,
        "default_payment_method": None,
        "description": None,
        "discounts": discounts,
        "ending_balance": 0,
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{inv.id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "number": inv.number,
        "period_end": inv.period_end,
        "period_start": inv.period_start,
        "starting_balance": 0,
        "status": inv.status,
        "status_transitions": {
            "finalized_at": inv.created,
            "marked_uncollectible_at": None,
            "paid_at": inv.created if inv.status == "paid" else None,
            "voided_at": None,
        },
        "subtotal": inv.subtotal,
        "total": inv.total,
        "total_discount_amounts": [
            {"amount": inv.discount_total, "discount": d.id} for d in inv.discounts
        ],
        "webhooks_delivered_at": inv.created,
    }
    if is_legacy(version):
        obj["subscription"] = inv.subscription
        first = inv.discounts[0] if inv.discounts else None
        obj["discount"] = discount(first, version) if first else None
        obj["paid"] = inv.status == "paid"
        obj["subscription_details"] = {"metadata": {}}
    else:
        obj["parent"] = {
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": inv.subscription},
            "type": "subscription_details",
        }
    return obj


def _line(line: Line, inv: Invoice, version: str) -> dict[str, Any]:
    credited = (
        {"invoice": line.credited[0], "invoice_line_items": [line.credited[1]]}
        if line.credited
        else None
    )
    common: dict[str, Any] = {
        "id": line.id,
        "object": "line_item",
        "amount": line.amount,
        "currency": inv.currency,
        "description": line.description,
        "discount_amounts": [{"amount": a, "discount": d} for d, a in line.discount_amounts],
        "discountable": not line.proration,
        "discounts": [],
        "livemode": False,
        "metadata": {},
        "period": {"end": line.end, "start": line.start},
        "quantity": line.quantity if line.quantity is not None else 0,
    }
    if line.price.metered:
        common["quantity"] = line.quantity or 0
    if is_legacy(version):
        return {
            **common,
            "amount_excluding_tax": line.amount,
            "invoice_item": line.invoice_item,
            "plan": plan(line.price),
            "price": price(line.price),
            "proration": line.proration,
            "proration_details": {"credited_items": credited},
            "subscription": inv.subscription,
            "subscription_item": line.item,
            "tax_amounts": [],
            "tax_rates": [],
            # Prorations are pending invoice items; the period's own lines are `subscription`.
            "type": "invoiceitem" if line.proration else "subscription",
            "unit_amount_excluding_tax": str(line.price.unit_amount),
        }
    return {
        **common,
        "invoice": inv.id,
        "parent": {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": line.invoice_item,
                "proration": line.proration,
                "proration_details": {"credited_items": credited},
                "subscription": inv.subscription,
                "subscription_item": line.item,
            },
            "type": "subscription_item_details",
        },
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": {"price": line.price.id, "product": line.price.product},
            "type": "price_details",
            "unit_amount_decimal": str(line.price.unit_amount),
        },
        "quantity_decimal": str(common["quantity"]),
        "taxes": [],
    }


def invoice_item(line: Line, sub: Subscription, version: str) -> dict[str, Any]:
    """A pending proration invoice item (`GET /v1/invoiceitems?pending=true`)."""
    obj: dict[str, Any] = {
        "id": line.invoice_item,
        "object": "invoiceitem",
        "amount": line.amount,
        "currency": sub.currency,
        "customer": sub.customer,
        "date": line.start,
        "description": line.description,
        "discountable": False,
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "period": {"end": line.end, "start": line.start},
        "proration": True,
        "quantity": line.quantity if line.quantity is not None else 1,
        "tax_rates": [],
        "test_clock": None,
    }
    if is_legacy(version):
        obj.update(
            plan=plan(line.price),
            price=price(line.price),
            subscription=sub.id,
            subscription_item=line.item,
            unit_amount=line.price.unit_amount,
            unit_amount_decimal=str(line.price.unit_amount),
        )
    else:
        obj.update(
            net_amount=line.amount,
            parent={
                "subscription_details": {"subscription": sub.id, "subscription_item": line.item},
                "type": "subscription_details",
            },
            pricing={
                "price_details": {"price": line.price.id, "product": line.price.product},
                "type": "price_details",
                "unit_amount_decimal": str(line.price.unit_amount),
            },
            quantity_decimal=str(obj["quantity"]),
        )
    return obj


def event(
    event_id: str,
    event_type: str,
    created: int,
    obj: dict[str, Any],
    version: str,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous:
        data["previous_attributes"] = previous
    return {
        "id": event_id,
        "object": "event",
        "api_version": version,
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def previous_attributes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What Stripe puts in `data.previous_attributes`: the old values of what changed;
    objects (hashes) key by key, lists and scalars whole; a key that appeared is null."""
    changed: dict[str, Any] = {}
    for key in after.keys() | before.keys():
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changed[key] = previous_attributes(old, new)
        else:
            changed[key] = old
    return dict(sorted(changed.items()))
