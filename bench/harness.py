"""What the benchmarks share: a fresh PostgreSQL database, a private Redis, the Procfile's
processes, and event streams. Every figure a benchmark prints is measured in its run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import factories as f  # noqa: E402
from tests.integration.processes import (  # noqa: E402
    fresh_postgres,
    private_redis,
    start_process,
    stop_process,
    wait_until,
)
from tests.lifecycles import random_events  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/mrr_bench"
SECRET = "whsec_bench"
TOKEN = "bench-token"

__all__ = [
    "SECRET",
    "TOKEN",
    "bench_database",
    "lifecycle_events",
    "private_redis",
    "single_events",
    "start_process",
    "stop_process",
    "wait_until",
]


def base_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG)


@contextmanager
def bench_database(tag: str) -> Iterator[str]:
    """A new, migrated PostgreSQL database for one benchmark, dropped afterwards."""
    _ensure_admin_database(base_url())
    with fresh_postgres(base_url(), tag) as url:
        yield url


def _ensure_admin_database(url: str) -> None:
    """`fresh_postgres` creates databases beside `url`'s; the server must answer."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from models.db import normalize_url

    admin = create_engine(make_url(normalize_url(url)).set(database="postgres"))
    with admin.connect() as conn:
        conn.execute(text("SELECT 1"))
    admin.dispose()


def single_events(customers: int, first: int = 0) -> list[dict[str, Any]]:
    """One `customer.subscription.created` per customer (numbered from `first`): nothing
    for a batch to share."""
    price = f.price("price_bench", 2500)
    return [
        f.event(
            f"evt_bench_{n:07d}",
            "customer.subscription.created",
            1704067200 + n,
            f.subscription(f"sub_bench_{n:07d}", f"cus_bench_{n:07d}", [f.item(price, 1 + n % 5)]),
        )
        for n in range(first, first + customers)
    ]


def lifecycle_events(customers: int, seed: int = 1) -> list[dict[str, Any]]:
    """Whole subscription lifecycles (about ten events per customer), shuffled."""
    import random

    events = random_events(seed, customers)
    random.Random(seed).shuffle(events)
    return events


def raw(event: dict[str, Any]) -> str:
    return json.dumps(event)


def timed_until(check: Any, timeout: float, every: float = 0.05) -> float:
    """Seconds until `check()` is true (polled every `every` s); fails after `timeout`."""
    start = time.perf_counter()
    wait_until(check, timeout, "the benchmark to drain", every=every)
    return time.perf_counter() - start
