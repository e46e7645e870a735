"""The job: apply a stored event (and, in the same batch, other pending ones).

RQ calls it by name (`adapters.queue.APPLY_JOB`) with an event id; it runs the use case
with the runtime the worker installed at start (`pipeline.runtime.current`), opens its
own sessions and lets errors raise, so RQ retries it and, after the last attempt, files
it in the FailedJobRegistry. Idempotent: the ledger it writes is a function of the
customers' stored events only.
"""

from __future__ import annotations

from pipeline.jobs import apply_job
from pipeline.runtime import current


def apply_event(event_id: str) -> str:
    """RQ entry point: apply one inbox event. Returns what happened, for the job result."""
    return apply_job(current(), event_id)
