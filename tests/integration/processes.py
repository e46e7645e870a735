"""Real processes for the load and fault tests: the Procfile's lines, a private Redis
server, a fresh PostgreSQL database, a CPU burner, and signed HTTP traffic to 127.0.0.1.

Everything started here is stopped by the context managers that start it, and every
wait is bounded.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from models.db import normalize_url

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def procfile() -> dict[str, str]:
    """The Procfile's process types and commands."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(
        (name.strip(), command.strip())
        for name, command in (line.split(":", 1) for line in lines if ":" in line)
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # not up yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def kill_tree(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    for pid in [proc.pid, *descendants(proc.pid)]:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)
    proc.wait(timeout=30)


class RedisServer:
    """A private `redis-server` on a unix socket of the test's own; stop and start at will.

    The machine's `redis-server` when installed, else the embedded server's binary, so
    these tests need no Redis installed either."""

    def __init__(self, folder: Path) -> None:
        from adapters.embedded_redis import server_binary

        self.binary = shutil.which("redis-server") or str(server_binary())
        self.folder = folder
        self.socket = folder / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        from redis import Redis

        wait_until(lambda: Redis.from_url(self.url).ping(), 10, "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        self.socket.unlink(missing_ok=True)


@contextmanager
def private_redis(folder: Path) -> Iterator[RedisServer]:
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def tcp_redis(folder: Path) -> Iterator[int]:
    """A throwaway Redis server of the embedded binary on a free TCP port of 127.0.0.1
    (what someone's own local Redis looks like); yields its port."""
    from adapters.embedded_redis import server_binary

    port = free_port()
    server = subprocess.Popen(
        [str(server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        cwd=folder,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextmanager
def fresh_postgres(base_url: str, tag: str) -> Iterator[str]:
    """A new, migrated PostgreSQL database beside `base_url`'s, dropped afterwards."""
    from migrations import upgrade

    url = make_url(normalize_url(base_url))
    name = f"{url.database}_{tag}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    fresh = url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(fresh)
        yield fresh
    finally:
        from models.db import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def process_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_process(
    kind: str, env: Mapping[str, str], log: Path, extra_args: str = ""
) -> subprocess.Popen[bytes]:
    """Start the Procfile's `kind` line through a shell, as a platform would."""
    command = procfile()[kind]
    with log.open("ab") as out:
        return subprocess.Popen(
            ["bash", "-c", f"exec {command} {extra_args}".strip()],
            env=process_env(env),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)


BURN = "import os\nwhile True:\n    os.getpid()\n"


@contextmanager
def cpu_burners(count: int = 2) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes that keep the CPUs busy for as long as the block runs."""
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(count)]
    try:
        yield burners
    finally:
        for proc in burners:
            proc.kill()
            proc.wait(timeout=10)


class WebClient:
    """Signed webhooks and ops requests over one keep-alive connection to 127.0.0.1."""

    def __init__(self, port: int, secret: str, token: str, timeout: float = 30) -> None:
        self.port, self.secret, self.token, self.timeout = port, secret, token, timeout
        self.conn: http.client.HTTPConnection | None = None

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException, TimeoutError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post_event(self, raw: str) -> int:
        import stripe

        header = stripe.WebhookSignature.generate_signature_header(
            raw, self.secret, timestamp=int(time.time())
        )
        status, _ = self._request(
            "POST",
            "/webhooks/stripe",
            raw.encode(),
            {"Stripe-Signature": header, "Content-Type": "application/json"},
        )
        return status

    def get_json(self, path: str) -> Any:
        status, body = self._request("GET", path, None, {"Authorization": f"Bearer {self.token}"})
        if status != 200:
            raise AssertionError(f"GET {path}: {status} {body[:300]!r}")
        return json.loads(body)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def cli_json(env: Mapping[str, str], *args: str, timeout: float = 600) -> Any:
    """Run `mrr ARGS --json` as a real process and parse its one JSON document."""
    done = subprocess.run(
        [str(BIN / "mrr"), *args, "--json"],
        env=process_env(env),
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"mrr {shlex.join(args)} exited {done.returncode}: {done.stderr.decode()[-2000:]}"
        )
    return json.loads(done.stdout)
