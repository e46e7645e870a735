"""Reading a customer's events and writing its derived ledger, in the caller's transaction."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Select, delete, func, select, text, update
from sqlalchemy import insert as insert_into
from sqlalchemy.orm import Session

from ledger.errors import InvalidEvent
from ledger.events import SUBSCRIPTION_EVENT_TYPES, SubscriptionEvent, parse_event
from ledger.timeline import CustomerLedger, Movement, MovementType
from models.db import dialect_insert
from models.tables import (
    CustomerBalance,
    EventStatus,
    InboxEvent,
    LedgerDaily,
    LedgerMovement,
    SubscriptionRow,
    utcnow,
)
from reporting.metrics import churn_reason_key


def at(unix_seconds: int) -> datetime:
    return datetime.fromtimestamp(unix_seconds, UTC)


def parse_rows(rows: Iterable[InboxEvent]) -> tuple[list[SubscriptionEvent], dict[str, str]]:
    """Parse stored events; the invalid ones come back apart with their error (never applied)."""
    events: list[SubscriptionEvent] = []
    invalid: dict[str, str] = {}
    for row in rows:
        try:
            events.append(parse_event(json.loads(row.payload)))
        except (InvalidEvent, ValueError) as exc:
            invalid[row.id] = str(exc)
    return events, invalid


def customer_rows(session: Session, customer_id: str) -> list[InboxEvent]:
    """Every stored subscription event of the customer, whatever its status.

    The ledger is a function of every event received; status is only bookkeeping.
    """
    return list(
        session.scalars(
            select(InboxEvent).where(
                InboxEvent.customer_id == customer_id,
                InboxEvent.type.in_(SUBSCRIPTION_EVENT_TYPES),
            )
        )
    )


def customers_with_events(session: Session) -> list[str]:
    """Every customer that has a stored subscription event, sorted."""
    return list(
        session.scalars(_customers_with_events().distinct().order_by(InboxEvent.customer_id))
    )


def _customers_with_events() -> Select[str | None]:
    """Customer ids of stored subscription events (one row per event)."""
    return select(InboxEvent.customer_id).where(
        InboxEvent.customer_id.is_not(None), InboxEvent.type.in_(SUBSCRIPTION_EVENT_TYPES)
    )


def delete_orphans(session: Session) -> int:
    """Delete derived rows of customers without stored events; returns customers affected."""
    known = _customers_with_events()
    orphans = session.scalar(
        select(func.count(func.distinct(SubscriptionRow.customer_id))).where(
            SubscriptionRow.customer_id.not_in(known)
        )
    )
    for table in (LedgerMovement, SubscriptionRow, CustomerBalance):
        session.execute(delete(table).where(table.customer_id.not_in(known)))
    return int(orphans or 0)


def write_ledger(session: Session, ledger: CustomerLedger, applied: Iterable[InboxEvent]) -> None:
    """Replace the customer's ledger rows with `ledger` and mark `applied` events processed.

    `applied` are the inbox rows `ledger` was derived from (loaded under the customer lock).

    Idempotent: writing the same ledger twice leaves the same rows. Does not commit.
    """
    customer = ledger.customer_id
    _apply_rollup_delta(session, customer, ledger)
    session.execute(delete(LedgerMovement).where(LedgerMovement.customer_id == customer))
    session.execute(delete(SubscriptionRow).where(SubscriptionRow.customer_id == customer))
    session.execute(delete(CustomerBalance).where(CustomerBalance.customer_id == customer))
    session.add_all(
        LedgerMovement(
            customer_id=m.customer_id,
            currency=m.currency,
            seq=m.seq,
            occurred_at=at(m.occurred_at),
            occurred_day=at(m.occurred_at).date(),
            event_id=m.event_id,
            subscription_id=m.subscription_id,
            type=m.type.value,
            amount=m.amount,
            mrr_before=m.mrr_before,
            mrr_after=m.mrr_after,
            kind=m.kind.value if m.kind else None,
            churn_reason=m.churn_reason,
            churn_feedback=m.churn_feedback,
            reason_key=_reason_key(m),
            delinquent=m.delinquent,
        )
        for m in ledger.movements
    )
    session.add_all(
        SubscriptionRow(
            id=s.id,
            customer_id=s.customer_id,
            currency=s.currency,
            status=s.status,
            mrr=s.mrr,
            scheduled_to_cancel=s.scheduled_to_cancel,
            last_event_id=s.last_event_id,
            last_event_at=at(s.last_event_created),
            warnings=json.dumps(list(s.warnings)) if s.warnings else None,
        )
        for s in ledger.subscriptions
    )
    session.add_all(
        CustomerBalance(
            customer_id=b.customer_id,
            currency=b.currency,
            mrr=b.mrr,
            scheduled_churn=b.scheduled_churn,
            first_new_at=at(b.first_new_at) if b.first_new_at is not None else None,
        )
        for b in ledger.balances
    )
    now = utcnow()
    for row in applied:
        warnings = ledger.warnings.get(row.id)
        encoded = json.dumps(list(warnings)) if warnings else None
        values: dict[str, object] = {}
        if encoded != row.warnings:
            values["warnings"] = encoded
        if row.status != EventStatus.PROCESSED:  # pending, or failed earlier for a passing cause
            latency_ms = int((now - row.received_at).total_seconds() * 1000)
            values.update(status=EventStatus.PROCESSED, processed_at=now, apply_ms=latency_ms)
        if values:
            session.execute(update(InboxEvent).where(InboxEvent.id == row.id).values(**values))
    session.flush()


RollupKey = tuple[str, date, str, str, str, bool]


def _reason_key(m: Movement) -> str | None:
    """What `churn_by_reason` groups a churn by; None for other movements."""
    if m.type is not MovementType.CHURN:
        return None
    return churn_reason_key(m.churn_feedback, m.churn_reason)


def _rollup_key(m: Movement) -> RollupKey:
    return (
        m.currency,
        at(m.occurred_at).date(),
        m.type.value,
        m.kind.value if m.kind else "",
        _reason_key(m) or "",
        m.delinquent,
    )


def _apply_rollup_delta(session: Session, customer: str, ledger: CustomerLedger) -> None:
    """Add (new movements − stored movements) of one customer to `ledger_daily`.

    Keys are applied in sorted order so concurrent writers lock rollup rows in the same
    order and cannot deadlock. A rewrite that only appends touches only the new days.
    """
    delta: dict[RollupKey, list[int]] = defaultdict(lambda: [0, 0])
    key = _rollup_columns()
    old = session.execute(
        select(*key, func.sum(LedgerMovement.amount), func.count())
        .where(LedgerMovement.customer_id == customer)
        .group_by(*key)
    )
    for row in old:
        currency, day, type_, kind, reason, delinquent, amount, count = tuple(row)
        entry = delta[(currency, day, type_, kind, reason, bool(delinquent))]
        entry[0] -= int(amount)
        entry[1] -= int(count)
    for movement in ledger.movements:
        entry = delta[_rollup_key(movement)]
        entry[0] += movement.amount
        entry[1] += 1
    changes = sorted((k, v) for k, v in delta.items() if v != [0, 0])
    if not changes:
        return
    insert = dialect_insert(session)
    for (currency, day, type_, kind, reason, delinquent), (amount, count) in changes:
        stmt = insert(LedgerDaily).values(
            currency=currency,
            day=day,
            type=type_,
            kind=kind,
            reason_key=reason,
            delinquent=delinquent,
            amount=amount,
            count=count,
        )
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["currency", "day", "type", "kind", "reason_key", "delinquent"],
                set_={
                    "amount": LedgerDaily.amount + stmt.excluded.amount,
                    "count": LedgerDaily.count + stmt.excluded.count,
                },
            )
        )


def rebuild_rollups(session: Session) -> None:
    """Recompute `ledger_daily` from every movement (after bulk loads, in `mrr rebuild`).

    On PostgreSQL the table is locked for writes meanwhile: a worker's delta then lands
    after the recount, on top of it, never inside it.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE ledger_daily IN EXCLUSIVE MODE"))
    key = _rollup_columns()
    session.execute(delete(LedgerDaily))
    session.execute(
        insert_into(LedgerDaily).from_select(
            ["currency", "day", "type", "kind", "reason_key", "delinquent", "amount", "count"],
            select(*key, func.sum(LedgerMovement.amount), func.count()).group_by(*key),
        )
    )


def _rollup_columns() -> tuple[Any, ...]:
    """The `ledger_daily` key as expressions over `ledger_movements` (NULL → '')."""
    m = LedgerMovement
    return (
        m.currency,
        m.occurred_day,
        m.type,
        func.coalesce(m.kind, ""),
        func.coalesce(m.reason_key, ""),
        m.delinquent,
    )
