"""Drill-down and the live stream (SPEC §12): the movements behind one figure of a
period row, and the latest movements, each with the Stripe events that caused it.

Amounts are the movements' own, in their billing currency: `native_amount` and
`native_currency` repeat them so the shape stays the same once a converted view (§10)
gives `amount` in the reporting currency.
"""

from __future__ import annotations

import json
from typing import Any

from ledger.synthetic import is_synthetic_id
from ledger.timeline import Kind, MovementType
from models import queries
from models.tables import LedgerMovement
from pipeline.errors import BadQuery
from pipeline.reports import parse_query, resolve_currency
from pipeline.runtime import Runtime

DETAIL_PARAMETERS = frozenset({"start", "end", "currency", "type", "kind", "reason", "delinquent"})
ACTIVITY_DEFAULT, ACTIVITY_MAX = 50, 500
#: The figures of a row that have a breakdown, and the parameter that picks one of it.
_KIND_TYPES = (MovementType.EXPANSION, MovementType.CONTRACTION)


def movement_json(m: LedgerMovement) -> dict[str, Any]:
    """One movement as the detail and the activity show it."""
    subs = json.loads(m.subscription_ids) if m.subscription_ids else [m.subscription_id]
    # Rows written before revision 0008 know only their lead event until `mrr rebuild`.
    events = json.loads(m.event_ids) if m.event_ids else [m.event_id]
    return {
        "customer_id": m.customer_id,
        "subscription_ids": subs,
        "type": m.type,
        "kind": m.kind,
        "reason": m.reason_key,
        "amount": m.amount,
        "native_amount": m.amount,
        "native_currency": m.currency,
        "date": m.occurred_at.isoformat(),
        "events": [{"id": e, "synthetic": is_synthetic_id(e)} for e in events],
    }


def detail_report(runtime: Runtime, args: dict[str, str]) -> dict[str, Any]:
    """The movements that sum to one figure of a period row: `type` (new, expansion,
    contraction, churn, reactivation), with `kind` for an expansion or contraction
    lever, `reason` for a churn reason (`unknown`: neither feedback nor reason) or
    `delinquent=true` for the delinquent churn, over the row's [start, end)."""
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
    with runtime.sessions() as session:
        currency, _ = resolve_currency(session, query.currency)
        found = queries.movements_between(
            session, currency, query.start, query.end, movement_type, kind, reason, delinquent
        )
        movements = [movement_json(m) for m in found]
    return {
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


def activity_report(runtime: Runtime, args: dict[str, str]) -> dict[str, Any]:
    """The latest `limit` movements (default 50, at most 500), newest first, ties by
    customer id: the ledger's live stream."""
    unknown = sorted(set(args) - {"limit"})
    if unknown:
        raise BadQuery(f"unknown parameter {unknown[0]!r}; this report takes limit")
    limit = parse_limit(args.get("limit"))
    with runtime.sessions() as session:
        movements = [movement_json(m) for m in queries.latest_movements(session, limit)]
    return {"limit": limit, "movements": movements}


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
