"""The SQL of `mrr rebuild`'s bulk path on PostgreSQL (see `pipeline.bulk_rebuild`).

Three pieces, each on a raw psycopg 3 connection of its own:

* `InboxSnapshot`: one REPEATABLE READ transaction that streams every subscription event
  the ledger may use, ordered by customer, through a server-side cursor;
* `FreshLedger`: new, empty copies of the derived tables filled with COPY, then swapped
  in for the live ones in the same transaction (indexes, constraints and the movements'
  id sequence keep their names, so migrations still find them);
* `event_versions`: each customer's stored events as (id, row version), to tell which
  customers changed since the snapshot.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from ledger.events import SUBSCRIPTION_EVENT_TYPES
from models.tables import (
    CustomerBalance,
    CustomerSegment,
    EventStatus,
    InboxEvent,
    LedgerDaily,
    LedgerMovement,
    SegmentDaily,
    SegmentMovement,
    SegmentTrial,
    SegmentTrialDaily,
    SubscriptionRow,
    TrialTransitionRow,
)

#: The derived tables a rebuild replaces, in the order workers first touch them in a
#: ledger write (`ledger_store.write_ledgers`): locked in that order, a swap waits behind
#: a running write instead of deadlocking with it.
SWAPPED = (
    LedgerMovement.__tablename__,
    LedgerDaily.__tablename__,
    CustomerSegment.__tablename__,
    SegmentMovement.__tablename__,
    SegmentDaily.__tablename__,
    TrialTransitionRow.__tablename__,
    SegmentTrial.__tablename__,
    SegmentTrialDaily.__tablename__,
    SubscriptionRow.__tablename__,
    CustomerBalance.__tablename__,
)
#: Prefix of the fresh tables while they fill.
FRESH = "rebuild_"
#: Rows fetched from the server-side cursor per round trip.
FETCH_ROWS = 2_000
#: How long the swap waits for the live tables' locks before it lets go and tries again:
#: shorter than PostgreSQL's `deadlock_timeout` (1 s), so a worker that holds one of the
#: tables and wants another is never the one picked to die.
SWAP_LOCK_TIMEOUT_MS = 500
SWAP_ATTEMPTS = 120
#: A session lock: one rebuild at a time.
REBUILD_LOCK = "SELECT pg_advisory_lock(hashtextextended('mrr:rebuild', 0))"

MOVEMENT_COLUMNS = (
    "customer_id",
    "currency",
    "seq",
    "occurred_at",
    "occurred_day",
    "event_id",
    "subscription_id",
    "type",
    "amount",
    "mrr_before",
    "mrr_after",
    "kind",
    "churn_reason",
    "churn_feedback",
    "reason_key",
    "delinquent",
    "subscription_ids",
    "event_ids",
)
TRIAL_COLUMNS = (
    "customer_id",
    "subscription_id",
    "seq",
    "currency",
    "occurred_at",
    "occurred_day",
    "event_id",
    "transition",
    "pipeline_delta",
    "ended_status",
)
SUBSCRIPTION_COLUMNS = (
    "id",
    "customer_id",
    "currency",
    "status",
    "mrr",
    "scheduled_to_cancel",
    "last_event_id",
    "last_event_at",
    "warnings",
)
BALANCE_COLUMNS = (
    "customer_id",
    "currency",
    "mrr",
    "scheduled_churn",
    "first_new_at",
    "updated_at",
)
DAILY_COLUMNS = ("currency", "day", "type", "kind", "reason_key", "delinquent", "amount", "count")
SEGMENT_DAILY_COLUMNS = ("key", "value", *DAILY_COLUMNS)
SEGMENT_TRIAL_DAILY_COLUMNS = ("key", "value", "currency", "day", "transition", "amount", "count")

_USED = "customer_id IS NOT NULL AND type = ANY(%(types)s) AND status <> %(quarantined)s"


class InboxRow(NamedTuple):
    """An inbox row as the snapshot streams it (`version` is its `xmin`)."""

    id: str
    customer_id: str
    status: str
    received_at: Any
    warnings: str | None
    version: str
    payload: str


def _types() -> dict[str, Any]:
    return {"types": sorted(SUBSCRIPTION_EVENT_TYPES), "quarantined": EventStatus.QUARANTINED}


class InboxSnapshot:
    """Every stored subscription event the ledger may use (quarantined ones left out,
    as `ledger_store.customer_rows` does), as of one moment, grouped by customer.

    The rows come in customer order through the customer index, `FETCH_ROWS` at a time,
    so memory holds one fetch and one customer whatever the inbox's size.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        snapshot: str | None = None,
        low: str | None = None,
        high: str | None = None,
    ) -> None:
        """Open the snapshot on `conn`, or join the exported `snapshot` of another
        connection; `low` ≤ customer < `high` bound the customers read (None: unbounded)."""
        self.conn = conn
        self.low, self.high = low, high
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL statement_timeout = 0")
        if snapshot is not None:
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        else:  # the snapshot is taken by the first query
            conn.execute("SELECT 1")

    def export(self) -> str:
        """An id other connections join this snapshot by (while it stays open)."""
        return str(self.conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]

    def bounds(self, parts: int) -> list[str | None]:
        """`parts` + 1 customer ids cutting the events into about equal ranges (the first
        and last None: unbounded)."""
        if parts <= 1:
            return [None, None]
        fractions = [n / parts for n in range(1, parts)]
        row = self.conn.execute(
            "SELECT percentile_disc(%(f)s::float8[]) WITHIN GROUP (ORDER BY customer_id) "
            f"FROM {InboxEvent.__tablename__} WHERE {_USED}",
            {**_types(), "f": fractions},
        ).fetchone()
        cuts = sorted({c for c in (row[0] if row and row[0] else []) if c is not None})
        return [None, *cuts, None]

    def customers(self) -> Iterator[tuple[str, list[InboxRow]]]:
        """(customer, its rows) in customer order."""
        cursor = self.conn.cursor(name="rebuild_inbox")
        cursor.itersize = FETCH_ROWS
        cursor.execute(
            "SELECT id, customer_id, status, received_at, warnings, xmin::text, payload "
            f"FROM {InboxEvent.__tablename__} WHERE {_USED} "
            "AND (%(low)s::text IS NULL OR customer_id >= %(low)s) "
            "AND (%(high)s::text IS NULL OR customer_id < %(high)s) ORDER BY customer_id",
            {**_types(), "low": self.low, "high": self.high},
        )
        current: str | None = None
        rows: list[InboxRow] = []
        while batch := cursor.fetchmany(FETCH_ROWS):
            for raw in batch:
                row = InboxRow(*raw)
                if row.customer_id != current:
                    if rows:
                        yield current, rows  # type: ignore[misc]
                    current, rows = row.customer_id, []
                rows.append(row)
        if rows:
            yield current, rows  # type: ignore[misc]
        cursor.close()

    def close(self) -> None:
        self.conn.execute("ROLLBACK")


