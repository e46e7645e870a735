"""SQLAlchemy 2.0 tables: the inbox of raw events and the ledger derived from it.

Money is integer minor units (BigInteger); times are timezone-aware UTC. Every table
but `inbox_events`, `stripe_objects` and the bookkeeping of `leases` and `reconcile_runs`
is derived data: `mrr rebuild` can recreate it from the inbox at any time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from models.clock import utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that also comes back aware from SQLite (which drops zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: Autoincrementing 64-bit keys (SQLite only autoincrements INTEGER PRIMARY KEY).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class EventStatus(StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    IGNORED = "ignored"  # a type the ledger does not use; counted as processed
    FAILED = "failed"  # its job failed on every attempt
    QUARANTINED = "quarantined"  # the ledger can never apply it as it is; left out of it


class InboxEvent(Base):
    """Every distinct Stripe event received, stored before the 200 (persist-then-ack)."""

    __tablename__ = "inbox_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(255))
    created: Mapped[int | None] = mapped_column(BigInteger)  # event `created`, unix seconds
    api_version: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    payload: Mapped[str] = mapped_column(Text)  # the verified raw body, as received
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.PENDING)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[str | None] = mapped_column(Text)  # JSON list, when priced incompletely
    #: Milliseconds from receipt to the commit that applied it (the apply-latency metric).
    apply_ms: Mapped[int | None] = mapped_column(Integer)
    #: Made up by `mrr backfill`/`mrr reconcile` (SPEC §9), not sent by Stripe.
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (
        Index("ix_inbox_events_status_received", "status", "received_at"),
        Index("ix_inbox_events_processed_at", "processed_at"),
    )


class LedgerMovement(Base):
    """One movement of a customer's MRR in one currency (rewritten per customer)."""

    __tablename__ = "ledger_movements"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(8))
    seq: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    occurred_day: Mapped[date] = mapped_column(Date)  # UTC day, for daily rollups
    event_id: Mapped[str] = mapped_column(String(255))
    subscription_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    mrr_before: Mapped[int] = mapped_column(BigInteger)
    mrr_after: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str | None] = mapped_column(String(16))
    churn_reason: Mapped[str | None] = mapped_column(String(255))
    churn_feedback: Mapped[str | None] = mapped_column(String(255))
    reason_key: Mapped[str | None] = mapped_column(String(255))
    delinquent: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        UniqueConstraint("customer_id", "currency", "seq", name="uq_ledger_customer_seq"),
        Index("ix_ledger_currency_day", "currency", "occurred_day"),
    )


class LedgerDaily(Base):
    """Movements summed per currency, UTC day and report key: what reports read.

    Kept exact by `write_ledger`, which adds each customer rewrite's difference (new
    movements minus old) in the same transaction; `mrr rebuild` recomputes it whole.
    Empty strings stand for "no kind" and "no reason" so the key can be a primary key.
    """

    __tablename__ = "ledger_daily"

    currency: Mapped[str] = mapped_column(String(8), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    type: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True, default="")
    reason_key: Mapped[str] = mapped_column(String(255), primary_key=True, default="")
    delinquent: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=False)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class SubscriptionRow(Base):
    """A subscription as its latest event leaves it, in its customer's ledger.

    Keyed by customer too: Stripe never gives one subscription to two customers, but a
    broken or hostile sender can, and then each customer's ledger counts what its own
    events say instead of one customer's writes failing for good.
    """

    __tablename__ = "subscriptions"

    customer_id: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    currency: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(32))
    mrr: Mapped[int] = mapped_column(BigInteger)
    scheduled_to_cancel: Mapped[bool] = mapped_column(Boolean, default=False)
    last_event_id: Mapped[str] = mapped_column(String(255))
    last_event_at: Mapped[datetime] = mapped_column(UTCDateTime)
    warnings: Mapped[str | None] = mapped_column(Text)


class CustomerBalance(Base):
    """A customer's current MRR per currency: the fast path of `/reports/summary`."""

    __tablename__ = "customer_balances"

    customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    currency: Mapped[str] = mapped_column(String(8), primary_key=True)
    mrr: Mapped[int] = mapped_column(BigInteger)
    scheduled_churn: Mapped[int] = mapped_column(BigInteger, default=0)
    first_new_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_customer_balances_currency", "currency"),)


class ReconcileRun(Base):
    """One `mrr reconcile`: how many subscriptions it compared, how many drifted, by how
    much per currency (JSON object of minor units), and how many it fixed."""

    __tablename__ = "reconcile_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    checked: Mapped[int] = mapped_column(Integer)
    drifted: Mapped[int] = mapped_column(Integer)
    fixed: Mapped[int] = mapped_column(Integer)
    drift: Mapped[str] = mapped_column(Text)


class Lease(Base):
    """A named lease held by one process at a time (e.g. the sweeper), until `expires_at`."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StripeObject(Base):
    """Cache of immutable Stripe objects fetched by id (price tiers, coupons, discounts)."""

    __tablename__ = "stripe_objects"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    payload: Mapped[str] = mapped_column(Text)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SignInFailure(Base):
    """A failed dashboard sign-in, kept for the throttle's window only (SPEC §13: the
    throttle holds across processes and hosts)."""

    __tablename__ = "sign_in_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_sign_in_failures_address_at", "address", "at"),
        Index("ix_sign_in_failures_at", "at"),
    )
