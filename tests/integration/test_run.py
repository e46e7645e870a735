"""`mrr run` as a newcomer runs it: nothing configured, no Redis, the commands it prints."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis import Redis

from adapters.embedded_redis import local_redis_url
from cli.devrun import describe_database, redact, session_secrets
from tests.integration.processes import (
    BIN,
    WebClient,
    free_port,
    process_env,
    tcp_redis,
    wait_until,
)

pytestmark = pytest.mark.slow

#: Variables of the developer's shell that would change what `mrr run` does.
CONFIG = ("REDIS_URL", "DATABASE_URL", "STRIPE_WEBHOOK_SECRET", "OPS_TOKEN", "PORT")


@contextmanager
def mrr_run(cwd: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`mrr run` in `cwd` with exactly `env` over a clean environment; its output in a file.
    Stopped with SIGTERM (SIGKILL after 60 s) on the way out."""
    base = {k: v for k, v in os.environ.items() if k not in CONFIG}
    out = cwd / "run.log"
    with out.open("wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "mrr"), "run"],
            cwd=cwd,
            env=process_env({**base, **env}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def summary(out: Path, proc: subprocess.Popen[bytes]) -> str:
    def printed() -> str | None:
        assert proc.poll() is None, out.read_text()
        text = out.read_text()
        return text if "Try next" in text and text.rstrip().endswith('currency=usd"') else None

    text: str = wait_until(printed, 120, "mrr run's summary")
    return text


def test_mrr_run_needs_nothing_configured(tmp_path: Path) -> None:
    port = free_port()
    env = {"PORT": str(port), "MRR_REDIS_PROBE": f"127.0.0.1:{free_port()}"}
    with mrr_run(tmp_path, env) as (proc, out):
        text = summary(out, proc)
        assert f"http://127.0.0.1:{port}" in text
        assert f"{tmp_path / 'mrr.db'} (SQLite)" in text
        assert f"embedded Valkey on {tmp_path / 'mrr-redis' / 'redis.sock'}" in text
        assert "STRIPE_WEBHOOK_SECRET and OPS_TOKEN unset" in text
        assert "Context impl" not in text and "Running upgrade" not in text  # no Alembic INFO

        # The commands it prints work as printed.
        replay = next(line for line in text.splitlines() if " replay " in line)
        done = subprocess.run(
            shlex.split(replay), cwd=tmp_path, capture_output=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr.decode()
        assert b"accepted: 20, refused: 0" in done.stderr
        token = re.search(r"Bearer ([^\"]+)\"", text)
        assert token is not None
        ops = WebClient(port, "unused", token.group(1))
        try:
            inbox = wait_until(
                lambda: (doc := ops.get_json("/status")["inbox"])["pending"] == 0 and doc,
                60,
                "the fixtures applied",
            )
            summary_doc = ops.get_json("/reports/summary?currency=usd")
        finally:
            ops.close()
        assert inbox["received"] == inbox["processed"] == 20
        assert inbox["failed"] == 0
        assert summary_doc["currency"] == "usd"

        # The banner names the dashboard and labels the token its sign-in page asks for.
        assert f"  dashboard http://127.0.0.1:{port}/dashboard" in text
        assert f"  OPS_TOKEN {token.group(1)}  (random, for this run)" in text

        proc.send_signal(signal.SIGINT)  # a Ctrl-C: one line, no traceback, no SIGQUIT
        assert proc.wait(timeout=60) == 0, out.read_text()
        after = out.read_text()[len(text) :]
        assert "Traceback" not in after and "SIGQUIT" not in after
        assert after.strip().splitlines()[-1].startswith("mrr run stopped (")
    # Everything it started is gone: the embedded server removed its socket on the way out.
    assert not (tmp_path / "mrr-redis" / "redis.sock").exists()
    assert "ready to exit" in (tmp_path / "mrr-redis" / "redis.log").read_text()


def test_a_second_mrr_run_on_a_busy_port_fails_before_its_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**process_env({}), "PORT": str(port), "MRR_REDIS_PROBE": f"127.0.0.1:{free_port()}"}
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "run", "--host", "127.0.0.1"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"port {port}" in lines[0] and f"PORT={port + 1}" in lines[0]
    assert "mrr run is up" not in done.stderr and not (tmp_path / "mrr-redis").exists()


def test_mrr_run_uses_redis_url_and_prints_no_secret_it_was_given(
    tmp_path: Path, redis_url: str
) -> None:
    env = {
        "PORT": str(free_port()),
        "REDIS_URL": redis_url,
        "STRIPE_WEBHOOK_SECRET": "whsec_mine",
        "OPS_TOKEN": "my-token",
        "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
    }
    with mrr_run(tmp_path, env) as (proc, out):
        text = summary(out, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, out.read_text()
    assert f"{redact(redis_url)} (REDIS_URL)" in text
    assert "whsec_mine" not in text and "my-token" not in text
    assert 'Bearer $OPS_TOKEN"' in text and " --secret" not in text
    assert not (tmp_path / "mrr-redis").exists()


def test_mrr_run_uses_a_redis_answering_at_the_probe(tmp_path: Path) -> None:
    with tcp_redis(tmp_path) as port:
        env = {"PORT": str(free_port()), "MRR_REDIS_PROBE": f"127.0.0.1:{port}"}
        wait_until(lambda: local_redis_url(env, db=0), 10, "the local Redis")
        with mrr_run(tmp_path, env) as (proc, out):
            text = summary(out, proc)
            with Redis(host="127.0.0.1", port=port) as conn:  # the worker registered there
                assert wait_until(lambda: conn.smembers("rq:workers"), 30, "the worker")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, out.read_text()
    assert f"redis://127.0.0.1:{port}/0 (found answering at 127.0.0.1:{port})" in text
    assert not (tmp_path / "mrr-redis").exists()


def test_a_closed_terminal_stops_mrr_run_and_its_children(tmp_path: Path) -> None:
    """The children run outside the terminal's process group (so that Ctrl-C reaches
    only `mrr run`): a hang-up must stop them through it as well."""
    env = {"PORT": str(free_port()), "MRR_REDIS_PROBE": f"127.0.0.1:{free_port()}"}
    with mrr_run(tmp_path, env) as (proc, out):
        summary(out, proc)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=60) == 0, out.read_text()
        assert "mrr run stopped" in out.read_text().strip().splitlines()[-1]
    assert not (tmp_path / "mrr-redis" / "redis.sock").exists()


def test_session_secrets_fill_in_only_what_is_unset() -> None:
    env = {"STRIPE_WEBHOOK_SECRET": "whsec_mine", "OPS_TOKEN": " "}
    assert session_secrets(env) == ["OPS_TOKEN"]
    assert env["STRIPE_WEBHOOK_SECRET"] == "whsec_mine"
    assert len(env["OPS_TOKEN"]) >= 32
    other: dict[str, str] = {}
    session_secrets(other)
    assert other["STRIPE_WEBHOOK_SECRET"].startswith("whsec_")
    assert other["OPS_TOKEN"] != env["OPS_TOKEN"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:s3cret@cache:6379/1", "redis://:***@cache:6379/1"),
        ("rediss://user:s3cret@cache:6380/0", "rediss://user:***@cache:6380/0"),
        ("unix:///run/redis.sock?db=2&password=s3cret", "unix:///run/redis.sock?db=2&password=***"),
    ],
)
def test_redis_urls_are_printed_without_their_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_databases_are_printed_without_their_password(tmp_path: Path) -> None:
    assert describe_database(f"sqlite:///{tmp_path}/m.db") == f"{tmp_path}/m.db (SQLite)"
    assert describe_database("postgresql://u:pw@db:5432/mrr") == "postgresql://u:***@db:5432/mrr"
