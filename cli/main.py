"""The `mrr` console script (SPEC §5). Logs and progress go to stderr; `--json` output to stdout."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cli.errors import Group

if TYPE_CHECKING:
    from pipeline.runtime import Runtime

log = logging.getLogger("mrr")
T = TypeVar("T")


def _runtime() -> Runtime:
    """The command's runtime, from the environment (the one composition root)."""
    from pipeline.runtime import bootstrap

    return bootstrap()


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


@click.group(cls=Group)
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
    from pipeline.settings import Settings

    upgrade(Settings.from_env().database_url)
    click.echo("database schema is up to date", err=True)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--url", help="POST each event, signed, to this running server instead.")
@click.option("--secret", help="Signing secret for --url (default: STRIPE_WEBHOOK_SECRET).")
@click.option("--sync", is_flag=True, help="Apply events inline, without Redis or a worker.")
@click.option(
    "--shift-to-now",
    is_flag=True,
    help="Move the events by whole days so that the last one is today (demo data).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document of counts.")
def replay(
    paths: Sequence[str],
    url: str | None,
    secret: str | None,
    sync: bool,
    shift_to_now: bool,
    as_json: bool,
) -> None:
    """Replay Stripe events from files (one event, a JSON array, or JSON lines; dirs recurse)."""
    from pipeline.replay import read_events
    from pipeline.replay import shift_to_now as shifted

    runtime = _runtime()
    events = list(read_events(paths))
    if shift_to_now:
        events = shifted(events, int(runtime.now().timestamp()))
    if url:
        secret = secret or next(iter(runtime.settings.webhook_secrets), None)
        result = _replay_http(events, url, secret)
    else:
        result = _replay_direct(events, runtime, sync)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(", ".join(f"{k}: {v}" for k, v in result.items()), err=True)
        if not url and not sync and result.get("stored", 0) + result.get("duplicates", 0):
            click.echo(
                "stored in the inbox and queued: a worker applies them (`mrr worker`, or "
                "`mrr run`); --sync applies them here instead",
                err=True,
            )
    if result.get("failed") or result.get("refused"):
        sys.exit(1)


def _replay_http(events: list[Any], url: str, secret: str | None) -> dict[str, int]:
    from cli.replay import check_url, post_signed

    check_url(url)
    if not secret:
        raise click.UsageError("--url needs --secret or STRIPE_WEBHOOK_SECRET")
    counts = {"events": len(events), "accepted": 0, "refused": 0}
    reasons: dict[tuple[int, str], int] = {}
    with click.progressbar(events, label="posting", file=sys.stderr) as bar:
        for item in bar:
            status, reason = post_signed(url, secret, item.raw)
            if status == 200:
                counts["accepted"] += 1
                continue
            counts["refused"] += 1
            reasons[(status, reason)] = reasons.get((status, reason), 0) + 1
            if status in (401, 403, 404, 405) or reason.startswith("bad_signature"):
                break  # every other event would be refused alike
    unsent = len(events) - counts["accepted"] - counts["refused"]
    if unsent:
        counts["not_sent"] = unsent
    for (status, reason), n in sorted(reasons.items()):
        hint = {
            404: f" (is {url} the webhook's URL? it ends in /webhooks/stripe)",
            405: f" (is {url} the webhook's URL? it ends in /webhooks/stripe)",
        }.get(status, "")
        if reason.startswith("bad_signature"):
            hint = " (--secret must be the server's STRIPE_WEBHOOK_SECRET, as mrr run printed)"
        click.echo(f"{n} event(s) refused: HTTP {status} {reason}{hint}", err=True)
    return counts


def _replay_direct(events: list[Any], runtime: Runtime, sync: bool) -> dict[str, int]:
    from pipeline.replay import replay as run_replay

    with (
        click.progressbar(length=len(events), label="storing", file=sys.stderr) as stored,
        click.progressbar(length=len(events), label="applying", file=sys.stderr) as applied,
    ):
        result = run_replay(
            runtime,
            events,
            sync=sync,
            stored_progress=stored.update,
            applied_progress=applied.update if sync else None,
        )
    for event_id, why in sorted({**result.failed, **result.quarantined}.items()):
        log.error("%s: %s", event_id, why)
    return result.document()


