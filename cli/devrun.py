"""`mrr run`, the development all-in-one: migrate, then the web process and a worker as
children until Ctrl-C or SIGTERM, on a Redis found or started for the occasion.

Unlike the Procfile's processes it needs nothing configured, so a newcomer's first
command works as written:
* `STRIPE_WEBHOOK_SECRET` / `OPS_TOKEN` unset: random values for this run only, printed
  in the commands to try (a fixed well-known default would also open any server someone
  binds to a public address with it);
* `REDIS_URL` unset: the Redis answering at `MRR_REDIS_PROBE` (default `localhost:6379`),
  else an embedded server (`adapters.embedded_redis`) shared by both children and
  stopped after them.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import MutableMapping, Sequence
from pathlib import Path

import click

from adapters.embedded_redis import (
    EmbeddedRedis,
    data_folder,
    die_with_parent,
    local_redis_url,
    probe_address,
)
from adapters.errors import EmbeddedRedisError
from pipeline.errors import SettingsError
from pipeline.samples import EVENTS as SAMPLE_EVENTS
from pipeline.settings import Settings

#: Seconds to wait for the web process's first answer before printing the summary anyway.
WEB_START_TIMEOUT_S = 60.0
#: Seconds each child gets to stop cleanly (a worker finishes its job) before SIGKILL.
STOP_TIMEOUT_S = 30.0


def session_secrets(environ: MutableMapping[str, str]) -> list[str]:
    """Set STRIPE_WEBHOOK_SECRET and OPS_TOKEN in `environ` to random values where unset
    or blank; returns the names it set. Only for `mrr run`: never the Procfile's web."""
    generated = []
    for name, prefix in (("STRIPE_WEBHOOK_SECRET", "whsec_"), ("OPS_TOKEN", "")):
        if not environ.get(name, "").strip():
            environ[name] = prefix + secrets.token_urlsafe(24)
            generated.append(name)
    return generated


def run_all(host: str, port: int, verbose: bool) -> int:
    """Run until Ctrl-C/SIGTERM or until a child exits; returns the exit code for `mrr run`.

    Everything started here is stopped here: children first (a worker may still be
    finishing a job on Redis), then the embedded Redis, whatever happens in between.
    """
    from migrations import upgrade

    port_is_free(host, port)
    env = dict(os.environ)
    generated = session_secrets(env)
    try:
        settings = Settings.from_env(env)
        probe_address(env)  # a malformed probe is a usage error, before anything starts
    except (SettingsError, EmbeddedRedisError) as exc:
        raise click.UsageError(str(exc)) from None
    upgrade(settings.database_url)

    stopping = threading.Event()
    # The children are out of the terminal's process group: a closed terminal (SIGHUP)
    # stops them through us too.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())
    embedded: EmbeddedRedis | None = None
    try:
        redis_url, redis_shown, embedded = _redis(env, settings.database_url)
        env["REDIS_URL"] = redis_url
        procs = _start_children(env, host, port, verbose)
        try:
            web = f"http://{_local(host)}:{port}"
            if _wait_for_web(web, procs, stopping):
                lines = where(web, settings, env, redis_shown, generated)
                click.echo("\n".join(lines), err=True)
            while not stopping.is_set() and all(p.poll() is None for p in procs):
                stopping.wait(1)
        finally:
            _stop(procs)
    except EmbeddedRedisError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if embedded is not None:
            embedded.stop()
    codes = [p.returncode for p in procs if p.returncode and p.returncode > 0]
    if stopping.is_set():
        stopped = "web, worker and embedded Redis" if embedded else "web and worker"
        click.echo(f"mrr run stopped ({stopped}).", err=True)
    return max(codes) if codes else 0


