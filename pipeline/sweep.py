"""The sweeper: enqueue again the inbox rows still pending after `SWEEP_AFTER_S` whose job
will not run any more (SPEC §3).

It keeps no state in Redis: it reads the inbox, asks RQ which jobs are still queued,
scheduled or running, and enqueues the others with the retries their inbox rows have
left. So a Redis loss, a killed worker or a failed enqueue is recovered, a backlog is
never duplicated, and no event gets a fresh retry budget. One sweeper runs per
deployment: whoever holds the `sweeper` lease in the database (`adapters.leader`).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from adapters.leader import lead_forever
from adapters.queue import enqueue_apply, jobs_waiting_and_running
from models import inbox
from models.db import transaction
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

LEASE = "sweeper"


def sweep(runtime: Runtime, now: datetime | None = None, batch: int = 1000) -> int:
    """Enqueue every stale pending event whose job is gone; returns how many were enqueued.

    Stale rows whose job is still queued or scheduled are stamped too, so they are looked
    at again only after another `SWEEP_AFTER_S`; those whose job is running (a handful,
    one per worker at most) are looked at again next round.
    """
    total = 0
    stamp = now or runtime.now()
    older_than_s = runtime.settings.sweep_after_s
    while True:
        with transaction(runtime.sessions) as session:
            due = inbox.due_for_sweep(session, older_than_s, now=stamp, limit=batch)
            if not due:
                return total
            waiting, running = jobs_waiting_and_running(runtime.queue, due, stamp)
            lost = {e: n for e, n in due.items() if e not in waiting and e not in running}
            if lost:
                enqueue_apply(runtime.queue, list(lost), lost)
            # A running job's row is not stamped: if its worker is dead (a lost host), the
            # next round, not one SWEEP_AFTER_S later, sees the job presumed dead.
            inbox.mark_enqueued(session, sorted(set(due) - running), at=stamp)
        total += len(lost)
        if lost:
            log.info("sweeper re-enqueued %d pending event(s)", len(lost))
        if len(due) < batch:
            return total


def sweep_forever(runtime: Runtime, stop: threading.Event) -> None:
    """Sweep every `SWEEP_AFTER_S / 2` seconds while holding the `sweeper` lease, until
    `stop` is set. Redis or database outages are logged and tried again next round."""
    pause = max(runtime.settings.sweep_after_s / 2, 1.0)
    lead_forever(
        runtime.sessions,
        LEASE,
        lambda: sweep(runtime),
        pause_s=pause,
        ttl_s=3 * pause,
        stop=stop,
        clock=runtime.clock,
    )
