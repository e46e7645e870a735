"""Intake: a verified Stripe event into the inbox, then onto the queue (SPEC §2).

The webhook, `mrr replay` and `mrr backfill` all come through here. Persist-then-ack:
the caller answers only after `store` has committed, so an acknowledged event can never
be lost; the enqueue after the commit may fail (Redis down) without harm, because the
sweeper enqueues pending rows again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from rq import Queue
from sqlalchemy.orm import Session, sessionmaker

from models.db import transaction
from models.inbox import Stored, store_event
from pipeline.queue import enqueue_apply

log = logging.getLogger(__name__)


class BadEvent(ValueError):
    """A body that is not a Stripe event; nothing is stored."""


def parse_envelope(payload: bytes | str) -> dict[str, Any]:
    """A verified body must be a JSON object with string `id`, `type` and `object: event`."""
    try:
        event = json.loads(payload)
    except ValueError:
        raise BadEvent("body is not valid JSON") from None
    if not isinstance(event, dict):
        raise BadEvent("body is not a JSON object")
    if event.get("object") != "event":
        raise BadEvent('body is not a Stripe event ("object" is not "event")')
    if not isinstance(event.get("id"), str) or not event["id"]:
        raise BadEvent("event has no string id")
    if not isinstance(event.get("type"), str) or not event["type"]:
        raise BadEvent("event has no string type")
    return event


def store(factory: sessionmaker[Session], event: dict[str, Any], raw: str) -> Stored:
    """Store one event in its own committed transaction (insert-or-ignore by id)."""
    with transaction(factory) as session:
        return store_event(session, event, raw)


def enqueue(queue: Queue, event_ids: Sequence[str]) -> bool:
    """Enqueue after commit; a Redis failure is logged, never raised (the sweeper catches up)."""
    if not event_ids:
        return True
    try:
        enqueue_apply(queue, event_ids)
        return True
    except Exception as exc:
        log.warning("enqueue failed, the sweeper will retry %d event(s): %s", len(event_ids), exc)
        return False


def store_and_enqueue(
    factory: sessionmaker[Session], queue: Queue, event: dict[str, Any], raw: str
) -> Stored:
    """Store, commit, then enqueue a newly stored event that awaits a worker."""
    stored = store(factory, event, raw)
    if stored.inserted and stored.pending:
        enqueue(queue, [stored.event_id])
    return stored
