"""trial transitions: each subscription's trial (started, converted, lost, repriced)
for the trial funnel of SPEC §7. Derived data: `mrr rebuild` fills it for events
stored before this revision.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trial_transitions",
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("subscription_id", sa.String(length=255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_day", sa.Date(), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("transition", sa.String(length=16), nullable=False),
        sa.Column("pipeline_delta", sa.BigInteger(), nullable=False),
        sa.Column("ended_status", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("customer_id", "subscription_id", "seq"),
    )
    op.create_index(
        "ix_trial_transitions_currency_day", "trial_transitions", ["currency", "occurred_day"]
    )


def downgrade() -> None:
    op.drop_index("ix_trial_transitions_currency_day", table_name="trial_transitions")
    op.drop_table("trial_transitions")
