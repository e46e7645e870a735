"""What `mrr` prints and returns for an error, in one place: one line on stderr (two at
most) that names what to do, and an exit status. No traceback reaches a user, for an
expected failure or a bug; `-v` shows it.

Exit statuses: 1 an operation failed (the database, Redis, Stripe, a file), 2 a usage
error (click's own, a bad setting or parameter), 3 the work was done but part of it is
left to the worker (Redis down after the inbox was written: the sweeper catches up).
"""

from __future__ import annotations

import logging

import click
import redis
import stripe
from sqlalchemy.exc import OperationalError, ProgrammingError

from adapters.errors import AdapterError
from models.errors import StoreError
from pipeline.errors import BadQuery, PipelineError, SettingsError, StripeAccessError
from reporting.errors import ReportingError

FAILED, USAGE, LEFT_FOR_SWEEPER = 1, 2, 3


def explain(exc: BaseException) -> tuple[str, int] | None:
    """The message and exit status for an expected error; None for an unexpected one."""
    if isinstance(exc, SettingsError | BadQuery | StripeAccessError):
        return str(exc), USAGE
    if isinstance(exc, OperationalError | ProgrammingError):
        # A missing table is the usual first-run mistake; say how to fix it.
        hint = " (run `mrr migrate` first?)" if "table" in str(exc.orig).lower() else ""
        return f"database: {str(exc.orig).splitlines()[0]}{hint}", FAILED
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return f"Redis does not answer ({exc}); is REDIS_URL right?", FAILED
    if isinstance(exc, stripe.StripeError):
        return f"Stripe API: {exc.user_message or exc}", FAILED
    if isinstance(exc, PipelineError | StoreError | AdapterError | ReportingError):
        return str(exc), FAILED
    return None


class Failed(click.ClickException):
    """An expected error as click prints it, `Error: <message>`, exiting with 1."""

    exit_code = FAILED


class Misused(Failed):
    """The same for a usage error (a bad setting or parameter), exiting with 2."""

    exit_code = USAGE


class Group(click.Group):
    """The `mrr` group: every command's expected errors become one line (`explain`);
    `-v` logs the traceback too. An unexpected error is one line too, naming `-v`,
    which raises it with its traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as exc:
            found = explain(exc)
            verbose = bool(ctx.obj and ctx.obj.get("verbose"))
            if found is None:
                if verbose:
                    raise
                # A bug: one line saying how to see where, not a traceback.
                name = ctx.invoked_subcommand or "…"
                raise Failed(
                    f"unexpected {type(exc).__name__}: {exc} "
                    f"(`mrr -v {name} …` prints the traceback to report)"
                ) from None
            if verbose:
                logging.getLogger("mrr").exception("details")
            message, status = found
            raise (Misused if status == USAGE else Failed)(message) from None
