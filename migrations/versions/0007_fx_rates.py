"""exchange rates: the ECB euro reference-rate history `mrr fx update` stores (SPEC §10)

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fx_rates",
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        # Exact: NUMERIC without a scale on PostgreSQL, the published text on SQLite.
        sa.Column("per_eur", sa.Numeric().with_variant(sa.String(32), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("currency", "day"),
    )
    op.create_table(
        "fx_loads",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rates", sa.Integer(), nullable=False),
        sa.Column("currencies", sa.Integer(), nullable=False),
        sa.Column("oldest", sa.Date(), nullable=False),
        sa.Column("newest", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("fx_loads")
    op.drop_table("fx_rates")
