"""item segments: each customer's ledger per plan, product and interval (SPEC §11),
stored at apply time so that reports by an item key are sums in SQL. Derived data:
`mrr rebuild` fills it for events stored before this revision (until then a report by
an item key counts only the customers applied since).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _key() -> list[sa.Column]:
    """The columns that start each per-customer table's key."""
    return [
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "customer_segments",
        *_key(),
        sa.Column("whole", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "key", "value"),
    )
    op.create_table(
        "segment_movements",
        *_key(),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("occurred_day", sa.Date(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("reason_key", sa.String(length=255), nullable=True),
        sa.Column("delinquent", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "key", "value", "currency", "seq"),
    )
    op.create_table(
        "segment_trials",
        *_key(),
        sa.Column("subscription_id", sa.String(length=255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("occurred_day", sa.Date(), nullable=False),
        sa.Column("transition", sa.String(length=16), nullable=False),
        sa.Column("pipeline_delta", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "key", "value", "subscription_id", "seq"),
    )
    op.create_table(
        "segment_daily",
        sa.Column("key", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason_key", sa.String(length=255), nullable=False),
        sa.Column("delinquent", sa.Boolean(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "key", "value", "currency", "day", "type", "kind", "reason_key", "delinquent"
        ),
    )
    op.create_table(
        "segment_trial_daily",
        sa.Column("key", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("transition", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", "value", "currency", "day", "transition"),
    )


def downgrade() -> None:
    for table in (
        "segment_trial_daily",
        "segment_daily",
        "segment_trials",
        "segment_movements",
        "customer_segments",
    ):
        op.drop_table(table)
