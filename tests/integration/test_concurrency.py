"""Real worker processes racing over the same customers, rebuilds, and a SIGKILL mid-job."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import delete, func, select, text

from adapters.queue import JOB_TIMEOUT_S, enqueue_apply
from cli.main import cli
from models.clock import utcnow
from models.db import make_engine, transaction
from models.inbox import store_event
from models.tables import CustomerBalance, EventStatus, InboxEvent, LedgerMovement, SubscriptionRow
from pipeline.apply import apply_event_ids
from pipeline.runtime import bootstrap
from pipeline.sweep import sweep
from tests.conftest import empty_tables
from tests.integration.helpers import ledger_snapshot
from tests.integration.processes import descendants
from tests.lifecycles import random_events

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
WAITING_ON_LAST_WRITE = text(
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
    "AND query ILIKE 'UPDATE inbox_events%'"
)


def worker_env(settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "MRR_QUEUE": settings.queue_name,
        "PYTHONPATH": str(ROOT),
    }


def start_worker(settings, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "--burst", "--no-sweep", *extra],
        env=worker_env(settings),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def store_all(db, events) -> list[str]:
    ids = []
    with transaction(db) as session:
        for event in events:
            stored = store_event(session, event, json.dumps(event))
            if stored.inserted and stored.pending:
                ids.append(stored.event_id)
    return ids


def ordered_reference(db, settings, events) -> dict:
    """The ledger of in-order delivery, each event applied as it arrives."""
    for event in sorted(events, key=lambda e: (e["created"], e["id"])):
        for event_id in store_all(db, [event]):
            apply_event_ids(bootstrap(settings), [event_id], batch=0)
    return ledger_snapshot(db)


def test_four_worker_processes_racing_give_the_ordered_ledger(db, settings) -> None:
    events = random_events(seed=11, customers=12)
    reference = ordered_reference(db, settings, events)
    assert len(reference["movements"]) > 30

    empty_tables(db)
    Redis.from_url(settings.redis_url).flushdb()
    rng = random.Random(5)
    deliveries = events + rng.choices(events, k=len(events) // 3)
    rng.shuffle(deliveries)
    ids = store_all(db, deliveries)
    queue = bootstrap(settings).queue
    # Every event enqueued twice, so jobs of one customer overlap across the workers.
    enqueue_apply(queue, ids)
    for event_id in ids:
        queue.enqueue("workers.jobs.apply_event", event_id, job_id=f"again-{event_id}")
    workers = [start_worker(settings) for _ in range(4)]
    for proc in workers:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]

    assert ledger_snapshot(db) == reference
    with db() as session:
        statuses = set(session.scalars(select(InboxEvent.status).distinct()))
    assert statuses == {EventStatus.PROCESSED}

    # `mrr rebuild` reproduces it exactly, from the inbox alone.
    with transaction(db) as session:
        for table in (LedgerMovement, SubscriptionRow, CustomerBalance):
            session.execute(delete(table))
        session.add(
            CustomerBalance(customer_id="cus_gone", currency="usd", mrr=5, scheduled_churn=0)
        )
        session.add(
            SubscriptionRow(
                id="sub_gone",
                customer_id="cus_gone",
                currency="usd",
                status="active",
                mrr=5,
                scheduled_to_cancel=False,
                last_event_id="evt_gone",
                last_event_at=utcnow(),
            )
        )
    os.environ["DATABASE_URL"] = settings.database_url
    try:
        result = CliRunner().invoke(cli, ["rebuild", "--json"], catch_exceptions=False)
    finally:
        del os.environ["DATABASE_URL"]
    assert result.exit_code == 0
    counts = json.loads(result.stdout)
    assert counts["customers"] == 12 and counts["orphans_deleted"] == 1
    assert ledger_snapshot(db) == reference


def test_sigkill_mid_job_leaves_no_partial_ledger(db, settings, database_url) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("needs PostgreSQL row locks to stop a job between its writes")
    events = random_events(seed=3, customers=1)
    reference = ordered_reference(db, settings, events)
    empty_tables(db)
    Redis.from_url(settings.redis_url).flushdb()
    ids = store_all(db, events)

    # Hold the customer's inbox rows: the job inserts its ledger rows, then blocks on
    # marking the events processed, the last statement of its transaction.
    watcher = make_engine(database_url)
    blocker = watcher.connect()
    blocker.begin()
    blocker.execute(select(InboxEvent.id).where(InboxEvent.id.in_(ids)).with_for_update())
    queue = bootstrap(settings).queue
    enqueue_apply(queue, ids[:1])
    proc = start_worker(settings)
    try:
        deadline = time.monotonic() + 60
        while True:
            # A fresh connection each time: pg_stat_activity is snapshotted per transaction.
            with watcher.connect() as conn:
                waiting = conn.execute(WAITING_ON_LAST_WRITE).scalar()
            if waiting:
                break
            assert time.monotonic() < deadline, "the job never reached its last write"
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        # The whole tree: RQ's work-horse runs the job in a session of its own.
        for pid in [proc.pid, *descendants(proc.pid)]:
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        blocker.rollback()
        blocker.close()
        watcher.dispose()
        if proc.stderr:
            proc.stderr.close()

    with db() as session:
        assert session.scalar(select(func.count()).select_from(LedgerMovement)) == 0
        assert session.scalar(select(func.count()).select_from(SubscriptionRow)) == 0
        pending = session.scalar(
            select(func.count())
            .select_from(InboxEvent)
            .where(InboxEvent.status == EventStatus.PENDING)
        )
    assert pending == len(ids)

    # Recovery: once the killed job is older than a job timeout, the sweeper re-enqueues
    # what is still pending; a new worker applies it.
    later = utcnow() + timedelta(seconds=JOB_TIMEOUT_S + settings.sweep_after_s + 31)
    assert sweep(bootstrap(settings), now=later) == len(ids)
    again = start_worker(settings)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()[-2000:]
    assert ledger_snapshot(db) == reference
