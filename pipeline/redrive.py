"""Failed and quarantined events: list them, and drive them through the pipeline again
once their cause is fixed (`mrr failed`, `mrr retry`; SPEC §5, §8)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rq.registry import FailedJobRegistry

from adapters.queue import enqueue_apply, job_id
from models import inbox
from models.db import transaction
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FailedReport:
    """Every failed or quarantined event with its reason (no payloads), oldest first."""

    events: tuple[inbox.Problem, ...]

    def document(self) -> dict[str, Any]:
        return {
            "events": [
                {
                    "id": p.id,
                    "type": p.type,
                    "status": p.status,
                    "attempts": p.attempts,
                    "reason": p.reason,
                    "received_at": p.received_at.isoformat(),
                }
                for p in self.events
            ]
        }


def failed(runtime: Runtime) -> FailedReport:
    """`mrr failed`: the events that failed for good or were quarantined."""
    with runtime.sessions() as session:
        return FailedReport(tuple(inbox.problems(session)))


@dataclass(frozen=True)
class RetryResult:
    """What `retry` re-drove: the events made pending again, the ids asked for that are
    not failed or quarantined, and whether their jobs reached the queue now (if not,
    the sweeper enqueues them within `SWEEP_AFTER_S`)."""

    retried: tuple[str, ...]
    not_failed: tuple[str, ...]
    enqueued: bool

    def document(self) -> dict[str, Any]:
        return {
            "retried": list(self.retried),
            "not_failed": list(self.not_failed),
            "enqueued": self.enqueued,
        }


def retry(runtime: Runtime, event_ids: Sequence[str] | None) -> RetryResult:
    """Make the given failed or quarantined events (all of them when None) pending again
    with a full attempt budget, then enqueue them.

    The reset is committed first: from then on the events are the sweeper's to enqueue
    should Redis be down, as after any intake (so a Redis outage is not an error here).
    Their old jobs leave RQ's failed registry when Redis answers.
    """
    with transaction(runtime.sessions) as session:
        ids = inbox.reset_for_retry(session, event_ids)
    unknown = tuple(sorted(set(event_ids or ()) - set(ids)))
    enqueued = True
    if ids:
        try:
            registry = FailedJobRegistry(queue=runtime.queue)
            for event_id in ids:
                registry.remove(job_id(event_id))
            enqueue_apply(runtime.queue, ids)
        except Exception as exc:
            log.warning("enqueue failed, the sweeper will retry %d event(s): %s", len(ids), exc)
            enqueued = False
    return RetryResult(tuple(ids), unknown, enqueued)
