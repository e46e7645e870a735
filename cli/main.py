"""The `mrr` console script (SPEC §5). Logs and progress go to stderr; `--json` output to stdout."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pipeline.settings import Settings, SettingsError

if TYPE_CHECKING:
    import stripe

log = logging.getLogger("mrr")
T = TypeVar("T")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic narrates every start-up ("Context impl SQLiteImpl", ...): debugging only.
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:  # stripe-python logs every request at INFO; -v shows them
        logging.getLogger("stripe").setLevel(logging.WARNING)


#: The Events API window `mrr backfill` stores, and `mrr reconcile` backfills first (SPEC §9).
WINDOW_DAYS = click.option(
    "--days",
    type=click.IntRange(1, 30),
    default=30,
    show_default=True,
    help="Days of the Events API's window to store (Stripe keeps 30).",
)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging on stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Stripe subscription webhooks → exact MRR ledger → churn and expansion."""
    _setup_logging(verbose)
    ctx.obj = {"verbose": verbose}


@cli.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic `upgrade head`)."""
    from migrations import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    click.echo("database schema is up to date", err=True)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--url", help="POST each event, signed, to this running server instead.")
@click.option("--secret", help="Signing secret for --url (default: STRIPE_WEBHOOK_SECRET).")
@click.option("--sync", is_flag=True, help="Apply events inline, without Redis or a worker.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document of counts.")
def replay(
    paths: Sequence[str], url: str | None, secret: str | None, sync: bool, as_json: bool
) -> None:
    """Replay Stripe events from files (one event, a JSON array, or JSON lines; dirs recurse)."""
    from cli.replay import ReplayError, read_events

    settings = _settings()
    try:
        events = list(read_events(paths))
    except ReplayError as exc:
        raise click.ClickException(str(exc)) from None
    if url:
        result = _replay_http(events, url, secret or next(iter(settings.webhook_secrets), None))
    else:
        result = _replay_direct(events, settings, sync)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(", ".join(f"{k}: {v}" for k, v in result.items()), err=True)
    if result.get("failed") or result.get("refused"):
        sys.exit(1)


def _replay_http(events: list[Any], url: str, secret: str | None) -> dict[str, int]:
    from cli.replay import post_signed

    if not secret:
        raise click.UsageError("--url needs --secret or STRIPE_WEBHOOK_SECRET")
    counts = {"events": len(events), "accepted": 0, "refused": 0}
    with click.progressbar(events, label="posting", file=sys.stderr) as bar:
        for item in bar:
            status = post_signed(url, secret, item.raw)
            if status == 200:
                counts["accepted"] += 1
            else:
                counts["refused"] += 1
                log.error("%s: server answered %s", item.source, status)
    return counts


def _replay_direct(events: list[Any], settings: Settings, sync: bool) -> dict[str, int]:
    from pipeline import intake
    from pipeline.apply import apply_inline
    from pipeline.queue import make_queue

    factory = settings.sessions()
    counts = {"events": len(events), "stored": 0, "duplicates": 0}
    pending: list[str] = []
    with click.progressbar(events, label="storing", file=sys.stderr) as bar:
        for item in bar:
            stored = intake.store(factory, item.event, item.raw)
            counts["stored" if stored.inserted else "duplicates"] += 1
            if stored.pending:
                pending.append(stored.event_id)
    if not sync:
        queued = intake.enqueue(make_queue(settings.redis_url, settings.queue_name), pending)
        counts["enqueued" if queued else "left_for_sweeper"] = len(pending)
        return counts
    with click.progressbar(length=len(pending), label="applying", file=sys.stderr) as bar:
        result = apply_inline(factory, settings, pending, progress=bar.update)
    for event_id, why in sorted({**result.failed, **result.quarantined}.items()):
        log.error("%s: %s", event_id, why)
    counts.update(
        applied=result.applied, failed=len(result.failed), quarantined=len(result.quarantined)
    )
    return counts


@cli.command()
@click.argument("kind", type=click.Choice(["summary", "movements", "cohorts"]), default="summary")
@click.option("--json", "as_json", is_flag=True, help="Print the HTTP JSON document instead.")
@click.option("--currency", help="ISO currency (default: the one with the most MRR).")
@click.option("--period", type=click.Choice(["day", "week", "month"]), help="movements only")
@click.option("--start", help="YYYY-MM-DD, snapped outward")
@click.option("--end", help="YYYY-MM-DD, exclusive, snapped outward")
@click.option("--as-of", "as_of", help="YYYY-MM-DD or an ISO time (default: now)")
def report(kind: str, as_json: bool, **options: str | None) -> None:
    """Print a report as a table (or, with --json, the same document as over HTTP)."""
    from models.clock import utcnow
    from pipeline import reports as report_docs

    args = {k: v for k, v in options.items() if v is not None}
    try:
        query = report_docs.parse_query(args, report_docs.PARAMETERS[kind])
        factory = _settings().sessions()
        with factory() as session:
            doc = report_docs.REPORTS[kind](session, query, utcnow())
    except report_docs.BadQuery as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(doc))
        return
    from cli.render import print_report

    print_report(kind, doc)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document of counts.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Processes that rebuild in parallel (PostgreSQL; default: the CPU count).",
)
def rebuild(as_json: bool, jobs: int | None) -> None:
    """Recompute the whole ledger from the inbox (safe while workers run)."""
    from models.ledger_store import customers_with_events
    from pipeline.apply import rebuild_all

    settings = _settings()
    factory = settings.sessions()
    with factory() as session:
        customers = customers_with_events(session)
    with click.progressbar(length=len(customers), label="rebuilding", file=sys.stderr) as bar:
        result = rebuild_all(
            factory, settings, customers, progress=bar.update, jobs=jobs or os.cpu_count() or 1
        )
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(", ".join(f"{k}: {v}" for k, v in result.items()), err=True)


@cli.command()
@WINDOW_DAYS
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document of counts.")
def backfill(days: int, as_json: bool) -> None:
    """Existing account: store the Events API window and an opening history for every
    subscription, then apply them. Safe to run again (needs STRIPE_API_KEY)."""
    from pipeline.backfill import backfill as run_backfill

    settings = _settings()
    client = _stripe_client(settings)
    factory = settings.sessions()
    result = _with_stripe(
        lambda progress: run_backfill(
            factory, settings, client, now=int(time.time()), days=days, progress=progress
        )
    )
    doc = result.document()
    if as_json:
        click.echo(json.dumps(doc))
    else:
        click.echo(", ".join(f"{k}: {v}" for k, v in doc.items()), err=True)
    if result.failed:
        sys.exit(1)


@cli.command()
@click.option(
    "--fix",
    is_flag=True,
    help="Store Stripe's current object of each drifted subscription, dated now.",
)
@WINDOW_DAYS
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document of the drift.")
def reconcile(fix: bool, days: int, as_json: bool) -> None:
    """Backfill, then compare every subscription's status and MRR with Stripe's and print
    the drift; --fix makes the ledger agree (needs STRIPE_API_KEY)."""
    from pipeline.reconcile import reconcile as run_reconcile

    settings = _settings()
    client = _stripe_client(settings)
    factory = settings.sessions()
    result = _with_stripe(
        lambda progress: run_reconcile(
            factory, settings, client, now=int(time.time()), days=days, fix=fix, progress=progress
        )
    )
    if as_json:
        click.echo(json.dumps(result.document()))
        return
    from cli.render import print_drift

    print_drift(result.document())


def _stripe_client(settings: Settings) -> stripe.StripeClient:
    from pipeline.backfill import BackfillError, client_for

    try:
        return client_for(settings)
    except BackfillError as exc:
        raise click.UsageError(str(exc)) from None


def _with_stripe(run: Callable[[Callable[[str, int], None]], T]) -> T:
    """Run a Stripe API use case with progress on stderr; Stripe's errors (after the
    client's retries) become a one-line message and exit status 1."""
    import stripe

    from cli.progress import stage_progress

    try:
        with stage_progress() as progress:
            return run(progress)
    except stripe.StripeError as exc:
        raise click.ClickException(f"Stripe API: {exc.user_message or exc}") from None