def port_is_free(host: str, port: int) -> None:
    """Fail before anything starts (and before a banner with fresh secrets is printed)
    when something already listens where the web process would."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(
                f"port {port} on {host or '*'} is in use ({exc.strerror}): another `mrr run`? "
                f"Stop it, or pick another port: PORT={port + 1} script/run "
                f"(or mrr run --port {port + 1})"
            ) from None


def _redis(env: dict[str, str], database_url: str) -> tuple[str, str, EmbeddedRedis | None]:
    """The Redis URL for both children, how to show it, and the embedded server if one
    had to be started (SPEC §3: REDIS_URL, else the local Redis, else embedded)."""
    configured = env.get("REDIS_URL", "").strip()
    if configured:
        return configured, f"{redact(configured)} (REDIS_URL)", None
    local = local_redis_url(env, db=0)
    if local is not None:
        host, port = probe_address(env)
        return local, f"{local} (found answering at {host}:{port})", None
    embedded = EmbeddedRedis(data_folder(database_url))
    url = embedded.start()
    shown = f"embedded Valkey on {embedded.socket} (log {_path(embedded.log)}; stops with this)"
    return url, shown, embedded


def _start_children(
    env: dict[str, str], host: str, port: int, verbose: bool
) -> list[subprocess.Popen[bytes]]:
    worker = [sys.executable, "-m", "cli.main", *(["-v"] if verbose else []), "worker"]
    web = [
        *(sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}"),
        *("--workers", env.get("WEB_CONCURRENCY", "2")),
        # Its start-up lines repeat what the summary says; warnings and errors still show.
        *("--log-level", "info" if verbose else "warning"),
        "service.app:create_app()",
    ]
    # Each child in a session of its own: a Ctrl-C reaches `mrr run` alone, which stops
    # them in order (a SIGINT to gunicorn's workers too would make it kill them at once,
    # "Worker … was sent SIGQUIT!"); each also gets SIGTERM if `mrr run` dies (Linux).
    own = {"start_new_session": True, "preexec_fn": die_with_parent()}
    procs = [subprocess.Popen(worker, env=env, **own)]  # type: ignore[call-overload]
    try:
        procs.append(subprocess.Popen(web, env=env, **own))  # type: ignore[call-overload]
    except BaseException:
        _stop(procs)
        raise
    return procs


def _wait_for_web(
    url: str, procs: Sequence[subprocess.Popen[bytes]], stopping: threading.Event
) -> bool:
    """True once `/healthz` answers, or (with a warning) after the timeout; False when
    stopping or a child died first."""
    deadline = time.monotonic() + WEB_START_TIMEOUT_S
    while not stopping.is_set() and all(p.poll() is None for p in procs):
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:  # not listening yet
            pass
        if time.monotonic() > deadline:
            click.echo(f"warning: {url}/healthz does not answer yet", err=True)
            return True
        stopping.wait(0.25)
    return False


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def where(
    web: str, settings: Settings, env: dict[str, str], redis: str, generated: list[str]
) -> list[str]:
    """The summary `mrr run` prints once serving: where everything is, and what to try.

    Secrets the user set are referred to by variable name, never printed; generated
    ones are printed, since the commands to try need them and they die with the run.
    """
    token_shown = (
        f"{env['OPS_TOKEN']}  (random, for this run)"
        if "OPS_TOKEN" in generated
        else "as you set it"
    )
    lines = [
        "",
        "mrr run is up; Ctrl-C stops it all.",
        f"  dashboard {web}/dashboard  (its sign-in page asks for OPS_TOKEN)",
        f"  OPS_TOKEN {token_shown}",
        f"  web       {web}  (Stripe webhooks: POST {web}/webhooks/stripe)",
        f"  worker    RQ queue {settings.queue_name!r}, with its scheduler and the inbox sweeper",
        f"  database  {describe_database(settings.database_url)}",
        f"  redis     {redis}",
    ]
    if generated:
        names = " and ".join(generated)
        lines.append(f"  secrets   {names} unset: random ones for this run, used below")
    mrr = Path(sys.executable).with_name("mrr")
    mrr_cmd = _path(mrr) if mrr.exists() else "mrr"
    fixtures = _path(SAMPLE_EVENTS)
    secret = (
        f" --secret {env['STRIPE_WEBHOOK_SECRET']}"
        if "STRIPE_WEBHOOK_SECRET" in generated
        else ""  # replay reads STRIPE_WEBHOOK_SECRET itself
    )
    token = env["OPS_TOKEN"] if "OPS_TOKEN" in generated else "$OPS_TOKEN"
    auth = f'-H "Authorization: Bearer {token}"'
    lines += [
        "",
        f"Try next, in another shell in {Path.cwd()}:",
        f"  {mrr_cmd} replay {fixtures} --shift-to-now --url {web}/webhooks/stripe{secret}",
        f"  curl -s {auth} {web}/status",
        f'  curl -s {auth} "{web}/reports/summary?currency=usd"',
        "",
    ]
    return lines


def describe_database(url: str) -> str:
    """The SQLite file's absolute path, or the URL with its password masked."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            return "SQLite in memory"
        return f"{Path(parsed.database).resolve()} (SQLite)"
    return parsed.render_as_string(hide_password=True)


def redact(url: str) -> str:
    """A Redis URL fit to print: the password (userinfo or `?password=`) masked."""
    url = re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url, count=1)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


def _local(host: str) -> str:
    """An address of this machine to reach a server bound to `host` (the wildcards too)."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def _path(path: Path) -> str:
    """`path` relative to the current directory when below it, else absolute."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative
