"""The queue, the sweeper and batched apply on real Redis and a real database."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from redis import Redis
from rq.job import Job, JobStatus
from sqlalchemy import select

from adapters import queue as queue_module
from adapters.queue import (
    FastEnqueue,
    enqueue_apply,
    job_id,
    jobs_in_flight,
    max_attempts,
)
from models.clock import utcnow
from models.db import transaction
from models.inbox import store_event
from models.leases import hold
from models.tables import EventStatus, InboxEvent
from pipeline.apply import apply_event_ids
from pipeline.runtime import bootstrap
from pipeline.sweep import sweep
from tests import factories as f
from tests.conftest import load_fixture_events

PRICE = f.price("price_rt", 1000)


def created(n: int, customer: str | None = None) -> dict:
    customer = customer or f"cus_rt{n}"
    return f.event(
        f"evt_rt{n}",
        "customer.subscription.created",
        1704067200 + n,
        f.subscription(f"sub_rt{n}", customer, [f.item(PRICE, 1 + n % 3)]),
    )


def store_all(db, events) -> list[str]:
    with transaction(db) as session:
        return [store_event(session, e, json.dumps(e)).event_id for e in events]


def test_fast_enqueue_stores_what_rq_enqueue_stores(settings) -> None:
    queue = bootstrap(settings).queue
    enqueue_apply(queue, ["evt_slow"])
    FastEnqueue(queue)(["evt_fast"])
    redis = Redis.from_url(settings.redis_url)
    slow = redis.hgetall(Job.key_for(job_id("evt_slow")))
    fast = redis.hgetall(Job.key_for(job_id("evt_fast")))
    assert sorted(slow) == sorted(fast)
    varying = {b"created_at", b"enqueued_at", b"description", b"data"}
    assert {k: v for k, v in slow.items() if k not in varying} == {
        k: v for k, v in fast.items() if k not in varying
    }
    jobs = {
        j.id: j
        for j in Job.fetch_many(
            [job_id("evt_slow"), job_id("evt_fast")], redis, serializer=queue.serializer
        )
    }
    one, two = jobs[job_id("evt_slow")], jobs[job_id("evt_fast")]
    assert (one.func_name, one.args, one.description) == (
        "workers.jobs.apply_event",
        ["evt_slow"],
        "apply evt_slow",
    )
    assert (two.func_name, two.args, two.description) == (
        "workers.jobs.apply_event",
        ["evt_fast"],
        "apply evt_fast",
    )
    assert two.get_status() == JobStatus.QUEUED
    assert queue.job_ids == [job_id("evt_slow"), job_id("evt_fast")]


def test_a_job_applies_other_pending_events_and_drops_their_jobs(db, settings, run_worker):
    events = [created(n) for n in range(30)]
    ids = store_all(db, events)
    queue = bootstrap(settings).queue
    enqueue_apply(queue, ids)
    outcome = apply_event_ids(bootstrap(settings), ids[:1], attempts_allowed=max_attempts())
    assert outcome.events == 30 and len(outcome.others) == 29
    assert queue_module.absorb(queue, outcome.others) == 29
    assert queue.count == 1  # only the job of the event asked for is left
    assert run_worker() == 0
    with db() as session:
        assert set(session.scalars(select(InboxEvent.status))) == {EventStatus.PROCESSED}


def test_an_invalid_event_of_another_customer_does_not_fail_the_batch(db, settings):
    broken = created(1, "cus_broken")
    del broken["data"]["object"]["status"]
    ids = store_all(db, [created(0), broken, created(2)])
    outcome = apply_event_ids(bootstrap(settings), ids[:1], attempts_allowed=max_attempts())
    assert sorted([ids[0], *outcome.others]) == sorted([ids[0], ids[2]])
    with db() as session:
        statuses = dict(session.execute(select(InboxEvent.id, InboxEvent.status)).all())
    assert statuses[ids[1]] == EventStatus.PENDING  # left to its own job, which will fail
    assert statuses[ids[0]] == statuses[ids[2]] == EventStatus.PROCESSED


def test_the_sweeper_leaves_queued_jobs_alone(db, settings) -> None:
    ids = store_all(db, [created(n) for n in range(5)])
    queue = bootstrap(settings).queue
    enqueue_apply(queue, ids)
    later = utcnow() + timedelta(seconds=settings.sweep_after_s + 1)
    assert sweep(bootstrap(settings), now=later) == 0
    assert queue.count == 5  # nothing duplicated
    Redis.from_url(settings.redis_url).flushdb()  # Redis lost everything
    even_later = later + timedelta(seconds=settings.sweep_after_s + 1)
    assert sweep(bootstrap(settings), now=even_later) == 5
    assert queue.count == 5


def test_a_started_job_counts_as_running_until_its_timeout(db, settings) -> None:
    ids = store_all(db, [created(0)])
    queue = bootstrap(settings).queue
    enqueue_apply(queue, ids)
    job = Job.fetch(job_id(ids[0]), connection=queue.connection, serializer=queue.serializer)
    job.set_status(JobStatus.STARTED)
    job.started_at = job.last_heartbeat = utcnow()
    job.save()
    now = utcnow()
    assert jobs_in_flight(queue, ids, now) == {ids[0]}
    still = now + timedelta(seconds=queue_module.JOB_TIMEOUT_S)
    assert jobs_in_flight(queue, ids, still) == {ids[0]}  # a live job may run this long
    # Dead soon after: with the sweeper's round, a lost host's event is back within 90 s.
    dead = now + timedelta(seconds=queue_module.JOB_TIMEOUT_S + queue_module.STARTED_GRACE_S + 1)
    assert jobs_in_flight(queue, ids, dead) == set()
    assert queue_module.JOB_TIMEOUT_S + queue_module.STARTED_GRACE_S + 30 / 2 < 90


def test_a_dead_workers_started_job_is_swept_the_round_it_is_presumed_dead(db, settings) -> None:
    """A lost host's job stays "started": its row is looked at every round, not stamped
    for another SWEEP_AFTER_S, so it is enqueued again the first round after the job is
    presumed dead (60 + 5 s), within 90 s of the loss with the sweeper's 15 s round."""
    ids = store_all(db, [created(0)])
    queue = bootstrap(settings).queue
    enqueue_apply(queue, ids)
    job = Job.fetch(job_id(ids[0]), connection=queue.connection, serializer=queue.serializer)
    job.set_status(JobStatus.STARTED)
    t0 = job.started_at = job.last_heartbeat = utcnow()
    job.save()
    assert settings.sweep_after_s == 30
    assert sweep(bootstrap(settings), now=t0 + timedelta(seconds=31)) == 0  # running
    assert sweep(bootstrap(settings), now=t0 + timedelta(seconds=62)) == 0  # still
    assert sweep(bootstrap(settings), now=t0 + timedelta(seconds=70)) == 1  # dead: again