@cli.command()
@click.option("--burst", is_flag=True, help="Quit when the queue is empty.")
@click.option(
    "--with-scheduler/--without-scheduler",
    default=True,
    help="Run RQ's scheduler (needed for retries). On by default.",
)
@click.option(
    "--sweep/--no-sweep",
    default=True,
    help="Also re-enqueue stale pending inbox rows every SWEEP_AFTER_S/2 s.",
)
def worker(burst: bool, with_scheduler: bool, sweep: bool) -> None:
    """Run a worker on the `mrr` queue: no fork, JSON serializer, scheduler and sweeper threads."""
    from workers.runtime import run_worker

    run_worker(_settings(), burst=burst, with_scheduler=with_scheduler, sweep=sweep)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def failed(as_json: bool) -> None:
    """List failed and quarantined events: ids, types and reasons (never payloads)."""
    from pipeline.redrive import problems

    found = problems(_settings().sessions())
    if as_json:
        click.echo(
            json.dumps(
                {
                    "events": [
                        {
                            "id": p.id,
                            "type": p.type,
                            "status": p.status,
                            "attempts": p.attempts,
                            "reason": p.reason,
                            "received_at": p.received_at.isoformat(),
                        }
                        for p in found
                    ]
                }
            )
        )
        return
    from cli.render import print_table, problems_table

    print_table(problems_table(found))


