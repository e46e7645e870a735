"""The `customers` table: each customer's attributes as its newest `customer.*` event
told them (newest wins, whatever order the events are applied in)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ledger.customers import CUSTOMER_EVENT_TYPES, CustomerAttributes, customer_attributes, newest
from models.tables import CustomerRow, InboxEvent

#: Rows per statement: a statement has at most 65,535 parameters (PostgreSQL) and
#: 32,766 (SQLite), and a row of `customers` takes 7.
CHUNK = 500


def record_from_inbox(session: Session, event_ids: Sequence[str]) -> int:
    """Record the attributes of the stored `customer.*` events among `event_ids`;
    returns how many customers were written."""
    ids = sorted(set(event_ids))
    return sum(_record_chunk(session, ids[i : i + CHUNK]) for i in range(0, len(ids), CHUNK))


def _record_chunk(session: Session, event_ids: Sequence[str]) -> int:
    if not event_ids:
        return 0
    e = InboxEvent
    rows = session.execute(
        select(e.payload).where(e.id.in_(event_ids), e.type.in_(CUSTOMER_EVENT_TYPES))
    ).all()
    found = []
    for (payload,) in rows:
        try:
            read = customer_attributes(json.loads(payload))
        except ValueError:
            continue
        if read is not None:
            found.append(read)
    return record(session, found)


def record(session: Session, attributes: Sequence[CustomerAttributes]) -> int:
    """Upsert the newest of `attributes` per customer, unless the stored row is newer."""
    kept = newest(attributes)
    for start in range(0, len(kept), CHUNK):
        _upsert(session, kept[start : start + CHUNK])
    return len(kept)


def _upsert(session: Session, kept: Sequence[CustomerAttributes]) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = [_values(a) for a in kept]
    # Executed for many parameter sets, not as one multi-row VALUES: a statement text
    # per batch size would be parsed again by the driver every time (half a second for
    # a thousand customers).
    stmt = insert(CustomerRow)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={
            c: excluded[c]
            for c in ("country", "shipping_country", "metadata_json", "deleted", "as_of")
        }
        | {"event_id": excluded.event_id},
        where=(CustomerRow.as_of < excluded.as_of)
        | ((CustomerRow.as_of == excluded.as_of) & (CustomerRow.event_id <= excluded.event_id)),
    )
    session.execute(stmt, values)


def attributes_of(session: Session, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored attributes of `customer_ids` (those known), by id."""
    rows = session.scalars(select(CustomerRow).where(CustomerRow.id.in_(sorted(customer_ids))))
    return {
        r.id: {
            "country": r.country,
            "shipping_country": r.shipping_country,
            "metadata": json.loads(r.metadata_json),
            "deleted": r.deleted,
            "as_of": r.as_of,
        }
        for r in rows
    }


def _values(a: CustomerAttributes) -> dict[str, Any]:
    return {
        "id": a.id,
        "country": a.country,
        "shipping_country": a.shipping_country,
        "metadata_json": json.dumps(a.metadata, sort_keys=True),
        "deleted": a.deleted,
        "as_of": datetime.fromtimestamp(a.at, UTC),
        "event_id": a.event_id,
    }
