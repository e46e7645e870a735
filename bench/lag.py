"""Lag: receipt-to-ledger latency at a steady webhook rate, through the Procfile's `web`
and two `worker` processes.

    python bench/lag.py [--rate 100] [--seconds 60] [--smoke]

Signed events of whole subscription lifecycles are posted to 127.0.0.1 at a steady
rate (a paced sender per thread); when all are applied, the `apply_ms` the workers
recorded for each event (receipt to the commit that applied it) gives the percentiles.
Target: p99 < 1 s at 100 events/s for 60 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from harness import SECRET, TOKEN, bench_database, lifecycle_events, private_redis
from sqlalchemy import select

from models.db import dispose_engines, session_factory
from models.tables import InboxEvent
from tests.integration.processes import (
    WebClient,
    free_port,
    start_process,
    stop_process,
    wait_until,
)

SENDERS = 4


def paced_post(port: int, raws: list[str], rate: float, start: float, offset: int) -> list[int]:
    """Post `raws` so that event k of the whole stream leaves at start + k / rate."""
    client = WebClient(port, SECRET, TOKEN)
    statuses = []
    try:
        for n, raw in enumerate(raws):
            due = start + (offset + n * SENDERS) / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            statuses.append(client.post_event(raw))
    finally:
        client.close()
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--smoke", action="store_true", help="tiny run, no target (CI)")
    args = parser.parse_args()
    seconds = 3 if args.smoke else args.seconds
    wanted = int(args.rate * seconds)
    events = lifecycle_events(max(wanted // 8, 4), seed=11)[:wanted]
    raws = [json.dumps(e) for e in events]
    with (
        tempfile.TemporaryDirectory() as tmp,
        private_redis(Path(tmp)) as redis,
        bench_database("lag") as url,
    ):
        port = free_port()
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": redis.url,
            "STRIPE_WEBHOOK_SECRET": SECRET,
            "OPS_TOKEN": TOKEN,
            "PORT": str(port),
        }
        log = Path(tmp) / "processes.log"
        procs = [start_process("web", env, log)]
        procs += [start_process("worker", env, log) for _ in range(2)]
        ops = WebClient(port, SECRET, TOKEN)
        try:
            wait_until(lambda: ops.get_json("/status")["queue"]["workers"] == 2, 60, "workers")
            start = time.perf_counter() + 0.5
            results: list[list[int]] = [[] for _ in range(SENDERS)]
            threads = [
                threading.Thread(
                    target=lambda k=k: results[k].extend(
                        paced_post(port, raws[k::SENDERS], args.rate, start, k)
                    )
                )
                for k in range(SENDERS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            sent_in = time.perf_counter() - start
            assert all(s == 200 for r in results for s in r), "a webhook was refused"
            wait_until(lambda: ops.get_json("/status")["inbox"]["pending"] == 0, 120, "drain", 0.5)
            with session_factory(url)() as session:
                lags = [ms for ms in session.scalars(select(InboxEvent.apply_ms)) if ms is not None]
        finally:
            ops.close()
            for proc in procs:
                stop_process(proc)
            dispose_engines()
    lags.sort()
    p50 = statistics.median(lags)
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    print(
        f"{len(raws)} events at {len(raws) / sent_in:.0f}/s for {sent_in:.0f} s: "
        f"receipt-to-ledger p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {lags[-1]} ms"
    )
    if not args.smoke:
        print(f"target p99 < 1000 ms: {'met' if p99 < 1000 else 'NOT met'}")


if __name__ == "__main__":
    main()
