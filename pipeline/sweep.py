"""The sweeper: enqueue again the inbox rows still pending after `SWEEP_AFTER_S` whose job
will not run any more (SPEC §3).

It keeps no state in Redis: it reads the inbox, asks RQ which jobs are still queued,
scheduled or running, and enqueues the others with the retries their inbox rows have
left. So a Redis loss, a killed worker or a failed enqueue is recovered, a backlog is
never duplicated, and no event gets a fresh retry budget. One sweeper runs per
deployment: whoever holds the `sweeper` lease in the database.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime

from rq import Queue
from sqlalchemy.orm import Session, sessionmaker

from models import inbox, leases
from models.clock import utcnow
from models.db import transaction
from pipeline.queue import enqueue_apply, jobs_in_flight

log = logging.getLogger(__name__)

LEASE = "sweeper"


def sweep(
    factory: sessionmaker[Session],
    queue: Queue,
    older_than_s: int,
    now: datetime | None = None,
    batch: int = 1000,
) -> int:
    """Enqueue every stale pending event whose job is gone; returns how many were enqueued.

    Stale rows whose job is still on its way are stamped too, so they are looked at
    again only after another `older_than_s`.
    """
    total = 0
    stamp = now or utcnow()
    while True:
        with transaction(factory) as session:
            due = inbox.due_for_sweep(session, older_than_s, now=stamp, limit=batch)
            if not due:
                return total
            alive = jobs_in_flight(queue, due, stamp)
            lost = {event_id: n for event_id, n in due.items() if event_id not in alive}
            if lost:
                enqueue_apply(queue, list(lost), lost)
            inbox.mark_enqueued(session, sorted(due), at=stamp)
        total += len(lost)
        if lost:
            log.info("sweeper re-enqueued %d pending event(s)", len(lost))
        if len(due) < batch:
            return total


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def sweep_forever(
    factory: sessionmaker[Session],
    queue_factory: Callable[[], Queue],
    older_than_s: int,
    stop: threading.Event,
) -> None:
    """Sweep every `older_than_s / 2` seconds while holding the `sweeper` lease, until
    `stop` is set. Redis or database outages are logged and tried again next round."""
    pause = max(older_than_s / 2, 1.0)
    me = holder_name()
    try:
        while not stop.is_set():
            try:
                with transaction(factory) as session:
                    leader = leases.hold(session, LEASE, me, ttl_s=3 * pause, now=utcnow())
                if leader:
                    sweep(factory, queue_factory(), older_than_s)
            except Exception as exc:
                log.warning("sweep failed, retrying in %.0fs: %s", pause, exc)
            stop.wait(pause)
    finally:
        try:
            with transaction(factory) as session:
                leases.release(session, LEASE, me)
        except Exception:  # the database may be down; the lease expires by itself
            log.debug("could not release the sweeper lease", exc_info=True)
