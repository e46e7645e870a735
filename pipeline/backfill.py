"""Existing Stripe accounts: the Events API's window, then an opening history for every
subscription whose beginning the inbox lacks, stored through the same intake as
webhooks and applied like them (SPEC §9).

Every page read from Stripe is stored and committed before the next is fetched, and
every event, Stripe's or synthetic, has a fixed id: a run that was interrupted is
simply started again, stores what is still missing and adds nothing twice. Openings
are computed only after the whole window is stored, so they undo the earliest event
there is. Events stored here and not applied yet (a run killed before its end) stay
pending: the next run, or the worker's sweeper, applies them.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, TypeVar

import stripe

from ledger.errors import InvalidEvent
from ledger.events import SUBSCRIPTION_EVENT_TYPES, SubscriptionEvent, parse_event
from ledger.opening import opening_history
from ledger.snapshot import customer_id_of
from models import inbox, ledger_store
from pipeline import intake
from pipeline.apply import apply_inline
from pipeline.errors import StripeAccessError
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

#: The Events API keeps 30 days of events.
MAX_DAYS = 30
DAY_S = 86400
#: Objects per Stripe list page (Stripe's maximum), and per inbox write.
PAGE = 100
#: Retries of a rate-limited (429) or failed (5xx, connection) Stripe call; with
#: stripe-python's backoff (0.5 s doubling to 5 s, jittered) about 20 s of patience.
NETWORK_RETRIES = 6

#: Called with a stage (`events listed`, `subscriptions listed`, `customers applied`)
#: and how many more of it are done.
Progress = Callable[[str, int], None]

T = TypeVar("T")


@dataclass
class BackfillResult:
    """What one run did; `document()` is the `--json` output."""

    days: int
    #: Subscription events in the Events API's window, and how many were new to the inbox.
    events: int = 0
    events_stored: int = 0
    #: Subscriptions Stripe listed (`status=all`).
    subscriptions: int = 0
    #: Subscriptions given an opening history by this run, and its new synthetic events.
    opened: int = 0
    synthetic_stored: int = 0
    #: Events applied to the ledger by this run, and those that cannot be (id → why).
    applied: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    #: Events the ledger can never apply as they are (quarantined, id → why).
    quarantined: dict[str, str] = field(default_factory=dict)

    def document(self) -> dict[str, int]:
        return {
            "days": self.days,
            "events": self.events,
            "events_stored": self.events_stored,
            "subscriptions": self.subscriptions,
            "opened": self.opened,
            "synthetic_stored": self.synthetic_stored,
            "applied": self.applied,
            "failed": len(self.failed),
            "quarantined": len(self.quarantined),
        }


def client_for(runtime: Runtime) -> stripe.StripeClient:
    """The Stripe client of backfill and reconcile: enrichment's, more patient. Raises
    `StripeAccessError` without `STRIPE_API_KEY`."""
    return runtime.stripe(max_network_retries=NETWORK_RETRIES)


def backfill(
    runtime: Runtime,
    client: stripe.StripeClient,
    *,
    now: datetime,
    days: int = MAX_DAYS,
    progress: Progress | None = None,
    visit: Callable[[list[dict[str, Any]]], None] | None = None,
) -> BackfillResult:
    """Store the window's events and every subscription's opening history, then apply.

    `now` is when Stripe's listed objects are taken to describe; the window is the
    `days` before it. `visit` is called with each page of listed
    subscriptions (plain JSON) once their openings are stored (reconcile reads Stripe's
    side there). Idempotent; raises Stripe's errors once its retries are spent.
    """
    if not 1 <= days <= MAX_DAYS:
        raise StripeAccessError(f"--days must be between 1 and {MAX_DAYS}, got {days}")
    at = int(now.timestamp())
    result = BackfillResult(days)
    report = progress or (lambda stage, n: None)
    pending: set[str] = set()

    window = list_all(
        client,
        "/v1/events",
        {"types": sorted(SUBSCRIPTION_EVENT_TYPES), "created": {"gte": at - days * DAY_S}},
    )
    in_window: dict[str, str | None] = {}
    for page in window:
        events = [e for e in page if e.get("type") in SUBSCRIPTION_EVENT_TYPES]
        stored = intake.store_many(runtime, [(e, json.dumps(e)) for e in events])
        result.events += len(events)
        result.events_stored += sum(s.inserted for s in stored)
        pending.update(s.event_id for s in stored if s.pending)
        for event in events:
            obj = event["data"]["object"]
            in_window[str(obj.get("id"))] = customer_id_of(obj)
        report("events listed", len(page))

    listed: set[str] = set()
    for objects in list_all(client, "/v1/subscriptions", {"status": "all"}):
        listed.update(str(o["id"]) for o in objects)
        result.subscriptions += len(objects)
        opened = [(str(o["id"]), customer_id_of(o), o) for o in objects]
        _open(runtime, opened, at, result, pending)
        if visit is not None:
            visit(objects)
        report("subscriptions listed", len(objects))
    # Stripe no longer lists these, but the window has their events: open them from those.
    unlisted = [(s, c, None) for s, c in sorted(in_window.items()) if s not in listed]
    for chunk in _pages(iter(unlisted)):
        _open(runtime, chunk, at, result, pending)

    done = apply_inline(runtime, sorted(pending), progress=lambda n: report("customers applied", n))
    result.applied, result.failed, result.quarantined = done.applied, done.failed, done.quarantined
    for event_id, why in sorted({**done.failed, **done.quarantined}.items()):
        log.error("%s cannot be applied: %s", event_id, why)
    return result


def _open(
    runtime: Runtime,
    subscriptions: Sequence[tuple[str, str | None, Mapping[str, Any] | None]],
    now: int,
    result: BackfillResult,
    pending: set[str],
) -> None:
    """Store the opening histories of (subscription id, customer id, Stripe's object or
    None) that need one, reading what their customers have stored; add every pending
    event of those customers to `pending`."""
    customers = {c for _, c, _ in subscriptions if c is not None}
    stored_events = _stored_by_subscription(runtime, customers)
    made: list[dict[str, Any]] = []
    for sub_id, customer, current in subscriptions:
        if customer is None:
            log.warning("subscription %s names no customer: no opening history", sub_id)
            continue
        history = opening_history(
            stored_events.get(sub_id, ()),
            current,
            as_of=now,
            api_version=stripe.api_version,
        )
        result.opened += bool(history)
        made.extend(history)
    stored = intake.store_many(runtime, [(e, json.dumps(e)) for e in made], synthetic=True)
    result.synthetic_stored += sum(s.inserted for s in stored)
    # Not only what this run stored: an interrupted run may have left openings unapplied.
    with runtime.sessions() as session:
        pending.update(inbox.pending_of(session, customers))


def _stored_by_subscription(
    runtime: Runtime, customers: Iterable[str]
) -> dict[str, list[SubscriptionEvent]]:
    """The customers' stored events that parse, by subscription id."""
    with runtime.sessions() as session:
        rows = ledger_store.customer_rows(session, set(customers))
    found: dict[str, list[SubscriptionEvent]] = defaultdict(list)
    for row in rows:
        try:
            event = parse_event(json.loads(row.payload))
        except (InvalidEvent, ValueError):
            continue  # the ledger leaves it out too; it fails visibly on its own
        found[event.snapshot.id].append(event)
    return found


def list_all(
    client: stripe.StripeClient, path: str, params: Mapping[str, Any]
) -> Iterator[list[dict[str, Any]]]:
    """Every page of a Stripe list, as the JSON Stripe sent: `limit=100`, then
    `starting_after` the last id for as long as `has_more` (what stripe-python's
    auto-pagination does).

    Through `raw_request`, so the client's retries and error types apply, but without
    building a `StripeObject` per object and turning it back into JSON: that took two
    thirds of a backfill's time on 5,000 subscriptions.
    """
    after: str | None = None
    while True:
        query = {**params, "limit": PAGE} | ({"starting_after": after} if after else {})
        page = client.raw_request("get", path, **query).data
        objects: list[dict[str, Any]] = page.get("data") or []
        if objects:
            yield objects
        if not page.get("has_more") or not objects:
            return
        after = str(objects[-1]["id"])


def _pages(items: Iterator[T], size: int = PAGE) -> Iterator[list[T]]:
    """`items` in lists of `size`."""
    while chunk := list(islice(items, size)):
        yield chunk
