"""The inbox: durable storage of every verified event, and its bookkeeping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ledger.events import is_subscription_event
from ledger.snapshot import customer_id_of
from models.db import dialect_insert
from models.tables import EventStatus, InboxEvent, utcnow


@dataclass(frozen=True)
class Stored:
    """Outcome of storing one event: whether it is new, and whether it awaits a worker."""

    event_id: str
    inserted: bool
    pending: bool


@dataclass(frozen=True)
class Head:
    """The bookkeeping columns of an inbox row (no payload)."""

    id: str
    type: str
    customer_id: str | None
    status: str
    attempts: int


def store_event(session: Session, event: Mapping[str, Any], raw: str) -> Stored:
    """Insert a verified event unless its id is already stored (insert-or-ignore).

    Types the ledger does not use are stored as `ignored`. Does not commit.
    """
    event_id = str(event["id"])
    event_type = str(event["type"])
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    created = event.get("created")
    applied = is_subscription_event(event_type)
    now = utcnow()
    values = {
        "id": event_id,
        "type": event_type,
        "created": created if isinstance(created, int) and not isinstance(created, bool) else None,
        "api_version": event.get("api_version")
        if isinstance(event.get("api_version"), str)
        else None,
        "customer_id": customer_id_of(obj) if isinstance(obj, Mapping) else None,
        "payload": raw,
        "status": EventStatus.PENDING if applied else EventStatus.IGNORED,
        "received_at": now,
        # Set optimistically: if the enqueue after commit fails, the sweeper retries it.
        "enqueued_at": now if applied else None,
        "processed_at": None if applied else now,
        "attempts": 0,
    }
    inserted = session.scalar(
        dialect_insert(session)(InboxEvent)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(InboxEvent.id)
    )
    if inserted is not None:
        return Stored(event_id, True, applied)
    status = session.scalar(select(InboxEvent.status).where(InboxEvent.id == event_id))
    return Stored(event_id, False, status == EventStatus.PENDING)


def heads(session: Session, event_ids: Sequence[str]) -> dict[str, Head]:
    """Bookkeeping of the given events, by id (absent ids are not stored)."""
    e = InboxEvent
    rows = session.execute(
        select(e.id, e.type, e.customer_id, e.status, e.attempts).where(e.id.in_(event_ids))
    )
    return {r.id: Head(r.id, r.type, r.customer_id, r.status, r.attempts) for r in rows}


def pending_customers(session: Session, scan: int) -> list[str]:
    """Customers of the oldest `scan` pending events, oldest first, each once."""
    e = InboxEvent
    rows = session.scalars(
        select(e.customer_id)
        .where(e.status == EventStatus.PENDING, e.customer_id.is_not(None))
        .order_by(e.received_at)
        .limit(scan)
    )
    return list(dict.fromkeys(c for c in rows if c is not None))


def mark_ignored(session: Session, event_ids: Sequence[str]) -> None:
    """Events of types the ledger does not use are done as soon as they are seen."""
    session.execute(
        update(InboxEvent)
        .where(InboxEvent.id.in_(event_ids))
        .values(status=EventStatus.IGNORED, processed_at=utcnow())
    )


def mark_enqueued(session: Session, event_ids: Sequence[str], at: datetime | None = None) -> None:
    if event_ids:
        session.execute(
            update(InboxEvent)
            .where(InboxEvent.id.in_(event_ids))
            .values(enqueued_at=at or utcnow())
        )


def due_for_sweep(
    session: Session, older_than_s: int, now: datetime | None = None, limit: int = 1000
) -> dict[str, int]:
    """Pending events never enqueued, or last enqueued more than `older_than_s` ago,
    oldest first, with the attempts each has already used."""
    cutoff = (now or utcnow()) - timedelta(seconds=older_than_s)
    stale = func.coalesce(InboxEvent.enqueued_at, InboxEvent.received_at) < cutoff
    rows = session.execute(
        select(InboxEvent.id, InboxEvent.attempts)
        .where(InboxEvent.status == EventStatus.PENDING, stale)
        .order_by(InboxEvent.received_at)
        .limit(limit)
    )
    return {event_id: attempts for event_id, attempts in rows}


def record_failure(session: Session, event_id: str, error: str, attempts_allowed: int) -> bool:
    """Count a failed attempt of a pending event; the last allowed one marks it `failed`
    (SPEC §8). Returns whether the event has now failed for good."""
    row = session.execute(
        update(InboxEvent)
        .where(InboxEvent.id == event_id, InboxEvent.status == EventStatus.PENDING)
        .values(attempts=InboxEvent.attempts + 1, last_error=error[:4000])
        .returning(InboxEvent.attempts)
    ).first()
    if row is None:
        return False
    final = int(row.attempts) >= attempts_allowed
    if final:
        session.execute(
            update(InboxEvent).where(InboxEvent.id == event_id).values(status=EventStatus.FAILED)
        )
    return final


def counts(session: Session) -> dict[str, int]:
    """SPEC §6 inbox counts: received = processed + failed + pending.

    Ignored types count as processed, quarantined events as failed (each also has a
    count of its own).
    """
    by_status = dict(
        session.execute(select(InboxEvent.status, func.count()).group_by(InboxEvent.status)).all()
    )
    processed = by_status.get(EventStatus.PROCESSED, 0) + by_status.get(EventStatus.IGNORED, 0)
    quarantined = by_status.get(EventStatus.QUARANTINED, 0)
    failed = by_status.get(EventStatus.FAILED, 0) + quarantined
    pending = by_status.get(EventStatus.PENDING, 0)
    return {
        "received": processed + failed + pending,
        "processed": processed,
        "ignored": by_status.get(EventStatus.IGNORED, 0),
        "failed": failed,
        "quarantined": quarantined,
        "pending": pending,
    }


def oldest_pending(session: Session) -> datetime | None:
    return session.scalar(
        select(func.min(InboxEvent.received_at)).where(InboxEvent.status == EventStatus.PENDING)
    )


def last_event(session: Session) -> InboxEvent | None:
    return session.scalars(
        select(InboxEvent).order_by(InboxEvent.received_at.desc(), InboxEvent.id.desc()).limit(1)
    ).first()


def last_processed(session: Session) -> InboxEvent | None:
    return session.scalars(
        select(InboxEvent)
        .where(InboxEvent.status == EventStatus.PROCESSED)
        .order_by(InboxEvent.processed_at.desc())
        .limit(1)
    ).first()


def events_with_warnings(session: Session) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(InboxEvent).where(InboxEvent.warnings.is_not(None))
        )
        or 0
    )
