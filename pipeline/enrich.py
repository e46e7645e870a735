"""What webhooks leave out, from Stripe's API, cached in the database (SPEC §7).

Webhooks never carry price `tiers`, and basil+ payloads carry discounts as ids. With
`STRIPE_API_KEY` set, the worker fetches them once through stripe-python's
`StripeClient` and caches them in `stripe_objects`: prices' tiers and coupons are
immutable, and a discount never changes its coupon, so the cache never goes stale and
the ledger stays a function of the events. Without a key nothing is fetched: the
ledger prices without the details and the events carry a warning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import stripe
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from ledger.mrr import Catalog, Need, needs
from ledger.snapshot import Coupon, Snapshot, Tier, parse_coupon, parse_tiers
from models.clock import utcnow
from models.db import transaction
from models.tables import StripeObject
from pipeline.settings import Settings

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


def fetch_missing(factory: sessionmaker[Session], settings: Settings, wanted: set[Need]) -> int:
    """Fetch what the ledger lacks from Stripe and cache it; returns how many objects.

    Call it with no database lock held: it waits on the network. Nothing happens
    without an API key. A Stripe error other than "no such object" raises, so the job
    is retried.
    """
    if not wanted or settings.stripe_api_key is None:
        return 0
    client = stripe_client(settings)
    fetched: dict[tuple[str, str], Any] = {}
    for need in sorted(wanted, key=lambda n: (n.kind, n.id)):
        fetched.update(_fetch(client, need))
    # Coupons named by freshly fetched discounts.
    with factory() as session:
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
    with transaction(factory) as session:
        _store(session, fetched)
    return len(fetched)


class RetryingHTTPClient(stripe.RequestsClient):
    """stripe-python's `requests` client, which also retries rate limits (HTTP 429).

    stripe-python retries connection errors, 409 and 5xx with exponential backoff and
    jitter, but a 429 only when Stripe adds `Stripe-Should-Retry: true` (lock
    timeouts). Listing a whole account can hit the rate limit itself, and the right
    answer to that is the same backoff (SPEC §9), unless Stripe says not to retry.
    """

    def _should_retry(
        self,
        response: tuple[Any, int, Mapping[str, str] | None] | None,
        api_connection_error: stripe.APIConnectionError | None,
        num_retries: int,
        max_network_retries: int | None,
    ) -> bool:
        if response is not None and response[1] == 429 and num_retries < (max_network_retries or 0):
            headers = response[2]
            return headers is None or headers.get("stripe-should-retry") != "false"
        return bool(
            super()._should_retry(response, api_connection_error, num_retries, max_network_retries)
        )


def stripe_client(settings: Settings, *, max_network_retries: int = 2) -> stripe.StripeClient:
    """A client for `STRIPE_API_KEY` at `STRIPE_API_BASE`, retrying 429, 409, 5xx and
    connection errors up to `max_network_retries` times with stripe-python's backoff."""
    base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
    assert settings.stripe_api_key is not None
    return stripe.StripeClient(
        settings.stripe_api_key,
        base_addresses=base,  # type: ignore[arg-type]
        http_client=RetryingHTTPClient(),
        max_network_retries=max_network_retries,
    )


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
    for (kind, obj_id), value in fetched.items():
        if session.get(StripeObject, (kind, obj_id)) is None:
            session.add(
                StripeObject(kind=kind, id=obj_id, payload=json.dumps(value), fetched_at=utcnow())
            )


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


def plain(obj: Any) -> dict[str, Any]:
    """A StripeObject as plain JSON data, as the API sent it."""
    data = obj.to_dict(recursive=True) if hasattr(obj, "to_dict") else obj
    # stripe-python turns `*_decimal` strings into Decimal; back to the API's strings.
    plain: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return plain
