"""Engines, sessions and the per-customer lock, for SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

#: Seconds a pooled PostgreSQL connection is reused before it is replaced. No pre-ping:
#: a dead connection fails one request or job (a 503 or a retry) and the pool is
#: invalidated, instead of every checkout paying a round trip.
POOL_RECYCLE_S = 1800
#: TCP keepalives on every PostgreSQL connection, on both ends of it: a peer that vanishes
#: without closing its socket (power, a network partition) is found dead after idle +
#: interval * count = 20 + 5 * 4 = 40 s. The client's side is libpq's `keepalives*`
#: parameters (a worker stops waiting on a vanished server); the server's side is the
#: session's `tcp_keepalives_*` settings, sent with every connection, so the server ends
#: the sessions of a vanished host and frees their locks within a minute (SPEC §13).
#: Keepalives only probe a quiet connection: when data is waiting for the vanished peer's
#: acknowledgement, TCP retransmits for ~15 minutes instead, so `tcp_user_timeout` (ms)
#: bounds that too (seen in the partition test: the server had 78 bytes unacknowledged).
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 20,
    "keepalives_interval": 5,
    "keepalives_count": 4,
    "tcp_user_timeout": 40_000,
}
SERVER_KEEPALIVES = " ".join(
    f"-c {name if name.startswith('tcp_') else 'tcp_' + name}={KEEPALIVES[name]}"
    for name in ("keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout")
)
#: Seconds a SQLite writer waits for the database lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 30

_engines: dict[tuple[str, Limits], Engine] = {}
_engines_lock = threading.Lock()


def normalize_url(url: str) -> str:
    """Accept the `postgres://` and `postgresql://` forms and pin the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


@dataclass(frozen=True)
class Limits:
    """How long the service waits on the database before it gives up and says so."""

    #: Seconds to open a connection (a database that accepts and never answers).
    connect_timeout_s: int = 5
    #: Seconds any one statement may run on PostgreSQL (lock waits included).
    statement_timeout_s: int = 30
    #: Seconds to wait for a pooled connection when every one is in use.
    pool_timeout_s: int = 10


def make_engine(url: str, limits: Limits = Limits()) -> Engine:
    """A new engine for `url`.

    Errors never carry the SQL statement's parameters (`hide_parameters`): they end up in
    logs and in `last_error`, and the parameters are event payloads.

    PostgreSQL: connect and statement timeouts from `limits`, TCP keepalives. SQLite:
    every transaction starts with `BEGIN IMMEDIATE`, so writers serialize on the database
    lock (waiting up to the busy timeout) instead of failing when a read lock cannot be
    upgraded, and the journal is WAL so readers do not block the writer.
    """
    url = normalize_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(
            url,
            pool_recycle=POOL_RECYCLE_S,
            pool_timeout=limits.pool_timeout_s,
            hide_parameters=True,
            connect_args={
                "connect_timeout": limits.connect_timeout_s,
                **KEEPALIVES,
                "options": f"-c statement_timeout={limits.statement_timeout_s * 1000} "
                + SERVER_KEEPALIVES,
            },
        )
    engine = create_engine(
        url,
        hide_parameters=True,
        pool_timeout=limits.pool_timeout_s,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook below own BEGIN
        cursor = dbapi_connection.cursor()
        if make_url(url).database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def engine_for(url: str, limits: Limits = Limits()) -> Engine:
    """The process-wide engine for `url`, built on first use (never at import)."""
    with _engines_lock:
        engine = _engines.get((url, limits))
        if engine is None:
            engine = _engines[(url, limits)] = make_engine(url, limits)
        return engine


def dispose_engines() -> None:
    """Drop every cached engine (after a fork, or between tests)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def session_factory(url: str, limits: Limits = Limits()) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url, limits), expire_on_commit=False)


def describe(exc: BaseException) -> str:
    """An error for logs and `last_error`: its type and the driver's primary message,
    never the SQL statement's parameters (event payloads, customer data)."""
    orig = getattr(exc, "orig", None) or exc
    diag = getattr(orig, "diag", None)
    message = getattr(diag, "message_primary", None) or str(orig).split("\n", 1)[0]
    return f"{type(orig).__name__}: {message}"[:1000]


def engine_of(factory: sessionmaker[Session]) -> Engine:
    """The engine a session factory binds to (for Core statements outside a session)."""
    bind = factory.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One session, one transaction: committed on success, rolled back on any error."""
    with factory() as session, session.begin():
        yield session


def lock_customers(session: Session, customer_ids: Sequence[str]) -> None:
    """Serialize ledger writers of these customers until the transaction ends.

    PostgreSQL: transaction-scoped advisory locks keyed by the customer ids, so they hold
    across processes and machines, taken in sorted order (every writer does) in one
    round trip. SQLite: the `BEGIN IMMEDIATE` of `make_engine` already holds the
    database write lock for the whole transaction.
    """
    if customer_ids and session.get_bind().dialect.name == "postgresql":
        # An aggregate consumes unnest's rows in array order: the locks follow the sort.
        session.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(hashtextextended('mrr:customer:' || c, 0))) "
                "FROM unnest(CAST(:ids AS text[])) AS c"
            ),
            {"ids": sorted(set(customer_ids))},
        )


def try_lock_customers(session: Session, customer_ids: Sequence[str]) -> list[str]:
    """Lock whichever of the customers no other transaction holds, without waiting;
    returns those locked. One round trip on PostgreSQL; on SQLite every customer is
    already held through the database write lock."""
    if not customer_ids:
        return []
    if session.get_bind().dialect.name != "postgresql":
        return list(customer_ids)
    rows = session.execute(
        text(
            "SELECT c FROM unnest(CAST(:ids AS text[])) AS c "
            "WHERE pg_try_advisory_xact_lock(hashtextextended('mrr:customer:' || c, 0))"
        ),
        {"ids": list(customer_ids)},
    )
    return [r[0] for r in rows]


def dialect_insert(session: Session) -> Any:
    """The INSERT construct with ON CONFLICT support for the session's database."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def is_reachable(factory: sessionmaker[Session]) -> bool:
    try:
        with factory() as session:
            session.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
