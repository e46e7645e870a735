"""Reading the whole derived ledger back, for equality checks between runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.ledger_store import rebuild_rollups
from models.tables import (
    CustomerBalance,
    CustomerSegment,
    LedgerDaily,
    LedgerMovement,
    SegmentDaily,
    SegmentMovement,
    SegmentTrial,
    SegmentTrialDaily,
    SubscriptionRow,
    TrialTransitionRow,
)

#: Derived tables compared whole, every column (none has a surrogate key or timestamp).
WHOLE_TABLES = (TrialTransitionRow, CustomerSegment, SegmentMovement, SegmentTrial)


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
        whole = {table.__tablename__: rows_of(s, table) for table in WHOLE_TABLES}
        segment_daily = [r for r in rows_of(s, SegmentDaily) if r[-1] != 0]
        segment_trial_daily = [r for r in rows_of(s, SegmentTrialDaily) if r[-1] != 0]
    return {
        "movements": sorted(movements),
        "subscriptions": sorted(subs),
        "balances": sorted(balances),
        "daily": sorted(daily),
        **whole,
        "segment_daily": segment_daily,
        "segment_trial_daily": segment_trial_daily,
    }


def rows_of(session: Session, table: Any) -> list[tuple[Any, ...]]:
    """Every row of `table`, every column, dates as ISO text, sorted."""
    rows = session.execute(select(table.__table__)).all()
    plain = [tuple(v.isoformat() if hasattr(v, "isoformat") else v for v in r) for r in rows]
    return sorted(plain, key=repr)


def recounted_segment_rollups(db: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    """`segment_daily` and `segment_trial_daily` recomputed from the stored segments
    (rolled back), nonzero rows, keyed as `ledger_snapshot` keys them."""
    with db() as s:
        s.begin()
        rebuild_rollups(s)
        found = {
            "segment_daily": [r for r in rows_of(s, SegmentDaily) if r[-1] != 0],
            "segment_trial_daily": [r for r in rows_of(s, SegmentTrialDaily) if r[-1] != 0],
        }
        s.rollback()
    return found


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
