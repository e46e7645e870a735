"""Apply rate: two processes of the Procfile's `worker` line draining stored events, beside
two processes of RQ's default (forking) `Worker` running a no-op job, on one Redis.

    python bench/apply_rate.py [--events 3000] [--smoke]

Both sides are timed the same way: workers started and registered first, then every
job enqueued in one pipeline, then the clock runs until the last job is done (for the
service: `pending == 0` in the inbox, polled every 50 ms). Two event shapes: one event
per customer (nothing for a batch to share, the issue's own measurement) and whole
subscription lifecycles (about ten events per customer, shuffled). Prints events/s and
the ratio to the no-op rate. PostgreSQL: BENCH_DATABASE_URL (default .../mrr_bench).

What the profile said (py-spy of a worker, 3,000 single events, before batching): RQ's
own bookkeeping is ~18 Redis round trips per job (~5 ms of a 2-core machine), so even a
no-op job under `SimpleWorker` runs at ~100 jobs/s per process; RQ's forking `Worker`
adds a fork and a re-import per job (~60 jobs/s for two processes). One job per event
could never reach 5x that. Hence: no fork, and a job applies its own event together with
up to 200 other pending events in one transaction (a fixed number of statements per
batch), and drops the queued jobs of the events it absorbed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import (
    bench_database,
    lifecycle_events,
    private_redis,
    raw,
    single_events,
    start_process,
    stop_process,
    timed_until,
    wait_until,
)
from redis import Redis
from rq import Queue, Worker
from rq.registry import FinishedJobRegistry
from rq.serializers import JSONSerializer

from adapters.queue import enqueue_apply
from models import inbox
from models.db import dispose_engines
from pipeline import intake
from pipeline.runtime import bootstrap
from pipeline.settings import Settings

NOOP_WORKER = """
import sys
from redis import Redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer
r = Redis.from_url(sys.argv[1])
q = Queue("noop", connection=r, serializer=JSONSerializer)
Worker([q], connection=r, serializer=JSONSerializer).work(logging_level="WARNING")
"""


def noop_rate(redis_url: str, jobs: int) -> float:
    """Jobs/s of two RQ default workers (fork per job) running `abs(0)`."""
    conn = Redis.from_url(redis_url)
    conn.flushdb()
    procs = [subprocess.Popen([sys.executable, "-c", NOOP_WORKER, redis_url]) for _ in range(2)]
    try:
        queue = Queue("noop", connection=conn, serializer=JSONSerializer)
        wait_until(lambda: Worker.count(queue=queue) == 2, 30, "two RQ workers")
        finished = FinishedJobRegistry(queue=queue)
        with conn.pipeline() as pipe:
            for _ in range(jobs):
                queue.enqueue("builtins.abs", 0, pipeline=pipe, result_ttl=600)
            start = time.perf_counter()
            pipe.execute()
        timed_until(lambda: finished.count >= jobs, 600)
        return jobs / (time.perf_counter() - start)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def service_rate(db_url: str, redis_url: str, events: list[dict], log: Path) -> float:
    """Events/s of two Procfile `worker` processes draining `events` from the inbox."""
    Redis.from_url(redis_url).flushdb()
    runtime = bootstrap(Settings(database_url=db_url, redis_url=redis_url, queue_name="mrr"))
    factory = runtime.sessions
    ids = []
    for event in events:
        stored = intake.store(runtime, event, raw(event))
        if stored.inserted:
            ids.append(stored.event_id)
    env = {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "SWEEP_AFTER_S": "3600"}
    procs = [start_process("worker", env, log) for _ in range(2)]
    try:
        queue = runtime.queue
        wait_until(lambda: Worker.count(queue=queue) == 2, 60, "two mrr workers")

        def pending() -> int:
            with factory() as session:
                return inbox.counts(session)["pending"]

        start = time.perf_counter()
        enqueue_apply(queue, ids)
        timed_until(lambda: pending() == 0, 900)
        return len(ids) / (time.perf_counter() - start)
    finally:
        for proc in procs:
            stop_process(proc)
        dispose_engines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000, help="events per shape")
    parser.add_argument("--smoke", action="store_true", help="tiny run, no target (CI)")
    args = parser.parse_args()
    n = 200 if args.smoke else args.events
    with tempfile.TemporaryDirectory() as tmp, private_redis(Path(tmp)) as redis:
        noop = noop_rate(redis.url, max(n // 5, 100))
        print(f"RQ default Worker, no-op job, 2 processes: {noop:8.1f} jobs/s")
        results = {}
        for shape, events in (
            ("one event per customer", single_events(n)),
            ("whole lifecycles", lifecycle_events(max(n // 10, 10))),
        ):
            with bench_database("apply") as url:
                rate = service_rate(url, redis.url, events, Path(tmp) / "workers.log")
            results[shape] = rate
            print(
                f"mrr worker x2, {shape} ({len(events)} events): {rate:8.1f} events/s"
                f"  = {rate / noop:5.2f}x the no-op rate"
            )
    if not args.smoke:
        worst = min(results.values()) / noop
        print(f"target >= 5x: {'met' if worst >= 5 else 'NOT met'} (worst {worst:.2f}x)")


if __name__ == "__main__":
    main()
