"""The use case behind the worker's job: apply one stored event, with a batch of others."""

from __future__ import annotations

import logging

from adapters.queue import absorb, max_attempts
from pipeline import enrich
from pipeline.apply import apply_event_ids
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)


def apply_job(runtime: Runtime, event_id: str) -> str:
    """Apply one inbox event and up to a batch of other pending ones; drop the queued jobs
    of the others it applied. Returns what happened, for the job's result. Raises what
    the apply raised (the job fails, and RQ retries it)."""
    outcome = apply_event_ids(runtime, [event_id], attempts_allowed=max_attempts(), alert=True)
    if outcome.others:
        try:
            absorb(runtime.queue, outcome.others)
        except Exception as exc:  # their jobs then run and find the events applied
            log.warning("could not drop %d absorbed job(s): %s", len(outcome.others), exc)
    if outcome.customer_ids:
        try:  # their attributes for segments (SPEC §11): never fails the job
            enrich.fetch_customers(runtime, outcome.customer_ids)
        except Exception as exc:
            log.warning("could not fetch customer attributes: %s", exc)
    if outcome.quarantined:
        return "quarantined: the ledger can never apply it as it is (see `mrr failed`)"
    if outcome.already:
        return "already applied"
    return f"applied {outcome.events} event(s) of {outcome.customers} customer(s)"