@cli.command()
@click.argument(
    "kind", type=click.Choice(["summary", "movements", "cohorts", "trials"]), default="summary"
)
@click.option("--json", "as_json", is_flag=True, help="Print the HTTP JSON document instead.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the document as CSV (as over HTTP).")
@click.option(
    "--currency",
    help="ISO currency: its native report (default: all, converted into REPORTING_CURRENCY).",
)
@click.option(
    "--period", type=click.Choice(["day", "week", "month"]), help="movements and trials only"
)
@click.option("--start", help="YYYY-MM-DD, snapped outward")
@click.option("--end", help="YYYY-MM-DD, exclusive, snapped outward")
@click.option("--as-of", "as_of", help="YYYY-MM-DD or an ISO time (default: now)")
@click.option("--wide", is_flag=True, help="Every column in one table, however wide.")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    help="KEY:VALUE (plan, product, interval, country, metadata.NAME); repeatable "
    "(summary, movements and trials)",
)
@click.option(
    "--group-by",
    "group_by",
    help="plan, product, interval, country or metadata.NAME (summary, movements and trials)",
)
def report(
    kind: str,
    as_json: bool,
    as_csv: bool,
    wide: bool,
    filters: tuple[str, ...],
    **options: str | None,
) -> None:
    """Print a report as a table (or, with --json or --csv, the same document as over HTTP)."""
    from pipeline import reports as report_docs

    _one_format(as_json, as_csv)
    args = {k: v for k, v in options.items() if v is not None}
    query = report_docs.parse_query(args, report_docs.PARAMETERS[kind], filters)
    doc = report_docs.REPORTS[kind](_runtime(), query)
    if _printed_as_data(doc, as_json, as_csv):
        return
    from cli.render import print_report

    print_report(kind, doc, wide=wide)


@cli.command()
@click.option("--limit", default="50", show_default=True, help="How many (at most 500).")
@click.option("--json", "as_json", is_flag=True, help="Print the HTTP JSON document instead.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the document as CSV (as over HTTP).")
def activity(limit: str, as_json: bool, as_csv: bool) -> None:
    """The latest movements, newest first, with the Stripe events behind each (SPEC §12)."""
    from pipeline.drill import activity_report

    _one_format(as_json, as_csv)
    doc = activity_report(_runtime(), {"limit": limit})
    if _printed_as_data(doc, as_json, as_csv):
        return
    from cli.render import activity_table, print_table

    print_table(activity_table(doc))


def _one_format(as_json: bool, as_csv: bool) -> None:
    if as_json and as_csv:
        raise click.UsageError("--json and --csv: choose one")


def _printed_as_data(doc: dict[str, Any], as_json: bool, as_csv: bool) -> bool:
    """Print `doc` as the HTTP JSON document or as its CSV when asked; whether it was."""
    if as_json:
        click.echo(json.dumps(doc))
    elif as_csv:
        from reporting.tabular import to_csv

        click.echo(to_csv(doc), nl=False)
    return as_json or as_csv


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
    from pipeline.apply import customers_to_rebuild
    from pipeline.apply import rebuild as run_rebuild

    runtime = _runtime()
    customers = len(customers_to_rebuild(runtime))
    with click.progressbar(length=customers, label="rebuilding", file=sys.stderr) as bar:
        result = run_rebuild(runtime, progress=bar.update, jobs=jobs or os.cpu_count() or 1)
    doc = result.document()
    if as_json:
        click.echo(json.dumps(doc))
    else:
        click.echo(", ".join(f"{k}: {v}" for k, v in doc.items()), err=True)


@cli.command()
@WINDOW_DAYS
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document of counts.")
@click.pass_context
def backfill(ctx: click.Context, days: int, as_json: bool) -> None:
    """Existing account: store the Events API window, the customers, and every
    subscription's whole history rebuilt from its invoices, then apply them. Safe to run
    again (needs STRIPE_API_KEY); -v lists what each history had to assume."""
    from pipeline.backfill import backfill as run_backfill
    from pipeline.backfill import client_for

    runtime = _runtime()
    client = client_for(runtime)
    result = _with_progress(
        lambda progress: run_backfill(
            runtime, client, now=runtime.now(), days=days, progress=progress
        )
    )
    doc = result.document()
    if (ctx.obj or {}).get("verbose"):
        for sub_id, assumed in sorted(result.assumptions.items()):
            for line in assumed:
                click.echo(f"{sub_id}: assumed {line}", err=True)
    if as_json:
        click.echo(json.dumps(doc))
    else:
        click.echo(", ".join(f"{k}: {v}" for k, v in doc.items()), err=True)
        if result.assumed and not (ctx.obj or {}).get("verbose"):
            click.echo(
                f"{result.assumed} subscription(s) needed an assumption invoices cannot "
                "settle (mrr -v backfill lists them; README: What invoices cannot show)",
                err=True,
            )
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
    from pipeline.backfill import client_for
    from pipeline.reconcile import reconcile as run_reconcile

    runtime = _runtime()
    client = client_for(runtime)
    result = _with_progress(
        lambda progress: run_reconcile(
            runtime, client, now=runtime.now(), days=days, fix=fix, progress=progress
        )
    )
    if as_json:
        click.echo(json.dumps(result.document()))
        return
    from cli.render import print_drift

    print_drift(result.document())


