"""What ops screens show: the `/status` document (SPEC §6) and the figures of `/metrics`.

Both count the inbox through `models.inbox.tally`, so the two can never disagree.
Neither holds customer or subscription ids, URLs or secrets; a database outage is
`database: false` (and `mrr_database_up 0`), never an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from adapters.queue import queue_stats
from models import inbox, outbox, runs
from models.db import is_reachable
from models.queries import CurrencyTotals, currency_totals
from pipeline import fx
from pipeline.runtime import Runtime

#: Apply-latency histogram buckets, seconds.
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Queue figures `/status` shows.
QUEUE_KEYS = ("depth", "started", "scheduled", "failed_jobs", "workers")


def status(runtime: Runtime, now: datetime | None = None) -> dict[str, Any]:
    """The `/status` document."""
    now = now or runtime.now()
    queue = queue_stats(runtime.queue)
    doc: dict[str, Any] = {
        "redis": bool(queue.pop("reachable")),
        "database": is_reachable(runtime.sessions),
        "queue": {k: queue.get(k) for k in QUEUE_KEYS},
    }
    if not doc["database"]:
        doc.update(
            inbox=None,
            last_event=None,
            lag_s=None,
            mrr={},
            reconcile=None,
            fx=None,
            alerts=None,
            warnings=["database unreachable"],
        )
        return doc
    with runtime.sessions() as session:
        counts = inbox.counts(session)
        oldest = inbox.oldest_pending(session)
        last = inbox.last_event(session)
        done = inbox.last_processed(session)
        warned = inbox.events_with_warnings(session)
        totals = currency_totals(session)
        synthetic = inbox.synthetic_count(session)
        reconciled = runs.last_reconcile(session)
        rates = fx.rates_in(session, runtime.settings.database_url)
        alerts = outbox.counts(session)
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
    doc["fx"] = {
        "reporting_currency": runtime.settings.reporting_currency,
        "source": rates.source,
        "newest": rates.history.newest.isoformat(),
    }
    warnings = _fx_warnings(runtime, rates, doc["mrr"], now)
    # Alert messages (SPEC §12): to be posted, and given up on after an hour of failures;
    # `unconfirmed`: claimed by a sender that stopped before it knew the POST's outcome.
    doc["alerts"] = {
        "enabled": runtime.settings.alert_webhook_url is not None,
        "pending": alerts["pending"],
        "failed": alerts["failed"],
        "sent": alerts["sent"],
        "unconfirmed": alerts["sending"],
    }
    if alerts["failed"]:
        warnings.append(f"{alerts['failed']} alert message(s) could not be posted for an hour")
    if warned:
        warnings.append(
            f"{warned} event(s) priced without Stripe API details"
            + ("" if runtime.settings.stripe_api_key else " (set STRIPE_API_KEY)")
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


def _fx_warnings(
    runtime: Runtime, rates: fx.Rates, mrr: dict[str, int], now: datetime
) -> list[str]:
    """SPEC §10: stale rates (while FX_RATES_URL is set), a reporting currency without
    rates, and each currency whose MRR converted reports leave out."""
    warnings = []
    target = runtime.settings.reporting_currency
    age = (now.date() - rates.history.newest).days
    if runtime.settings.fx_rates_url and age > fx.STALE_AFTER_DAYS:
        warnings.append(
            f"the newest exchange rate is {age} days old ({rates.history.newest.isoformat()}, "
            f"{rates.source}); run `mrr fx update`"
        )
    if not rates.history.covers(target):
        warnings.append(
            f"REPORTING_CURRENCY {target} has no exchange rate: reports without `currency` fail"
        )
    for currency, amount in mrr.items():
        if amount and not rates.history.covers(currency):
            warnings.append(
                f"{currency} has no exchange rate: its MRR is left out of reports converted "
                f"into {target} (listed in their `unconverted`)"
            )
    return warnings


@dataclass(frozen=True)
class Figures:
    """What `/metrics` exposes, read at scrape time from the inbox, the ledger and Redis."""

    database_up: bool
    queue: dict[str, int | bool]
    #: SPEC §6 counts per event type (`models.inbox.tally`); empty when the database is down.
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    latency_cumulative: list[int] = field(default_factory=list)
    latency_count: int = 0
    latency_sum_ms: int = 0
    totals: list[CurrencyTotals] = field(default_factory=list)


def figures(runtime: Runtime) -> Figures:
    """The `/metrics` figures; the queue's come even when the database is down."""
    queue = queue_stats(runtime.queue)
    if not is_reachable(runtime.sessions):
        return Figures(database_up=False, queue=queue)
    with runtime.sessions() as session:
        by_type = inbox.counts_by_type(session)
        cumulative, count, sum_ms = inbox.apply_latency(session, LATENCY_BUCKETS)
        totals = currency_totals(session)
    return Figures(True, queue, by_type, cumulative, count, sum_ms, totals)


def _seconds(delta: timedelta) -> float:
    return round(max(delta.total_seconds(), 0.0), 3)
