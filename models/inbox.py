"""The inbox: durable storage of every verified event, and its bookkeeping."""

from __future__ import annotations

import os
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import psycopg
from sqlalchemy import Engine, bindparam, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from ledger.customers import CUSTOMER_EVENT_TYPES
from ledger.events import SUBSCRIPTION_EVENT_TYPES, is_subscription_event
from ledger.snapshot import customer_id_of
from models.clock import utcnow
from models.db import describe
from models.errors import InboxRefused, InboxUnavailable
from models.tables import EventStatus, InboxEvent


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


def store_event(
    session: Session, event: Mapping[str, Any], raw: str, *, synthetic: bool = False
) -> Stored:
    """Insert a verified event unless its id is already stored (insert-or-ignore).

    Types the ledger does not use are stored as `ignored`; `synthetic` marks an event
    made up by backfill or reconcile. Does not commit.
    """
    values = _row_values(event, raw, synthetic)
    inserted = session.execute(_insert(session.get_bind().dialect.name), values).scalar()
    if inserted is not None:
        return Stored(values["id"], True, values["status"] == EventStatus.PENDING)
    status = session.scalar(select(InboxEvent.status).where(InboxEvent.id == values["id"]))
    return Stored(values["id"], False, status == EventStatus.PENDING)


def store_events_committed(
    engine: Engine, items: Sequence[tuple[Mapping[str, Any], str]], *, synthetic: bool = False
) -> list[Stored]:
    """Store many events with one multi-row insert, committed before this returns.

    Ids stored already (duplicate deliveries) cost one more query. Results follow
    `items`' order. `synthetic` marks them all as made up by backfill or reconcile.
    For the webhook's hot path see `InboxWriter`.
    """
    rows = [_row_values(event, raw, synthetic) for event, raw in items]
    unique = _unique(rows)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # The intake's one prepared statement: a multi-row VALUES of a hundred events
            # is a new statement text of 1,200 placeholders that psycopg parses every time
            # (most of a backfill's time storing its histories, BENCHMARKS.md).
            found = conn.exec_driver_sql(_UNNEST_INSERT, _unnest_arrays(unique))
            inserted = set(found.scalars())
        else:
            inserted = set(conn.execute(_insert(engine.dialect.name), unique).scalars())
        known = [r["id"] for r in unique if r["id"] not in inserted]
        statuses = dict(conn.execute(_statuses_of, {"ids": known}).all()) if known else {}
    return _outcomes(rows, inserted, statuses)


class InboxWriter:
    """The intake's own database connection, for group commits of webhook deliveries.

    On PostgreSQL it holds one raw psycopg connection in autocommit mode for the life of
    the process and writes a whole batch with one prepared `INSERT … SELECT FROM unnest`:
    one round trip, committed (durable) when it returns. Going through a pooled SQLAlchemy
    connection per batch cost three times the CPU (check-out, reset, begin/commit), which
    was most of the webhook's time. Opened on first use, in the process that writes, and
    opened again after an error or a fork. Elsewhere (SQLite) it is `store_events_committed`.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Any = None  # the pool's wrapper, detached from the pool
        self._dbapi: Any = None  # the psycopg connection inside it
        self._pid = 0

    def store(self, items: Sequence[tuple[Mapping[str, Any], str]]) -> list[Stored]:
        """Store the events, committed on return; raises `InboxUnavailable`."""
        if self.engine.dialect.name != "postgresql":
            try:
                return store_events_committed(self.engine, items)
            except (DataError, IntegrityError) as exc:
                raise InboxRefused(describe(exc)) from exc
            except SQLAlchemyError as exc:
                raise InboxUnavailable(describe(exc)) from exc
        rows = [_row_values(event, raw) for event, raw in items]
        unique = _unique(rows)
        try:
            conn = self._connection()
            with conn.cursor() as cur:
                cur.execute(_UNNEST_INSERT, _unnest_arrays(unique))
                inserted = {r[0] for r in cur.fetchall()}
                known = [r["id"] for r in unique if r["id"] not in inserted]
                statuses: dict[str, str] = {}
                if known:
                    cur.execute(_STATUSES_SQL, (known,))
                    statuses = dict(cur.fetchall())
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            raise InboxRefused(describe(exc)) from exc
        except Exception as exc:
            self.close()
            raise InboxUnavailable(describe(exc)) from exc
        return _outcomes(rows, inserted, statuses)

    def _connection(self) -> Any:
        if self._conn is None or self._pid != os.getpid():
            self._conn = self.engine.raw_connection()
            self._dbapi = self._conn.driver_connection
            # Out of the pool for good: in autocommit mode it must never serve anyone else,
            # and it is closed, not returned, when dropped.
            self._conn.detach()
            self._dbapi.autocommit = True
            self._pid = os.getpid()
            weakref.finalize(self, self._dbapi.close)  # closed with the writer, not leaked
        return self._dbapi

    def close(self) -> None:
        if self._conn is not None:
            if self._pid == os.getpid():  # a connection of a parent process is left alone
                self._conn.close()
            self._conn = self._dbapi = None


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first row of each id (a batch may carry one event twice)."""
    return list({row["id"]: row for row in reversed(rows)}.values())


