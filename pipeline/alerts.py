"""Alerts (SPEC §12): a message per large movement within a minute, and a daily digest.

A worker that applies events records the messages of the movements they cause in the
outbox, in the ledger's own transaction (`record_movements`): only movements behind an
event received from Stripe and applied just now, whose `created` is within the last 24
hours, of at least `ALERT_MIN_MRR` in the reporting currency (each movement converted
at the rate of its UTC day, SPEC §10; a movement in a currency the rates do not cover is
weighed in its own minor units rather than never alerted). `mrr rebuild`, `mrr
backfill`, `mrr reconcile` and `mrr replay --sync` never record any. One worker of the
deployment, the holder of the `alerts` lease, posts them (`alerts_forever`): each
claimed in the database before its POST, so it is posted at most once; a failed post is
tried again after 60 s, doubling up to 10 minutes, for an hour, and then counted as
failed in `/status`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from adapters.leader import lead_forever
from ledger.synthetic import is_synthetic_id
from ledger.timeline import CustomerLedger
from models import outbox, queries
from models.db import transaction
from models.ledger_store import at
from models.tables import AlertOutbox
from pipeline import fx
from pipeline.drill import movement_json
from pipeline.reports import Query, movements_report
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from reporting.alerts import GIVE_UP_AFTER_S, digest_text, movement_text, retry_after_s
from reporting.errors import NoRate
from reporting.fx import Converter
from reporting.periods import Period

log = logging.getLogger(__name__)

LEASE = "alerts"
#: The sender's round: every PAUSE_S while it holds the lease; a round stops taking new
#: messages after ROUND_BUDGET_S, and each POST waits at most POST_TIMEOUT_S, so a round
#: ends well within the lease's LEASE_TTL_S.
PAUSE_S, ROUND_BUDGET_S, POST_TIMEOUT_S, LEASE_TTL_S = 2.0, 10.0, 5.0, 30.0
#: Events older than this when applied are history: no alert.
RECENT = timedelta(hours=24)
LARGEST_IN_DIGEST = 5

Post = Callable[[str, dict[str, Any]], None]


def record_movements(
    session: Session,
    settings: Settings,
    ledgers: Sequence[CustomerLedger],
    applied_now: Collection[str],
    now: datetime,
) -> int:
    """Record the messages of the movements behind `applied_now` (events a worker is
    applying in this transaction). Returns how many qualified (recorded or not before)."""
    if settings.alert_webhook_url is None:
        return 0
    fresh = {e for e in applied_now if not is_synthetic_id(e)}
    rows = []
    weigh = _Weigh(session, settings)
    for ledger in ledgers:
        for m in ledger.movements:
            if not fresh.intersection(m.event_ids) or at(m.occurred_at) < now - RECENT:
                continue
            converted = weigh(m.amount, m.currency, at(m.occurred_at).date())
            if (converted[0] if converted else m.amount) < settings.alert_min_mrr:
                continue
            lever = m.kind.value if m.kind else m.reason_key
            rows.append(
                {
                    "kind": "movement",
                    "customer_id": m.customer_id,
                    "currency": m.currency,
                    "occurred_at": at(m.occurred_at),
                    "type": m.type.value,
                    "text": movement_text(
                        m.customer_id,
                        m.type.value,
                        m.amount,
                        m.currency,
                        lever,
                        settings.public_url,
                        converted,
                    ),
                }
            )
    outbox.record(session, rows, now)
    return len(rows)


class _Weigh:
    """A movement's amount in the reporting currency, at its day's rate; None when the
    rates do not cover its currency (or the reporting currency). The rates are read at
    the first movement that needs them: most applies have no candidate at all."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self._session, self._settings = session, settings
        self._converter: Converter | bool | None = False

    @property
    def target(self) -> str:
        return self._settings.reporting_currency

    def __call__(self, amount: int, currency: str, day: date) -> tuple[int, str] | None:
        if self._converter is False:
            try:
                rates = fx.rates_in(self._session, self._settings.database_url)
                self._converter = rates.converter(self._settings.reporting_currency)
            except NoRate:
                self._converter = None
        converter = self._converter
        if not isinstance(converter, Converter) or not converter.covers(currency):
            return None
        try:
            return converter.convert(amount, currency, day), converter.target
        except NoRate:  # a day before the currency's first rate
            return None