def test_the_sweeper_never_hands_out_a_fresh_retry_budget(db, settings, run_worker, monkeypatch):
    monkeypatch.setattr(queue_module, "RETRY_INTERVALS", (0, 0, 0))
    broken = created(7)
    del broken["data"]["object"]["status"]
    ids = store_all(db, [broken])
    # Two attempts failed, then Redis lost the job and its retries.
    with transaction(db) as session:
        session.get(InboxEvent, ids[0]).attempts = 2
    later = utcnow() + timedelta(seconds=settings.sweep_after_s + 1)
    assert sweep(bootstrap(settings), now=later) == 1
    assert run_worker() == 1
    with db() as session:
        row = session.get(InboxEvent, ids[0])
        assert (row.status, row.attempts) == (EventStatus.FAILED, max_attempts())
    even_later = later + timedelta(seconds=settings.sweep_after_s + 1)
    assert sweep(bootstrap(settings), now=even_later) == 0  # failed: left alone


def test_one_lease_holder_at_a_time(db) -> None:
    now = utcnow()
    with transaction(db) as session:
        assert hold(session, "sweeper", "a", 10, now)
    with transaction(db) as session:
        assert not hold(session, "sweeper", "b", 10, now + timedelta(seconds=5))
    with transaction(db) as session:
        assert hold(session, "sweeper", "a", 10, now + timedelta(seconds=5))  # renewal
    with transaction(db) as session:
        assert hold(session, "sweeper", "b", 10, now + timedelta(seconds=16))  # expired


def test_replayed_fixtures_through_batches_equal_one_job_per_event(db, settings):
    """A batch of many customers writes exactly what one customer at a time writes."""
    from tests.integration.expected import EXPECTED_MOVEMENTS
    from tests.integration.helpers import movement_rows

    events = load_fixture_events()
    ids = store_all(db, events)
    apply_event_ids(bootstrap(settings), ids[:1], attempts_allowed=max_attempts())
    apply_event_ids(bootstrap(settings), ids, attempts_allowed=max_attempts())
    assert movement_rows(db) == sorted(EXPECTED_MOVEMENTS)


def test_postgresql_connections_use_tcp_keepalives(database_url: str) -> None:
    """A host lost without closing its sockets frees its sessions within a minute
    (SPEC §13): every connection asks for keepalives, found dead after 20 + 5 * 4 s."""
    if not database_url.startswith("postgres"):
        pytest.skip("PostgreSQL's connections")
    from models.db import KEEPALIVES, make_engine

    assert (
        KEEPALIVES["keepalives_idle"]
        + KEEPALIVES["keepalives_interval"] * KEEPALIVES["keepalives_count"]
        <= 60
    )
    assert KEEPALIVES["tcp_user_timeout"] <= 60_000  # unacknowledged data, in ms
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            params = conn.connection.driver_connection.info.get_parameters()
            server = {
                name: conn.exec_driver_sql(f"SHOW tcp_{name}").scalar()
                for name in ("keepalives_idle", "keepalives_interval", "keepalives_count")
            }
            server["user_timeout"] = conn.exec_driver_sql("SHOW tcp_user_timeout").scalar()
    finally:
        engine.dispose()
    assert {k: params.get(k) for k in KEEPALIVES} == {k: str(v) for k, v in KEEPALIVES.items()}
    # The server's end probes too (so it frees a vanished host's locks).
    assert server == {
        "keepalives_idle": "20",
        "keepalives_interval": "5",
        "keepalives_count": "4",
        "user_timeout": "40000",
    }
