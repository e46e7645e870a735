"""backfill and reconcile: synthetic inbox events, reconcile runs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        # A server default: the webhook's own insert path never names the column.
        batch_op.add_column(
            sa.Column("synthetic", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "reconcile_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked", sa.Integer(), nullable=False),
        sa.Column("drifted", sa.Integer(), nullable=False),
        sa.Column("fixed", sa.Integer(), nullable=False),
        sa.Column("drift", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reconcile_runs_at", "reconcile_runs", ["at"])


def downgrade() -> None:
    op.drop_index("ix_reconcile_runs_at", table_name="reconcile_runs")
    op.drop_table("reconcile_runs")
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.drop_column("synthetic")