def event_versions(conn: psycopg.Connection[Any]) -> Iterator[tuple[str, str, str]]:
    """(customer, event id, row version) of every event `InboxSnapshot` would read now."""
    with conn.transaction(), conn.cursor(name="rebuild_versions") as cursor:
        cursor.itersize = 10 * FETCH_ROWS
        cursor.execute(
            f"SELECT customer_id, id, xmin::text FROM {InboxEvent.__tablename__} WHERE {_USED}",
            _types(),
        )
        yield from cursor


def create_fresh(conn: psycopg.Connection[Any]) -> None:
    """Empty copies of the derived tables (`LIKE … INCLUDING ALL`: columns, defaults,
    constraints and indexes), committed so that every process of a rebuild can fill
    them; unused by anything else until `FreshLedger.swap`. Leftovers of a rebuild that
    died are dropped first."""
    with conn.transaction():
        for table in SWAPPED:
            fresh = sql.Identifier(FRESH + table)
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(fresh))
            conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                    fresh, sql.Identifier(table)
                )
            )


def drop_fresh(conn: psycopg.Connection[Any]) -> None:
    """Drop the fresh tables of a rebuild that failed (the live ones stay as they were)."""
    for table in SWAPPED:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(FRESH + table)))


class FreshLedger:
    """One transaction of `conn` over the fresh tables (`create_fresh`): rows appended by
    COPY, committed by `commit`; or, for the last one, the live tables swapped for the
    fresh ones by `swap`, which commits. An error rolls back (`close`)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        conn.execute("BEGIN")
        conn.execute("SET LOCAL statement_timeout = 0")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Append `rows` (values in `columns`' order) to the fresh `table`."""
        if not rows:
            return
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(FRESH + table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with self.conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def swap(self) -> None:
        """Sample the fresh tables and the inbox for the planner, then replace the live
        tables with the fresh ones and commit. The live tables are locked in `SWAPPED`
        order, each attempt giving up after `SWAP_LOCK_TIMEOUT_MS` and trying again, so
        readers and writers in flight are never deadlocked nor kept waiting long."""
        conn = self.conn
        # The inbox too: the catch-up after the swap selects it by lists of customers.
        tables = [InboxEvent.__tablename__, *(FRESH + t for t in SWAPPED)]
        conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))
        for attempt in range(SWAP_ATTEMPTS):
            conn.execute("SAVEPOINT swap")
            try:
                conn.execute(f"SET LOCAL lock_timeout = {SWAP_LOCK_TIMEOUT_MS}")
                for table in SWAPPED:
                    conn.execute(
                        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                            sql.Identifier(table)
                        )
                    )
                break
            except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
                conn.execute("ROLLBACK TO SAVEPOINT swap")
                if attempt == SWAP_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt % 10))
        conn.execute("SET LOCAL lock_timeout = 0")
        for table in SWAPPED:
            self._replace(table)
        conn.execute("COMMIT")

    def _replace(self, table: str) -> None:
        conn = self.conn
        fresh = FRESH + table
        names = _index_names(conn, table)
        fresh_names = _index_names(conn, fresh)
        # The fresh table's defaults draw from the live table's sequences: hand them over.
        for column, sequence in conn.execute(
            "SELECT a.attname, pg_get_serial_sequence(%s, a.attname) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            (table, table),
        ).fetchall():
            if sequence is not None:
                conn.execute(
                    sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(
                        sql.SQL(sequence), sql.Identifier(fresh), sql.Identifier(column)
                    )
                )
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(fresh), sql.Identifier(table)
            )
        )
        for shape, (index, constraint) in fresh_names.items():
            old_index, old_constraint = names[shape]
            if constraint is not None and old_constraint is not None:
                # Renaming a constraint renames its index too.
                conn.execute(
                    sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                        sql.Identifier(table),
                        sql.Identifier(constraint),
                        sql.Identifier(old_constraint),
                    )
                )
            else:
                conn.execute(
                    sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                        sql.Identifier(index), sql.Identifier(old_index)
                    )
                )

    def close(self) -> None:
        """Roll back whatever `swap` did not commit."""
        idle = psycopg.pq.TransactionStatus.IDLE
        if not self.conn.closed and self.conn.info.transaction_status != idle:
            self.conn.execute("ROLLBACK")


