"""`/healthz`, `/status` (SPEC §6), `/metrics` and `/openapi.json`.

Nothing here shows ids of customers or subscriptions, URLs or secrets.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from models import inbox, runs
from models.clock import utcnow
from models.db import is_reachable
from models.queries import currency_totals
from pipeline.queue import queue_stats
from service.auth import require_ops_token
from service.extensions import Services, services
from service.openapi import build_openapi
from service.prometheus import render

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"ok": True})


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(build_openapi())


@bp.get("/metrics")
@require_ops_token
def metrics() -> Response:
    return Response(render(services()), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/status")
@require_ops_token
def status() -> Response:
    return jsonify(build_status(services()))


def build_status(svc: Services, now: datetime | None = None) -> dict[str, Any]:
    """The `/status` document; a database outage turns into `database: false`, not a 500."""
    now = now or utcnow()
    queue = queue_stats(svc.queue)
    doc: dict[str, Any] = {
        "redis": bool(queue.pop("reachable")),
        "database": is_reachable(svc.sessions),
        "queue": {
            k: queue.get(k) for k in ("depth", "started", "scheduled", "failed_jobs", "workers")
        },
    }
    if not doc["database"]:
        doc.update(
            inbox=None,
            last_event=None,
            lag_s=None,
            mrr={},
            reconcile=None,
            warnings=["database unreachable"],
        )
        return doc
    with svc.sessions() as session:
        counts = inbox.counts(session)
        oldest = inbox.oldest_pending(session)
        last = inbox.last_event(session)
        done = inbox.last_processed(session)
        warned = inbox.events_with_warnings(session)
        totals = currency_totals(session)
        synthetic = inbox.synthetic_count(session)
        reconciled = runs.last_reconcile(session)
    doc["inbox"] = {
        **counts,
        "synthetic": synthetic,
        "oldest_pending_age_s": _seconds(now - oldest) if oldest else 0,
    }
    doc["last_event"] = (
        {
            "id": last.id,
            "type": last.type,
            "created": last.created,
            "received_at": last.received_at.isoformat(),
            "processed_at": last.processed_at.isoformat() if last.processed_at else None,
        }
        if last
        else None
    )
    # How long the pipeline took, receipt to ledger, for the latest applied event.
    doc["lag_s"] = (
        _seconds(done.processed_at - done.received_at) if done and done.processed_at else None
    )
    doc["mrr"] = {t.currency: t.mrr for t in totals}
    # The last `mrr reconcile` (SPEC §9): counts and money only, no subscription ids.
    doc["reconcile"] = (
        {
            "at": reconciled.at.isoformat(),
            "checked": reconciled.checked,
            "drifted": reconciled.drifted,
            "fixed": reconciled.fixed,
            "drift": dict(reconciled.drift),
        }
        if reconciled
        else None
    )
    warnings = []
    if warned:
        warnings.append(
            f"{warned} event(s) priced without Stripe API details"
            + ("" if svc.settings.stripe_api_key else " (set STRIPE_API_KEY)")
        )
    if not doc["redis"]:
        warnings.append("redis unreachable: events are stored and will be swept when it returns")
    if reconciled and reconciled.drifted > reconciled.fixed:
        warnings.append(
            f"the last reconcile found {reconciled.drifted} subscription(s) drifting from "
            f"Stripe and fixed {reconciled.fixed} (mrr reconcile --fix)"
        )
    if counts["failed"]:
        warnings.append(
            f"{counts['failed']} event(s) failed or quarantined; `mrr failed` lists them, "
            "`mrr retry` re-drives them"
        )
    doc["warnings"] = warnings
    doc["events_priced_without_api_details"] = warned
    return doc


def _seconds(delta: timedelta) -> float:
    return round(max(delta.total_seconds(), 0.0), 3)