def _with_progress(run: Callable[[Callable[[str, int], None]], T]) -> T:
    """Run a long use case with its progress on stderr (a line per stage)."""
    from cli.progress import stage_progress

    with stage_progress() as progress:
        return run(progress)


@cli.group()
def fx() -> None:
    """Exchange rates of the reporting currency (ECB reference rates, SPEC §10)."""


@fx.command("update")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document of counts.")
def fx_update(as_json: bool) -> None:
    """Fetch the ECB history from FX_RATES_URL (a URL or a local path) and replace the
    stored rates with it; a malformed file replaces nothing."""
    from pipeline.fx import update

    runtime = _runtime()
    click.echo(f"fetching {runtime.settings.fx_source}", err=True)
    result = _with_progress(lambda progress: update(runtime, progress))
    doc = result.document()
    if as_json:
        click.echo(json.dumps(doc))
    else:
        click.echo(
            f"stored {doc['rates']:,} rates of {doc['currencies']} currencies, "
            f"{doc['oldest']} to {doc['newest']}; {len(doc['covered'])} convert "
            f"(a rate on {doc['newest']})",
            err=True,
        )


@fx.command("show")
@click.option("--date", "day", help="YYYY-MM-DD (default: today, UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document instead.")
def fx_show(day: str | None, as_json: bool) -> None:
    """Print the rates in force on a date (units per EUR) and the newest rate's date."""
    from datetime import date

    from pipeline.fx import rates, show

    try:
        when = None if day is None else date.fromisoformat(day)
    except ValueError:
        raise click.BadParameter(f"not a date YYYY-MM-DD: {day!r}", param_hint="--date") from None
    runtime = _runtime()
    doc = show(runtime, when)
    if as_json:
        click.echo(json.dumps(doc))
        return
    from cli.render import print_table, rates_table

    found = rates(runtime)
    print_table(rates_table(doc))
    click.echo(f"newest rate {doc['newest']}; {found.source} ({found.origin})", err=True)


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
    from pipeline.worker import serve

    serve(_runtime(), burst=burst, with_scheduler=with_scheduler, sweep=sweep)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def failed(as_json: bool) -> None:
    """List failed and quarantined events: ids, types and reasons (never payloads)."""
    from pipeline.redrive import failed as failed_events

    report = failed_events(_runtime())
    if as_json:
        click.echo(json.dumps(report.document()))
        return
    if not report.events:
        click.echo("no failed or quarantined events", err=True)
        return
    from cli.render import print_table, problems_table

    print_table(problems_table(list(report.events)))


@cli.command()
@click.argument("event_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every failed or quarantined event.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def retry(event_ids: Sequence[str], everything: bool, as_json: bool) -> None:
    """Drive failed or quarantined events through the pipeline again (after a fix)."""
    from cli.errors import LEFT_FOR_SWEEPER
    from pipeline.redrive import retry as redrive

    if bool(event_ids) == everything:
        raise click.UsageError("name event ids, or give --all")
    runtime = _runtime()
    result = redrive(runtime, None if everything else list(event_ids))
    if as_json:
        click.echo(json.dumps(result.document()))
    else:
        if result.enqueued:
            click.echo(f"re-enqueued {len(result.retried)} event(s)", err=True)
        else:
            click.echo(
                f"reset {len(result.retried)} event(s) to pending; Redis does not answer, so a "
                f"worker's sweeper enqueues them within SWEEP_AFTER_S "
                f"({runtime.settings.sweep_after_s} s) of its return",
                err=True,
            )
        for event_id in result.not_failed:
            click.echo(f"{event_id}: not a failed or quarantined event", err=True)
    if result.not_failed:
        sys.exit(1)
    if not result.enqueued:
        sys.exit(LEFT_FOR_SWEEPER)


@cli.command()
@click.option("--loop", is_flag=True, help="Keep sweeping every SWEEP_AFTER_S/2 seconds.")
def sweep(loop: bool) -> None:
    """Re-enqueue inbox rows still pending after SWEEP_AFTER_S whose job is gone."""
    from pipeline.sweep import sweep as sweep_once
    from pipeline.sweep import sweep_forever

    runtime = _runtime()
    if loop:
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        sweep_forever(runtime, stop)
        return
    n = sweep_once(runtime)
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
    cli(prog_name="mrr")


if __name__ == "__main__":
    main()
