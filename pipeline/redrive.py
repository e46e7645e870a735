"""Failed and quarantined events: list them, and drive them through the pipeline again
once their cause is fixed (`mrr failed`, `mrr retry`; SPEC §5, §8)."""

from __future__ import annotations

from collections.abc import Sequence

from rq import Queue
from rq.registry import FailedJobRegistry
from sqlalchemy.orm import Session, sessionmaker

from models import inbox
from models.db import transaction
from pipeline.queue import enqueue_apply, job_id


def problems(factory: sessionmaker[Session]) -> list[inbox.Problem]:
    """Every failed or quarantined event with its reason (no payloads)."""
    with factory() as session:
        return inbox.problems(session)


def retry(
    factory: sessionmaker[Session], queue: Queue, event_ids: Sequence[str] | None
) -> list[str]:
    """Make the given failed or quarantined events (all of them when None) pending again
    with a full attempt budget and enqueue them; returns the ids re-driven.

    Their old jobs leave RQ's failed registry. If Redis is down the events stay pending
    and the sweeper enqueues them when it returns.
    """
    with transaction(factory) as session:
        ids = inbox.reset_for_retry(session, event_ids)
    if ids:
        registry = FailedJobRegistry(queue=queue)
        for event_id in ids:
            registry.remove(job_id(event_id))
        enqueue_apply(queue, ids)
    return ids
