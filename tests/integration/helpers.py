"""Reading the whole derived ledger back, for equality checks between runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.ledger_store import rebuild_rollups
from models.tables import CustomerBalance, LedgerDaily, LedgerMovement, SubscriptionRow


def ledger_snapshot(db: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    """Every derived row, without surrogate keys or bookkeeping timestamps."""
    with db() as s:
        movements = [
            (
                m.customer_id,
                m.currency,
                m.seq,
                m.occurred_at.isoformat(),
                m.event_id,
                m.subscription_id,
                m.type,
                m.amount,
                m.mrr_before,
                m.mrr_after,
                m.kind,
                m.churn_reason,
                m.churn_feedback,
                m.reason_key,
                m.delinquent,
            )
            for m in s.scalars(select(LedgerMovement))
        ]
        subs = [
            (
                r.id,
                r.customer_id,
                r.currency,
                r.status,
                r.mrr,
                r.scheduled_to_cancel,
                r.last_event_id,
                r.last_event_at.isoformat(),
                r.warnings,
            )
            for r in s.scalars(select(SubscriptionRow))
        ]
        balances = [
            (
                b.customer_id,
                b.currency,
                b.mrr,
                b.scheduled_churn,
                b.first_new_at.isoformat() if b.first_new_at else None,
            )
            for b in s.scalars(select(CustomerBalance))
        ]
        daily = [
            (
                d.currency,
                d.day.isoformat(),
                d.type,
                d.kind,
                d.reason_key,
                d.delinquent,
                d.amount,
                d.count,
            )
            for d in s.scalars(select(LedgerDaily).where(LedgerDaily.count != 0))
        ]
    return {
        "movements": sorted(movements),
        "subscriptions": sorted(subs),
        "balances": sorted(balances),
        "daily": sorted(daily),
    }


def recounted_daily(db: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    """The rollup recomputed from the movements (in a transaction that is rolled back)."""
    with db() as s:
        s.begin()
        rebuild_rollups(s)
        rows = sorted(
            (
                d.currency,
                d.day.isoformat(),
                d.type,
                d.kind,
                d.reason_key,
                d.delinquent,
                d.amount,
                d.count,
            )
            for d in s.scalars(select(LedgerDaily))
        )
        s.rollback()
    return rows


def movement_rows(db: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    with db() as s:
        return sorted(
            (
                m.customer_id,
                m.currency,
                m.seq,
                m.occurred_day.isoformat(),
                m.type,
                m.amount,
                m.mrr_after,
                m.kind,
                m.reason_key,
                m.delinquent,
            )
            for m in s.scalars(select(LedgerMovement))
        )
