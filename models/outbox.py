"""The alert outbox (SPEC §12): messages recorded in the database before they are posted.

A movement's message is keyed by customer, currency, second and type, a digest by its
day; inserting either twice adds nothing. The sender claims a row by moving it from
`pending` to `sending` in its own committed statement before the POST, so a row is
posted at most once whatever crashes: a sender that dies mid-post leaves it `sending`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session

from models.db import dialect_insert
from models.tables import AlertOutbox, AlertStatus


def record(session: Session, rows: Sequence[dict[str, Any]], now: datetime) -> None:
    """Insert messages (`kind`, `text` and their key columns), each at most once ever.
    Does not commit."""
    if not rows:
        return
    values = [
        {
            "customer_id": None,
            "currency": None,
            "occurred_at": None,
            "type": None,
            "digest_day": None,
            **row,
            "status": AlertStatus.PENDING,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
        for row in rows
    ]
    stmt = dialect_insert(session)(cast(Table, AlertOutbox.__table__)).on_conflict_do_nothing()
    session.execute(stmt, values)


def has_digest(session: Session, day: date) -> bool:
    return session.scalar(select(AlertOutbox.id).where(AlertOutbox.digest_day == day)) is not None


def due(session: Session, now: datetime, limit: int) -> list[AlertOutbox]:
    """Pending messages whose time has come, oldest first."""
    o = AlertOutbox
    return list(
        session.scalars(
            select(o)
            .where(o.status == AlertStatus.PENDING, o.next_attempt_at <= now)
            .order_by(o.next_attempt_at, o.id)
            .limit(limit)
        )
    )


def claim(session: Session, row_id: int) -> bool:
    """Move a pending row to `sending`; False if another sender has it. Does not commit."""
    taken = session.execute(
        update(AlertOutbox)
        .where(AlertOutbox.id == row_id, AlertOutbox.status == AlertStatus.PENDING)
        .values(status=AlertStatus.SENDING, attempts=AlertOutbox.attempts + 1)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def sent(session: Session, row_id: int, now: datetime) -> None:
    session.execute(
        update(AlertOutbox)
        .where(AlertOutbox.id == row_id)
        .values(status=AlertStatus.SENT, sent_at=now, last_error=None)
    )


def retry(session: Session, row_id: int, at: datetime | None, error: str) -> None:
    """Back to pending until `at`; None: give up (`failed`)."""
    values: dict[str, Any] = {"last_error": error[:255]}
    if at is None:
        values["status"] = AlertStatus.FAILED
    else:
        values.update(status=AlertStatus.PENDING, next_attempt_at=at)
    session.execute(update(AlertOutbox).where(AlertOutbox.id == row_id).values(**values))


def counts(session: Session) -> dict[str, int]:
    """Messages per status (`pending`, `sending`, `sent`, `failed`)."""
    found = dict(
        session.execute(select(AlertOutbox.status, func.count()).group_by(AlertOutbox.status)).all()
    )
    return {s.value: int(found.get(s.value, 0)) for s in AlertStatus}


def later(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)
