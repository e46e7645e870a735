"""movements keep the events behind them (SPEC §12)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # JSON lists as text: read back whole with their movement, never queried into.
    # Rows written before this revision have none until `mrr rebuild`.
    with op.batch_alter_table("ledger_movements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subscription_ids", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("event_ids", sa.Text(), nullable=True))
        # The activity stream reads the latest movements of every currency.
        batch_op.create_index("ix_ledger_occurred_at", ["occurred_at", "customer_id"])


def downgrade() -> None:
    with op.batch_alter_table("ledger_movements", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_occurred_at")
        batch_op.drop_column("event_ids")
        batch_op.drop_column("subscription_ids")
