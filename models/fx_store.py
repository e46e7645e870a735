"""The stored exchange-rate history (SPEC §10): replaced whole by `mrr fx update`, read
by every converted report. No business rules: rows in, rows out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from itertools import islice

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from models.tables import FxLoad, FxRate

#: Rates per INSERT statement while replacing the history.
CHUNK = 5000


@dataclass(frozen=True)
class Load:
    """The latest `mrr fx update`: it names the stored history (with its time, since a
    wiped table may hand an id out again)."""

    id: int
    loaded_at: datetime
    rates: int
    currencies: int
    oldest: date
    newest: date


def latest_load(session: Session) -> Load | None:
    """The latest load, None when no history was ever stored (the shipped one is used)."""
    row = session.execute(
        select(
            FxLoad.id,
            FxLoad.loaded_at,
            FxLoad.rates,
            FxLoad.currencies,
            FxLoad.oldest,
            FxLoad.newest,
        )
        .order_by(FxLoad.id.desc())
        .limit(1)
    ).first()
    return None if row is None else Load(*row)


def stored_rates(session: Session) -> list[tuple[date, str, Decimal]]:
    """Every stored rate as `(day, currency, units per EUR)`."""
    # All at once, as Core rows: some 220,000 of them for the whole ECB history.
    rows = session.connection().execute(select(FxRate.day, FxRate.currency, FxRate.per_eur))
    return [(d, c, r) for d, c, r in rows.all()]


def replace_rates(
    session: Session,
    rates: Iterable[tuple[date, str, Decimal]],
    *,
    count: int,
    currencies: int,
    oldest: date,
    newest: date,
    progress: Callable[[int], None] | None = None,
) -> Load:
    """Delete every stored rate and insert `rates`, then record the load. The caller's
    transaction makes it all or nothing."""
    session.execute(delete(FxRate))
    rows = iter(rates)
    while chunk := list(islice(rows, CHUNK)):
        session.execute(
            insert(FxRate), [{"day": d, "currency": c, "per_eur": r} for d, c, r in chunk]
        )
        if progress:
            progress(len(chunk))
    load = FxLoad(rates=count, currencies=currencies, oldest=oldest, newest=newest)
    session.add(load)
    session.flush()
    return Load(load.id, load.loaded_at, count, currencies, oldest, newest)
