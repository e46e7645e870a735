"""Existing Stripe accounts: the Events API's window, then the whole history of every
subscription whose beginning the inbox lacks, rebuilt from its invoices, stored through
the same intake as webhooks and applied like them (SPEC §9).

The run lists, with `limit=100` pages: the window's `customer.subscription.*` and
`customer.*` events, every customer, every subscription (`status=all`), every invoice
(with `expand[]=data.discounts`; an invoice whose embedded lines have more pages gets
them from `GET /v1/invoices/{id}/lines`), and the pending invoice items; then it
fetches each price and coupon the invoices name but do not carry, once. Each
subscription whose earliest stored event is not its `created` gets the synthetic events
`ledger.history.history` makes of its invoices up to that event (all of its life when
none is stored).

Every page read is stored and committed before the next is fetched, and every event,
Stripe's or synthetic, has a fixed id: an interrupted run is simply started again, and
stores only what is still missing. A subscription's history replaces the synthetic
history an earlier run stored for it when the two differ (an earlier version's
"opening" states, or a history made before more invoices existed), and the customer's
ledger is derived again. A first backfill on PostgreSQL applies by deriving the whole
ledger through `mrr rebuild`'s bulk path (`_apply`). Customer events are recorded as
each page is stored. Events stored here and not applied yet (a run killed before its
end) stay pending: the next run, or the worker's sweeper, applies them.

Customers are stored as synthetic `customer.updated` events of the object as listed,
named by a digest of its content (`ledger.synthetic.customer_snapshot_id`): listing an
unchanged customer again adds nothing, a changed one adds its new state.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar

import orjson
import stripe

from adapters.stripe_http import RetryingHTTPClient
from ledger.customers import CUSTOMER_EVENT_TYPES, customer_attributes
from ledger.errors import InvalidEvent, LedgerError
from ledger.events import SUBSCRIPTION_EVENT_TYPES, parse_event
from ledger.history import history
from ledger.invoices import (
    Invoice,
    discounts_by_id,
    invoice_subscription,
    missing_coupons,
    missing_prices,
    read_invoices,
    read_pending_items,
)
from ledger.snapshot import customer_id_of
from ledger.synthetic import (
    CREATED,
    SYNTHETIC_PREFIX,
    is_history_id,
    undo_previous,
)
from models import customers as customer_store
from models import inbox, ledger_store
from models.db import transaction
from pipeline import enrich, intake
from pipeline.apply import InlineResult, apply_inline
from pipeline.errors import StripeAccessError
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

#: The Events API keeps 30 days of events.
MAX_DAYS = 30
DAY_S = 86400
#: Objects per Stripe list page (Stripe's maximum), and per inbox write.
PAGE = 100
#: Subscriptions whose histories are made, compared and stored together (one query for
#: their stored events, one insert of their new ones).
HISTORIES = 1000
#: Lines an invoice embeds before `has_more` (Stripe's default for `lines`).
EMBEDDED_LINES = 10
#: Retries of a rate-limited (429) or failed (5xx, connection) Stripe call; with
#: stripe-python's backoff (0.5 s doubling to 5 s, jittered) about 20 s of patience.
NETWORK_RETRIES = 6
#: A price as fetched: with its `tiers` (a tiered price's MRR needs them).
PRICE = {"expand": ["tiers"]}

#: A first backfill (at least this share of the customers with events, and this many,
#: have events to apply) derives the whole ledger by `mrr rebuild`'s bulk path.
BULK_SHARE = 0.5
BULK_MIN_CUSTOMERS = 200

#: Called with a stage (`events listed`, `invoices listed`, `customers applied`, …) and
#: how many more of it are done.
Progress = Callable[[str, int], None]
#: Called with how many more customers are done.
Progress1 = Callable[[int], None]

T = TypeVar("T")


@dataclass
class BackfillResult:
    """What one run did; `document()` is the `--json` output."""

    days: int
    #: Events in the Events API's window, and how many were new to the inbox.
    events: int = 0
    events_stored: int = 0
    #: Objects this run listed.
    subscriptions: int = 0
    invoices: int = 0
    customers: int = 0
    #: Subscriptions given a history by this run, and the new synthetic events.
    opened: int = 0
    synthetic_stored: int = 0
    #: Subscriptions whose history had to assume something, with what (README: "What
    #: invoices cannot show"): subscription id → one line per assumption.
    assumptions: dict[str, list[str]] = field(default_factory=dict)
    #: Events applied to the ledger by this run, and those that cannot be (id → why).
    applied: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    #: Events the ledger can never apply as they are (quarantined, id → why).
    quarantined: dict[str, str] = field(default_factory=dict)
    #: Every HTTP request made to Stripe, retries included.
    api_calls: int = 0

    @property
    def assumed(self) -> int:
        return len(self.assumptions)

    def document(self) -> dict[str, int]:
        return {
            "days": self.days,
            "events": self.events,
            "events_stored": self.events_stored,
            "subscriptions": self.subscriptions,
            "invoices": self.invoices,
            "customers": self.customers,
            "opened": self.opened,
            "synthetic_stored": self.synthetic_stored,
            "assumed": self.assumed,
            "applied": self.applied,
            "failed": len(self.failed),
            "quarantined": len(self.quarantined),
            "api_calls": self.api_calls,
        }


def client_for(runtime: Runtime) -> stripe.StripeClient:
    """The Stripe client of backfill and reconcile: enrichment's, more patient, counting
    its requests (`api_calls`). Raises `StripeAccessError` without `STRIPE_API_KEY`."""
    return runtime.stripe(max_network_retries=NETWORK_RETRIES, http_client=RetryingHTTPClient())


def backfill(
    runtime: Runtime,
    client: stripe.StripeClient,
    *,
    now: datetime,
    days: int = MAX_DAYS,
    progress: Progress | None = None,
    visit: Callable[[list[dict[str, Any]]], None] | None = None,
) -> BackfillResult:
    """Store the window's events, the customers and every subscription's history, then
    apply them.

    `now` is when Stripe's listed objects are taken to describe; the window is the
    `days` before it. `visit` is called with each page of listed subscriptions (plain
    JSON) once they are listed (reconcile reads Stripe's side there). Idempotent;
    raises Stripe's errors once its retries are spent.
    """
    if not 1 <= days <= MAX_DAYS:
        raise StripeAccessError(f"--days must be between 1 and {MAX_DAYS}, got {days}")
    at = int(now.timestamp())
    result = BackfillResult(days)
    report = progress or (lambda stage, n: None)
    calls_before = _requests(client)
    try:
        _run(runtime, client, at, result, report, visit)
    finally:
        result.api_calls = _requests(client) - calls_before
    return result


def _run(
    runtime: Runtime,
    client: stripe.StripeClient,
    at: int,
    result: BackfillResult,
    report: Progress,
    visit: Callable[[list[dict[str, Any]]], None] | None,
) -> None:
    pending: set[str] = set()

    # 1. The window's events, stored as Stripe sent them.
    types = sorted(SUBSCRIPTION_EVENT_TYPES | CUSTOMER_EVENT_TYPES)
    latest: dict[str, dict[str, Any]] = {}  # subscription id → its newest object in the window
    window = list_all(
        client, "/v1/events", {"types": types, "created": {"gte": at - result.days * DAY_S}}
    )
    for page in window:
        events = [e for e in page if e.get("type") in types]
        stored = intake.store_many(runtime, [(e, json.dumps(e)) for e in events])
        result.events += len(events)
        result.events_stored += sum(s.inserted for s in stored)
        pending.update(_record_customers(runtime, events, stored))
        for event in events:
            obj = event["data"]["object"]
            if event["type"] in SUBSCRIPTION_EVENT_TYPES and isinstance(obj, dict):
                known = latest.get(str(obj.get("id")))
                if known is None or event["created"] >= known["created"]:
                    latest[str(obj.get("id"))] = {"created": event["created"], "object": obj}
        report("events listed", len(page))

    # 2. Customers, as synthetic `customer.updated` events of the listed objects.
    for objects in list_all(client, "/v1/customers", {}):
        made = [enrich.customer_event(o, at) for o in objects if isinstance(o.get("id"), str)]
        stored = intake.store_many(runtime, [(e, json.dumps(e)) for e in made], synthetic=True)
        result.customers += len(objects)
        result.synthetic_stored += sum(s.inserted for s in stored)
        pending.update(_record_customers(runtime, made, stored))
        report("customers listed", len(objects))

    # 3. Subscriptions, invoices (every line), pending items, prices and coupons.
    subscriptions: dict[str, dict[str, Any]] = {}
    for objects in list_all(client, "/v1/subscriptions", {"status": "all"}):
        for obj in objects:
            subscriptions[str(obj["id"])] = obj
        result.subscriptions += len(objects)
        if visit is not None:
            visit(objects)
        report("subscriptions listed", len(objects))
    # Stripe no longer lists these, but the window has them: their newest object stands in.
    for sub_id, seen in sorted(latest.items()):
        subscriptions.setdefault(sub_id, seen["object"])

    # Each page is read as it comes (its new prices fetched first), while the next page
    # is already on its way (`list_all` fetches one page ahead): reading overlaps waiting.
    prices: dict[str, dict[str, Any]] = {}
    read: list[Invoice] = []
    for objects in list_all(client, "/v1/invoices", {"expand": ["data.discounts"]}):
        billed = [o for o in objects if o.get("status") != "draft" and invoice_subscription(o)]
        for obj in billed:
            _complete_lines(client, obj)
        prices.update(_fetch_each(client, "/v1/prices", missing_prices(billed, prices), PRICE))
        read.extend(read_invoices(billed, prices))
        result.invoices += len(objects)
        report("invoices listed", len(objects))
    pending_items: list[dict[str, Any]] = []
    for objects in list_all(client, "/v1/invoiceitems", {"pending": True}):
        pending_items.extend(objects)
    prices.update(_fetch_each(client, "/v1/prices", missing_prices(pending_items, prices), PRICE))
    report("prices fetched", len(prices))
    read.sort(key=lambda i: (i.created, i.id))
    coupons = _fetch_each(client, "/v1/coupons", missing_coupons(read))
    by_subscription = defaultdict(list)
    for invoice in read:
        if invoice.subscription is not None:
            by_subscription[invoice.subscription].append(invoice)
    # Stored basil+ events name discounts by id; one that has ended is on no subscription
    # any more, so the worker's `GET /v1/subscriptions/{id}` cannot resolve it: the
    # invoices can (SPEC §9). Cached where the worker looks first.
    enrich.cache_objects(runtime, _discount_objects(read, coupons))
    items = read_pending_items(pending_items, prices)
    pending_by_subscription = defaultdict(list)
    for item in items:
        pending_by_subscription[item.subscription].append(item)

    # 4. Each subscription's history, page by page of subscriptions.
    ordered = sorted(subscriptions.items())
    for start in range(0, len(ordered), HISTORIES):
        chunk = ordered[start : start + HISTORIES]
        _histories(
            runtime,
            chunk,
            by_subscription,
            pending_by_subscription,
            prices,
            coupons,
            result,
            pending,
        )
        report("histories stored", len(chunk))
    # Not only what this run stored: an interrupted run may have left events unapplied.
    owners = sorted({c for _, obj in ordered if (c := customer_id_of(obj)) is not None})
    with runtime.sessions() as session:
        for some in _pages(iter(owners), 1000):
            pending.update(inbox.pending_of(session, some))

    done = _apply(runtime, sorted(pending), lambda n: report("customers applied", n))
    result.applied, result.failed, result.quarantined = done.applied, done.failed, done.quarantined
    for event_id, why in sorted({**done.failed, **done.quarantined}.items()):
        log.error("%s cannot be applied: %s", event_id, why)


def _record_customers(
    runtime: Runtime, events: Sequence[Mapping[str, Any]], stored: Sequence[inbox.Stored]
) -> list[str]:
    """Record the attributes of the pending customer events just stored and mark them
    done, as a worker does (they change no ledger), while the next page is on its way
    rather than after the listing; returns the other pending events' ids."""
    pending = {s.event_id for s in stored if s.pending}
    done = [e for e in events if e.get("type") in CUSTOMER_EVENT_TYPES and e["id"] in pending]
    if done:
        with transaction(runtime.sessions) as session:
            customer_store.record(
                session, [a for e in done if (a := customer_attributes(e)) is not None]
            )
            inbox.mark_ignored(session, sorted(str(e["id"]) for e in done))
    return sorted(pending - {str(e["id"]) for e in done})


def _apply(runtime: Runtime, pending: Sequence[str], progress: Progress1) -> InlineResult:
    """Apply what the run stored. When most customers have something pending (a first
    backfill) on PostgreSQL, the whole ledger is derived by the bulk path of `mrr
    rebuild` (5-6 s instead of 24.5 s for 10,000 customers, BENCHMARKS.md), then what that left
    pending (customer events, anything it cannot apply) goes the incremental way, which
    records failures and quarantines with their reasons. Otherwise, incrementally."""
    if not _bulk_pays(runtime):
        return apply_inline(runtime, pending, progress=progress)
    from pipeline.bulk_rebuild import bulk_rebuild

    bulk_rebuild(runtime, progress, jobs=os.cpu_count() or 1)
    with runtime.sessions() as session:
        left = inbox.pending_ids(session)
    done = apply_inline(runtime, left)
    done.applied += len(set(pending) - set(left))
    return done


def _bulk_pays(runtime: Runtime) -> bool:
    """Whether deriving every customer again costs less than applying the pending ones:
    PostgreSQL, and at least `BULK_SHARE` of the customers with events have some."""
    if runtime.sessions.kw["bind"].dialect.name != "postgresql":
        return False
    with runtime.sessions() as session:
        touched = inbox.pending_customer_count(session)
        everyone = len(ledger_store.customers_with_events(session))
    return touched >= BULK_MIN_CUSTOMERS and touched >= BULK_SHARE * everyone


def _histories(
    runtime: Runtime,
    chunk: Sequence[tuple[str, dict[str, Any]]],
    invoices: Mapping[str, list[Any]],
    pending_items: Mapping[str, list[Any]],
    prices: Mapping[str, dict[str, Any]],
    coupons: Mapping[str, dict[str, Any]],
    result: BackfillResult,
    pending: set[str],
) -> None:
    """Make, compare and store the histories of a chunk of subscriptions."""
    customers = {c for _, obj in chunk if (c := customer_id_of(obj)) is not None}
    stored = _stored_by_subscription(runtime, customers)
    made: list[dict[str, Any]] = []
    replaced: list[str] = []
    rederive: set[str] = set()
    for sub_id, obj in chunk:
        customer = customer_id_of(obj)
        if customer is None:
            log.warning("subscription %s names no customer: no history", sub_id)
            continue
        own = stored.get(sub_id, [])
        webhooks = [e for e in own if not e["id"].startswith(SYNTHETIC_PREFIX)]
        earliest = min(webhooks, key=lambda e: (e["created"], e["id"]), default=None)
        if earliest is not None and earliest["type"] == CREATED:
            continue  # its whole life is stored
        until = None if earliest is None else int(earliest["created"])
        if earliest is not None and not invoices.get(sub_id):
            # Nothing billed it (a free plan, a subscription never invoiced): the object
            # as the earliest stored event found it is a better "current" state for the
            # time before it than the object today.
            data = earliest["data"]
            obj = undo_previous(data["object"], data.get("previous_attributes"))
        try:
            found = history(
                obj,
                invoices.get(sub_id, []),
                until=until,
                api_version=stripe.api_version,
                prices=prices,
                coupons=coupons,
                pending=pending_items.get(sub_id, []),
            )
        except (LedgerError, ValueError) as exc:
            log.error("subscription %s: no history from its invoices: %s", sub_id, exc)
            continue
        if found.assumptions:
            result.assumptions[sub_id] = [
                f"{a.kind.value} at {datetime.fromtimestamp(a.at, UTC):%Y-%m-%d %H:%M:%S}Z: "
                f"{a.detail}"
                for a in found.assumptions
            ]
        old = {e["id"]: _canonical(e) for e in own if is_history_id(e["id"])}
        if old:
            new = {e["id"]: _canonical(e) for e in found.events}
            stale = [i for i in sorted(old) if new.get(i) != old[i]]
            if stale:
                replaced.extend(stale)
                rederive.add(customer)
            result.opened += bool(stale or set(new) - set(old))
        else:
            result.opened += bool(found.events)
        made.extend(found.events)
    if replaced:
        with transaction(runtime.sessions) as session:
            inbox.delete_synthetic(session, replaced)
    saved = intake.store_many(runtime, [(e, json.dumps(e)) for e in made], synthetic=True)
    result.synthetic_stored += sum(s.inserted for s in saved)
    if rederive:
        # A replaced history changes the ledger even where no new event is pending.
        with runtime.sessions() as session:
            pending.update(inbox.one_event_each(session, rederive))


def _discount_objects(
    invoices: Iterable[Invoice], coupons: Mapping[str, dict[str, Any]]
) -> dict[tuple[str, str], Any]:
    """What the invoices tell of each discount, in the worker's cache's shape: a discount
    → its coupon's id, a coupon → the Coupon object."""
    found: dict[tuple[str, str], Any] = {}
    for discount in discounts_by_id(invoices).values():
        if discount.coupon_id is None:
            continue
        found[("discount", discount.id)] = {"coupon": discount.coupon_id}
        coupon = discount.coupon if discount.coupon is not None else coupons.get(discount.coupon_id)
        if coupon is not None:
            found[("coupon", discount.coupon_id)] = coupon
    return found


def _canonical(event: Mapping[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"))


def _stored_by_subscription(
    runtime: Runtime, customers: Iterable[str]
) -> dict[str, list[dict[str, Any]]]:
    """The customers' stored subscription events that parse, as JSON, by subscription id."""
    with runtime.sessions() as session:
        rows = ledger_store.customer_rows(session, set(customers))
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        try:
            payload = intake.loads(row.payload)
            event = parse_event(payload)
        except (InvalidEvent, ValueError):
            continue  # the ledger leaves it out too; it fails visibly on its own
        found[event.snapshot.id].append(payload)
    return found


def _complete_lines(client: stripe.StripeClient, invoice: dict[str, Any]) -> None:
    """Give `invoice` every line: the ones it embeds, then the rest of the list."""
    lines = invoice.get("lines")
    if not isinstance(lines, dict) or not lines.get("has_more"):
        return
    data = list(lines.get("data") or [])
    after = str(data[-1]["id"]) if data else None
    params: dict[str, Any] = {"starting_after": after} if after else {}
    for page in list_all(client, f"/v1/invoices/{invoice['id']}/lines", params):
        data.extend(page)
    invoice["lines"] = {**lines, "data": data, "has_more": False}


def _fetch_each(
    client: stripe.StripeClient,
    path: str,
    ids: Iterable[str],
    params: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """`GET path/{id}` for each id, once: prices and coupons are immutable."""
    found = {}
    for obj_id in sorted(set(ids)):
        found[obj_id] = dict(get_json(client, f"{path}/{obj_id}", params or {}))
    return found


def _requests(client: stripe.StripeClient) -> int:
    http = getattr(getattr(client, "_requestor", None), "_client", None)
    return int(getattr(http, "calls", 0))


def list_all(
    client: stripe.StripeClient, path: str, params: Mapping[str, Any]
) -> Iterator[list[dict[str, Any]]]:
    """Every page of a Stripe list, as the JSON Stripe sent: `limit=100`, then
    `starting_after` the last id for as long as `has_more` (what stripe-python's
    auto-pagination does).

    The next page is fetched on a thread while the caller works on the last one, so a
    run's own work overlaps its waits on Stripe instead of adding to them (one page
    ahead: the same calls, in the same order). Errors (once the client's retries are
    spent) are raised where the page would have been.
    """
    ahead: queue.SimpleQueue[tuple[list[dict[str, Any]] | None, BaseException | None]]
    ahead = queue.SimpleQueue()
    room = threading.Semaphore(1)  # pages fetched and not taken yet, at most
    stop = threading.Event()

    def fetch() -> None:
        try:
            for page in _pages_of(client, path, params):
                while not room.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                ahead.put((page, None))
            ahead.put((None, None))
        except BaseException as exc:  # handed to the caller, raised there
            ahead.put((None, exc))

    thread = threading.Thread(target=fetch, name=f"list {path}", daemon=True)
    thread.start()
    try:
        while True:
            page, error = ahead.get()
            room.release()
            if error is not None:
                raise error
            if page is None:
                return
            yield page
    finally:
        stop.set()
        thread.join(timeout=30)


def _pages_of(
    client: stripe.StripeClient, path: str, params: Mapping[str, Any]
) -> Iterator[list[dict[str, Any]]]:
    after: str | None = params.get("starting_after")
    base = {k: v for k, v in params.items() if k != "starting_after"}
    while True:
        query = {**base, "limit": PAGE} | ({"starting_after": after} if after else {})
        page = get_json(client, path, query)
        objects: list[dict[str, Any]] = page.get("data") or []
        if objects:
            yield objects
        if not page.get("has_more") or not objects:
            return
        after = str(objects[-1]["id"])


def get_json(client: stripe.StripeClient, path: str, params: Mapping[str, Any]) -> Any:
    """`GET path` as the JSON Stripe sent, with the client's retries and error types.

    Not `raw_request(...).data`: stripe-python parses every body with the standard
    library into OrderedDicts, which took most of a backfill's own time (BENCHMARKS.md);
    a successful body is parsed with orjson instead. Uses the requestor's `request_raw`
    and `_interpret_response`, the two halves of `StripeClient.raw_request` (stripe-python
    12 to 16); without them, `raw_request` itself.
    """
    requestor = getattr(client, "_requestor", None)
    if requestor is None or not hasattr(requestor, "_interpret_response"):
        return client.raw_request("get", path, **params).data
    rbody, rcode, rheaders = requestor.request_raw(
        "get",
        path,
        params=dict(params),
        options={},
        base_address="api",
        api_mode="V1",
        usage=["raw_request"],
    )
    if 200 <= rcode < 300:
        try:
            return orjson.loads(rbody)
        except orjson.JSONDecodeError:
            pass  # stripe-python's parser says what is wrong with it
    return requestor._interpret_response(rbody, rcode, rheaders, "V1").data


def _pages(items: Iterator[T], size: int = PAGE) -> Iterator[list[T]]:
    """`items` in lists of `size`."""
    while chunk := list(islice(items, size)):
        yield chunk
