"""Reconcile the ledger with Stripe: backfill the window, then compare every
subscription's status and MRR with Stripe's current object, and optionally store that
object as a synthetic event so the ledger agrees again (SPEC §9).

Stripe's side is priced page by page while backfill lists the subscriptions (with the
same cached prices and coupons the ledger uses), so memory holds a few numbers per
subscription, never the objects. A fix re-reads the drifted subscriptions, so it
stores what Stripe says at that moment. Every run is logged for `/status`; the worker
can run one every `RECONCILE_EVERY_S`, one per deployment, under a database lease.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import stripe

from adapters.leader import lead_forever
from adapters.stripe_http import plain
from ledger.drift import Drift, Standing, compare, standing, total_drift
from ledger.errors import InvalidEvent
from ledger.mrr import Catalog
from ledger.snapshot import Snapshot, parse_subscription
from ledger.synthetic import fix_event, gone_event
from models import runs
from models.db import transaction
from models.queries import LedgerSubscription, ledger_subscriptions
from models.tables import InboxEvent
from pipeline import enrich, intake
from pipeline.apply import apply_inline
from pipeline.backfill import MAX_DAYS, BackfillResult, Progress, backfill, client_for
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

#: The database lease that lets one worker of the deployment run the periodic reconcile.
LEASE = "reconciler"


@dataclass
class ReconcileResult:
    """What one reconcile found and fixed; `document()` is the `--json` output."""

    backfill: BackfillResult
    checked: int = 0
    drifts: list[Drift] = field(default_factory=list)
    fixed: int = 0
    #: Customer of each drifted subscription (for the per-subscription report).
    customers: dict[str, str] = field(default_factory=dict)

    @property
    def drift(self) -> dict[str, int]:
        return total_drift(self.drifts)

    def document(self) -> dict[str, Any]:
        """SPEC §9's counts, then the drift of each subscription."""
        return {
            "checked": self.checked,
            "drifted": len(self.drifts),
            "drift": self.drift,
            "fixed": self.fixed,
            "subscriptions": [
                {
                    "id": d.subscription_id,
                    "customer": self.customers.get(d.subscription_id),
                    "ledger": _side(d.ledger),
                    "stripe": _side(d.stripe),
                    "drift": dict(d.amounts),
                }
                for d in self.drifts
            ],
        }


def _side(side: Standing | None) -> dict[str, Any] | None:
    if side is None:
        return None
    return {"status": side.status, "currency": side.currency, "mrr": side.mrr}


def reconcile(
    runtime: Runtime,
    client: stripe.StripeClient,
    *,
    now: datetime,
    days: int = MAX_DAYS,
    fix: bool = False,
    progress: Progress | None = None,
) -> ReconcileResult:
    """Backfill, compare the ledger with Stripe, and with `fix` store Stripe's current
    object of each drifted subscription as a synthetic `updated` event dated `now`
    (a `deleted` one for a subscription Stripe no longer has), then apply them.

    Logs the run in `reconcile_runs`. Idempotent when nothing drifted.
    """
    stripe_side: dict[str, Standing] = {}
    customers: dict[str, str] = {}

    def price_page(objects: list[dict[str, Any]]) -> None:
        snapshots = _snapshots(objects)
        catalog = _catalog(runtime, snapshots.values())
        for sub_id, snapshot in snapshots.items():
            stripe_side[sub_id] = standing(snapshot, catalog)
            customers[sub_id] = snapshot.customer

    filled = backfill(runtime, client, now=now, days=days, progress=progress, visit=price_page)
    result = ReconcileResult(filled)
    with runtime.sessions() as session:
        ledger = ledger_subscriptions(session)
    customers.update({s.id: s.customer_id for s in ledger.values()})
    vanished: set[str] = set()
    for sub_id in sorted(set(ledger) - set(stripe_side)):
        # Not listed: ask for it by id; Stripe answers 404 for one it no longer has.
        found = _retrieve(client, sub_id)
        if found is None:
            vanished.add(sub_id)
        else:
            price_page([found])
    for sub_id in sorted(set(ledger) | set(stripe_side)):
        mine = ledger.get(sub_id)
        ours = Standing(mine.status, mine.currency, mine.mrr) if mine is not None else None
        if sub_id not in stripe_side and sub_id not in vanished:
            continue  # Stripe's object cannot be priced (logged): nothing to compare with
        result.checked += 1
        drift = compare(sub_id, ours, stripe_side.get(sub_id))
        if drift is not None:
            result.drifts.append(drift)
    result.customers = {d.subscription_id: customers[d.subscription_id] for d in result.drifts}
    for drift in result.drifts:
        log.warning(
            "drift on %s: ledger %s, Stripe %s", drift.subscription_id, drift.ledger, drift.stripe
        )
    if fix and result.drifts:
        result.fixed = _fix(runtime, client, result.drifts, ledger, int(now.timestamp()))
    with transaction(runtime.sessions) as session:
        runs.record_reconcile(
            session,
            at=now,
            checked=result.checked,
            drifted=len(result.drifts),
            fixed=result.fixed,
            drift=result.drift,
        )
    return result


