"""The embedded Redis of `mrr run` and the tests: found, started, private, and stopped."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from adapters.embedded_redis import (
    EmbeddedRedis,
    EmbeddedRedisError,
    data_folder,
    local_redis_url,
    probe_address,
)
from tests.integration.processes import free_port, tcp_redis, wait_until


@pytest.mark.parametrize(
    ("value", "address"),
    [
        (None, ("localhost", 6379)),
        ("", ("localhost", 6379)),
        ("127.0.0.1:7001", ("127.0.0.1", 7001)),
        ("[::1]:6380", ("::1", 6380)),
        (" redis.internal:6379 ", ("redis.internal", 6379)),
    ],
)
def test_the_probe_address_defaults_to_localhost_6379(
    value: str | None, address: tuple[str, int]
) -> None:
    env = {} if value is None else {"MRR_REDIS_PROBE": value}
    assert probe_address(env) == address


@pytest.mark.parametrize("value", ["localhost", "localhost:", ":6379", "h:0", "h:70000", "h:x"])
def test_a_malformed_probe_address_is_a_clear_error(value: str) -> None:
    with pytest.raises(EmbeddedRedisError, match="MRR_REDIS_PROBE must be HOST:PORT"):
        probe_address({"MRR_REDIS_PROBE": value})


def test_nothing_answering_at_the_probe_means_no_local_redis() -> None:
    assert local_redis_url({"MRR_REDIS_PROBE": f"127.0.0.1:{free_port()}"}, db=0) is None


def test_a_redis_answering_at_the_probe_is_used(tmp_path: Path) -> None:
    with tcp_redis(tmp_path) as port:
        env = {"MRR_REDIS_PROBE": f"127.0.0.1:{port}"}
        url = wait_until(lambda: local_redis_url(env, db=15), 10, "the TCP server")
        assert url == f"redis://127.0.0.1:{port}/15"


def test_the_embedded_server_is_private_and_persists_nothing(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "r") as server:
        assert server.url == f"unix://{tmp_path}/r/redis.sock?db=0"
        assert stat.S_IMODE(server.socket.stat().st_mode) == 0o700
        with Redis.from_url(server.url) as conn:
            assert conn.config_get("port") == {"port": "0"}  # no TCP listener
            assert conn.config_get("save") == {"save": ""}
            assert conn.config_get("appendonly") == {"appendonly": "no"}
            conn.set("k", "v")
            assert conn.get("k") == b"v"
        proc = server.proc
        assert proc is not None
    assert proc.poll() is not None
    assert not server.socket.exists()
    assert (tmp_path / "r" / "redis.log").read_text()  # its log stays for the curious
    server.stop()  # idempotent


def test_a_live_server_on_the_socket_is_never_taken_over(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as first:
        with pytest.raises(EmbeddedRedisError, match="already answers"):
            EmbeddedRedis(tmp_path).start()
        with Redis.from_url(first.url) as conn:
            assert conn.ping()


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    import socket

    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "redis.sock"))  # a socket file nobody listens on
    stale.close()
    with EmbeddedRedis(tmp_path) as server, Redis.from_url(server.url) as conn:
        assert conn.ping()


def test_a_deep_folder_gets_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    with EmbeddedRedis(deep) as server:
        assert len(os.fsencode(server.socket)) <= 100
        with Redis.from_url(server.url) as conn:
            assert conn.ping()
        short = server.socket.parent
    assert not short.exists()
    assert (deep / "redis.log").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from adapters.embedded_redis import EmbeddedRedis\n"
        "server = EmbeddedRedis(Path(sys.argv[1]))\n"
        "server.start()\n"
        "print(server.proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    parent.stdout.close()
    parent.kill()  # no chance to clean up
    parent.wait(timeout=10)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # Our child's child is reparented, not ours to reap; a zombie counts as gone.
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return status == "Z"

    wait_until(gone, 10, "the orphaned server to exit")


def test_the_data_folder_is_beside_the_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert data_folder("sqlite:///mrr.db") == tmp_path / "mrr-redis"
    assert data_folder(f"sqlite:///{tmp_path}/a/b.db") == tmp_path / "a" / "mrr-redis"
    assert data_folder("sqlite://") == tmp_path / "mrr-redis"
    assert data_folder("postgresql://u:p@db/mrr") == tmp_path / "mrr-redis"
