"""Scripted worlds: the lifecycles issue 18 names, and random small ones.

`central(version)` is one account over 14 months (January 2024 to March 2025) with every
lifecycle whose history invoices show exactly; `random_world(seed, version)` draws a
few customers from the same repertoire. Both are deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tests.world.calendar import boundary, days, utc
from tests.world.model import LEGACY, Coupon, Price
from tests.world.stripe import World

START = utc(2024, 1, 1)
NOW = utc(2025, 3, 15, 12)


@dataclass(frozen=True)
class Catalog:
    """The prices and coupons the scenarios use, registered in one world."""

    basic: Price
    pro: Price
    plus: Price
    addon: Price
    basic_y: Price
    pro_y: Price
    plus_y: Price
    api: Price
    api_extra: Price
    team_w: Price
    e_basic: Price
    e_pro: Price
    e_addon: Price
    e_pro_y: Price
    forever20: Coupon
    forever10: Coupon
    eur5: Coupon


def catalog(w: World) -> Catalog:
    return Catalog(
        basic=w.price("price_basic", 1000, product="prod_basic"),
        pro=w.price("price_pro", 2500, product="prod_pro"),
        plus=w.price("price_plus", 5000, product="prod_plus"),
        addon=w.price("price_addon", 700, product="prod_addon"),
        basic_y=w.price("price_basic_y", 10000, interval="year", product="prod_basic"),
        pro_y=w.price("price_pro_y", 25000, interval="year", product="prod_pro"),
        plus_y=w.price("price_plus_y", 50000, interval="year", product="prod_plus"),
        api=w.price("price_api", 2, metered=True, product="prod_api"),
        api_extra=w.price("price_api_extra", 5, metered=True, product="prod_api_extra"),
        team_w=w.price("price_team_w", 900, interval="week", product="prod_team"),
        e_basic=w.price("price_e_basic", 900, currency="eur", product="prod_e_basic"),
        e_pro=w.price("price_e_pro", 2200, currency="eur", product="prod_e_pro"),
        e_addon=w.price("price_e_addon", 600, currency="eur", product="prod_e_addon"),
        e_pro_y=w.price(
            "price_e_pro_y", 22000, currency="eur", interval="year", product="prod_e_pro"
        ),
        forever20=w.coupon("FOREVER20", percent_off=20.0),
        forever10=w.coupon("FOREVER10", percent_off=10.0),
        eur5=w.coupon("EUR5OFF", amount_off=500, currency="eur"),
    )


def central(version: str = LEGACY, seed: int = 0) -> World:
    """One account, 14 months, every lifecycle invoices show exactly, run to `NOW`."""
    w = World(version, seed)
    c = catalog(w)

    def customer(at: int, name: str, currency: str = "usd") -> str:
        return w.customer(at - days(1), currency=currency, name=name)

    # A plain new monthly subscription; the customer changes their email later.
    alpha = customer(utc(2024, 1, 3, 9), "Alpha")
    w.subscribe(alpha, utc(2024, 1, 3, 9), [(c.basic, 1)])
    w.update_customer(alpha, utc(2024, 5, 1), email="billing@alpha.example")

    # Trials: converts, is canceled at its end, is paused at its end.
    bravo = customer(utc(2024, 1, 10, 11), "Bravo")
    w.subscribe(bravo, utc(2024, 1, 10, 11), [(c.pro, 2)], trial_days=14)
    charlie = customer(utc(2024, 2, 3, 16), "Charlie")
    w.subscribe(charlie, utc(2024, 2, 3, 16), [(c.pro, 1)], trial_days=14, trial_outcome="cancel")
    delta = customer(utc(2024, 3, 9, 7), "Delta")
    w.subscribe(delta, utc(2024, 3, 9, 7), [(c.basic, 1)], trial_days=7, trial_outcome="pause")

    # Seat changes mid-period: pending prorations, and one invoiced at once.
    echo = customer(utc(2024, 2, 1, 14), "Echo")
    s = w.subscribe(echo, utc(2024, 2, 1, 14), [(c.pro, 3)])
    w.set_quantity(s, utc(2024, 3, 17, 10, 5), c.pro, 5)
    w.set_quantity(s, utc(2024, 6, 9, 18, 30), c.pro, 4)
    w.set_quantity(s, utc(2024, 9, 22, 8, 15), c.pro, 8, "always_invoice")

    # Upgrades and downgrades mid-period.
    foxtrot = customer(utc(2024, 2, 12, 12), "Foxtrot")
    s = w.subscribe(foxtrot, utc(2024, 2, 12, 12), [(c.basic, 1)])
    w.swap_price(s, utc(2024, 4, 3, 13, 20), c.basic, c.pro)
    w.swap_price(s, utc(2024, 8, 19, 9, 45), c.pro, c.basic)
    w.swap_price(s, utc(2024, 11, 5, 17), c.basic, c.plus, "always_invoice")

    # Cross-sell: an item added, removed, added again.
    golf = customer(utc(2024, 1, 20, 8), "Golf")
    s = w.subscribe(golf, utc(2024, 1, 20, 8), [(c.pro, 1)])
    w.add_item(s, utc(2024, 3, 8, 11, 11), c.addon, 2)
    w.remove_item(s, utc(2024, 7, 14, 15, 40), c.addon)
    w.add_item(s, utc(2024, 10, 1, 6, 30), c.addon, 1, "always_invoice")

    # An annual plan upgraded mid-year and invoiced at once.
    hotel = customer(utc(2024, 2, 28, 10), "Hotel")
    s = w.subscribe(hotel, utc(2024, 2, 28, 10), [(c.pro_y, 1)])
    w.swap_price(s, utc(2024, 8, 15, 12, 12), c.pro_y, c.plus_y, "always_invoice")

    # Monthly to yearly: the billing cycle resets; then seats on the yearly plan.
    india = customer(utc(2024, 3, 5, 9, 30), "India")
    s = w.subscribe(india, utc(2024, 3, 5, 9, 30), [(c.basic, 1)])
    w.swap_price(s, utc(2024, 6, 21, 14, 2), c.basic, c.basic_y)
    w.set_quantity(s, utc(2024, 10, 10, 10, 10), c.basic_y, 3, "always_invoice")

    # Forever discounts: from the start, and from a cycle boundary to a later one.
    juliet = customer(utc(2024, 1, 15, 15), "Juliet")
    w.subscribe(juliet, utc(2024, 1, 15, 15), [(c.pro, 1)], coupon=c.forever20)
    kilo = customer(utc(2024, 2, 7, 8, 30), "Kilo")
    s = w.subscribe(kilo, utc(2024, 2, 7, 8, 30), [(c.plus, 1)])
    anchor = utc(2024, 2, 7, 8, 30)
    w.apply_coupon(s, boundary(anchor, "month", 1, 3), c.forever10)
    w.remove_discount(s, boundary(anchor, "month", 1, 8))

    # Cancellations: at period end (with feedback), and at once.
    lima = customer(utc(2024, 1, 25, 13), "Lima")
    s = w.subscribe(lima, utc(2024, 1, 25, 13), [(c.pro, 1)])
    w.cancel(s, utc(2024, 6, 10, 9), at_period_end=True, feedback="too_expensive")
    mike = customer(utc(2024, 2, 2, 10), "Mike")
    s = w.subscribe(mike, utc(2024, 2, 2, 10), [(c.basic, 1), (c.addon, 1)])
    w.cancel(s, utc(2024, 5, 19, 19, 19), feedback="switched_service")

    # A reactivation: canceled, back months later on a new subscription.
    november = customer(utc(2024, 1, 8, 12), "November")
    s = w.subscribe(november, utc(2024, 1, 8, 12), [(c.pro, 1)])
    w.cancel(s, utc(2024, 4, 2, 10), feedback="unused")
    w.subscribe(november, utc(2024, 8, 12, 12), [(c.plus, 1)])

    # Euro customers: seats, an amount-off forever coupon from a boundary, a cross-sell,
    # an upgrade invoiced at once, a cancellation at period end.
    oscar = customer(utc(2024, 2, 14, 9), "Oscar", "eur")
    s = w.subscribe(oscar, utc(2024, 2, 14, 9), [(c.e_pro, 2)])
    w.set_quantity(s, utc(2024, 5, 3, 12), c.e_pro, 3)
    w.apply_coupon(s, boundary(utc(2024, 2, 14, 9), "month", 1, 5), c.eur5)
    w.cancel(s, utc(2024, 12, 20, 9), at_period_end=True, feedback="low_quality")
    papa = customer(utc(2024, 3, 1, 0, 30), "Papa", "eur")
    s = w.subscribe(papa, utc(2024, 3, 1, 0, 30), [(c.e_basic, 1)])
    w.add_item(s, utc(2024, 4, 18, 16), c.e_addon, 3)
    w.swap_price(s, utc(2024, 9, 9, 9, 9), c.e_basic, c.e_pro, "always_invoice")
    tango = customer(utc(2024, 4, 4, 4), "Tango", "eur")
    w.subscribe(tango, utc(2024, 4, 4, 4), [(c.e_pro_y, 1)], trial_days=30, coupon=c.eur5)

    # Metered usage, billed in arrears, next to licensed seats.
    quebec = customer(utc(2024, 2, 20, 20), "Quebec")
    s = w.subscribe(quebec, utc(2024, 2, 20, 20), [(c.basic, 1), (c.api, None)])
    w.set_quantity(s, utc(2024, 5, 5, 5, 5), c.basic, 2)
    w.add_item(s, utc(2024, 7, 10, 10), c.api_extra, None)
    w.set_quantity(s, utc(2024, 9, 1, 1), c.basic, 4)

    # Two subscriptions of one customer; the second is canceled at its period end.
    romeo = customer(utc(2024, 3, 15, 12), "Romeo")
    w.subscribe(romeo, utc(2024, 3, 15, 12), [(c.pro, 1)])
    s = w.subscribe(romeo, utc(2024, 4, 2, 12), [(c.addon, 2)])
    w.cancel(s, utc(2024, 9, 10, 9), at_period_end=True, reason="cancellation_requested")

    # A weekly plan with a seat change.
    sierra = customer(utc(2024, 6, 3, 8), "Sierra")
    s = w.subscribe(sierra, utc(2024, 6, 3, 8), [(c.team_w, 2)])
    w.set_quantity(s, utc(2024, 8, 20, 20), c.team_w, 3)

    return w.run(NOW)


#: What `random_world` draws a subscription's steps from.
STEPS = ("seats", "seats_now", "upgrade", "add", "remove", "discount", "yearly", "end")


def random_world(seed: int, version: str = LEGACY, customers: int = 3) -> World:
    """A few customers with random lifecycles drawn from what invoices show exactly.

    Changes fall mid-period (never on a renewal's second), discounts start and end on
    renewals, and each subscription's steps are at least a day apart.
    """
    rng = random.Random(seed)
    w = World(version, seed)
    c = catalog(w)
    monthly_usd = [c.basic, c.pro, c.plus]
    for n in range(customers):
        eur = rng.random() < 0.3
        prices = [c.e_basic, c.e_pro] if eur else monthly_usd
        addon = c.e_addon if eur else c.addon
        t = START + rng.randrange(0, days(120)) + rng.randrange(0, 86_400)
        cust = w.customer(t - 3600, currency="eur" if eur else "usd", name=f"R{seed}-{n}")
        for _ in range(rng.randint(1, 2)):
            _random_subscription(w, rng, c, cust, t, prices, addon)
            t += days(rng.randint(30, 200))
    return w.run(NOW)


def _random_subscription(
    w: World,
    rng: random.Random,
    c: Catalog,
    cust: str,
    start: int,
    prices: list[Price],
    addon: Price,
) -> None:
    price = rng.choice(prices)
    trial = rng.choice([None, None, 7, 14])
    outcome = rng.choice(["convert", "convert", "cancel", "pause"])
    coupon = c.forever20 if rng.random() < 0.2 else None
    quantity = rng.randint(1, 4)
    sub = w.subscribe(
        cust, start, [(price, quantity)], trial_days=trial, trial_outcome=outcome, coupon=coupon
    )
    anchor = start + (trial or 0) * 86_400
    current, has_addon, has_discount = price, False, coupon is not None
    t = anchor
    for _ in range(rng.randint(0, 5)):
        k = rng.randint(1, 3)
        period_start = boundary(anchor, "month", 1, _months_after(anchor, t) + k)
        period_end = boundary(anchor, "month", 1, _months_after(anchor, t) + k + 1)
        mid = period_start + rng.randrange(3600, period_end - period_start - 3600)
        if mid > NOW:
            break
        step = rng.choice(STEPS)
        if step in ("seats", "seats_now"):
            quantity = quantity % 5 + 1
            behavior = "always_invoice" if step == "seats_now" else "create_prorations"
            w.set_quantity(sub, mid, current, quantity, behavior)
        elif step == "upgrade":
            new = rng.choice([p for p in prices if p is not current])
            w.swap_price(
                sub, mid, current, new, rng.choice(["create_prorations", "always_invoice"])
            )
            current = new
        elif step == "add" and not has_addon:
            w.add_item(sub, mid, addon, rng.randint(1, 3))
            has_addon = True
        elif step == "remove" and has_addon:
            w.remove_item(sub, mid, addon)
            has_addon = False
        elif step == "discount":
            if has_discount:
                w.remove_discount(sub, period_start)
            else:
                w.apply_coupon(sub, period_start, c.forever10)
            has_discount = not has_discount
        elif step == "yearly" and not has_addon and current in (c.basic, c.pro, c.plus):
            yearly = {c.basic.id: c.basic_y, c.pro.id: c.pro_y, c.plus.id: c.plus_y}[current.id]
            w.swap_price(sub, mid, current, yearly)
            return  # a new anchor: later steps would need its calendar
        elif step == "end":
            w.cancel(
                sub,
                mid,
                at_period_end=rng.random() < 0.5,
                feedback=rng.choice([None, "too_expensive", "unused", "missing_features"]),
            )
            return
        t = period_end


def _months_after(anchor: int, t: int) -> int:
    """How many monthly boundaries of `anchor` lie at or before `t`."""
    k = 0
    while boundary(anchor, "month", 1, k + 1) <= t:
        k += 1
    return k
