"""SQLAlchemy 2.0 tables: the inbox of raw events and the ledger derived from it.

Money is integer minor units (BigInteger); times are timezone-aware UTC. Every table
but `inbox_events`, `stripe_objects` and the bookkeeping of `leases` and `reconcile_runs`
is derived data: `mrr rebuild` can recreate it from the inbox at any time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
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
    Numeric,
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


class ExactDecimal(TypeDecorator[Decimal]):
    """A decimal stored exactly as given: `NUMERIC` without a scale on PostgreSQL, its
    text on SQLite (whose NUMERIC would round-trip through a float)."""

    impl = String(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(asdecimal=True))
        return dialect.type_descriptor(String(32))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise ValueError("an exact decimal column takes a Decimal")
        return value if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        return Decimal(value)


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
    #: JSON lists (SPEC §12): the subscriptions that moved and the events behind it.
    subscription_ids: Mapped[str | None] = mapped_column(Text)
    event_ids: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("customer_id", "currency", "seq", name="uq_ledger_customer_seq"),
        Index("ix_ledger_currency_day", "currency", "occurred_day"),
        Index("ix_ledger_occurred_at", "occurred_at", "customer_id"),
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


class TrialTransitionRow(Base):
    """One change of a subscription's trial (`ledger.trials`): started, converted,
    lost or repriced, with what it did to the pipeline MRR (rewritten per customer)."""

    __tablename__ = "trial_transitions"

    customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    currency: Mapped[str] = mapped_column(String(8))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    occurred_day: Mapped[date] = mapped_column(Date)  # UTC day, for the per-period sums
    event_id: Mapped[str] = mapped_column(String(255))
    transition: Mapped[str] = mapped_column(String(16))
    pipeline_delta: Mapped[int] = mapped_column(BigInteger)
    ended_status: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (Index("ix_trial_transitions_currency_day", "currency", "occurred_day"),)


class CustomerSegment(Base):
    """A value of an item key (SPEC §11: `plan`, `product`, `interval`) that a customer's
    items show (`ledger.segments.item_segments`; rewritten per customer).

    `whole`: every item the customer ever had has this value, so the segment's ledger is
    the customer's own (`ledger_movements`, `trial_transitions`); otherwise it is in
    `segment_movements` and `segment_trials`.
    """

    __tablename__ = "customer_segments"

    customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)
    whole: Mapped[bool] = mapped_column(Boolean)


class SegmentMovement(Base):
    """A movement of a customer's ledger in one item segment that is not `whole`
    (rewritten per customer): what reports need of it, keyed as `ledger_movements`."""

    __tablename__ = "segment_movements"

    customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)
    currency: Mapped[str] = mapped_column(String(8), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_day: Mapped[date] = mapped_column(Date)
    type: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str | None] = mapped_column(String(16))
    reason_key: Mapped[str | None] = mapped_column(String(255))
    delinquent: Mapped[bool] = mapped_column(Boolean, default=False)


class SegmentTrial(Base):
    """A trial transition of a customer's ledger in one item segment that is not
    `whole` (rewritten per customer)."""

    __tablename__ = "segment_trials"

    customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    currency: Mapped[str] = mapped_column(String(8))
    occurred_day: Mapped[date] = mapped_column(Date)
    transition: Mapped[str] = mapped_column(String(16))
    pipeline_delta: Mapped[int] = mapped_column(BigInteger)


class SegmentDaily(Base):
    """Item segments' movements summed per key, value and `ledger_daily`'s key: what a
    report by an item key alone reads. Kept exact as `ledger_daily` is."""

    __tablename__ = "segment_daily"

    key: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)
    currency: Mapped[str] = mapped_column(String(8), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    type: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True, default="")
    reason_key: Mapped[str] = mapped_column(String(255), primary_key=True, default="")
    delinquent: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=False)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class SegmentTrialDaily(Base):
    """Item segments' trial transitions counted per key, value, currency, UTC day and
    transition, with their pipeline MRR change: what a report by an item key reads for
    its trial funnel. Kept exact as `segment_daily` is."""

    __tablename__ = "segment_trial_daily"

    key: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)
    currency: Mapped[str] = mapped_column(String(8), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    transition: Mapped[str] = mapped_column(String(16), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)  # pipeline MRR change
    count: Mapped[int] = mapped_column(BigInteger, default=0)


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


class FxRate(Base):
    """One ECB euro reference rate (SPEC §10): units of `currency` per EUR on `day`, as
    published. Replaced whole by `mrr fx update`; empty: the shipped history is used."""

    __tablename__ = "fx_rates"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    per_eur: Mapped[Decimal] = mapped_column(ExactDecimal)


class FxLoad(Base):
    """One `mrr fx update` that replaced `fx_rates`: when, how many rates, the newest
    day. The latest row names the stored history (processes cache it by that id)."""

    __tablename__ = "fx_loads"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rates: Mapped[int] = mapped_column(Integer)
    currencies: Mapped[int] = mapped_column(Integer)
    oldest: Mapped[date] = mapped_column(Date)
    newest: Mapped[date] = mapped_column(Date)


class AlertStatus(StrEnum):
    PENDING = "pending"  # to be posted (again) at `next_attempt_at`
    SENDING = "sending"  # claimed by the sender before its POST: never posted twice
    SENT = "sent"
    FAILED = "failed"  # an hour of failed posts


class AlertOutbox(Base):
    """Alert messages (SPEC §12), recorded before they are posted: one per movement
    (customer, currency, second, type) and one per digest day; the unique keys make
    "at most once" hold across workers and restarts."""

    __tablename__ = "alert_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # movement | digest
    customer_id: Mapped[str | None] = mapped_column(String(255))
    currency: Mapped[str | None] = mapped_column(String(8))
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    type: Mapped[str | None] = mapped_column(String(16))
    digest_day: Mapped[date | None] = mapped_column(Date)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=AlertStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        UniqueConstraint(
            "customer_id", "currency", "occurred_at", "type", name="uq_alert_movement"
        ),
        UniqueConstraint("digest_day", name="uq_alert_digest_day"),
        Index("ix_alert_outbox_due", "status", "next_attempt_at"),
    )


class CustomerRow(Base):
    """A Stripe customer's attributes as its newest `customer.*` event (webhook or the
    backfill's list) told them: what segments by customer read (SPEC §11). Derived from
    the inbox's `customer.*` events as workers apply them (`mrr rebuild` leaves it as it
    is); `customer.deleted` sets `deleted` and keeps the last attributes."""

    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: `address.country` and `shipping.address.country` (ISO 3166-1 alpha-2), if any.
    country: Mapped[str | None] = mapped_column(String(8), nullable=True)
    shipping_country: Mapped[str | None] = mapped_column(String(8), nullable=True)
    #: `metadata` as a JSON object of strings.
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: The `created` of the event these attributes come from: an older one never wins.
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    #: That event's id.
    event_id: Mapped[str] = mapped_column(String(255))


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
