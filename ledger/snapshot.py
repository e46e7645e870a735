"""Stripe subscription payload → `Snapshot`, for every API version's shape.

Two shapes reach us (see SPEC §7):

* legacy (≤ 2024): top-level `plan`/`quantity`, a single `discount` object whose
  `coupon` is embedded, subscription-level billing periods;
* basil+ (2025-03-31 and later): periods on the items, `discounts` as a list of ids or
  Discount objects, and from clover (2025-09-30) `Discount.source.coupon` instead of
  `Discount.coupon`.

Parsing never guesses: what a payload does not carry (price tiers, coupons behind a
discount id) is left as an unresolved reference that `ledger.mrr` reports as a warning
unless the caller supplies it through a `Catalog`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeGuard

from ledger.errors import InvalidEvent, InvalidValue

Json = Mapping[str, Any]

#: Statuses whose subscriptions count towards MRR (Stripe's own definition).
COUNTING_STATUSES = frozenset({"active", "past_due"})
KNOWN_STATUSES = frozenset(
    {
        "active",
        "past_due",
        "trialing",
        "incomplete",
        "incomplete_expired",
        "unpaid",
        "canceled",
        "paused",
    }
)
#: Statuses of a subscription that has ended for good.
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})
INTERVALS = frozenset({"day", "week", "month", "year"})
#: Longest id or text the ledger stores (the columns' width).
MAX_TEXT = 255
#: Largest MRR of one subscription, in minor units: beyond any real subscription, and
#: sums of many stay far inside a 64-bit column.
MAX_MRR = 10**15


@dataclass(frozen=True)
class Tier:
    """One bracket of a tiered price; `up_to=None` is Stripe's `inf`."""

    up_to: int | None
    unit_amount: Decimal
    flat_amount: Decimal


@dataclass(frozen=True)
class Price:
    """The pricing facts of one subscription item (from a `price` or a legacy `plan`)."""

    id: str | None
    product: str | None
    currency: str
    interval: str
    interval_count: int
    usage_type: str = "licensed"
    billing_scheme: str = "per_unit"
    unit_amount: Decimal | None = None
    tiers_mode: str | None = None
    #: None when the payload did not carry them (webhooks never do).
    tiers: tuple[Tier, ...] | None = None
    transform_divide_by: int | None = None
    transform_round: str = "down"
    #: `price` or `plan`: which API object to fetch to learn the tiers.
    object: str = "price"


@dataclass(frozen=True)
class Coupon:
    """The parts of a coupon that move MRR."""

    id: str
    duration: str
    percent_off: Decimal | None = None
    amount_off: int | None = None
    currency: str | None = None
    #: `currency_options[cur].amount_off` of multi-currency coupons.
    amount_off_by_currency: Mapping[str, int] = field(default_factory=dict)
    #: `applies_to.products`; None applies to every item.
    products: frozenset[str] | None = None


@dataclass(frozen=True)
class DiscountRef:
    """A discount as the payload gives it: an embedded coupon, a coupon id, or only its own id."""

    id: str | None
    coupon: Coupon | None = None
    coupon_id: str | None = None


