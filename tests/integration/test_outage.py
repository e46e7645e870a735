"""A Redis outage under a real `worker` process (the Procfile's line): the worker's
registration, RQ's scheduler and the sweeper all come back by themselves, and events
acknowledged while Redis was away are applied."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from rq import Worker
from rq.job import JobStatus
from sqlalchemy import select

from models import inbox
from models.tables import EventStatus, InboxEvent
from pipeline import intake
from pipeline.runtime import bootstrap
from pipeline.settings import Settings
from tests.integration.processes import (
    fresh_postgres,
    private_redis,
    start_process,
    stop_process,
    wait_until,
)
from tests.lifecycles import random_events

pytestmark = pytest.mark.slow


def pending(factory) -> int:
    with factory() as session:
        return inbox.counts(session)["pending"]


def test_worker_scheduler_and_sweeper_come_back_after_redis_restarts(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("real worker processes are tested on PostgreSQL")
    events = random_events(seed=31, customers=8)
    half = len(events) // 2
    with fresh_postgres(database_url, "outage") as url, private_redis(tmp_path) as redis:
        runtime = bootstrap(Settings(database_url=url, redis_url=redis.url, queue_name="mrr"))
        factory = runtime.sessions
        env = {"DATABASE_URL": url, "REDIS_URL": redis.url, "SWEEP_AFTER_S": "2"}
        worker = start_process("worker", env, tmp_path / "worker.log")
        try:
            queue = runtime.queue
            wait_until(lambda: Worker.count(queue=queue) == 1, 30, "the worker to register")
            for event in events[:half]:
                intake.store_and_enqueue(runtime, event, json.dumps(event))
            wait_until(lambda: pending(factory) == 0, 60, "the first half to be applied")

            redis.stop()
            # The webhook keeps acknowledging: events are stored, their enqueue fails.
            for event in events[half:]:
                intake.store_and_enqueue(runtime, event, json.dumps(event))
            assert pending(factory) == len(events) - half
            redis.start()  # empty: it kept nothing

            wait_until(lambda: Worker.count(queue=queue) == 1, 30, "the worker to re-register")
            wait_until(lambda: pending(factory) == 0, 60, "the sweeper to catch up")
            job = queue.enqueue_in(timedelta(seconds=1), "builtins.abs", -3)
            wait_until(
                lambda: job.get_status() == JobStatus.FINISHED, 30, "the scheduler to run a job"
            )
            assert job.return_value() == 3
        finally:
            stop_process(worker)
        with factory() as session:
            statuses = set(session.scalars(select(InboxEvent.status)))
        assert statuses == {EventStatus.PROCESSED}, (tmp_path / "worker.log").read_text()[-3000:]
