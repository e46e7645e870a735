"""What webhooks leave out, from Stripe's API, cached in the database (SPEC §7).

Webhooks never carry price `tiers`, and basil+ payloads carry discounts as ids. With
`STRIPE_API_KEY` set, the worker fetches them once through stripe-python's
`StripeClient` and caches them in `stripe_objects`: prices' tiers and coupons are
immutable, and a discount never changes its coupon, so the cache never goes stale and
the ledger stays a function of the events. Without a key nothing is fetched: the
ledger prices without the details and the events carry a warning.

A customer's attributes (country, metadata: SPEC §11) come from `customer.*` webhooks
and `mrr backfill`; with a key, a customer the worker applies that was never seen as an
object is fetched once (`GET /v1/customers/{id}`) and stored like the backfill's list,
as a synthetic `customer.updated` event dated when it was fetched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import stripe
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from adapters.stripe_http import plain
from ledger.mrr import Catalog, Need, needs
from ledger.snapshot import Coupon, Snapshot, Tier, parse_coupon, parse_tiers
from ledger.synthetic import CUSTOMER_UPDATED, customer_snapshot_id
from models import customers as customer_store
from models import inbox
from models.clock import utcnow
from models.db import dialect_insert, transaction
from models.tables import CustomerRow, StripeObject
from pipeline import intake
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

#: From this API version a Discount names its coupon under `source.coupon`.
CLOVER = "2025-09-30"


def subscription_expand(api_version: str) -> list[str]:
    """Expansions that resolve a subscription's discount ids to coupons.

    Discounts sit at both levels; a coupon left as an id is fetched on its own.
    `discounts.source.coupon` only exists from clover on, and expanding a field the
    pinned version lacks is an error, so it depends on stripe-python's API version.
    """
    expand = ["discounts", "items.data.discounts"]
    if api_version[:10] >= CLOVER:
        expand.insert(1, "discounts.source.coupon")
    return expand


def fetch_missing(runtime: Runtime, wanted: set[Need]) -> int:
    """Fetch what the ledger lacks from Stripe and cache it; returns how many objects.

    Call it with no database lock held: it waits on the network. Nothing happens
    without an API key. A Stripe error other than "no such object" raises, so the job
    is retried.
    """
    if not wanted or runtime.settings.stripe_api_key is None:
        return 0
    client = runtime.stripe()
    fetched: dict[tuple[str, str], Any] = {}
    for need in sorted(wanted, key=lambda n: (n.kind, n.id)):
        fetched.update(_fetch(client, need))
    # Coupons named by freshly fetched discounts.
    with runtime.sessions() as session:
        known = set(
            _load(
                session,
                {("coupon", v["coupon"]) for (k, _), v in fetched.items() if k == "discount"},
            )
        )
    for kind, _id in list(fetched):
        if kind == "discount":
            coupon_id = fetched[(kind, _id)]["coupon"]
            if ("coupon", coupon_id) not in fetched and ("coupon", coupon_id) not in known:
                fetched.update(_fetch(client, Need("coupon", coupon_id)))
    with transaction(runtime.sessions) as session:
        _store(session, fetched)
    return len(fetched)


def customer_event(obj: Mapping[str, Any], at: int) -> dict[str, Any]:
    """A listed or fetched Customer object as a synthetic `customer.updated` event dated
    `at` (unix seconds), named by its content: storing it again adds nothing."""
    return {
        "id": customer_snapshot_id(str(obj["id"]), obj),
        "object": "event",
        "type": CUSTOMER_UPDATED,
        "created": at,
        "api_version": stripe.api_version,
        "livemode": bool(obj.get("livemode", False)),
        "data": {"object": dict(obj)},
        "synthetic": True,
    }


def fetch_customers(runtime: Runtime, customer_ids: Iterable[str]) -> int:
    """The attributes of the customers among `customer_ids` never seen as an object,
    from Stripe (SPEC §11); returns how many were stored. Nothing without an API key.

    Call it with no database lock held: it waits on the network. Best effort: a Stripe
    error is logged and the customer stays `none` until its next event or a backfill.
    """
    if runtime.settings.stripe_api_key is None:
        return 0
    wanted = sorted(set(customer_ids))
    if not wanted:
        return 0
    with runtime.sessions() as session:
        known = set(session.scalars(select(CustomerRow.id).where(CustomerRow.id.in_(wanted))))
    unseen = [c for c in wanted if c not in known]
    if not unseen:
        return 0
    client = runtime.stripe()
    at = int(utcnow().timestamp())
    made = []
    for customer_id in unseen:
        try:
            obj = plain(client.v1.customers.retrieve(customer_id))
        except stripe.StripeError as exc:
            log.warning("could not fetch customer %s: %s", customer_id, exc.user_message or exc)
            continue
        if isinstance(obj.get("id"), str):
            made.append(customer_event(obj, at))
    stored = intake.store_many(runtime, [(e, json.dumps(e)) for e in made], synthetic=True)
    ids = [s.event_id for s in stored if s.pending]
    with transaction(runtime.sessions) as session:
        customer_store.record_from_inbox(session, ids)
        inbox.mark_ignored(session, ids)
    return len(made)


def cache_objects(runtime: Runtime, objects: Mapping[tuple[str, str], Any]) -> None:
    """Cache objects learnt elsewhere (`mrr backfill` reads discounts from invoices),
    keyed and shaped as `fetch_missing` caches them; what is cached already stays."""
    if objects:
        with transaction(runtime.sessions) as session:
            _store(session, objects)


def missing(snapshots: Iterable[Snapshot], catalog: Catalog) -> set[Need]:
    """Everything the snapshots need that `catalog` lacks."""
    wanted: set[Need] = set()
    for snap in snapshots:
        wanted |= needs(snap, catalog)
    return wanted


def cached_catalog(session: Session, snapshots: Iterable[Snapshot]) -> Catalog:
    """Catalog of every cached object the snapshots name (two small keyed queries)."""
    first = missing(snapshots, Catalog())
    rows = _load(session, {(n.kind, n.id) for n in first})
    discounts = {k[1]: json.loads(v)["coupon"] for k, v in rows.items() if k[0] == "discount"}
    more = {("coupon", c) for c in discounts.values()} - set(rows)
    rows.update(_load(session, more))
    tiers: dict[str, tuple[Tier, ...]] = {}
    coupons: dict[str, Coupon] = {}
    for (kind, obj_id), payload in rows.items():
        if kind in ("price", "plan"):
            tiers[obj_id] = parse_tiers(json.loads(payload), f"{kind} {obj_id}")
        elif kind == "coupon":
            coupon = parse_coupon(json.loads(payload))
            if coupon is not None:
                coupons[obj_id] = coupon
    return Catalog(tiers=tiers, coupons=coupons, discount_coupons=discounts)


def _load(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    if not keys:
        return {}
    found = session.execute(
        select(StripeObject.kind, StripeObject.id, StripeObject.payload).where(
            tuple_(StripeObject.kind, StripeObject.id).in_(sorted(keys))
        )
    )
    return {(k, i): p for k, i, p in found}


def _store(session: Session, fetched: Mapping[tuple[str, str], Any]) -> None:
    """Insert what is not cached yet. Two workers may fetch the same object at once (two
    hosts applying two customers on one price): the second insert is ignored instead of
    failing its job on the primary key (the objects are immutable, either copy will do)."""
    if not fetched:
        return
    rows = [
        {"kind": kind, "id": obj_id, "payload": json.dumps(value), "fetched_at": utcnow()}
        for (kind, obj_id), value in sorted(fetched.items())
    ]
    insert = dialect_insert(session)(StripeObject).values(rows)
    session.execute(insert.on_conflict_do_nothing(index_elements=["kind", "id"]))


def _fetch(client: stripe.StripeClient, need: Need) -> dict[tuple[str, str], Any]:
    """Fetch one missing object; what it yields is keyed (kind, id) → what we cache."""
    try:
        if need.kind == "price":
            price = client.v1.prices.retrieve(need.id, params={"expand": ["tiers"]})
            return {("price", need.id): plain(price).get("tiers") or []}
        if need.kind == "plan":
            plan = client.v1.plans.retrieve(need.id, params={"expand": ["tiers"]})
            return {("plan", need.id): plain(plan).get("tiers") or []}
        if need.kind == "coupon":
            return {("coupon", need.id): plain(client.v1.coupons.retrieve(need.id))}
        if need.kind == "discount" and need.subscription:
            sub = client.v1.subscriptions.retrieve(
                need.subscription, params={"expand": subscription_expand(stripe.api_version)}
            )
            return _discounts_of(plain(sub))
    except stripe.InvalidRequestError as exc:
        # Gone or never existed: nothing to cache; the event keeps its warning.
        log.warning("Stripe has no %s %s: %s", need.kind, need.id, exc.user_message or exc)
    return {}


def _discounts_of(sub: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    raw = list(sub.get("discounts") or [])
    for item in (sub.get("items") or {}).get("data") or []:
        raw.extend(item.get("discounts") or [])
    for disc in raw:
        if not isinstance(disc, Mapping) or not disc.get("id"):
            continue
        coupon = disc.get("coupon")
        source = disc.get("source")
        if coupon is None and isinstance(source, Mapping):
            coupon = source.get("coupon")
        if isinstance(coupon, Mapping) and coupon.get("id"):
            found[("coupon", coupon["id"])] = coupon
            coupon = coupon["id"]
        if isinstance(coupon, str):
            found[("discount", disc["id"])] = {"coupon": coupon}
    return found
