"""inbox, ledger, balances, subscriptions, stripe cache

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "customer_balances",
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("mrr", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_churn", sa.BigInteger(), nullable=False),
        sa.Column("first_new_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "currency"),
    )
    with op.batch_alter_table("customer_balances", schema=None) as batch_op:
        batch_op.create_index("ix_customer_balances_currency", ["currency"], unique=False)

    op.create_table(
        "inbox_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=255), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=True),
        sa.Column("api_version", sa.String(length=64), nullable=True),
        sa.Column("customer_id", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("warnings", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inbox_events_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index("ix_inbox_events_processed_at", ["processed_at"], unique=False)
        batch_op.create_index(
            "ix_inbox_events_status_received", ["status", "received_at"], unique=False
        )

    op.create_table(
        "ledger_movements",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_day", sa.Date(), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("subscription_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("mrr_before", sa.BigInteger(), nullable=False),
        sa.Column("mrr_after", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("churn_reason", sa.String(length=255), nullable=True),
        sa.Column("churn_feedback", sa.String(length=255), nullable=True),
        sa.Column("reason_key", sa.String(length=255), nullable=True),
        sa.Column("delinquent", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "currency", "seq", name="uq_ledger_customer_seq"),
    )
    with op.batch_alter_table("ledger_movements", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_currency_day", ["currency", "occurred_day"], unique=False)

    op.create_table(
        "stripe_objects",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "id"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("mrr", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_to_cancel", sa.Boolean(), nullable=False),
        sa.Column("last_event_id", sa.String(length=255), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("warnings", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subscriptions_customer_id"), ["customer_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriptions_customer_id"))

    op.drop_table("subscriptions")
    op.drop_table("stripe_objects")
    with op.batch_alter_table("ledger_movements", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_currency_day")

    op.drop_table("ledger_movements")
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_events_status_received")
        batch_op.drop_index("ix_inbox_events_processed_at")
        batch_op.drop_index(batch_op.f("ix_inbox_events_customer_id"))

    op.drop_table("inbox_events")
    with op.batch_alter_table("customer_balances", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_balances_currency")

    op.drop_table("customer_balances")