@cli.command()
@click.argument("event_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every failed or quarantined event.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def retry(event_ids: Sequence[str], everything: bool, as_json: bool) -> None:
    """Drive failed or quarantined events through the pipeline again (after a fix)."""
    from pipeline.queue import make_queue
    from pipeline.redrive import retry as redrive

    if bool(event_ids) == everything:
        raise click.UsageError("name event ids, or give --all")
    settings = _settings()
    queue = make_queue(settings.redis_url, settings.queue_name)
    ids = redrive(settings.sessions(), queue, None if everything else list(event_ids))
    unknown = sorted(set(event_ids) - set(ids))
    if as_json:
        click.echo(json.dumps({"retried": ids, "not_failed": unknown}))
    else:
        click.echo(f"re-enqueued {len(ids)} event(s)", err=True)
        for event_id in unknown:
            click.echo(f"{event_id}: not a failed or quarantined event", err=True)
    if unknown:
        sys.exit(1)


@cli.command()
@click.option("--loop", is_flag=True, help="Keep sweeping every SWEEP_AFTER_S/2 seconds.")
def sweep(loop: bool) -> None:
    """Re-enqueue inbox rows still pending after SWEEP_AFTER_S whose job is gone."""
    from pipeline.queue import make_queue
    from pipeline.sweep import sweep as sweep_once
    from pipeline.sweep import sweep_forever

    settings = _settings()
    factory = settings.sessions()
    if loop:
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        sweep_forever(
            factory,
            lambda: make_queue(settings.redis_url, settings.queue_name),
            settings.sweep_after_s,
            stop,
        )
        return
    n = sweep_once(
        factory, make_queue(settings.redis_url, settings.queue_name), settings.sweep_after_s
    )
    click.echo(f"re-enqueued {n} pending event(s)", err=True)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port", envvar="PORT", default=8000, show_default=True, type=int, help="Default: $PORT."
)
@click.pass_context
def run(ctx: click.Context, host: str, port: int) -> None:
    """Development: migrate, then the web process and a worker together until Ctrl-C.

    Needs nothing configured: unset secrets are generated for the run, and without
    REDIS_URL it uses the Redis at MRR_REDIS_PROBE (localhost:6379) or an embedded one.
    """
    from cli.devrun import run_all

    sys.exit(run_all(host, port, verbose=ctx.obj["verbose"]))


def main() -> None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        cli(prog_name="mrr")
    except (OperationalError, ProgrammingError) as exc:
        # A missing table is the usual first-run mistake; say how to fix it.
        hint = " (run `mrr migrate` first?)" if "table" in str(exc.orig).lower() else ""
        click.echo(f"Error: database: {exc.orig}{hint}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