def _snapshots(objects: list[dict[str, Any]]) -> dict[str, Snapshot]:
    parsed: dict[str, Snapshot] = {}
    for obj in objects:
        try:
            parsed[str(obj["id"])] = parse_subscription(obj)
        except InvalidEvent as exc:
            log.warning(
                "Stripe's subscription %s cannot be priced, not compared: %s", obj["id"], exc
            )
    return parsed


def _catalog(runtime: Runtime, snapshots: Iterable[Snapshot]) -> Catalog:
    """The cached prices and coupons the snapshots name, fetching what is missing."""
    snapshots = list(snapshots)
    with runtime.sessions() as session:
        catalog = enrich.cached_catalog(session, snapshots)
    if enrich.fetch_missing(runtime, enrich.missing(snapshots, catalog)):
        with runtime.sessions() as session:
            catalog = enrich.cached_catalog(session, snapshots)
    return catalog


def _retrieve(client: stripe.StripeClient, sub_id: str) -> dict[str, Any] | None:
    """Stripe's current object of one subscription; None when Stripe has none (404)."""
    try:
        return plain(client.v1.subscriptions.retrieve(sub_id))
    except stripe.InvalidRequestError as exc:
        if exc.code != "resource_missing":
            raise
        return None


def _fix(
    runtime: Runtime,
    client: stripe.StripeClient,
    drifts: list[Drift],
    ledger: Mapping[str, LedgerSubscription],
    now: int,
) -> int:
    """Store and apply one synthetic event per drifted subscription; returns how many
    subscriptions it fixed."""
    events: list[dict[str, Any]] = []
    for drift in drifts:
        current = _retrieve(client, drift.subscription_id)
        if current is not None:
            events.append(fix_event(current, now, api_version=stripe.api_version))
            continue
        mine = ledger.get(drift.subscription_id)
        last = _stored_object(runtime, mine.last_event_id) if mine is not None else None
        if last is None:
            log.warning("cannot fix %s: Stripe and the inbox lack it", drift.subscription_id)
            continue
        events.append(gone_event(last, now, api_version=stripe.api_version))
    stored = intake.store_many(runtime, [(e, json.dumps(e)) for e in events], synthetic=True)
    done = apply_inline(runtime, [s.event_id for s in stored if s.pending])
    failed = {**done.failed, **done.quarantined}
    for event_id, why in sorted(failed.items()):
        log.error("%s cannot be applied: %s", event_id, why)
    return len([s for s in stored if s.event_id not in failed])


def _stored_object(runtime: Runtime, event_id: str) -> dict[str, Any] | None:
    """The subscription object an inbox event carries."""
    with runtime.sessions() as session:
        row = session.get(InboxEvent, event_id)
    if row is None:
        return None
    obj = json.loads(row.payload).get("data", {}).get("object")
    return obj if isinstance(obj, dict) else None


def is_due(runtime: Runtime, every_s: int, now: datetime) -> bool:
    """Whether the last reconcile of the deployment is `every_s` old (or there was none)."""
    with runtime.sessions() as session:
        last = runs.last_reconcile(session)
    return last is None or now - last.at >= timedelta(seconds=every_s)


def reconcile_forever(runtime: Runtime, stop: threading.Event) -> None:
    """Reconcile with `--fix` whenever the last run is `RECONCILE_EVERY_S` old, until
    `stop` is set.

    Every worker runs this loop; the `reconciler` lease lets one of them run at a time,
    and the run log makes a new holder skip a reconcile that was just done. Errors
    (Stripe or the database away) are logged and tried again at the next check.
    """
    every_s = runtime.settings.reconcile_every_s
    if every_s is None:
        return

    def round_() -> None:
        if not is_due(runtime, every_s, runtime.now()):
            return
        done = reconcile(runtime, client_for(runtime), now=runtime.now(), fix=True)
        log.info(
            "reconcile: %d checked, %d drifted, %d fixed",
            done.checked,
            len(done.drifts),
            done.fixed,
        )

    lead_forever(
        runtime.sessions,
        LEASE,
        round_,
        pause_s=float(min(every_s, 60)),
        # Long enough for a whole run on a big account; a holder that dies frees it then.
        ttl_s=float(min(max(every_s, 600), 3600)),
        stop=stop,
        clock=runtime.clock,
    )
