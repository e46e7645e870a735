"""The one job: apply a stored event by rewriting its customer's ledger.

Jobs take an event id, open their own sessions and let errors raise, so RQ retries
them and, after the last attempt, files them in the FailedJobRegistry. Every job is
idempotent: the ledger it writes is a function of the customer's stored events only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from rq import get_current_job
from sqlalchemy.orm import Session, sessionmaker

from ledger.errors import InvalidEvent, LedgerError
from ledger.events import is_applied_type, parse_event
from ledger.timeline import derive_ledger
from models import inbox, ledger_store
from models.db import lock_customer, transaction
from models.settings import Settings
from models.tables import EventStatus, InboxEvent, utcnow
from workers import context
from workers.enrich import catalog_for

log = logging.getLogger(__name__)


class EventNotFound(LedgerError):
    """The job names an event that is not in the inbox."""


def apply_event(event_id: str) -> str:
    """RQ entry point: apply one inbox event. Returns what happened, for the job result."""
    return apply_with(context.sessions(), context.settings(), event_id)


def apply_with(factory: sessionmaker[Session], settings: Settings, event_id: str) -> str:
    """Apply `event_id` with explicit collaborators (the sync CLI path and tests use this)."""
    try:
        return _apply(factory, settings, event_id)
    except Exception as exc:
        final = _is_last_attempt()
        log.warning("event %s failed (final=%s): %s", event_id, final, exc)
        try:
            with transaction(factory) as session:
                inbox.record_failure(session, event_id, f"{type(exc).__name__}: {exc}", final)
        except Exception:  # the database may be what failed: keep the original error
            log.exception("could not record the failure of event %s", event_id)
        raise exc from None


def _apply(factory: sessionmaker[Session], settings: Settings, event_id: str) -> str:
    with transaction(factory) as session:
        row = session.get(InboxEvent, event_id)
        if row is None:
            raise EventNotFound(f"event {event_id} is not in the inbox")
        if row.status in (EventStatus.PROCESSED, EventStatus.IGNORED):
            return "already applied"
        if not is_applied_type(row.type):
            row.status, row.processed_at = EventStatus.IGNORED, utcnow()
            return "ignored"
        try:
            event = parse_event(json.loads(row.payload))
        except ValueError as exc:  # json.JSONDecodeError
            raise InvalidEvent(f"event {event_id} payload is not JSON: {exc}") from None
        customer = event.customer

    count = rebuild_customer(factory, settings, customer)
    return f"applied: customer ledger rebuilt from {count} events"


def rebuild_customer(factory: sessionmaker[Session], settings: Settings, customer: str) -> int:
    """Rewrite one customer's ledger from all of its stored events; returns how many.

    Serialized per customer across processes (see `lock_customer`). Stripe details the
    payloads lack are fetched before the lock is taken: no network call under it.
    """
    catalog = catalog_for(factory, settings, customer)
    with transaction(factory) as session:
        lock_customer(session, customer)
        rows = ledger_store.customer_rows(session, customer)
        events, invalid = ledger_store.parse_rows(rows)
        ledger = derive_ledger(customer, events, catalog)
        ledger_store.write_ledger(session, ledger, [r for r in rows if r.id not in invalid])
    return len(events)


def _is_last_attempt() -> bool:
    job = get_current_job()
    if job is None:  # inline (`mrr replay --sync`): there is no retry
        return True
    return not job.retries_left


def rebuild_all(
    factory: sessionmaker[Session],
    settings: Settings,
    customers: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Recompute every customer's ledger from the inbox (`mrr rebuild`).

    Safe beside running workers: each customer is rewritten under its lock, so reports
    never see a half-built ledger. Derived rows of customers with no stored events left
    are deleted and the daily rollup recounted at the end. `customers` defaults to every
    customer in the inbox.
    """
    if customers is None:
        with factory() as session:
            customers = ledger_store.customers_with_events(session)
    events = 0
    for customer in customers:
        events += rebuild_customer(factory, settings, customer)
        if progress is not None:
            progress(customer)
    with transaction(factory) as session:
        orphans = ledger_store.delete_orphans(session)
        ledger_store.rebuild_rollups(session)  # and repair any drift of the rollup
    return {"customers": len(customers), "events": events, "orphans_deleted": orphans}
