"""The runtime under load, the way production fails: the Procfile's real `web` and two
real `worker` processes on PostgreSQL and a private Redis, the machine kept busy by CPU
burners, a worker SIGKILLed mid-run and restarted. The ledger must come out exactly as a
`mrr rebuild` of the same events on a fresh database.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from models.db import session_factory
from tests.conftest import OPS_TOKEN, SECRET
from tests.integration.helpers import ledger_snapshot
from tests.integration.processes import (
    WebClient,
    cli_json,
    cpu_burners,
    free_port,
    fresh_postgres,
    kill_tree,
    private_redis,
    start_process,
    stop_process,
    wait_until,
)
from tests.lifecycles import random_events

pytestmark = pytest.mark.slow

#: Bounds of the run: events posted, and seconds allowed to drain them.
CUSTOMERS = 230
MIN_EVENTS = 2000
DRAIN_TIMEOUT_S = 240
REPORT_RANGE = ("--start", "2023-12-01", "--end", "2026-01-01")


def post_all(port: int, raws: list[str], threads: int = 8) -> list[int]:
    chunks = [raws[n::threads] for n in range(threads)]

    def send(chunk: list[str]) -> list[int]:
        client = WebClient(port, SECRET, OPS_TOKEN)
        try:
            return [client.post_event(raw) for raw in chunk]
        finally:
            client.close()

    with ThreadPoolExecutor(threads) as pool:
        return [status for statuses in pool.map(send, chunks) for status in statuses]


def monthly_reports(env: dict[str, str]) -> dict[str, object]:
    return {
        currency: cli_json(env, "report", "movements", "--currency", currency, *REPORT_RANGE)
        for currency in ("usd", "eur")
    }


def test_busy_machine_and_a_killed_worker_leave_the_ledger_exact(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("the production runtime is tested on PostgreSQL")
    events = random_events(seed=2026, customers=CUSTOMERS)
    assert len(events) >= MIN_EVENTS
    rng = random.Random(7)
    deliveries = events + rng.choices(events, k=len(events) // 5)
    rng.shuffle(deliveries)
    raws = [json.dumps(e) for e in deliveries]
    split = int(len(raws) * 0.4)

    with (
        fresh_postgres(database_url, "load") as live_url,
        private_redis(tmp_path) as redis,
        cpu_burners(2),
    ):
        port = free_port()
        env = {
            "DATABASE_URL": live_url,
            "REDIS_URL": redis.url,
            "STRIPE_WEBHOOK_SECRET": SECRET,
            "OPS_TOKEN": OPS_TOKEN,
            "PORT": str(port),
            "WEB_CONCURRENCY": "2",
            "SWEEP_AFTER_S": "5",
        }
        log = tmp_path / "processes.log"
        web = start_process("web", env, log)
        workers = [start_process("worker", env, log) for _ in range(2)]
        ops = WebClient(port, SECRET, OPS_TOKEN)
        try:
            wait_until(lambda: ops.get_json("/status")["queue"]["workers"] == 2, 60, "2 workers")
            statuses = post_all(port, raws[:split])
            # Mid-run: the first worker dies without warning, with jobs in flight.
            kill_tree(workers[0])
            workers[0] = start_process("worker", env, log)
            statuses += post_all(port, raws[split:])
            assert statuses == [200] * len(raws)

            def drained() -> dict[str, int] | None:
                doc = ops.get_json("/status")
                print("status:", json.dumps({k: doc[k] for k in ("inbox", "queue")}))
                return doc["inbox"] if doc["inbox"]["pending"] == 0 else None

            inbox = wait_until(drained, DRAIN_TIMEOUT_S, "pending == 0", every=1)
            live = ledger_snapshot(session_factory(live_url))
            live_reports = monthly_reports(env)
        finally:
            ops.close()
            for proc in (web, *workers):
                stop_process(proc)
        assert inbox["failed"] == 0, log.read_text()[-3000:]
        assert inbox["processed"] == inbox["received"] == len(events)

    # The same events, stored on a fresh database and rebuilt in one go.
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text("\n".join(json.dumps(e) for e in events))
    with fresh_postgres(database_url, "rebuild") as fresh_url:
        env = {"DATABASE_URL": fresh_url, "REDIS_URL": f"unix://{tmp_path}/none.sock"}
        stored = cli_json(env, "replay", str(jsonl))
        assert stored["stored"] == len(events)
        cli_json(env, "rebuild")
        assert ledger_snapshot(session_factory(fresh_url)) == live
        assert monthly_reports(env) == live_reports
