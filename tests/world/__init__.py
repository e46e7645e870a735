"""A Stripe world for tests: scripted customers and subscriptions, rendered both as the
webhooks Stripe would have sent and as what its API lists afterwards.

`World` (tests/world/stripe.py) plays a script in time order, doing what Stripe does by
itself on the way (renewals, trial ends, cancellations at period end), and renders
every object in the shape of one API version: legacy (2024-06-20), basil
(2025-03-31.basil) or clover (2025-09-30.clover), see `tests.world.render`.
`tests.world.scenarios` holds the scripted lifecycles (`central`) and random small
worlds (`random_world`); `tests.world.ledgers` derives ledgers and reports from either
side. Ids, usage and every figure are deterministic given the seed.

How it bills, after Stripe's documentation (Billing › Subscriptions: "Prorations",
"Set the billing cycle date", "Usage-based billing", the API reference of invoices,
invoice line items and invoice items, and the changelogs of 2015-04-07 and
2025-03-31) and the recorded invoices of ../shared/stripe-samples:

* a subscription's first invoice (`subscription_create`) bills its licensed items for
  the first period, in advance; each renewal (`subscription_cycle`) bills the next
  period's licensed items, metered usage since it was last billed (in arrears, from
  the item's creation or the previous renewal) and the pending prorations;
* billing periods follow the anchor (`tests.world.calendar`): monthly periods keep the
  anchor's day (clamped to short months) and time; yearly, weekly likewise;
* a trial bills a zero invoice whose lines ("Trial period for …") cover the trial, and
  at its end converts (an invoice from `trial_end`, which anchors the cycle), is
  canceled, or is paused (`trial_settings.end_behavior.missing_payment_method`);
* a change of quantity or price, an item added or removed, mid-period, prorates: a
  credit ("Unused time on …", negative, the item as it was) and a debit ("Remaining
  time on …", the item as it is), both over [change, period end), amounts to the
  second and net of a percentage discount; `create_prorations` leaves them pending
  (`GET /v1/invoiceitems?pending=true`) until the next invoice, `always_invoice`
  invoices them at once (`subscription_update`), `none` bills nothing;
* a new billing interval (monthly → yearly) credits the unused time, bills usage so
  far and a whole new period from the change, at once, and anchors the cycle there
  (as the recorded pay invoice of 2023 shows: no "Remaining time" line);
* a discount applies from when it is applied; invoices list it while it is on the
  subscription (`discount`/`discounts`, lines' `discount_amounts`);
* a cancellation at period end sets `cancel_at_period_end` and `canceled_at` (the
  request), the subscription ends at the period's end; an immediate one ends it now;
* a reactivation is a new subscription.

Simplifications (each one something no test here relies on Stripe doing otherwise):

* one subscription-level discount at a time, `forever` coupons only (percent or amount
  off); no item-level, customer-level, `once` or `repeating` discounts; amount-off
  coupons do not reduce proration amounts;
* no taxes, no tiered or transformed prices, no subscription schedules, no
  `pause_collection`, no quantity 0, no `billing_cycle_anchor` in the future, no
  backdating; every payment succeeds at once (no `incomplete` start, no `past_due`);
* all items of a subscription share its billing interval; a new interval is only
  scripted on one-item subscriptions;
* metered items are not combined with trials and never removed; a metered item added
  mid-period has its first usage line start when it was added;
* during a trial, changes prorate nothing;
* no final invoice at a cancellation (`invoice_now` and `prorate` left false), and
  pending prorations of a canceled subscription are dropped; usage of a metered item in
  its last period is never invoiced;
* a `paused` subscription takes no change but its cancellation; an `unpaid` one
  (`mark_unpaid`, retries exhausted) keeps renewing into drafts, which are not listed;
* webhooks are the `customer.subscription.*` and `customer.*` events only (no
  `invoice.*`), each sent once, in order; `previous_attributes` lists the old values of
  what changed (hashes key by key, lists and scalars whole);
* Discount objects are rendered expanded in invoices when asked (the backfill lists
  invoices with `expand[]=data.discounts`); clover's `source.coupon` is an id unless
  `expand_coupons` is set.
"""

from tests.world.model import BASIL, CLOVER, LEGACY, VERSIONS
from tests.world.stripe import World

__all__ = ["BASIL", "CLOVER", "LEGACY", "VERSIONS", "World"]