def _outcomes(
    rows: list[dict[str, Any]], inserted: set[str], statuses: Mapping[str, str]
) -> list[Stored]:
    seen: set[str] = set()
    stored = []
    for row in rows:
        new = row["id"] in inserted and row["id"] not in seen
        seen.add(row["id"])
        status = row["status"] if new else statuses.get(row["id"], EventStatus.PENDING)
        stored.append(Stored(row["id"], new, status == EventStatus.PENDING))
    return stored


#: Columns the intake writes, with their PostgreSQL types for `unnest`.
_UNNEST_COLUMNS = {
    "id": "text",
    "type": "text",
    "created": "bigint",
    "api_version": "text",
    "customer_id": "text",
    "payload": "text",
    "status": "text",
    "received_at": "timestamptz",
    "enqueued_at": "timestamptz",
    "processed_at": "timestamptz",
    "attempts": "integer",
    "synthetic": "boolean",
}
#: One statement text whatever the batch size (one array per column), so PostgreSQL
#: plans it once and psycopg prepares it once per connection. Binary parameters (%b):
#: a text array in text format would escape every quote of every JSON payload.
_UNNEST_INSERT = (
    f"INSERT INTO inbox_events ({', '.join(_UNNEST_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'%b::{t}[]' for t in _UNNEST_COLUMNS.values())}) "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)


def _unnest_arrays(rows: Sequence[Mapping[str, Any]]) -> tuple[list[Any], ...]:
    """`_UNNEST_INSERT`'s parameters: one array per column."""
    return tuple([r[c] for r in rows] for c in _UNNEST_COLUMNS)


_STATUSES_SQL = "SELECT id, status FROM inbox_events WHERE id = ANY(%s)"
_statuses_of = select(InboxEvent.id, InboxEvent.status).where(
    InboxEvent.id.in_(bindparam("ids", expanding=True))
)


@lru_cache(maxsize=4)
def _insert(dialect: str) -> Any:
    """INSERT … ON CONFLICT (id) DO NOTHING RETURNING id, built once per dialect."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(InboxEvent).on_conflict_do_nothing(index_elements=["id"]).returning(InboxEvent.id)


def _row_values(event: Mapping[str, Any], raw: str, synthetic: bool = False) -> dict[str, Any]:
    event_id = str(event["id"])
    event_type = str(event["type"])
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    created = event.get("created")
    api_version = event.get("api_version")
    # `customer.*` events go through a worker too: they keep the customer's attributes.
    applied = is_subscription_event(event_type) or event_type in CUSTOMER_EVENT_TYPES
    now = utcnow()
    return {
        "id": event_id,
        "type": event_type,
        "created": created if isinstance(created, int) and not isinstance(created, bool) else None,
        "api_version": api_version if isinstance(api_version, str) else None,
        "customer_id": customer_id_of(obj) if isinstance(obj, Mapping) else None,
        "payload": raw,
        "status": EventStatus.PENDING if applied else EventStatus.IGNORED,
        "received_at": now,
        # Set optimistically: if the enqueue after commit fails, the sweeper retries it.
        "enqueued_at": now if applied else None,
        "processed_at": None if applied else now,
        "attempts": 0,
        "apply_ms": None,
        "last_error": None,
        "warnings": None,
        "synthetic": synthetic,
    }


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


def pending_ids(session: Session) -> list[str]:
    """Every event no worker has applied yet."""
    e = InboxEvent
    return list(session.scalars(select(e.id).where(e.status == EventStatus.PENDING).order_by(e.id)))


def pending_customer_count(session: Session) -> int:
    """How many customers have a subscription event no worker has applied yet."""
    e = InboxEvent
    query = select(func.count(e.customer_id.distinct())).where(
        e.status == EventStatus.PENDING, e.type.in_(SUBSCRIPTION_EVENT_TYPES)
    )
    return int(session.scalar(query) or 0)


def quarantine(session: Session, reasons: Mapping[str, str]) -> None:
    """Set events aside that the ledger can never apply as they are (SPEC §8): kept with
    their reason, left out of their customer's ledger until `mrr retry`."""
    for event_id, reason in sorted(reasons.items()):
        session.execute(
            update(InboxEvent)
            .where(InboxEvent.id == event_id)
            .values(status=EventStatus.QUARANTINED, last_error=reason[:4000])
        )


