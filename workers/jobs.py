"""The job: apply a stored event (and, in the same batch, other pending ones).

Jobs take an event id, open their own sessions and let errors raise, so RQ retries
them and, after the last attempt, files them in the FailedJobRegistry. Every job is
idempotent: the ledger it writes is a function of the customers' stored events only.
"""

from __future__ import annotations

import logging

from pipeline.apply import apply_event_ids
from pipeline.queue import absorb, max_attempts
from workers import context

log = logging.getLogger(__name__)


def apply_event(event_id: str) -> str:
    """RQ entry point: apply one inbox event. Returns what happened, for the job result."""
    outcome = apply_event_ids(
        context.sessions(), context.settings(), [event_id], attempts_allowed=max_attempts()
    )
    if outcome.others:
        try:
            absorb(context.queue(), outcome.others)
        except Exception as exc:  # their jobs then run and find the events applied
            log.warning("could not drop %d absorbed job(s): %s", len(outcome.others), exc)
    if outcome.quarantined:
        return "quarantined: the ledger can never apply it as it is (see `mrr failed`)"
    if outcome.already:
        return "already applied"
    return f"applied {outcome.events} event(s) of {outcome.customers} customer(s)"
