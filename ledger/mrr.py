"""Monthly recurring revenue of one subscription snapshot, exactly (SPEC §7).

All arithmetic is on `fractions.Fraction`: `unit_amount_decimal` has up to 12 decimal
places and the interval factors (÷ 3, × 52 ÷ 12) are not finite decimals, so the only
rounding is the final one, half-even to a whole minor unit, once per subscription.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

from ledger.errors import InvalidValue
from ledger.snapshot import MAX_MRR, Coupon, DiscountRef, Item, Price, Snapshot, Tier

#: Factor that turns one billing interval's amount into a month's.
_MONTHS_PER_INTERVAL = {
    "month": Fraction(1),
    "year": Fraction(12),
    "week": Fraction(12, 52),
    "day": Fraction(12, 365),
}


@dataclass(frozen=True)
class Catalog:
    """Immutable Stripe objects that payloads carry only by id, fetched by the caller.

    `tiers` by price (or plan) id, `coupons` by coupon id, `discount_coupons` maps a
    discount id to its coupon id. An empty catalog is valid: what it lacks becomes a
    warning, never a silent guess.
    """

    tiers: Mapping[str, tuple[Tier, ...]] = field(default_factory=dict)
    coupons: Mapping[str, Coupon] = field(default_factory=dict)
    discount_coupons: Mapping[str, str] = field(default_factory=dict)


EMPTY_CATALOG = Catalog()


@dataclass(frozen=True)
class Need:
    """An object the payload lacks: `kind` is `price`, `plan`, `coupon` or `discount`.

    For `discount`, `subscription` names the subscription to fetch with its discounts
    expanded (discounts cannot be retrieved on their own).
    """

    kind: str
    id: str
    subscription: str | None = None


@dataclass(frozen=True)
class Mrr:
    amount: int
    currency: str
    #: What could not be priced exactly (missing tiers, unresolved discounts).
    warnings: tuple[str, ...] = ()


def monthly_factor(price: Price) -> Fraction:
    """Multiplier from one billing interval of `price` to one month."""
    return _factor(price.interval, price.interval_count)


@lru_cache(maxsize=256)
def _factor(interval: str, count: int) -> Fraction:
    return 1 / (_MONTHS_PER_INTERVAL[interval] * count)


@lru_cache(maxsize=4096)
def _exact(amount: Decimal) -> Fraction:
    """A stated amount as a Fraction (prices repeat: converted once each)."""
    return Fraction(amount)


def needs(snapshot: Snapshot, catalog: Catalog = EMPTY_CATALOG) -> frozenset[Need]:
    """What `subscription_mrr` would need from Stripe's API to price `snapshot` exactly."""
    wanted: set[Need] = set()
    for item in snapshot.items:
        price = item.price
        unpriced = price.billing_scheme == "tiered" and price.tiers is None
        if unpriced and price.id is not None and price.id not in catalog.tiers:
            wanted.add(Need(price.object, price.id))
    for ref in _all_discounts(snapshot):
        if ref.coupon is not None:
            continue
        coupon_id = ref.coupon_id or (ref.id and catalog.discount_coupons.get(ref.id))
        if coupon_id:
            if coupon_id not in catalog.coupons:
                wanted.add(Need("coupon", coupon_id))
        elif ref.id:
            wanted.add(Need("discount", ref.id, snapshot.id))
    return frozenset(wanted)


def subscription_mrr(snapshot: Snapshot, catalog: Catalog = EMPTY_CATALOG) -> Mrr:
    """MRR of one subscription in its currency's minor units, rounded once (half-even).

    Statuses other than `active`/`past_due` are 0; metered items are 0; `forever`
    coupons reduce MRR, floored at 0. Pure: same snapshot and catalog, same answer.
    """
    warnings: list[str] = []
    if not snapshot.counts:
        return Mrr(0, snapshot.currency)
    whole = _whole_mrr(snapshot)
    if whole is not None:
        return Mrr(whole, snapshot.currency)
    _, total = _exact_mrr(snapshot, catalog, warnings)
    return Mrr(round(total), snapshot.currency, tuple(warnings))