@dataclass(frozen=True)
class Problem:
    """A failed or quarantined event, for operators: ids, type and reason, no payload."""

    id: str
    type: str
    status: str
    attempts: int
    reason: str | None
    received_at: datetime


def problems(session: Session) -> list[Problem]:
    """Every failed or quarantined event, oldest first."""
    e = InboxEvent
    rows = session.execute(
        select(e.id, e.type, e.status, e.attempts, e.last_error, e.received_at)
        .where(e.status.in_((EventStatus.FAILED, EventStatus.QUARANTINED)))
        .order_by(e.received_at, e.id)
    )
    return [Problem(*row) for row in rows]


def reset_for_retry(session: Session, event_ids: Sequence[str] | None) -> list[str]:
    """Make failed or quarantined events pending again with a fresh attempt budget (all of
    them when `event_ids` is None); returns the ids reset. Does not commit."""
    e = InboxEvent
    query = select(e.id).where(e.status.in_((EventStatus.FAILED, EventStatus.QUARANTINED)))
    if event_ids is not None:
        query = query.where(e.id.in_(event_ids))
    ids = sorted(session.scalars(query))
    if ids:
        session.execute(
            update(e)
            .where(e.id.in_(ids))
            .values(status=EventStatus.PENDING, attempts=0, last_error=None, enqueued_at=utcnow())
        )
    return ids


def pending_of(session: Session, customers: Collection[str]) -> list[str]:
    """Ids of the customers' events that no worker has applied yet."""
    if not customers:
        return []
    e = InboxEvent
    return list(
        session.scalars(
            select(e.id).where(
                e.customer_id.in_(sorted(customers)), e.status == EventStatus.PENDING
            )
        )
    )


def one_event_each(session: Session, customers: Collection[str]) -> list[str]:
    """One stored subscription event id of each customer: applying it derives the
    customer's whole ledger again (after `delete_synthetic`)."""
    if not customers:
        return []
    e = InboxEvent
    return list(
        session.scalars(
            select(func.min(e.id))
            .where(e.customer_id.in_(sorted(customers)), e.status != EventStatus.QUARANTINED)
            .group_by(e.customer_id)
        )
    )


def delete_synthetic(session: Session, event_ids: Sequence[str]) -> int:
    """Remove synthetic events (a history that a later backfill replaces); Stripe's own
    events are never removed. Returns how many went."""
    if not event_ids:
        return 0
    e = InboxEvent
    found = session.execute(delete(e).where(e.id.in_(sorted(event_ids)), e.synthetic.is_(True)))
    return int(getattr(found, "rowcount", 0) or 0)


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


def counts_by_type(session: Session) -> dict[str, dict[str, int]]:
    """SPEC §6 inbox counts per event type (`tally` of each type's statuses)."""
    rows = session.execute(
        select(InboxEvent.type, InboxEvent.status, func.count()).group_by(
            InboxEvent.type, InboxEvent.status
        )
    ).all()
    by_type: dict[str, dict[str, int]] = {}
    for event_type, status, n in rows:
        by_type.setdefault(event_type, {})[status] = int(n)
    return {event_type: tally(statuses) for event_type, statuses in sorted(by_type.items())}


def counts(session: Session) -> dict[str, int]:
    """SPEC §6 inbox counts of the whole inbox (`tally` of its statuses)."""
    by_status = dict(
        session.execute(select(InboxEvent.status, func.count()).group_by(InboxEvent.status)).all()
    )
    return tally(by_status)


def tally(by_status: Mapping[str, int]) -> dict[str, int]:
    """SPEC §6: received = processed + failed + pending, from the number of rows per status.

    Ignored types count as processed, quarantined events as failed (each also has a
    count of its own). `/status` and `/metrics` both count through here.
    """
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


def apply_latency(session: Session, buckets_s: Sequence[float]) -> tuple[list[int], int, int]:
    """Applied events with a receipt-to-commit latency within each of `buckets_s`
    (cumulative), their number and the sum of their latencies in milliseconds."""
    e = InboxEvent
    row = session.execute(
        select(
            *(func.sum(case((e.apply_ms <= b * 1000, 1), else_=0)) for b in buckets_s),
            func.count(),
            func.coalesce(func.sum(e.apply_ms), 0),
        ).where(e.apply_ms.is_not(None))
    ).one()
    *cumulative, count, sum_ms = row
    return [int(c or 0) for c in cumulative], int(count), int(sum_ms)


def synthetic_count(session: Session) -> int:
    """Events made up by backfill or reconcile (SPEC §9), whatever their status."""
    count = select(func.count()).select_from(InboxEvent).where(InboxEvent.synthetic.is_(True))
    return session.scalar(count) or 0


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
