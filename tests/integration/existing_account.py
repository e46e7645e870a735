"""A Stripe account that was billing long before the service was installed: every
subscription's whole history as real-shaped events (with exact `previous_attributes`),
and Stripe's current object of each, all relative to `now`.

* `cus_old`: created two years ago, upgraded a year ago, three updates in the window
  (seats up, a forever discount, seats down);
* `cus_trial`: started 60 days ago with a 14-day trial that converted before the window;
* `cus_late`: a trial from its start that converts inside the window;
* `cus_gone`: canceled a year ago;
* `cus_churn`: legacy-shaped events; set to cancel, then canceled inside the window;
* `cus_multi`: two subscriptions, in usd and in eur, the eur one grows in the window;
* `cus_fresh`: created inside the window (its real `created` event is there).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ledger.mrr import subscription_mrr
from ledger.snapshot import parse_subscription
from tests import factories as f

DAY = 86400
WINDOW_DAYS = 30
BASIC = f.price("price_basic", 1000, product="prod_basic")
PRO = f.price("price_pro", 3000, product="prod_pro")
EUR = f.price("price_eur", 4900, currency="eur", product="prod_eur")
TEN_FOREVER = f.coupon("TEN", percent_off=10.0)


@dataclass
class Account:
    now: int
    #: Every event Stripe ever sent, oldest first (the Events API keeps the last 30 days).
    events: list[dict[str, Any]]
    #: Stripe's current object of every subscription.
    subscriptions: list[dict[str, Any]]

    @property
    def window_start(self) -> int:
        return self.now - WINDOW_DAYS * DAY

    def in_window(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["created"] >= self.window_start]

    def stripe_mrr(self) -> dict[tuple[str, str], int]:
        """Each customer's MRR per currency, from Stripe's current objects alone."""
        totals: dict[tuple[str, str], int] = {}
        for obj in self.subscriptions:
            snapshot = parse_subscription(obj)
            key = (snapshot.customer, snapshot.currency)
            totals[key] = totals.get(key, 0) + subscription_mrr(snapshot).amount
        return totals


class _History:
    """One subscription's states; each step records the event Stripe sends for it."""

    def __init__(self, account: Account, sub_id: str, legacy: bool = False) -> None:
        self.account, self.sub_id, self.legacy = account, sub_id, legacy
        self.state: dict[str, Any] | None = None
        self.steps = 0

    def send(self, kind: str, at: int, state: dict[str, Any]) -> None:
        previous = None
        if kind == "updated" and self.state is not None:
            previous = {k: copy.deepcopy(v) for k, v in self.state.items() if state.get(k) != v}
        self.steps += 1
        self.account.events.append(
            f.event(
                f"evt_{self.sub_id.removeprefix('sub_')}_{self.steps}",
                f"customer.subscription.{kind}",
                at,
                state,
                previous_attributes=previous,
                api_version=f.LEGACY_VERSION if self.legacy else f.BASIL_VERSION,
            )
        )
        self.state = copy.deepcopy(state)


def _sub(
    sub_id: str,
    customer: str,
    prices: list[tuple[dict[str, Any], int]],
    start: int,
    legacy: bool = False,
    **kw: Any,
) -> dict[str, Any]:
    items = [
        f.item(p, q, item_id=f"si_{sub_id}_{n}", legacy=legacy) for n, (p, q) in enumerate(prices)
    ]
    currency = prices[0][0]["currency"]
    return f.subscription(
        sub_id, customer, items, created=start, legacy=legacy, currency=currency, **kw
    )


def _ended(state: dict[str, Any], at: int, feedback: str | None = None) -> dict[str, Any]:
    return {
        **state,
        "status": "canceled",
        "canceled_at": at,
        "ended_at": at,
        "cancellation_details": {
            "comment": None,
            "feedback": feedback,
            "reason": "cancellation_requested",
        },
    }


