"""Intake: a verified Stripe event into the inbox, then onto the queue (SPEC §2).

The webhook, `mrr replay` and `mrr backfill` all come through here. Persist-then-ack:
the caller answers only after the event is committed, so an acknowledged event can
never be lost; the enqueue after the commit may fail (Redis down), or for the webhook
happen after the answer (the process may die in between), without harm, because the
sweeper enqueues pending rows again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapters.queue import enqueue_new
from ledger.errors import InvalidValue
from ledger.snapshot import customer_id_of, storable
from models.db import engine_of
from models.errors import InboxRefused, InboxUnavailable
from models.inbox import InboxWriter, Stored, store_events_committed
from pipeline.errors import BadEvent, IntakeTimeout
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = [
    "BadEvent",
    "GroupCommit",
    "InboxRefused",
    "InboxUnavailable",
    "IntakeTimeout",
    "enqueue",
    "parse_envelope",
    "store",
    "store_and_enqueue",
    "store_many",
]


#: Widths of the inbox columns an event's fields go into.
MAX_ID, MAX_API_VERSION = 255, 64
#: `created` must fit the inbox's 64-bit column.
INT64_MAX = 2**63 - 1


def loads(payload: bytes | str) -> Any:
    """`json.loads`, with orjson's parser first (a third of the standard library's time
    on webhook payloads). orjson refuses a few things the standard library reads — NaN,
    integers beyond 64 bits, lone surrogates, nesting deeper than 1024 — and those go to
    `json.loads`, so every body parses exactly as it always did."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload)


def parse_envelope(payload: bytes | str) -> dict[str, Any]:
    """A verified body must be a JSON object with string `id`, `type` and `object: event`,
    and what goes into the inbox's columns must fit them (ids, type, API version,
    customer id, `created`). Anything else can never be stored: `BadEvent` (a 400)."""
    try:
        event = loads(payload)
    except RecursionError:
        raise BadEvent("body is nested too deeply") from None
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
    _storable(event["id"], "id", MAX_ID)
    _storable(event["type"], "type", MAX_ID)
    if isinstance(event.get("api_version"), str):
        _storable(event["api_version"], "api_version", MAX_API_VERSION)
    created = event.get("created")
    if isinstance(created, int) and not -INT64_MAX <= created <= INT64_MAX:
        raise BadEvent("event created is out of range")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    customer = customer_id_of(obj) if isinstance(obj, dict) else None
    if customer is not None:
        _storable(customer, "data.object.customer", MAX_ID)
    return event


def _storable(value: str, name: str, limit: int) -> None:
    try:
        storable(value, f"event {name}", limit)
    except InvalidValue as exc:
        raise BadEvent(str(exc)) from None


def store(runtime: Runtime, event: dict[str, Any], raw: str) -> Stored:
    """Store one event, committed when this returns (insert-or-ignore by id)."""
    return store_many(runtime, [(event, raw)])[0]


def store_many(
    runtime: Runtime,
    items: Sequence[tuple[dict[str, Any], str]],
    *,
    synthetic: bool = False,
) -> list[Stored]:
    """Store events with one insert, committed when this returns (insert-or-ignore by
    id, so storing them again adds nothing). `synthetic` marks events made up by
    backfill or reconcile (SPEC §9). Results follow `items`' order."""
    if not items:
        return []
    return store_events_committed(engine_of(runtime.sessions), items, synthetic=synthetic)


def enqueue(runtime: Runtime, event_ids: Sequence[str]) -> bool:
    """Enqueue newly stored events after their commit; a Redis failure is logged, never
    raised (the sweeper catches up). Returns whether they reached the queue."""
    if not event_ids:
        return True
    try:
        enqueue_new(runtime.queue, event_ids)
        return True
    except Exception as exc:
        log.warning("enqueue failed, the sweeper will retry %d event(s): %s", len(event_ids), exc)
        return False


def store_and_enqueue(runtime: Runtime, event: dict[str, Any], raw: str) -> Stored:
    """Store one event (committed), then enqueue it if it is new and awaits a worker."""
    stored = store(runtime, event, raw)
    if stored.inserted and stored.pending:
        enqueue(runtime, [stored.event_id])
    return stored


@dataclass(eq=False)
class _Slot:
    event: dict[str, Any]
    raw: str
    wake: threading.Event = field(default_factory=threading.Event)
    leader: bool = False
    done: bool = False
    result: Stored | None = None
    error: BaseException | None = None


#: Seconds a request waits for the batch holding its event before answering 503.
WAIT_S = 30.0
#: How long the enqueue thread lets handed-over ids gather before one script call takes
#: them all: under load a batch per call instead of one call per few requests (the
#: profile put the enqueue at ~10 % of a loaded web worker's CPU), at a cost of this
#: much lag.
ENQUEUE_LINGER_S = 0.01


