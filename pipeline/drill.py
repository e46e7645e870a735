"""Drill-down and the live stream (SPEC §12): the movements behind one figure of a
period row, and the latest movements, each with the Stripe events that caused it.

With `currency=xxx` the amounts are the movements' own, in `xxx`. Without it (SPEC §4,
§10) `amount` is in the reporting currency and `native_amount`/`native_currency` keep the
movement's own: each movement converts exactly at the rate of its UTC day, and the
figure they make up is allotted among them by largest remainder, so that the amounts sum
to the converted period row's figure to the unit (`reporting.fx.allot`). Movements in a
currency the rates do not cover are left out of a converted detail, as of every
converted figure, and listed in `unconverted` {currency: their native sum}.

With `filter=KEY:VALUE` (SPEC §11) the movements are the segment's, found as the
segmented movements report finds them, so that they sum to its figure: by customer
keys alone the matching customers' stored movements; with an item key, derived at
report time from the stored events.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from ledger.segments import BadSegment, Filter
from ledger.synthetic import is_synthetic_id
from ledger.timeline import Kind, MovementType
from models import queries
from models.ledger_store import detached
from models.tables import LedgerMovement
from pipeline.errors import BadQuery
from pipeline.reports import (
    conversion,
    customer_test,
    natives,
    parse_query,
    segment_movements,
    segment_natives,
    sql_segments,
)
from pipeline.runtime import Runtime
from reporting.fx import Converter, Native, allot, converted_rows, row_figure

DETAIL_PARAMETERS = frozenset({"start", "end", "currency", "type", "kind", "reason", "delinquent"})
ACTIVITY_DEFAULT, ACTIVITY_MAX = 50, 500
#: The figures of a row that have a breakdown, and the parameter that picks one of it.
_KIND_TYPES = (MovementType.EXPANSION, MovementType.CONTRACTION)


def movement_json(m: LedgerMovement, amount: int | None = None) -> dict[str, Any]:
    """One movement as the detail and the activity show it; `amount` in the document's
    currency (default: the movement's own)."""
    subs = json.loads(m.subscription_ids) if m.subscription_ids else [m.subscription_id]
    # Rows written before revision 0008 know only their lead event until `mrr rebuild`.
    events = json.loads(m.event_ids) if m.event_ids else [m.event_id]
    return {
        "customer_id": m.customer_id,
        "subscription_ids": subs,
        "type": m.type,
        "kind": m.kind,
        "reason": m.reason_key,
        "amount": m.amount if amount is None else amount,
        "native_amount": m.amount,
        "native_currency": m.currency,
        "date": m.occurred_at.isoformat(),
        "events": [{"id": e, "synthetic": is_synthetic_id(e)} for e in events],
    }


@dataclass(frozen=True)
class Figure:
    """Which figure of a period row: its range [start, end), its movement type, and the
    lever (`kind`), churn `reason` or `delinquent` flag that picks part of it."""

    start: date
    end: date
    type: str
    kind: str | None = None
    reason: str | None = None
    delinquent: bool | None = None


def detail_report(
    runtime: Runtime, args: dict[str, str], filters: Sequence[str] = ()
) -> dict[str, Any]:
    """The movements that sum to one figure of a period row: `type` (new, expansion,
    contraction, churn, reactivation), with `kind` for an expansion or contraction
    lever, `reason` for a churn reason (`unknown`: neither feedback nor reason) or
    `delinquent=true` for the delinquent churn, over the row's [start, end); of the
    segment `filters` select, when given."""
    unknown = sorted(set(args) - DETAIL_PARAMETERS)
    if unknown:
        raise BadQuery(
            f"unknown parameter {unknown[0]!r}; "
            f"this report takes {', '.join(sorted(DETAIL_PARAMETERS))}"
        )
    for name in ("start", "end", "type"):
        if name not in args:
            raise BadQuery(f"{name} is required")
    query = parse_query({k: args[k] for k in ("start", "end", "currency") if k in args})
    assert query.start is not None and query.end is not None
    movement_type = _choice(args["type"], "type", [t.value for t in MovementType])
    kind = reason = None
    delinquent: bool | None = None
    if "kind" in args:
        if movement_type not in _KIND_TYPES:
            raise BadQuery("kind is a lever of an expansion or a contraction")
        kind = _choice(args["kind"], "kind", [k.value for k in Kind])
    if ("reason" in args or "delinquent" in args) and movement_type != MovementType.CHURN:
        raise BadQuery("reason and delinquent select churns")
    if "reason" in args:
        reason = args["reason"].strip()
        if not reason or len(reason) > 255:
            raise BadQuery("reason must be a churn reason (unknown: none given)")
    if "delinquent" in args:
        delinquent = _choice(args["delinquent"], "delinquent", ["true", "false"]) == "true"
    try:
        matches = Filter.parse(filters) if filters else None
    except BadSegment as exc:
        raise BadQuery(str(exc)) from None
    figure = Figure(query.start, query.end, movement_type, kind, reason, delinquent)
    with runtime.sessions() as session:
        found, whole = _found(session, figure, query.currency, matches)
        if query.currency is not None:
            currency, unconverted = query.currency, None
            movements = [movement_json(m) for m in found]
        else:
            converting = conversion(session, runtime)
            currency = converting.target
            # The figure as the converted period row of [start, end) has it.
            row = converted_rows(whole(), converting.converter, [(query.start, query.end)]).rows[0]
            amount = row_figure(row, MovementType(movement_type), kind, reason, delinquent)
            movements, unconverted = _converted(found, converting.converter, amount)
    doc = {
        "currency": currency,
        "start": query.start.isoformat(),
        "end": query.end.isoformat(),
        "type": movement_type,
        "kind": kind,
        "reason": reason,
        "delinquent": delinquent,
        "amount": sum(m["amount"] for m in movements),
        "count": len(movements),
        "movements": movements,
    }
    if matches is not None:
        doc["filter"] = list(filters)
    if unconverted is not None:
        doc["unconverted"] = unconverted
        doc["rates"] = converting.describe()
    return doc


def _found(
    session: Session, figure: Figure, currency: str | None, matches: Filter | None
) -> tuple[list[LedgerMovement], Callable[[], dict[str, Native]]]:
    """The movements behind `figure` (of `currency`, None: every currency), in time
    order, ties by customer, currency and sequence; and what the period row is made of,
    every currency's opening and buckets, for the converted figure."""
    lo, hi = figure.start, figure.end
    if matches is None or not matches.items.values:  # the stored movements
        stored = queries.movements_between(
            session,
            currency,
            lo,
            hi,
            figure.type,
            figure.kind,
            figure.reason,
            figure.delinquent,
        )
        if matches is None:
            return stored, lambda: natives(session, lo, hi)
        # Customer keys only: the matching customers' own, as the report sums them.
        wanted = matches.customers
        passes = customer_test(session, wanted)
        mine = [m for m in stored if passes(m.customer_id)]
        return mine, lambda: sql_segments(session, wanted, None, lo, hi)[None].natives
    every = segment_movements(session, matches)
    picked = [
        detached(m)
        for m in every
        if (currency is None or m.currency == currency)
        and m.type.value == figure.type
        and (figure.kind is None or (m.kind is not None and m.kind.value == figure.kind))
        and (figure.reason is None or m.reason_key == figure.reason)
        and (figure.delinquent is None or m.delinquent == figure.delinquent)
    ]
    picked = [m for m in picked if lo <= m.occurred_day < hi]
    picked.sort(key=lambda m: (m.occurred_at, m.customer_id, m.currency, m.seq))
    return picked, lambda: segment_natives(every, lo)


def _converted(
    found: Sequence[LedgerMovement], converter: Converter, figure: int | None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The movements in the reporting currency, their amounts allotted from `figure`;
    those of currencies the rates do not cover apart, as {currency: native sum}."""
    covered = [m for m in found if converter.covers(m.currency)]
    unconverted: dict[str, int] = {}
    for m in found:
        if not converter.covers(m.currency):
            unconverted[m.currency] = unconverted.get(m.currency, 0) + m.amount
    exact = [converter.exact(m.amount, m.currency, m.occurred_day) for m in covered]
    amounts = allot(figure, exact)
    movements = [movement_json(m, a) for m, a in zip(covered, amounts, strict=True)]
    return movements, dict(sorted(unconverted.items()))


def activity_report(runtime: Runtime, args: dict[str, str]) -> dict[str, Any]:
    """The latest `limit` movements (default 50, at most 500), newest first, ties by
    customer id: the ledger's live stream."""
    unknown = sorted(set(args) - {"limit"})
    if unknown:
        raise BadQuery(f"unknown parameter {unknown[0]!r}; this report takes limit")
    limit = parse_limit(args.get("limit"))
    with runtime.sessions() as session:
        latest = queries.latest_movements(session, limit)
        converting = conversion(session, runtime)
    converter = converting.converter
    return {
        "currency": converting.target,
        "limit": limit,
        "movements": [movement_json(m, _each(converter, m)) for m in latest],
        "rates": converting.describe(),
    }


def _each(converter: Converter, m: LedgerMovement) -> int | None:
    """One movement in the reporting currency on its own, rounded half-even; None in a
    currency the rates do not cover."""
    if not converter.covers(m.currency):
        return None
    return converter.convert(m.amount, m.currency, m.occurred_day)


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return ACTIVITY_DEFAULT
    text = raw.strip()
    if not text.isdigit() or not 1 <= int(text) <= ACTIVITY_MAX:
        raise BadQuery(f"limit must be a whole number from 1 to {ACTIVITY_MAX} (got {raw!r})")
    return int(text)


def _choice(raw: str, name: str, allowed: list[str]) -> str:
    value = raw.strip().lower()
    if value not in allowed:
        raise BadQuery(f"{name} must be one of {', '.join(allowed)} (got {raw!r})")
    return value
