"""subscriptions keyed by (customer, id): a subscription id another customer's events
also name no longer fails every write of the second customer's ledger

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (
    "id, customer_id, currency, status, mrr, scheduled_to_cancel, last_event_id, "
    "last_event_at, warnings"
)


def upgrade() -> None:
    _primary_key(["customer_id", "id"])


def downgrade() -> None:
    _primary_key(["id"])


def _primary_key(columns: list[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("subscriptions_pkey", "subscriptions", type_="primary")
        op.create_primary_key("subscriptions_pkey", "subscriptions", columns)
        return
    # SQLite cannot change a primary key: copy the rows into a table with the new one.
    op.create_table(
        "subscriptions_rekeyed",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("mrr", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_to_cancel", sa.Boolean(), nullable=False),
        sa.Column("last_event_id", sa.String(length=255), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("warnings", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint(*columns, name="subscriptions_pkey"),
    )
    # A narrower key keeps the first row of each (derived data: `mrr rebuild` redoes it).
    op.execute(
        f"INSERT OR IGNORE INTO subscriptions_rekeyed ({COLUMNS}) "
        f"SELECT {COLUMNS} FROM subscriptions"
    )
    op.drop_index("ix_subscriptions_customer_id", table_name="subscriptions")
    op.drop_table("subscriptions")
    op.rename_table("subscriptions_rekeyed", "subscriptions")
    op.create_index("ix_subscriptions_customer_id", "subscriptions", ["customer_id"])
