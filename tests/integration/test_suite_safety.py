"""Running the tests never reads or wipes an operator's data (SPEC §13).

A suite is started in a subprocess with `DATABASE_URL` and `REDIS_URL` (and the local
Redis probe) pointing at a database and a Redis that hold data; it runs tests that empty
their own database and flush their own Redis, and the operator's data is still there.
A `TEST_DATABASE_URL` naming a database with tables the suite did not create is refused
before anything is touched.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from tests.integration.processes import ROOT, tcp_redis, wait_until

#: Tests that empty the database, flush Redis, run a worker and start processes.
INNER = (
    "tests/integration/test_pipeline.py",
    "tests/unit/test_operator_config_is_scrubbed.py",
)


def operator_database(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE inbox_events (id TEXT PRIMARY KEY, payload TEXT)")
        conn.execute("INSERT INTO inbox_events VALUES ('evt_precious', '{}')")
    return f"sqlite:///{path}"


def rows(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT id, payload FROM inbox_events"))


def suite(env: dict[str, str], *paths: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_the_suite_leaves_an_operators_database_and_redis_alone(tmp_path: Path) -> None:
    database = tmp_path / "production.db"
    url = operator_database(database)
    with tcp_redis(tmp_path) as port:
        redis = Redis(port=port, db=0)
        wait_until(lambda: redis.ping(), 10, "the operator's Redis")
        redis.set("rq:queue:mrr", "precious")
        Redis(port=port, db=15).set("kept", "too")  # the database old suites flushed
        done = suite(
            {
                "DATABASE_URL": url,
                "REDIS_URL": f"redis://127.0.0.1:{port}/0",
                "MRR_REDIS_PROBE": f"127.0.0.1:{port}",
                "STRIPE_WEBHOOK_SECRET": "whsec_operator",
                "OPS_TOKEN": "operator-token",
            },
            *INNER,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert " passed" in done.stdout
        assert redis.get("rq:queue:mrr") == b"precious"
        assert Redis(port=port, db=15).get("kept") == b"too"
        assert redis.dbsize() == 1  # nothing of the suite's landed here either
    assert rows(database) == [("evt_precious", "{}")]


@pytest.mark.slow
def test_a_test_database_holding_someone_elses_tables_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "not-for-tests.db"
    done = suite(
        {"TEST_DATABASE_URL": operator_database(database)}, "tests/integration/test_pipeline.py"
    )
    assert done.returncode == 4
    assert "holds tables the test suite did not create" in done.stdout + done.stderr
    assert rows(database) == [("evt_precious", "{}")]
