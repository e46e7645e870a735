"""Generated subscription lifecycles: the same builder feeds hypothesis and the race tests."""

from __future__ import annotations

import random
from typing import Any

from tests import factories as f

T0 = 1704067200  # 2024-01-01
PRICES = [
    f.price("price_s", 1000, product="prod_s"),
    f.price("price_m", 2500, product="prod_m"),
    f.price("price_y", 10000, interval="year", product="prod_y"),
    f.price("price_w", 700, interval="week", product="prod_w"),
    f.price("price_eur", 900, currency="eur", product="prod_eur"),
]
STATUSES = ["active", "active", "active", "past_due", "trialing", "unpaid", "paused"]
COUPON = f.coupon("C10", percent_off=10.0)
#: Small time steps, including 0, so same-second bursts are common.
STEPS = [0, 0, 1, 60, 86400, 86400 * 9, 86400 * 40]


def build_events(customer: str, subs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events = []
    for n, spec in enumerate(subs):
        sub_id = f"sub_{customer}_{n}"
        t = T0 + spec["start"]
        snaps = spec["snapshots"]
        for k, shot in enumerate(snaps):
            t += shot["step"] if k else 0
            if spec["eur"]:
                items = [f.item(PRICES[4], shot["quantity"])]
                currency = "eur"
            else:
                items = [
                    f.item(PRICES[i], shot["quantity"] if j == 0 else 1)
                    for j, i in enumerate(shot["prices"])
                ]
                currency = "usd"
            obj = f.subscription(
                sub_id,
                customer,
                items,
                status=shot["status"],
                currency=currency,
                discounts=[f.discount(f"di_{sub_id}", COUPON)] if shot["discount"] else [],
                cancel_at_period_end=shot["cancel_at_period_end"],
            )
            kind = "created" if k == 0 else "updated"
            events.append(f.event(f"evt_{sub_id}_{k}", f"customer.subscription.{kind}", t, obj))
        if spec["deleted"]:
            last = events[-1]["data"]["object"]
            gone = {**last, "status": "canceled"}
            events.append(
                f.event(
                    f"evt_{sub_id}_del",
                    "customer.subscription.deleted",
                    t + snaps[-1]["step"],
                    gone,
                )
            )
    return events


def random_specs(rng: random.Random) -> list[dict[str, Any]]:
    """One customer's subscriptions, drawn like the hypothesis strategies draw them."""
    return [
        {
            "eur": rng.random() < 0.2,
            "start": rng.randrange(0, 86400 * 200),
            "snapshots": [
                {
                    "status": rng.choice(STATUSES),
                    "prices": rng.sample(range(4), rng.randint(1, 3)),
                    "quantity": rng.randint(0, 7),
                    "discount": rng.random() < 0.3,
                    "cancel_at_period_end": rng.random() < 0.2,
                    "step": rng.choice(STEPS),
                }
                for _ in range(rng.randint(1, 8))
            ],
            "deleted": rng.random() < 0.4,
        }
        for _ in range(rng.randint(1, 3))
    ]


def random_events(seed: int, customers: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for n in range(customers):
        events.extend(build_events(f"cus_r{n}", random_specs(rng)))
    return events
