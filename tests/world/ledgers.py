"""Ledgers and reports of a world: from its webhooks, or from histories of its invoices.

`report` gathers everything issue 18 asks to be equal between the two: every monthly
row (all fields), each customer's MRR and scheduled churn, and the cohort flows and
tables, per currency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from ledger.events import SubscriptionEvent, is_subscription_event, parse_event
from ledger.history import History, history
from ledger.mrr import Catalog
from ledger.snapshot import parse_coupon
from ledger.timeline import CustomerLedger, derive_ledger
from reporting.cohorts import CohortFlow, cohort_table
from reporting.periods import Period
from reporting.rows import Opening, buckets_from_movements, day_of, period_rows
from tests.world.scenarios import NOW, START
from tests.world.stripe import World


def subscription_events(envelopes: Iterable[Mapping[str, Any]]) -> list[SubscriptionEvent]:
    return [parse_event(e) for e in envelopes if is_subscription_event(str(e["type"]))]


def world_catalog(world: World) -> Catalog:
    """What the pipeline's enrichment would fetch for the webhooks: every discount's
    coupon (basil+ webhooks name discounts by id), every coupon."""
    coupons = {}
    for raw in world.coupons().values():
        coupon = parse_coupon(raw)
        assert coupon is not None
        coupons[coupon.id] = coupon
    return Catalog(
        coupons=coupons,
        discount_coupons={d.id: d.coupon.id for d in world.discounts().values()},
    )


def derive(
    events: Iterable[SubscriptionEvent], catalog: Catalog | None = None
) -> dict[str, CustomerLedger]:
    """Each customer's ledger from the set of events."""
    by_customer: dict[str, list[SubscriptionEvent]] = defaultdict(list)
    for e in events:
        by_customer[e.customer].append(e)
    return {
        c: derive_ledger(c, evs, catalog or Catalog()) for c, evs in sorted(by_customer.items())
    }


def histories(
    world: World,
    until: Mapping[str, int | None] | None = None,
    *,
    expand_coupons: bool = False,
) -> list[History]:
    """Every subscription's history from what the world's API lists (as `mrr backfill`
    would list it: invoices with `expand[]=data.discounts`), each up to `until[sub]`."""
    made = []
    for sub in world.subscriptions():
        made.append(
            history(
                sub,
                world.invoices(sub["id"], expand_coupons=expand_coupons),
                until=(until or {}).get(sub["id"]),
                api_version=world.version,
                prices=world.prices(),
                coupons=world.coupons(),
                pending=world.pending_invoice_items(),
            )
        )
    return made


def report(
    ledgers: Mapping[str, CustomerLedger], start: date | None = None, end: date | None = None
) -> dict[str, Any]:
    """Monthly rows, customers' MRR and cohorts of a set of ledgers, per currency."""
    start = start or day_of(START)
    end = end or day_of(NOW)
    movements = [m for led in ledgers.values() for m in led.movements]
    balances = [b for led in ledgers.values() for b in led.balances]
    currencies = sorted({m.currency for m in movements} | {b.currency for b in balances})
    first_new = {(b.customer_id, b.currency): b.first_new_at for b in balances}
    doc: dict[str, Any] = {"rows": {}, "flows": {}, "cohorts": {}}
    for currency in currencies:
        mine = [m for m in movements if m.currency == currency]
        rows = period_rows(Opening(), buckets_from_movements(mine), start, end, Period.MONTH)
        doc["rows"][currency] = [r.to_json() for r in rows]
        flows: dict[tuple[date, date, str], list[int]] = defaultdict(lambda: [0, 0])
        for m in mine:
            first = first_new.get((m.customer_id, currency))
            if first is None:
                continue
            key = (day_of(first).replace(day=1), day_of(m.occurred_at).replace(day=1), m.type.value)
            flows[key][0] += m.amount
            flows[key][1] += 1
        cohort_flows = [CohortFlow(k[0], k[1], k[2], v[0], v[1]) for k, v in sorted(flows.items())]
        doc["flows"][currency] = cohort_flows
        doc["cohorts"][currency] = cohort_table(cohort_flows, start, end)
    doc["mrr"] = {
        f"{b.customer_id}/{b.currency}": (b.mrr, b.scheduled_churn, b.first_new_at)
        for b in sorted(balances, key=lambda b: (b.customer_id, b.currency))
    }
    doc["subscriptions"] = {
        s.id: (s.status, s.mrr, s.scheduled_to_cancel)
        for led in ledgers.values()
        for s in led.subscriptions
    }
    return doc


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Where two reports differ, one line per differing month, customer or cohort: a
    readable failure instead of one huge diff."""
    out = []
    for currency in sorted(set(a["rows"]) | set(b["rows"])):
        rows_a, rows_b = a["rows"].get(currency, []), b["rows"].get(currency, [])
        for ra, rb in zip(rows_a, rows_b, strict=False):
            if ra != rb:
                keys = [k for k in ra if ra[k] != rb.get(k)]
                out.append(
                    f"{currency} {ra['period_start']}: "
                    + ", ".join(f"{k} {ra[k]} != {rb.get(k)}" for k in keys)
                )
        if len(rows_a) != len(rows_b):
            out.append(f"{currency}: {len(rows_a)} rows != {len(rows_b)}")
        if a["flows"].get(currency) != b["flows"].get(currency):
            out.append(f"{currency}: cohort flows differ")
    for key in sorted(set(a["mrr"]) | set(b["mrr"])):
        if a["mrr"].get(key) != b["mrr"].get(key):
            out.append(f"MRR of {key}: {a['mrr'].get(key)} != {b['mrr'].get(key)}")
    for key in sorted(set(a["subscriptions"]) | set(b["subscriptions"])):
        if a["subscriptions"].get(key) != b["subscriptions"].get(key):
            out.append(
                f"subscription {key}: {a['subscriptions'].get(key)} != "
                f"{b['subscriptions'].get(key)}"
            )
    return out
