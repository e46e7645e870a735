"""Failed dashboard sign-ins in the database, so the throttle holds across every web
process and host (SPEC §13). Rows live for the throttle's window only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from models.tables import SignInFailure


def failures_since(session: Session, address: str, since: datetime) -> list[datetime]:
    """The times of `address`'s failures after `since`, oldest first."""
    return list(
        session.scalars(
            select(SignInFailure.at)
            .where(SignInFailure.address == address, SignInFailure.at > since)
            .order_by(SignInFailure.at)
        )
    )


def record_failure(session: Session, address: str, at: datetime, forget_before: datetime) -> None:
    """Count a failure, and forget every address's failures older than `forget_before`.
    Does not commit."""
    session.execute(delete(SignInFailure).where(SignInFailure.at <= forget_before))
    session.add(SignInFailure(address=address, at=at))


def forget(session: Session, address: str) -> None:
    """Forget `address`'s failures (it signed in). Does not commit."""
    session.execute(delete(SignInFailure).where(SignInFailure.address == address))


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(SignInFailure)) or 0)
