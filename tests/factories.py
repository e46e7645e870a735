"""Builders of real-shaped Stripe objects and events, in the legacy and basil+ shapes.

Field names and nesting follow Stripe's API reference for each version (see the
samples under ../shared/stripe-samples); values are ours.
"""

from __future__ import annotations

import copy
from typing import Any

LEGACY_VERSION = "2020-08-27"
BASIL_VERSION = "2025-03-31.basil"
CLOVER_VERSION = "2025-09-30.clover"


def price(
    price_id: str,
    unit_amount: int | None,
    *,
    currency: str = "usd",
    interval: str = "month",
    interval_count: int = 1,
    product: str | None = None,
    usage_type: str = "licensed",
    unit_amount_decimal: str | None = None,
    billing_scheme: str = "per_unit",
    tiers_mode: str | None = None,
    tiers: list[dict[str, Any]] | None = None,
    transform_quantity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": price_id,
        "object": "price",
        "active": True,
        "billing_scheme": billing_scheme,
        "created": 1700000000,
        "currency": currency,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": product or f"prod_{price_id.removeprefix('price_')}",
        "recurring": {
            "interval": interval,
            "interval_count": interval_count,
            "meter": None,
            "usage_type": usage_type,
            "trial_period_days": None,
        },
        "tax_behavior": "unspecified",
        "tiers_mode": tiers_mode,
        "transform_quantity": transform_quantity,
        "type": "recurring",
        "unit_amount": unit_amount,
        "unit_amount_decimal": unit_amount_decimal
        if unit_amount_decimal is not None
        else (str(unit_amount) if unit_amount is not None else None),
    }
    if tiers is not None:
        obj["tiers"] = tiers
    return obj


def plan_of(p: dict[str, Any]) -> dict[str, Any]:
    """The legacy `plan` view of a price (as API versions before basil embed it)."""
    rec = p["recurring"]
    return {
        "id": p["id"],
        "object": "plan",
        "active": True,
        "aggregate_usage": None,
        "amount": p["unit_amount"],
        "amount_decimal": p["unit_amount_decimal"],
        "billing_scheme": p["billing_scheme"],
        "created": p["created"],
        "currency": p["currency"],
        "interval": rec["interval"],
        "interval_count": rec["interval_count"],
        "livemode": False,
        "metadata": {},
        "nickname": None,
        "product": p["product"],
        "tiers_mode": p["tiers_mode"],
        "transform_usage": p["transform_quantity"],
        "trial_period_days": None,
        "usage_type": rec["usage_type"],
    }


def item(
    p: dict[str, Any],
    quantity: int | None = 1,
    *,
    item_id: str | None = None,
    legacy: bool = False,
    discounts: list[Any] | None = None,
    period: tuple[int, int] = (1700000000, 1702592000),
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": item_id or f"si_{p['id'].removeprefix('price_')}",
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": 1700000000,
        "metadata": {},
        "price": copy.deepcopy(p),
        "subscription": "sub_x",
        "tax_rates": [],
    }
    if quantity is not None:
        obj["quantity"] = quantity
    if legacy:
        obj["plan"] = plan_of(p)
    else:
        obj["discounts"] = discounts or []
        obj["current_period_start"], obj["current_period_end"] = period
    return obj


def coupon(
    coupon_id: str,
    *,
    duration: str = "forever",
    percent_off: float | None = None,
    amount_off: int | None = None,
    currency: str | None = None,
    duration_in_months: int | None = None,
    products: list[str] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": coupon_id,
        "object": "coupon",
        "amount_off": amount_off,
        "created": 1700000000,
        "currency": currency,
        "duration": duration,
        "duration_in_months": duration_in_months,
        "livemode": False,
        "max_redemptions": None,
        "metadata": {},
        "name": coupon_id,
        "percent_off": percent_off,
        "redeem_by": None,
        "times_redeemed": 1,
        "valid": True,
    }
    if products is not None:
        obj["applies_to"] = {"products": products}
    return obj


def discount(discount_id: str, c: dict[str, Any], *, clover: bool = False) -> dict[str, Any]:
    """A Discount object: `coupon` embedded (≤ basil) or `source.coupon` (clover+)."""
    obj: dict[str, Any] = {
        "id": discount_id,
        "object": "discount",
        "checkout_session": None,
        "customer": "cus_x",
        "end": None,
        "invoice": None,
        "invoice_item": None,
        "promotion_code": None,
        "start": 1700000000,
        "subscription": "sub_x",
    }
    if clover:
        obj["source"] = {"type": "coupon", "coupon": c}
    else:
        obj["coupon"] = c
    return obj


def subscription(
    sub_id: str,
    customer: str,
    items: list[dict[str, Any]],
    *,
    status: str = "active",
    currency: str = "usd",
    legacy: bool = False,
    discount_obj: dict[str, Any] | None = None,
    discounts: list[Any] | None = None,
    cancel_at_period_end: bool = False,
    cancel_at: int | None = None,
    cancellation_details: dict[str, Any] | None = None,
    created: int = 1700000000,
) -> dict[str, Any]:
    items = copy.deepcopy(items)
    for it in items:
        it["subscription"] = sub_id
    obj: dict[str, Any] = {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "billing_cycle_anchor": created,
        "cancel_at": cancel_at,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": None,
        "cancellation_details": cancellation_details
        or {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": created,
        "currency": currency,
        "customer": customer,
        "days_until_due": None,
        "default_payment_method": None,
        "ended_at": None,
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "total_count": len(items),
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": {},
        "pause_collection": None,
        "start_date": created,
        "status": status,
        "trial_end": None,
        "trial_start": None,
    }
    if legacy:
        obj["current_period_start"], obj["current_period_end"] = created, created + 2592000
        obj["discount"] = discount_obj
        first = items[0] if len(items) == 1 else None
        obj["plan"] = first["plan"] if first else None
        obj["quantity"] = first.get("quantity") if first else None
    else:
        obj["discounts"] = discounts or []
    return obj


def event(
    event_id: str,
    event_type: str,
    created: int,
    obj: dict[str, Any],
    *,
    previous_attributes: dict[str, Any] | None = None,
    api_version: str = BASIL_VERSION,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": copy.deepcopy(obj)}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
