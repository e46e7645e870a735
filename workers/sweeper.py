"""The sweeper: re-enqueue inbox rows still pending after `SWEEP_AFTER_S` (SPEC §3).

It keeps no state in Redis, only reads the inbox, so it recovers everything after a
Redis loss, a killed worker or a failed enqueue. Enqueueing twice is harmless: jobs
are idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from rq import Queue
from sqlalchemy.orm import Session, sessionmaker

from models import inbox
from models.db import transaction
from models.tables import utcnow
from workers.queue import enqueue_apply

log = logging.getLogger(__name__)


def sweep(
    factory: sessionmaker[Session],
    queue: Queue,
    older_than_s: int,
    now: datetime | None = None,
    batch: int = 1000,
) -> int:
    """Enqueue every stale pending event once; returns how many were enqueued."""
    total = 0
    stamp = now or utcnow()
    while True:
        with transaction(factory) as session:
            ids = inbox.due_for_sweep(session, older_than_s, now=stamp, limit=batch)
            if not ids:
                return total
            enqueue_apply(queue, ids)
            inbox.mark_enqueued(session, ids, at=stamp)
        total += len(ids)
        log.info("sweeper re-enqueued %d pending events", len(ids))
        if len(ids) < batch:
            return total


def sweep_forever(
    factory: sessionmaker[Session],
    queue_factory: Callable[[], Queue],
    older_than_s: int,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Sweep every `older_than_s / 2` seconds until `stop()`; survives Redis outages."""
    pause = max(older_than_s / 2, 1)
    while not stop():
        try:
            sweep(factory, queue_factory(), older_than_s)
        except Exception as exc:  # Redis or the database down: try again next round
            log.warning("sweep failed, retrying in %.0fs: %s", pause, exc)
        time.sleep(pause)
