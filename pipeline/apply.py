"""Apply stored events to the ledger: the use case behind the worker's job, `mrr replay
--sync` and `mrr rebuild`.

A customer's ledger is always rewritten whole from every stored event of that customer
(SPEC §2), so applying is idempotent and order-proof. To run near what RQ allows, a job
applies its own event *and* other pending events in the same transaction: each batch
loads, parses and prices every event once and writes all its customers with a fixed
number of statements. Jobs of the other events it applied are then dropped from the
queue by the worker (`adapters.queue.absorb`).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from ledger.errors import InvalidEvent, InvalidValue, LedgerError
from ledger.events import SubscriptionEvent, is_subscription_event, parse_event
from ledger.mrr import Catalog, Need
from ledger.segments import derive_with_segments
from ledger.timeline import CustomerLedger
from models import customers as customer_store
from models import inbox, ledger_store
from models.db import describe, lock_customers, transaction, try_lock_customers
from models.tables import EventStatus, InboxEvent
from pipeline import alerts, enrich
from pipeline.errors import EventNotFound
from pipeline.runtime import Runtime, bootstrap
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: Most events one batch loads (its own customers' whole histories are always taken).
BATCH_EVENTS = 200
#: Pending events scanned, oldest first, to find other customers for a batch.
SCAN_PENDING = 4 * BATCH_EVENTS


@dataclass
class ApplyResult:
    """What one call applied: events it marked processed, beyond the ones asked for."""

    customers: int = 0
    events: int = 0
    #: The customers whose ledgers were written.
    customer_ids: list[str] = field(default_factory=list)
    #: Pending events of other customers applied in the same batch.
    others: list[str] = field(default_factory=list)
    #: Events asked for that were already applied (or ignored) before this call.
    already: int = 0
    #: Events asked for that the ledger can never apply: quarantined with their reason.
    quarantined: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "events": self.events,
            "others": len(self.others),
            "already": self.already,
            "quarantined": self.quarantined,
        }


def apply_event_ids(
    runtime: Runtime,
    event_ids: Sequence[str],
    *,
    batch: int = BATCH_EVENTS,
    attempts_allowed: int = 1,
    alert: bool = False,
) -> ApplyResult:
    """Apply the given stored events, and with them up to `batch` other pending events.

    A failure is counted in the inbox row of each event asked for (the last allowed
    attempt marks it `failed`) and raised, so RQ retries the job. An event that cannot
    be parsed raises `InvalidEvent` after the rest of the batch is written. With `alert`
    (the worker's job), the movements the events cause are recorded for alerts (SPEC §12).
    """
    try:
        return _apply(runtime, event_ids, batch, alert)
    except Exception as exc:
        # The ledger's own errors name the field; any other is described without the
        # statement or its parameters (they would be the event's payload).
        error = f"{type(exc).__name__}: {exc}" if isinstance(exc, LedgerError) else describe(exc)
        log.warning("events %s failed: %s", ", ".join(event_ids), error)
        try:
            with transaction(runtime.sessions) as session:
                for event_id in event_ids:
                    inbox.record_failure(session, event_id, error, attempts_allowed)
        except Exception:  # the database may be what failed: keep the original error
            log.exception("could not record the failure of %s", ", ".join(event_ids))
        raise exc from None


def _apply(runtime: Runtime, event_ids: Sequence[str], batch: int, alert: bool) -> ApplyResult:
    with transaction(runtime.sessions) as session:
        heads = inbox.heads(session, event_ids)
        absent = sorted(set(event_ids) - set(heads))
        if absent:
            raise EventNotFound(f"event {absent[0]} is not in the inbox")
        todo = [h for h in heads.values() if h.status == EventStatus.PENDING]
        ignored = [h.id for h in todo if not is_subscription_event(h.type)]
        if ignored:
            # `customer.*` events end no subscription (their own events do); they keep
            # the customer's attributes.
            customer_store.record_from_inbox(session, ignored)
            inbox.mark_ignored(session, ignored)
        todo = [h for h in todo if is_subscription_event(h.type)]
        for head in todo:
            if head.customer_id is None:  # it cannot be parsed: say why
                raise InvalidEvent(_parse_error(session, head.id))
        others: list[str] = []
        if todo and batch > 0:
            own = {h.customer_id for h in todo}
            candidates = [c for c in inbox.pending_customers(session, SCAN_PENDING) if c not in own]
            # Workers draw different customers, so two batches rarely want the same one.
            random.shuffle(candidates)
            others = candidates[:batch]
    outcome = ApplyResult(already=len(event_ids) - len(todo))
    if not todo:
        return outcome
    own_customers = sorted({h.customer_id for h in todo if h.customer_id is not None})
    written = apply_customers(runtime, own_customers, others, batch=batch, alert=alert)
    outcome.customers = len(written.customers)
    outcome.customer_ids = list(written.customers)
    outcome.events = len(written.processed)
    outcome.others = sorted(written.processed - set(event_ids))
    outcome.quarantined = sorted(set(written.quarantined) & {h.id for h in todo})
    for head in todo:
        if head.id in written.invalid:
            # The job fails visibly and is retried; the customer's ledger is written without it.
            raise InvalidEvent(written.invalid[head.id])
    return outcome


def _parse_error(session: Session, event_id: str) -> str:
    row = session.get(InboxEvent, event_id)
    assert row is not None
    try:
        parse_event(json.loads(row.payload))
    except (InvalidEvent, ValueError) as exc:
        return str(exc)
    return f"event {event_id} names no customer"


@dataclass
class Written:
    """What `apply_customers` wrote: the customers, the events marked processed, the
    stored events of those customers that cannot be parsed (with the reason), and
    those it quarantined."""

    customers: list[str] = field(default_factory=list)
    processed: set[str] = field(default_factory=set)
    invalid: dict[str, str] = field(default_factory=dict)
    #: Events the ledger can never apply as they are, with the reason: now quarantined.
    quarantined: dict[str, str] = field(default_factory=dict)


class _FetchFirst(Exception):
    """Leave the transaction (rolled back) to fetch Stripe details without a lock held."""

    def __init__(self, wanted: set[Need]) -> None:
        super().__init__("Stripe details needed")
        self.wanted = wanted


def apply_customers(
    runtime: Runtime,
    customers: Sequence[str],
    others: Sequence[str] = (),
    *,
    batch: int = BATCH_EVENTS,
    force: bool = False,
    alert: bool = False,
) -> Written:
    """Rewrite the ledgers of `customers` (waiting for their locks) and of those of
    `others` whose locks are free, up to about `batch` events, in one transaction.

    A customer whose stored events are all applied already is left as it is, unless
    `force` (`mrr rebuild`). Stripe details the payloads lack are fetched with no lock
    held: with an API key, a cache miss sends the batch round a second time, and the
    other customers that need something wait for their own jobs. With `alert`, the
    movements behind the events applied now are recorded for alerts (`pipeline.alerts`).
    """
    fetched = False
    while True:
        try:
            with transaction(runtime.sessions) as session:
                alert_at = runtime.now() if alert else None
                return _write(
                    session, runtime.settings, customers, others, batch, force, fetched, alert_at
                )
        except _FetchFirst as need:
            enrich.fetch_missing(runtime, need.wanted)
            fetched = True
            others = ()


def _write(
    session: Session,
    settings: Settings,
    customers: Sequence[str],
    others: Sequence[str],
    batch: int,
    force: bool,
    fetched: bool,
    alert_at: datetime | None = None,
) -> Written:
    locked = _lock(session, customers, others)
    rows = _within_batch(ledger_store.customer_rows(session, locked), set(customers), batch)
    written = Written()
    by_customer: dict[str, list[SubscriptionEvent]] = defaultdict(list)
    parsed: list[Row[Any]] = []
    for row in rows:
        try:
            event = parse_event(json.loads(row.payload))
        except InvalidValue as exc:
            written.quarantined[row.id] = str(exc)
            continue
        except (InvalidEvent, ValueError) as exc:
            written.invalid[row.id] = str(exc)
            continue
        by_customer[event.customer].append(event)
        parsed.append(row)
    # Customers whose every stored event is applied already have the ledger they would get.
    stale = {r.customer_id for r in rows if r.status != EventStatus.PROCESSED}
    chosen = sorted(c for c in by_customer if force or c in stale)
    snapshots = [e.snapshot for c in chosen for e in by_customer[c]]
    catalog = enrich.cached_catalog(session, snapshots)
    if not fetched and settings.stripe_api_key is not None:
        own = set(customers)
        unmet = {c: enrich.missing([e.snapshot for e in by_customer[c]], catalog) for c in chosen}
        wanted = {need for c in chosen if c in own for need in unmet[c]}
        if wanted:
            raise _FetchFirst(wanted)
        # Another customer that lacks a detail is left to its own job, which fetches it.
        chosen = [c for c in chosen if c in own or not unmet[c]]
    ledgers = [_derive(c, by_customer[c], catalog, written.quarantined) for c in chosen]
    keep = set(chosen)
    applied = [r for r in parsed if r.customer_id in keep and r.id not in written.quarantined]
    inbox.quarantine(session, written.quarantined)
    if alert_at is not None:
        applied_now = [r.id for r in applied if r.status != EventStatus.PROCESSED]
        alerts.record_movements(session, settings, ledgers, applied_now, alert_at)
    ledger_store.write_ledgers(session, ledgers, applied)
    written.customers = chosen
    written.processed = {r.id for r in applied}
    return written


def _derive(
    customer: str,
    events: list[SubscriptionEvent],
    catalog: Catalog,
    quarantined: dict[str, str],
) -> CustomerLedger:
    """The customer's ledger, leaving out (and noting in `quarantined`) each event that
    can only be priced out of range."""
    while True:
        try:
            # With its item segments (SPEC §11), which reports sum by SQL.
            return derive_with_segments(customer, events, catalog)
        except InvalidValue as exc:
            if exc.event_id is None:
                raise
            quarantined[exc.event_id] = str(exc)
            events = [e for e in events if e.id != exc.event_id]


def _lock(session: Session, customers: Sequence[str], others: Sequence[str]) -> list[str]:
    """Lock the customers (waiting) and whichever of `others` are free (never waiting)."""
    lock_customers(session, customers)
    free = try_lock_customers(session, [c for c in others if c not in set(customers)])
    return sorted(set(customers)) + free


def _within_batch(rows: list[Row[Any]], own: set[str], batch: int) -> list[Row[Any]]:
    """The rows of the own customers, then whole customers of the others up to `batch`."""
    by_customer: dict[str | None, list[Row[Any]]] = defaultdict(list)
    for row in rows:
        by_customer[row.customer_id].append(row)
    kept = [r for c in own for r in by_customer.pop(c, [])]
    for customer in sorted(by_customer, key=str):
        group = by_customer[customer]
        if len(kept) + len(group) > batch and kept:
            continue
        kept.extend(group)
    return kept


@dataclass
class RebuildResult:
    """What `mrr rebuild` did; `document()` is its `--json` output."""

    customers: int
    events: int
    orphans_deleted: int

    def document(self) -> dict[str, int]:
        return {
            "customers": self.customers,
            "events": self.events,
            "orphans_deleted": self.orphans_deleted,
        }


def customers_to_rebuild(runtime: Runtime) -> list[str]:
    """Every customer with a stored subscription event, sorted (what a rebuild covers)."""
    with runtime.sessions() as session:
        return ledger_store.customers_with_events(session)


def rebuild(
    runtime: Runtime,
    customers: Collection[str] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 50,
    jobs: int = 1,
) -> RebuildResult:
    """Recompute every customer's ledger from the inbox (`mrr rebuild`).

    On PostgreSQL, a rebuild of every customer (`customers` None) takes the bulk path
    (`pipeline.bulk_rebuild`); what follows describes the incremental one, which SQLite and a
    rebuild of given customers use. Safe beside running workers: each customer is rewritten under
    its lock, so reports never see a half-built ledger. Derived rows of customers with no stored
    events left are deleted and the daily rollup recounted at the end. `customers` defaults to
    `customers_to_rebuild`; `progress` is called with the number done after each chunk.
    With `jobs` > 1 (PostgreSQL), chunks are rebuilt by that many processes started
    afresh (spawned, never forked), each with its own runtime.
    """
    if customers is None and runtime.sessions.kw["bind"].dialect.name == "postgresql":
        from pipeline.bulk_rebuild import bulk_rebuild

        bulk = bulk_rebuild(runtime, progress, jobs)
        return RebuildResult(bulk.customers, bulk.events, bulk.orphans_deleted)
    ordered = sorted(customers if customers is not None else customers_to_rebuild(runtime))
    parts = [ordered[start : start + chunk] for start in range(0, len(ordered), chunk)]
    statistics = _Statistics(runtime)
    events = 0
    if jobs > 1 and runtime.sessions.kw["bind"].dialect.name == "postgresql":
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {
                pool.submit(_rebuild_part, runtime.settings, part): len(part) for part in parts
            }
            for future in as_completed(futures):
                events += future.result()
                statistics.after(events)
                if progress is not None:
                    progress(futures[future])
    else:
        for part in parts:
            events += len(apply_customers(runtime, part, batch=0, force=True).processed)
            statistics.after(events)
            if progress is not None:
                progress(len(part))
    with transaction(runtime.sessions) as session:
        orphans = ledger_store.delete_orphans(session)
        ledger_store.rebuild_rollups(session)  # and repair any drift of the rollup
    return RebuildResult(len(ordered), events, orphans)


class _Statistics:
    """Keeps the planner's statistics in step with a rebuild: once at the start, and
    again each time the events rewritten double (from 10,000 on), so a ledger that grows
    from empty is sampled about twenty times in a billion events, not never."""

    FIRST = 10_000

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.next = self.FIRST
        self.refresh()

    def after(self, events: int) -> None:
        if events >= self.next:
            self.refresh()
            self.next = 2 * events

    def refresh(self) -> None:
        with transaction(self.runtime.sessions) as session:
            ledger_store.refresh_statistics(session)


def _rebuild_part(settings: Settings, customers: list[str]) -> int:
    """One chunk of a parallel rebuild, in a process of its own with its own runtime."""
    runtime = bootstrap(settings)
    return len(apply_customers(runtime, customers, batch=0, force=True).processed)


@dataclass
class InlineResult:
    """What `apply_inline` did with the events it was given."""

    applied: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    quarantined: dict[str, str] = field(default_factory=dict)

    def document(self) -> dict[str, int]:
        return {
            "applied": self.applied,
            "failed": len(self.failed),
            "quarantined": len(self.quarantined),
        }


def apply_inline(
    runtime: Runtime,
    event_ids: Sequence[str],
    progress: Callable[[int], None] | None = None,
    chunk: int = 50,
) -> InlineResult:
    """Apply stored events without a queue (`mrr replay --sync`, `mrr backfill`): no
    retries, so an event that cannot be parsed is marked `failed` at once, and one that
    can never be applied is quarantined, both with their reasons."""
    with runtime.sessions() as session:
        heads = inbox.heads(session, event_ids)
    # Customer events change no ledger (their attributes are read by reports): only the
    # customers of subscription events are derived again.
    customers = sorted(
        {
            h.customer_id
            for h in heads.values()
            if h.customer_id is not None and is_subscription_event(h.type)
        }
    )
    processed: set[str] = set()
    result = InlineResult()
    for start in range(0, len(customers), chunk):
        written = apply_customers(runtime, customers[start : start + chunk], batch=0)
        processed |= written.processed
        result.failed.update(written.invalid)
        result.quarantined.update(written.quarantined)
        if progress is not None:
            progress(len(customers[start : start + chunk]))
    with transaction(runtime.sessions) as session:
        others = [
            h.id
            for h in heads.values()
            if h.status == EventStatus.PENDING and not is_subscription_event(h.type)
        ]
        customer_store.record_from_inbox(session, others)
        for start in range(0, len(others), customer_store.CHUNK):
            inbox.mark_ignored(session, others[start : start + customer_store.CHUNK])
        for head in heads.values():
            if head.customer_id is None and is_subscription_event(head.type):
                result.failed[head.id] = _parse_error(session, head.id)
        result.failed = {e: why for e, why in result.failed.items() if e in heads}
        for event_id, why in result.failed.items():
            inbox.record_failure(session, event_id, f"InvalidEvent: {why}", attempts_allowed=1)
    result.quarantined = {e: why for e, why in result.quarantined.items() if e in heads}
    result.applied = len(processed & set(heads))
    return result