def existing_account(now: int) -> Account:
    account = Account(now, [], [])
    current: dict[str, dict[str, Any]] = {}

    # cus_old: two years of history, three changes inside the window.
    start = now - 730 * DAY
    h = _History(account, "sub_old")
    h.send("created", start, _sub("sub_old", "cus_old", [(BASIC, 3)], start))
    h.send("updated", now - 365 * DAY, _sub("sub_old", "cus_old", [(PRO, 3)], start))
    h.send("updated", now - 20 * DAY, _sub("sub_old", "cus_old", [(PRO, 5)], start))
    discount = f.discount("di_old_ten", TEN_FOREVER)
    h.send(
        "updated",
        now - 10 * DAY,
        _sub("sub_old", "cus_old", [(PRO, 5)], start, discounts=[discount]),
    )
    h.send(
        "updated",
        now - 3 * DAY,
        _sub("sub_old", "cus_old", [(PRO, 4)], start, discounts=[discount]),
    )
    current["sub_old"] = h.state or {}

    # cus_trial: a trial from its start, converted before the window.
    start = now - 60 * DAY
    trial = {"trial_start": start, "trial_end": start + 14 * DAY}
    h = _History(account, "sub_trial")
    h.send(
        "created",
        start,
        {**_sub("sub_trial", "cus_trial", [(BASIC, 1)], start, status="trialing"), **trial},
    )
    h.send(
        "updated",
        start + 14 * DAY,
        {**_sub("sub_trial", "cus_trial", [(BASIC, 1)], start), **trial},
    )
    current["sub_trial"] = h.state or {}

    # cus_late: the trial converts inside the window.
    start = now - 40 * DAY
    trial = {"trial_start": start, "trial_end": start + 14 * DAY}
    h = _History(account, "sub_late")
    h.send(
        "created",
        start,
        {**_sub("sub_late", "cus_late", [(PRO, 1)], start, status="trialing"), **trial},
    )
    h.send(
        "updated", start + 14 * DAY, {**_sub("sub_late", "cus_late", [(PRO, 1)], start), **trial}
    )
    current["sub_late"] = h.state or {}

    # cus_gone: canceled a year ago, nothing since.
    start = now - 730 * DAY
    h = _History(account, "sub_gone")
    h.send("created", start, _sub("sub_gone", "cus_gone", [(PRO, 2)], start))
    h.send("deleted", now - 365 * DAY, _ended(h.state or {}, now - 365 * DAY))
    current["sub_gone"] = h.state or {}

    # cus_churn: legacy-shaped; set to cancel at period end, then canceled in the window.
    start = now - 540 * DAY
    h = _History(account, "sub_churn", legacy=True)
    h.send("created", start, _sub("sub_churn", "cus_churn", [(PRO, 1)], start, legacy=True))
    h.send(
        "updated",
        now - 15 * DAY,
        _sub("sub_churn", "cus_churn", [(PRO, 1)], start, legacy=True, cancel_at_period_end=True),
    )
    h.send("deleted", now - 2 * DAY, _ended(h.state or {}, now - 2 * DAY, "too_expensive"))
    # Stripe's current objects come in the account's (basil) shape.
    current["sub_churn"] = _ended(
        _sub("sub_churn", "cus_churn", [(PRO, 1)], start, cancel_at_period_end=True),
        now - 2 * DAY,
        "too_expensive",
    )

    # cus_multi: a usd and an eur subscription; the eur one grows in the window.
    usd_start, eur_start = now - 365 * DAY, now - 90 * DAY
    h = _History(account, "sub_multi_usd")
    h.send("created", usd_start, _sub("sub_multi_usd", "cus_multi", [(BASIC, 2)], usd_start))
    current["sub_multi_usd"] = h.state or {}
    h = _History(account, "sub_multi_eur")
    h.send("created", eur_start, _sub("sub_multi_eur", "cus_multi", [(EUR, 1)], eur_start))
    h.send("updated", now - 7 * DAY, _sub("sub_multi_eur", "cus_multi", [(EUR, 3)], eur_start))
    current["sub_multi_eur"] = h.state or {}

    # cus_fresh: created inside the window.
    start = now - 5 * DAY
    h = _History(account, "sub_fresh")
    h.send("created", start, _sub("sub_fresh", "cus_fresh", [(BASIC, 1)], start))
    current["sub_fresh"] = h.state or {}

    account.events.sort(key=lambda e: (e["created"], e["id"]))
    account.subscriptions = [current[s] for s in sorted(current)]
    return account