def record_digest(runtime: Runtime, now: datetime | None = None) -> bool:
    """From `DIGEST_HOUR_UTC`:00 on, record yesterday's digest unless it is already
    (also after a restart). True when recorded now."""
    now = now or runtime.now()
    if runtime.settings.alert_webhook_url is None or now.hour < runtime.settings.digest_hour_utc:
        return False
    day = now.date() - timedelta(days=1)
    with runtime.sessions() as session:
        if outbox.has_digest(session, day):
            return False
        currencies = [t.currency for t in queries.currency_totals(session)]
        # The largest in the reporting currency: native amounts of different currencies
        # do not compare (¥10,000 is less than $100.00).
        weigh = _Weigh(session, runtime.settings)
        weighed = []
        for m in queries.movements_on_days(session, day, day + timedelta(days=1)):
            converted = weigh(m.amount, m.currency, m.occurred_day)
            weighed.append((converted[0] if converted else m.amount, m, converted))
        weighed.sort(key=lambda w: -w[0])  # stable: ties keep time order
        largest = []
        for _, m, converted in weighed[:LARGEST_IN_DIGEST]:
            shown = movement_json(m)
            shown["amount"] = converted[0] if converted else None  # None: no rate
            largest.append(shown)
    rows = {}
    for currency in currencies:
        doc = movements_report(
            runtime, Query(currency, Period.DAY, day, day + timedelta(days=1), as_of=now)
        )
        rows[currency] = doc["periods"][0]
    text = digest_text(day.isoformat(), rows, largest, runtime.settings.public_url, weigh.target)
    with transaction(runtime.sessions) as session:
        outbox.record(session, [{"kind": "digest", "digest_day": day, "text": text}], now)
    return True


def post_json(url: str, payload: dict[str, Any]) -> None:
    """POST `payload` as JSON; raises unless the answer is 2xx. The URL is a secret of
    sorts (Slack's carry a token): errors never name it."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=POST_TIMEOUT_S) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"the alert webhook answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"the alert webhook is unreachable: {type(reason).__name__}") from None


def send_round(
    runtime: Runtime,
    post: Post = post_json,
    clock: Callable[[], datetime] | None = None,
    budget_s: float = ROUND_BUDGET_S,
) -> int:
    """Record a due digest, then post the due messages (until `budget_s` has passed).
    Returns how many were posted."""
    url = runtime.settings.alert_webhook_url
    if url is None:
        return 0
    now_of = clock or runtime.clock
    record_digest(runtime, now_of())
    started = time.monotonic()
    posted = 0
    while time.monotonic() - started < budget_s:
        with runtime.sessions() as session:
            batch = [(r.id, r.text, r.created_at) for r in outbox.due(session, now_of(), 20)]
        if not batch:
            break
        for row_id, text, created_at in batch:
            if time.monotonic() - started >= budget_s:
                break
            with transaction(runtime.sessions) as session:
                if not outbox.claim(session, row_id):
                    continue  # another sender has it
            posted += _post_one(runtime, post, url, row_id, text, created_at, now_of)
    return posted


def _post_one(
    runtime: Runtime,
    post: Post,
    url: str,
    row_id: int,
    text: str,
    created_at: datetime,
    now_of: Callable[[], datetime],
) -> int:
    try:
        post(url, {"text": text})
    except Exception as exc:
        now = now_of()
        with transaction(runtime.sessions) as session:
            attempts = _attempts(session, row_id)
            retry_at = now + timedelta(seconds=retry_after_s(attempts))
            give_up = retry_at > created_at + timedelta(seconds=GIVE_UP_AFTER_S)
            outbox.retry(session, row_id, None if give_up else retry_at, str(exc))
        log.warning("alert %d not posted (attempt %d): %s", row_id, attempts, exc)
        return 0
    with transaction(runtime.sessions) as session:
        outbox.sent(session, row_id, now_of())
    return 1


def _attempts(session: Session, row_id: int) -> int:
    row = session.get(AlertOutbox, row_id)
    return int(row.attempts) if row is not None else 1


def alerts_forever(runtime: Runtime, stop: threading.Event) -> None:
    """Post alerts every PAUSE_S while holding the `alerts` lease, until `stop` is set."""
    lead_forever(
        runtime.sessions,
        LEASE,
        lambda: send_round(runtime),
        pause_s=PAUSE_S,
        ttl_s=LEASE_TTL_S,
        stop=stop,
        clock=runtime.clock,
    )
