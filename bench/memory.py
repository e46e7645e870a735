"""Memory: the resident set of one `worker` process (the Procfile's line) while it applies
100,000 events.

    python bench/memory.py [--events 100000] [--smoke]

Stores whole subscription lifecycles in a fresh PostgreSQL inbox, enqueues them, and
samples the worker's RSS from /proc every 0.2 s while it drains them. Growth is the
last sample against the one taken after the first 10 % of the events (start-up and
first-use allocations are not growth). Target: < 20 %.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from harness import bench_database, lifecycle_events, private_redis
from rq import Worker
from sqlalchemy import func, select

from adapters.queue import enqueue_apply
from models.db import dispose_engines, engine_of, session_factory
from models.inbox import store_events_committed
from models.tables import EventStatus, InboxEvent
from pipeline.runtime import bootstrap
from pipeline.settings import Settings
from tests.integration.processes import start_process, stop_process, wait_until


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true", help="tiny run, no target (CI)")
    args = parser.parse_args()
    total = 2_000 if args.smoke else args.events
    with (
        tempfile.TemporaryDirectory() as tmp,
        private_redis(Path(tmp)) as redis,
        bench_database("memory") as url,
    ):
        factory = session_factory(url)
        ids: list[str] = []
        for start in range(0, total // 10 + 1, 500):
            events = lifecycle_events(500, seed=start + 1)
            for e in events:  # distinct customers and ids per chunk
                obj = e["data"]["object"]
                obj["customer"] = f"m{start}_{obj['customer']}"
                obj["id"] = f"m{start}_{obj['id']}"
                e["id"] = f"m{start}_{e['id']}"
            stored = store_events_committed(
                engine_of(factory), [(e, json.dumps(e)) for e in events]
            )
            ids += [s.event_id for s in stored if s.inserted]
            if len(ids) >= total:
                break
        ids = ids[:total]
        queue = bootstrap(Settings(database_url=url, redis_url=redis.url, queue_name="mrr")).queue
        env = {"DATABASE_URL": url, "REDIS_URL": redis.url, "SWEEP_AFTER_S": "3600"}
        proc = start_process("worker", env, Path(tmp) / "worker.log")
        try:
            wait_until(lambda: Worker.count(queue=queue) == 1, 60, "the worker")
            for start in range(0, len(ids), 5_000):
                enqueue_apply(queue, ids[start : start + 5_000])
            samples: list[tuple[int, int]] = []  # (events applied, RSS KiB)
            while True:
                with factory() as session:
                    done = int(
                        session.scalar(
                            select(func.count())
                            .select_from(InboxEvent)
                            .where(InboxEvent.status == EventStatus.PROCESSED)
                        )
                        or 0
                    )
                samples.append((done, rss_kib(proc.pid)))
                if done >= len(ids) - _unapplied(factory):
                    break
                time.sleep(0.2)
        finally:
            stop_process(proc)
            dispose_engines()
    warm = next(rss for done, rss in samples if done >= len(ids) // 10)
    peak = max(rss for _, rss in samples)
    last = samples[-1][1]
    growth = (last - warm) / warm
    print(
        f"worker RSS over {len(ids):,} events: {warm / 1024:.1f} MiB after the first 10 %, "
        f"{last / 1024:.1f} MiB at the end (peak {peak / 1024:.1f} MiB): growth {growth:+.1%}"
    )
    if not args.smoke:
        print(f"target < 20 %: {'met' if growth < 0.20 else 'NOT met'}")


def _unapplied(factory) -> int:  # type: ignore[no-untyped-def]
    """Events that can never be applied (invalid ones end failed, not processed)."""
    with factory() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(InboxEvent)
                .where(InboxEvent.status.in_((EventStatus.FAILED, EventStatus.QUARANTINED)))
            )
            or 0
        )


if __name__ == "__main__":
    main()