_DEFINITION = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON \S+ (USING .*)$")


def _index_names(conn: psycopg.Connection[Any], table: str) -> dict[str, tuple[str, str | None]]:
    """The table's indexes by shape (unique or not, method and columns): their names, and
    the name of the constraint each one backs (None for a plain index)."""
    found: dict[str, tuple[str, str | None]] = {}
    rows = conn.execute(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid), c.conname "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid "
        "WHERE x.indrelid = %s::regclass",
        (table,),
    ).fetchall()
    for name, definition, constraint in rows:
        match = _DEFINITION.match(definition)
        if match is None:
            raise RuntimeError(f"cannot read the definition of index {name}")
        shape = f"{match.group(1) or ''}{match.group(2)}"
        if shape in found:
            raise RuntimeError(f"table {table} has two indexes of the same shape")
        found[shape] = (name, constraint)
    return found


def connect(url: str) -> psycopg.Connection[Any]:
    """A psycopg connection of its own (autocommit: the callers say BEGIN themselves)."""
    from sqlalchemy.engine import make_url

    from models.db import normalize_url

    conninfo = make_url(normalize_url(url)).set(drivername="postgresql")
    return psycopg.connect(conninfo.render_as_string(hide_password=False), autocommit=True)


def rebuild_lock(conn: psycopg.Connection[Any]) -> None:
    """Wait until no other rebuild runs, then hold that until `conn` closes."""
    conn.execute(REBUILD_LOCK)
