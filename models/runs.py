"""The log of reconcile runs (SPEC §9): what `/status` shows and what the periodic
reconcile reads to know when it is due."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import ReconcileRun


@dataclass(frozen=True)
class RunSummary:
    at: datetime
    checked: int
    drifted: int
    fixed: int
    #: Σ |ledger MRR − Stripe MRR| per currency, minor units.
    drift: Mapping[str, int]


def record_reconcile(
    session: Session,
    at: datetime,
    checked: int,
    drifted: int,
    fixed: int,
    drift: Mapping[str, int],
) -> None:
    """Log one reconcile run. Does not commit."""
    session.add(
        ReconcileRun(
            at=at,
            checked=checked,
            drifted=drifted,
            fixed=fixed,
            drift=json.dumps(dict(sorted(drift.items()))),
        )
    )


def last_reconcile(session: Session) -> RunSummary | None:
    """The latest reconcile run, or None when there was none."""
    run = session.scalars(
        select(ReconcileRun).order_by(ReconcileRun.at.desc(), ReconcileRun.id.desc()).limit(1)
    ).first()
    if run is None:
        return None
    return RunSummary(run.at, run.checked, run.drifted, run.fixed, json.loads(run.drift))