@dataclass(frozen=True)
class Item:
    id: str | None
    price: Price
    quantity: int | None
    discounts: tuple[DiscountRef, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """A subscription as one event shows it: everything MRR and movement kinds need."""

    id: str
    customer: str
    status: str
    currency: str
    items: tuple[Item, ...]
    discounts: tuple[DiscountRef, ...] = ()
    cancel_at_period_end: bool = False
    cancel_at: int | None = None
    cancellation_reason: str | None = None
    cancellation_feedback: str | None = None
    #: Carried by a `customer.subscription.deleted` event: over, whatever `status` says.
    ended: bool = False

    @property
    def counts(self) -> bool:
        """Whether this subscription contributes MRR at all (SPEC §7)."""
        return not self.ended and self.status in COUNTING_STATUSES

    @property
    def effective_status(self) -> str:
        """`status`, except that an ended subscription is `canceled` unless it says how
        it ended (`incomplete_expired`)."""
        if self.ended and self.status not in ENDED_STATUSES:
            return "canceled"
        return self.status

    def scheduled_to_cancel(self, as_of: int) -> bool:
        """Whether it is set to end later than `as_of` (unix seconds): at period end, or
        at a `cancel_at` still in the future. A `cancel_at` already past schedules nothing."""
        if self.cancel_at_period_end:
            return True
        return self.cancel_at is not None and self.cancel_at > as_of


def customer_id_of(obj: Json) -> str | None:
    """The customer id of a Stripe object whose `customer` is an id or an expanded object."""
    customer = obj.get("customer")
    if isinstance(customer, str) and customer:
        return customer
    if isinstance(customer, dict) and isinstance(customer.get("id"), str):
        return str(customer["id"])
    return None


def parse_subscription(obj: Any, *, ended: bool = False) -> Snapshot:
    """Parse a Stripe `subscription` object of any API version.

    `ended` marks the object of a `customer.subscription.deleted` event. Raises
    `InvalidEvent` naming the first missing or malformed field, or an item in another
    currency than the subscription's; never returns a partial snapshot. A subscription
    that counts no MRR (its status, or `ended`) is never refused for its items: what
    cannot be priced is left out, since nothing is priced (SPEC §7).
    """
    if not isinstance(obj, dict):
        raise InvalidEvent("data.object is not a JSON object")
    if obj.get("object") != "subscription":
        raise InvalidEvent(f"data.object is a {obj.get('object')!r}, not a subscription")
    sub_id = storable(_required_str(obj, "id", "subscription"), "subscription id")
    customer = customer_id_of(obj)
    if customer is None:
        raise InvalidEvent(f"subscription {sub_id} has no customer")
    storable(customer, f"subscription {sub_id} customer")
    status = _required_str(obj, "status", f"subscription {sub_id}")
    if status not in KNOWN_STATUSES:
        raise InvalidValue(f"subscription {sub_id} has unknown status {status[:40]!r}")

    counting = status in COUNTING_STATUSES and not ended
    try:
        items = _parse_items(obj, sub_id)
    except InvalidEvent:
        if counting:
            raise
        items = ()
    discounts = _subscription_discounts(obj)
    # An item may list a subscription-level discount too; count each discount once.
    shared = {d.id for d in discounts if d.id is not None}
    if shared:
        items = tuple(
            Item(i.id, i.price, i.quantity, tuple(d for d in i.discounts if d.id not in shared))
            for i in items
        )
    currency = obj.get("currency")
    if not isinstance(currency, str) or not currency:
        currency = items[0].price.currency if items else None
    if not currency:
        raise InvalidEvent(f"subscription {sub_id} has no currency and no priced item")
    currency = currency_code(currency, f"subscription {sub_id}")
    foreign = [i for i in items if i.price.currency != currency]
    if foreign and counting:
        # Nothing is summed across currencies: the event is wrong, not the arithmetic,
        # and no retry can mend it (quarantined).
        where = foreign[0].id or foreign[0].price.id or "an item"
        raise InvalidValue(
            f"subscription {sub_id} is in {currency} but its item {where} is in "
            f"{foreign[0].price.currency}"
        )

    details = obj.get("cancellation_details")
    details = details if isinstance(details, dict) else {}
    reason, feedback = _opt_str(details.get("reason")), _opt_str(details.get("feedback"))
    where = f"subscription {sub_id} cancellation_details"
    cancel_at = obj.get("cancel_at")
    return Snapshot(
        id=sub_id,
        customer=customer,
        status=status,
        currency=currency,
        items=items,
        discounts=discounts,
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        cancel_at=cancel_at if isinstance(cancel_at, int) else None,
        cancellation_reason=reason and storable(reason, f"{where}.reason"),
        cancellation_feedback=feedback and storable(feedback, f"{where}.feedback"),
        ended=ended,
    )


def currency_code(raw: str, where: str) -> str:
    """A three-letter ISO currency code, lower case, as Stripe writes it."""
    code = raw.lower()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise InvalidValue(f"{where} has an invalid currency {raw[:40]!r}")
    return code


def storable(value: str, what: str, limit: int = MAX_TEXT) -> str:
    """`value` if it can be stored as text: at most `limit` characters, no NUL, and
    valid Unicode (a lone surrogate cannot be encoded); else `InvalidValue`."""
    if len(value) > limit:
        raise InvalidValue(f"{what} is longer than {limit} characters")
    if "\x00" in value:
        raise InvalidValue(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(f"{what} is not valid Unicode") from None
    return value


#: Prices already parsed, by every field `parse_price` reads (see `_price_key`).
_PRICES: dict[tuple[Any, ...], Price] = {}
_PRICES_MOST = 4096
#: The only types a price's key may hold: equal keys then mean equal fields (a float or
#: a bool compares equal to an int it does not parse like, so those are never cached).
_KEYABLE = (str, int, type(None))


def _price_key(obj: dict[str, Any]) -> tuple[Any, ...] | None:
    """Every field `_parse_price` reads, or None when they cannot key a cache: prices
    repeat across events (a rebuild parses each plan thousands of times), and equal
    fields parse to an equal `Price`. Computed from the object as it is now, so a later
    change to it cannot leak into the cache."""
    recurring = obj.get("recurring")
    nested = recurring if isinstance(recurring, dict) else {}
    transform = obj.get("transform_quantity") or obj.get("transform_usage")
    tiers = obj.get("tiers")
    if isinstance(tiers, list) and tiers:
        return None  # tiers are rare; not worth keying
    product = obj.get("product")
    shape = (
        isinstance(recurring, dict),
        isinstance(transform, dict),
        isinstance(tiers, list),
        isinstance(product, dict),
    )
    fields = (
        nested.get("interval"),
        nested.get("interval_count"),
        nested.get("usage_type"),
        obj.get("interval"),
        obj.get("interval_count"),
        obj.get("usage_type"),
        obj.get("currency"),
        obj.get("unit_amount_decimal"),
        obj.get("unit_amount"),
        obj.get("amount_decimal"),
        obj.get("amount"),
        transform.get("divide_by") if isinstance(transform, dict) else None,
        transform.get("round") if isinstance(transform, dict) else None,
        obj.get("billing_scheme"),
        product.get("id") if isinstance(product, dict) else product,
        obj.get("id"),
        obj.get("tiers_mode"),
        obj.get("object"),
    )
    for value in fields:
        if type(value) not in _KEYABLE:
            return None
    return shape + fields


def parse_price(obj: Any, where: str) -> Price:
    """Parse a `price` or a legacy `plan` object (also the plan-shaped prices of old
    payloads); one already parsed with the same fields is returned from a cache."""
    key = _price_key(obj) if isinstance(obj, dict) else None
    if key is not None:
        found = _PRICES.get(key)
        if found is not None:
            return found
    price = _parse_price(obj, where)
    if key is not None:
        if len(_PRICES) >= _PRICES_MOST:
            _PRICES.clear()
        _PRICES[key] = price
    return price


def _parse_price(obj: Any, where: str) -> Price:
    if not isinstance(obj, dict):
        raise InvalidEvent(f"{where} has no price or plan")
    recurring = obj.get("recurring")
    recurring = recurring if isinstance(recurring, dict) else obj
    interval = recurring.get("interval")
    if interval is None:
        raise InvalidEvent(f"{where} has no recurring interval")
    if not isinstance(interval, str) or interval not in INTERVALS:
        raise InvalidValue(
            f"{where} has no recurring interval of day, week, month or year "
            f"(got {str(interval)[:40]!r})"
        )
    interval_count = recurring.get("interval_count", 1)
    if interval_count is None:
        interval_count = 1
    if not _is_int(interval_count) or not 1 <= interval_count <= MAX_INTERVAL_COUNT:
        raise InvalidValue(f"{where} has a bad interval_count {str(interval_count)[:40]!r}")
    currency = obj.get("currency")
    if not isinstance(currency, str) or not currency:
        raise InvalidEvent(f"{where} has no currency")
    currency = currency_code(currency, where)

    unit_amount = _decimal(obj.get("unit_amount_decimal"), where, ".unit_amount_decimal")
    if unit_amount is None:
        unit_amount = _decimal(obj.get("unit_amount"), where, ".unit_amount")
    if unit_amount is None:  # legacy plans
        unit_amount = _decimal(obj.get("amount_decimal"), where, ".amount_decimal")
    if unit_amount is None:
        unit_amount = _decimal(obj.get("amount"), where, ".amount")

    transform = obj.get("transform_quantity") or obj.get("transform_usage")
    divide_by: int | None = None
    rounding = "down"
    if isinstance(transform, dict):
        raw_divide = transform.get("divide_by")
        if not _is_int(raw_divide) or not 1 <= raw_divide <= MAX_QUANTITY:
            raise InvalidValue(f"{where} has a bad transform divide_by {str(raw_divide)[:40]!r}")
        divide_by = raw_divide
        rounding = "up" if transform.get("round") == "up" else "down"

    billing_scheme = obj.get("billing_scheme") or "per_unit"
    raw_tiers = obj.get("tiers")
    tiers = parse_tiers(raw_tiers, where) if isinstance(raw_tiers, list) and raw_tiers else None
    usage_type = recurring.get("usage_type") or obj.get("usage_type") or "licensed"
    product = obj.get("product")
    if isinstance(product, dict):
        product = product.get("id")
    return Price(
        id=_opt_str(obj.get("id")),
        product=_opt_str(product),
        currency=currency,
        interval=str(interval),
        interval_count=interval_count,
        usage_type=str(usage_type),
        billing_scheme=str(billing_scheme),
        unit_amount=unit_amount,
        tiers_mode=_opt_str(obj.get("tiers_mode")),
        tiers=tiers,
        transform_divide_by=divide_by,
        transform_round=rounding,
        object="plan" if obj.get("object") == "plan" else "price",
    )


def parse_tiers(raw: Sequence[Any], where: str) -> tuple[Tier, ...]:
    """Parse a price's `tiers` (as fetched with `expand[]=tiers`)."""
    tiers = []
    for n, tier in enumerate(raw):
        if not isinstance(tier, dict):
            raise InvalidValue(f"{where} tier {n} is not an object")
        up_to = tier.get("up_to")
        if up_to == "inf":
            up_to = None
        if up_to is not None and not _is_int(up_to):
            raise InvalidValue(f"{where} tier {n} has a bad up_to {str(up_to)[:40]!r}")
        unit = _decimal(tier.get("unit_amount_decimal"), where, f" tier {n}")
        if unit is None:
            unit = _decimal(tier.get("unit_amount"), where, f" tier {n}")
        flat = _decimal(tier.get("flat_amount_decimal"), where, f" tier {n}")
        if flat is None:
            flat = _decimal(tier.get("flat_amount"), where, f" tier {n}")
        tiers.append(Tier(up_to, unit or Decimal(0), flat or Decimal(0)))
    # Stripe lists tiers in ascending order with `inf` last; sort defensively.
    return tuple(sorted(tiers, key=lambda t: (t.up_to is None, t.up_to or 0)))


def parse_coupon(obj: Any) -> Coupon | None:
    """Parse a `coupon` object; None for anything that is not one."""
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return None
    options = obj.get("currency_options")
    by_currency: dict[str, int] = {}
    if isinstance(options, dict):
        for cur, opt in options.items():
            if isinstance(opt, dict) and isinstance(opt.get("amount_off"), int):
                by_currency[str(cur).lower()] = int(opt["amount_off"])
    applies = obj.get("applies_to")
    products = None
    if isinstance(applies, dict) and isinstance(applies.get("products"), list):
        products = frozenset(str(p) for p in applies["products"])
    # Coupons of API versions before 2018-07-27 round `percent_off` to an integer and
    # carry the true value in `percent_off_precise`.
    percent = obj.get("percent_off_precise")
    if not _is_number(percent):
        percent = obj.get("percent_off")
    amount = obj.get("amount_off")
    currency = obj.get("currency")
    return Coupon(
        id=str(obj["id"]),
        duration=str(obj.get("duration") or "once"),
        percent_off=Decimal(str(percent)) if _is_number(percent) else None,
        amount_off=amount if _is_int(amount) else None,
        currency=currency.lower() if isinstance(currency, str) else None,
        amount_off_by_currency=by_currency,
        products=products,
    )


def parse_discount(raw: Any) -> DiscountRef | None:
    """A discount as an id, a pre-clover Discount (`coupon`), or a clover+ one (`source.coupon`)."""
    if isinstance(raw, str) and raw:
        return DiscountRef(id=raw)
    if not isinstance(raw, dict):
        return None
    disc_id = _opt_str(raw.get("id"))
    coupon_raw = raw.get("coupon")
    source = raw.get("source")
    if coupon_raw is None and isinstance(source, dict):
        coupon_raw = source.get("coupon")
    if isinstance(coupon_raw, str):
        return DiscountRef(id=disc_id, coupon_id=coupon_raw)
    coupon = parse_coupon(coupon_raw)
    if coupon is None:
        if disc_id is None:
            return None
        return DiscountRef(id=disc_id)
    return DiscountRef(id=disc_id, coupon=coupon, coupon_id=coupon.id)


def _parse_items(obj: Json, sub_id: str) -> tuple[Item, ...]:
    items_obj = obj.get("items")
    data = items_obj.get("data") if isinstance(items_obj, dict) else None
    if data is None:
        # Pre-2018 payloads had no items list, only the top-level plan and quantity.
        if isinstance(obj.get("plan"), dict):
            price = parse_price(obj["plan"], f"subscription {sub_id} plan")
            return (Item(None, price, _quantity(obj.get("quantity"), sub_id)),)
        raise InvalidEvent(f"subscription {sub_id} has no items")
    if not isinstance(data, list):
        raise InvalidValue(f"subscription {sub_id} items.data is not a list")
    items = []
    for n, raw in enumerate(data):
        if not isinstance(raw, dict):
            raise InvalidValue(f"subscription {sub_id} item {n} is not an object")
        where = f"subscription {sub_id} item {raw.get('id') or n}"
        price_obj = raw.get("price")
        # Some old payloads carry a plan-shaped `price`; parse_price reads either.
        if not isinstance(price_obj, dict):
            price_obj = raw.get("plan")
        price = parse_price(price_obj, where)
        raw_discounts = raw.get("discounts")
        if not isinstance(raw_discounts, list):  # as the subscription's own: no list, none
            raw_discounts = []
        discounts = tuple(d for d in (parse_discount(x) for x in raw_discounts) if d is not None)
        quantity = _quantity(raw.get("quantity"), where)
        items.append(Item(_opt_str(raw.get("id")), price, quantity, discounts))
    return tuple(items)


def _subscription_discounts(obj: Json) -> tuple[DiscountRef, ...]:
    found: list[DiscountRef] = []
    raw_list = obj.get("discounts")
    if isinstance(raw_list, list):
        found.extend(d for d in (parse_discount(x) for x in raw_list) if d is not None)
    legacy = parse_discount(obj.get("discount"))
    if legacy is not None:
        # From 2022 payloads carry both `discount` and `discounts` (ids): keep the richer one.
        same = [i for i, d in enumerate(found) if d.id is not None and d.id == legacy.id]
        if same:
            found[same[0]] = legacy
        else:
            found.append(legacy)
    return tuple(found)


def _quantity(raw: Any, where: str) -> int | None:
    if raw is None:
        return None
    if not _is_int(raw) or not 0 <= raw <= MAX_QUANTITY:
        raise InvalidValue(f"{where} has a bad quantity {str(raw)[:40]!r}")
    return raw


#: Largest amount, in minor units, a price or tier may state: far beyond any real price,
#: and it keeps every sum of them inside a 64-bit column.
MAX_AMOUNT = Decimal(10) ** 15
#: Most characters of a decimal amount (Stripe sends at most 12 decimal places).
MAX_DECIMAL_CHARS = 32
#: Largest quantity (or transform divisor) and interval count accepted.
MAX_QUANTITY = 10**15
MAX_INTERVAL_COUNT = 1000


def _decimal(raw: Any, where: str, field: str = "") -> Decimal | None:
    """A price amount as an exact Decimal, or None when absent.

    Refuses what is not a finite number or lies outside ±`MAX_AMOUNT` (a string like
    "1e999999999" would otherwise expand into a billion-digit integer later). `where`
    and `field` name the value in the error, formatted only when there is one.
    """
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, int | str):
        if isinstance(raw, str) and len(raw) > MAX_DECIMAL_CHARS:
            raise InvalidValue(f"{where}{field} is too long a number: {raw[:40]!r}…")
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise InvalidValue(f"{where}{field} is not a number: {str(raw)[:40]!r}") from None
    elif isinstance(raw, float):
        value = Decimal(str(raw))
    else:
        raise InvalidValue(f"{where}{field} is not a number: {str(raw)[:40]!r}")
    if not value.is_finite():
        raise InvalidValue(f"{where}{field} is not a finite number: {str(raw)[:40]!r}")
    # The exponent first: arithmetic on "1e999999999" overflows the decimal context.
    magnitude = value.adjusted()
    if value and not -MAX_DECIMAL_CHARS <= magnitude <= MAX_AMOUNT.adjusted():
        raise InvalidValue(f"{where}{field} is out of range: {str(raw)[:40]!r}")
    if value.copy_abs() > MAX_AMOUNT:
        raise InvalidValue(f"{where}{field} is out of range: {str(raw)[:40]!r}")
    return value


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _required_str(obj: Json, key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"{where} has no {key}")
    return value


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
