"""daily rollup of movements, apply latency

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_daily",
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason_key", sa.String(length=255), nullable=False),
        sa.Column("delinquent", sa.Boolean(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("currency", "day", "type", "kind", "reason_key", "delinquent"),
    )
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("apply_ms", sa.Integer(), nullable=True))
    # Existing ledgers get their rollup at once.
    op.execute(
        "INSERT INTO ledger_daily (currency, day, type, kind, reason_key, delinquent, amount, "
        "count) SELECT currency, occurred_day, type, coalesce(kind, ''), "
        "coalesce(reason_key, ''), delinquent, sum(amount), count(*) FROM ledger_movements "
        "GROUP BY currency, occurred_day, type, coalesce(kind, ''), coalesce(reason_key, ''), "
        "delinquent"
    )


def downgrade() -> None:
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.drop_column("apply_ms")

    op.drop_table("ledger_daily")