def _whole_mrr(snapshot: Snapshot) -> int | None:
    """The MRR of the commonest subscription in whole numbers: no discount, every item
    priced per unit at a whole monthly amount (a monthly price, or one whose interval
    divides it evenly). None for anything else, which `_exact_mrr` prices. The same
    value as that path's, without a Fraction per item (the rebuild's hottest loop)."""
    lines = _whole_lines(snapshot)
    if lines is None:
        return None
    total = max(sum(lines), 0)
    if total > MAX_MRR:
        raise InvalidValue(f"subscription {snapshot.id} has an MRR beyond {MAX_MRR} minor units")
    return total


def _whole_lines(snapshot: Snapshot) -> list[int] | None:
    """Each item's monthly amount of a subscription `_whole_mrr` prices (metered: 0),
    else None."""
    if snapshot.discounts:
        return None
    lines = []
    for item in snapshot.items:
        price = item.price
        if item.discounts:
            return None
        if price.usage_type == "metered":
            lines.append(0)
            continue
        if (
            price.billing_scheme == "tiered"
            or price.unit_amount is None
            or price.transform_divide_by is not None
        ):
            return None
        unit = _unit_monthly(price.unit_amount, price.interval, price.interval_count)
        if unit.denominator != 1:
            return None
        lines.append(unit.numerator * (1 if item.quantity is None else item.quantity))
    return lines


@lru_cache(maxsize=4096)
def _unit_monthly(amount: Decimal, interval: str, count: int) -> Fraction:
    """One unit of a per-unit price, a month's worth."""
    return _exact(amount) * _factor(interval, count)


def item_mrr(snapshot: Snapshot, catalog: Catalog = EMPTY_CATALOG) -> tuple[int, ...]:
    """Each item's share of the subscription's MRR (SPEC §11), in the items' order,
    summing to `subscription_mrr(...).amount` exactly.

    An item's share is its monthly amount after its own discounts (and product-restricted
    percentages); a subscription-level discount is spread over the items in proportion
    to those amounts. Each exact share is rounded half-even, and what the rounded shares
    miss of the subscription's rounded MRR (a few minor units at most, either sign) is
    given to the largest share (the first of equal ones).
    """
    return priced_items(snapshot, catalog)[1]


def priced_items(
    snapshot: Snapshot, catalog: Catalog = EMPTY_CATALOG
) -> tuple[Mrr, tuple[int, ...]]:
    """`(subscription_mrr(snapshot, catalog), item_mrr(snapshot, catalog))`, pricing the
    snapshot once (a segment needs both of every snapshot)."""
    if not snapshot.counts:
        return Mrr(0, snapshot.currency), (0,) * len(snapshot.items)
    whole = _whole_lines(snapshot)
    if whole is not None:
        total = max(sum(whole), 0)
        if total > MAX_MRR:
            raise InvalidValue(
                f"subscription {snapshot.id} has an MRR beyond {MAX_MRR} minor units"
            )
        mrr = Mrr(total, snapshot.currency)
        if not whole or min(whole) >= 0:
            return mrr, tuple(whole)  # no discount: the exact shares are these amounts
        return mrr, _shares([Fraction(n) for n in whole], Fraction(total))
    warnings: list[str] = []
    lines, exact_total = _exact_mrr(snapshot, catalog, warnings)
    return Mrr(round(exact_total), snapshot.currency, tuple(warnings)), _shares(lines, exact_total)


def _shares(lines: list[Fraction], total: Fraction) -> tuple[int, ...]:
    """`total` (the subscription's exact MRR) spread over the items in proportion to
    their exact monthly amounts `lines`, rounded as `item_mrr` says."""
    before = sum(lines, Fraction(0))
    if before == 0:
        return (0,) * len(lines)
    exact = [total * line / before for line in lines]
    shares = [round(x) for x in exact]
    largest = max(range(len(exact)), key=lambda n: (exact[n], -n))
    shares[largest] += round(total) - sum(shares)
    return tuple(shares)