class GroupCommit:
    """Stores the events of concurrent requests with one insert, one commit and one
    enqueue per batch (group commit), and answers each request once its event is durable.

    No thread of its own and no added delay: the first request to arrive writes; those
    arriving meanwhile queue up and the next of them writes them all in one round trip.
    Under the gevent web worker a batch is whatever came in during the previous write;
    with a single request at a time it is a batch of one, through the same code.

    Before taking its batch, a writer yields once (`time.sleep(0)`: under gevent a
    switch to the hub, elsewhere a release of the GIL). Requests whose bytes have
    already arrived then join the batch instead of waiting for the next one: without
    it, replies that go out together come back together and the first of them is
    written alone, so every other write of a loaded worker was a batch of one (measured
    under wrk: batches of 1 and of 9 in turn; with the yield, nearly all of 9).
    """

    MAX_BATCH = 256

    def __init__(
        self,
        store: Callable[[Sequence[tuple[dict[str, Any], str]]], list[Stored]],
        enqueue: Callable[[Sequence[str]], object],
        wait_s: float = WAIT_S,
    ) -> None:
        self.store_batch = store
        self.enqueue = enqueue
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._pending: list[_Slot] = []
        self._writing = False

    @classmethod
    def of(cls, runtime: Runtime) -> GroupCommit:
        """The web process's group commit: the intake's own connection (`InboxWriter`),
        and an enqueue in the background that leaves a Redis outage to the sweeper."""
        writer = InboxWriter(engine_of(runtime.sessions))
        return cls(writer.store, BackgroundEnqueue(lambda ids: enqueue(runtime, ids)))

    def submit(self, event: dict[str, Any], raw: str) -> Stored:
        """Store `event` (committed on return), then enqueue it if it is new and pending.

        Raises `InboxUnavailable` (the database), `InboxRefused` (a value it can never
        store) or `IntakeTimeout` (nothing wrote it in `WAIT_S`; it was not stored).
        """
        slot = _Slot(event, raw)
        with self._lock:
            self._pending.append(slot)
            if not self._writing:
                self._writing = slot.leader = True
        if not slot.leader and not slot.wake.wait(self.wait_s):
            with self._lock:
                # Never picked up: give up and leave no trace, so the lead can never be
                # handed to a request that has stopped waiting.
                abandoned = slot in self._pending and not slot.leader
                if abandoned:
                    self._pending.remove(slot)
            if abandoned:
                raise IntakeTimeout("the inbox write did not finish in time")
            # Its batch is being written (bounded by the database timeouts), or it has just
            # been handed the lead.
            slot.wake.wait()
        if not slot.done:  # this request writes the batch it heads
            time.sleep(0)  # let requests that have already arrived join the batch
            self._write_batch()
        if slot.error is not None:
            raise slot.error
        assert slot.result is not None
        return slot.result

    def _store(self, batch: list[_Slot]) -> None:
        """Store the batch; if the database refuses a row, store one by one, so only the
        refused event is answered 400 and the others are stored."""
        try:
            results = self.store_batch([(s.event, s.raw) for s in batch])
        except InboxRefused as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            for slot in batch:
                self._store([slot])
            return
        for slot, stored in zip(batch, results, strict=True):
            slot.result = stored

    def _write_batch(self) -> None:
        with self._lock:
            batch = self._pending[: self.MAX_BATCH]
            del self._pending[: self.MAX_BATCH]
        new: list[str] = []
        try:
            self._store(batch)
            results = [s.result for s in batch if s.result is not None]
            new = [s.event_id for s in results if s.inserted and s.pending]
        except Exception as exc:
            for slot in batch:
                if slot.result is None and slot.error is None:
                    slot.error = exc
        finally:
            with self._lock:
                for slot in batch:
                    if slot.result is None and slot.error is None:  # the writer was killed
                        slot.error = IntakeTimeout("the inbox write was interrupted")
                    slot.done = True
                    slot.wake.set()
                if self._pending:  # hand the writing to the oldest waiting request
                    self._pending[0].leader = True
                    self._pending[0].wake.set()
                else:
                    self._writing = False
        # After the answers are released (SPEC §2 allows the enqueue to follow the 200):
        # the events are durable, and the sweeper enqueues whatever this never does.
        if new:
            self.enqueue(new)


class BackgroundEnqueue:
    """Enqueues stored events' jobs from a thread of its own (a greenlet under the gevent
    web worker), so that no webhook waits for Redis (SPEC §2: the enqueue may follow the
    answer). Events handed over while a call is in flight go out together in the next
    one: under load one script call carries several batches.

    Nothing is lost if the process dies first: the events are committed to the inbox
    before they are handed over, and the sweeper enqueues a pending event whose job is
    missing within `SWEEP_AFTER_S`. The thread is started on first use in each process
    (never inherited across a fork).
    """

    def __init__(self, enqueue: Callable[[Sequence[str]], object]) -> None:
        self.enqueue = enqueue
        self._lock = threading.Lock()
        self._ids: list[str] = []
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._pid = 0

    def __call__(self, event_ids: Sequence[str]) -> None:
        with self._lock:
            self._ids.extend(event_ids)
            self._idle.clear()
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="enqueue", daemon=True).start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(ENQUEUE_LINGER_S)  # let the batch fill: one script call per batch
            self._wake.clear()
            with self._lock:
                ids, self._ids = self._ids, []
            try:
                if ids:
                    self.enqueue(ids)
            except Exception:  # the thread must outlive any failure; the sweeper catches up
                log.exception("enqueue of %d event(s) failed; the sweeper will", len(ids))
            finally:
                with self._lock:
                    if not self._ids:
                        self._idle.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything handed over has been enqueued (or given up on); returns
        whether it was. For callers that must see the jobs, e.g. a test's worker."""
        return self._idle.wait(timeout)
