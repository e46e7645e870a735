"""`mrr rebuild`'s bulk path on PostgreSQL, with worker processes applying new events
while it runs: the ledger it leaves equals the incremental path's."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters.queue import enqueue_apply
from models.db import engine_of
from models.tables import EventStatus, InboxEvent
from pipeline.apply import customers_to_rebuild, rebuild
from pipeline.runtime import bootstrap
from tests.integration.helpers import ledger_snapshot
from tests.integration.test_concurrency import ROOT, store_all, worker_env
from tests.lifecycles import random_events

pytestmark = pytest.mark.slow

CUSTOMERS = 5_000  # about ten events each: ~50,000 events
COLUMNS = "id, type, created, api_version, customer_id, payload, status, received_at, attempts"


def copy_events(db, events: list[dict[str, Any]]) -> None:
    """Store events as applied already, by COPY (the rebuild derives their ledger)."""
    raw = engine_of(db).raw_connection()
    now = datetime.now(UTC)
    try:
        cursor = raw.cursor()
        with cursor.copy(f"COPY inbox_events ({COLUMNS}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for e in events:
                obj = e["data"]["object"]
                head = (e["id"], e["type"], e["created"], e.get("api_version"), obj["customer"])
                copy.write_row((*head, json.dumps(e), EventStatus.PROCESSED, now, 0))
        raw.commit()
    finally:
        raw.close()


def test_rebuild_while_workers_apply_new_events_equals_the_incremental_ledger(
    db, settings, database_url
) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("the bulk path is PostgreSQL's; SQLite rebuilds incrementally")
    events = random_events(seed=23, customers=CUSTOMERS)
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for e in sorted(events, key=lambda e: (e["created"], e["id"])):
        by_customer.setdefault(e["data"]["object"]["customer"], []).append(e)
    customers = sorted(by_customer)
    # Stored before the rebuild: every event but the last two of each customer, and no
    # event of one customer in ten (those arrive whole during the rebuild).
    early, late = [], []
    for n, customer in enumerate(customers):
        own = by_customer[customer]
        if n % 10 == 0:
            late.extend(own)
        else:
            early.extend(own[:-2])
            late.extend(own[-2:])
    assert len(events) > 40_000 and len(late) > 5_000
    copy_events(db, early)

    queue = bootstrap(settings).queue
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--no-sweep"],
            env=worker_env(settings),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        rebuilding = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "rebuild", "--json", "--jobs", "2"],
            env=worker_env(settings),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # The late events arrive (stored, then enqueued, as the intake does) while the
        # rebuild runs, a few at a time; whatever is left after it ends, at once.
        stored_during = 0
        for start in range(0, len(late), 50):
            group = late[start : start + 50]
            enqueue_apply(queue, store_all(db, group))
            if rebuilding.poll() is None:
                stored_during += len(group)
                time.sleep(0.02)
        out, err = rebuilding.communicate(timeout=600)
        assert rebuilding.returncode == 0, err.decode()[-3000:]
        assert json.loads(out)["events"] >= len(early)
        assert stored_during > 0, "no event arrived while the rebuild ran"

        deadline = time.monotonic() + 300
        while True:
            with db() as session:
                pending = session.scalar(
                    select(func.count()).where(InboxEvent.status != EventStatus.PROCESSED)
                )
            if pending == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert pending == 0
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(timeout=60)
    rebuilt = ledger_snapshot(db)

    # The incremental path (what workers do, customer by customer) from the same inbox.
    runtime = bootstrap(settings)
    rebuild(runtime, customers_to_rebuild(runtime), chunk=200)
    incremental = ledger_snapshot(db)
    assert rebuilt == incremental
    assert len(incremental["movements"]) > 20_000
    # Most customers moved MRR (some lifecycles never leave a trial), late ones too.
    moved = {m[0] for m in incremental["movements"]}
    assert len(moved) > CUSTOMERS // 2
    assert len(moved & set(customers[::10])) > CUSTOMERS // 20