def _exact_mrr(
    snapshot: Snapshot, catalog: Catalog, warnings: list[str]
) -> tuple[list[Fraction], Fraction]:
    """(each item's exact monthly amount after its own and product-restricted discounts,
    the subscription's exact MRR after every discount) of a counting subscription."""
    lines: list[Fraction] = []
    for item in snapshot.items:
        monthly = _item_monthly(item, catalog, warnings)
        for ref in item.discounts:
            coupon = _resolve(ref, catalog, warnings)
            if coupon is not None:
                monthly = _apply_coupon(monthly, coupon, snapshot.currency, item.price)
        lines.append(monthly)

    total = sum(lines, Fraction(0))
    licensed = [i.price for i in snapshot.items if i.price.usage_type != "metered"]
    first_licensed = licensed[0] if licensed else None
    for ref in snapshot.discounts:
        coupon = _resolve(ref, catalog, warnings)
        if coupon is None or coupon.duration != "forever":
            continue
        if coupon.products is not None and coupon.percent_off is not None:
            # A product-restricted percentage only scales the items it applies to.
            for n, item in enumerate(snapshot.items):
                if item.price.product in coupon.products:
                    discounted = _apply_coupon(lines[n], coupon, snapshot.currency, item.price)
                    total -= lines[n] - discounted
                    lines[n] = discounted
            continue
        if first_licensed is not None:
            total = _apply_coupon(total, coupon, snapshot.currency, first_licensed)
    total = max(total, Fraction(0))
    if total > MAX_MRR:
        raise InvalidValue(f"subscription {snapshot.id} has an MRR beyond {MAX_MRR} minor units")
    return lines, total


def _item_monthly(item: Item, catalog: Catalog, warnings: list[str]) -> Fraction:
    price = item.price
    if price.usage_type == "metered":
        return Fraction(0)
    quantity = 1 if item.quantity is None else item.quantity
    if price.transform_divide_by is not None:
        whole, rest = divmod(quantity, price.transform_divide_by)
        quantity = whole + (1 if rest and price.transform_round == "up" else 0)
    if price.billing_scheme == "tiered":
        tiers = price.tiers
        if tiers is None and price.id is not None:
            tiers = catalog.tiers.get(price.id)
        if tiers is None:
            warnings.append(f"tiers of {price.object} {price.id} unknown: item counted as 0")
            return Fraction(0)
        per_interval = _tiered_amount(tiers, price.tiers_mode, quantity)
    else:
        if price.unit_amount is None:
            warnings.append(f"{price.object} {price.id} has no unit amount: item counted as 0")
            return Fraction(0)
        return _unit_monthly(price.unit_amount, price.interval, price.interval_count) * quantity
    return per_interval * monthly_factor(price)


def _tiered_amount(tiers: tuple[Tier, ...], mode: str | None, quantity: int) -> Fraction:
    """Amount of one interval for `quantity` units; no units bill nothing in either mode."""
    if quantity <= 0 or not tiers:
        return Fraction(0)
    if mode == "volume":
        for tier in tiers:
            if tier.up_to is None or quantity <= tier.up_to:
                return Fraction(tier.unit_amount) * quantity + Fraction(tier.flat_amount)
        last = tiers[-1]
        return Fraction(last.unit_amount) * quantity + Fraction(last.flat_amount)
    # graduated: each bracket bills its own units, and its flat amount once it is entered.
    amount = Fraction(0)
    lower = 0
    for tier in tiers:
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        units = upper - lower
        if units <= 0:
            break
        amount += Fraction(tier.unit_amount) * units + Fraction(tier.flat_amount)
        lower = upper
    return amount


def _apply_coupon(amount: Fraction, coupon: Coupon, currency: str, price: Price) -> Fraction:
    if coupon.duration != "forever":
        return amount
    if coupon.percent_off is not None:
        return max(amount * (1 - Fraction(coupon.percent_off) / 100), Fraction(0))
    off = coupon.amount_off_by_currency.get(currency)
    if off is None and coupon.amount_off is not None and coupon.currency == currency:
        off = coupon.amount_off
    if off is None:
        return amount  # an amount in another currency never applies
    # amount_off is taken off each invoice, so it is normalised like the item it bills with.
    return max(amount - off * monthly_factor(price), Fraction(0))


def _resolve(ref: DiscountRef, catalog: Catalog, warnings: list[str]) -> Coupon | None:
    if ref.coupon is not None:
        return ref.coupon
    coupon_id = ref.coupon_id or (ref.id and catalog.discount_coupons.get(ref.id))
    if coupon_id and coupon_id in catalog.coupons:
        return catalog.coupons[coupon_id]
    warnings.append(f"discount {ref.id or coupon_id} unresolved: applied without it")
    return None


def _all_discounts(snapshot: Snapshot) -> list[DiscountRef]:
    refs = list(snapshot.discounts)
    for item in snapshot.items:
        refs.extend(item.discounts)
    return refs
