"""Named leases in the database: one holder at a time, across processes and machines.

A lease lives in the same database as the inbox, so it needs nothing else and survives
a Redis loss; a holder that dies simply stops renewing, and another takes over once the
lease has expired.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from models.db import dialect_insert
from models.tables import Lease


def hold(session: Session, name: str, holder: str, ttl_s: float, now: datetime) -> bool:
    """Take or renew lease `name` for `holder` until `now + ttl_s`; False if another holds it.

    Does not commit.
    """
    until = now + timedelta(seconds=ttl_s)
    session.execute(
        dialect_insert(session)(Lease)
        .values(name=name, holder=holder, expires_at=until)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    taken = session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
        .values(holder=holder, expires_at=until)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def release(session: Session, name: str, holder: str) -> None:
    """Give the lease up at once (on a clean stop), if `holder` has it. Does not commit."""
    session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=datetime.fromtimestamp(0, UTC))
    )
