"""Errors of the use cases (`pipeline/`), one base class for all of them.

The entry points translate them in one place each: `service/errors.py` to an HTTP
status and a JSON body, `cli/errors.py` to one line on stderr and an exit status.
Errors of the layers below keep their own modules (`ledger/errors.py`,
`models/errors.py`, `adapters/errors.py`).
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error a use case raises on purpose."""


class SettingsError(PipelineError, ValueError):
    """An environment variable is missing or malformed; raised at boot, never later."""


class BadEvent(PipelineError, ValueError):
    """A body that is not a Stripe event that can be stored; nothing is stored (a 400)."""


class IntakeTimeout(PipelineError):
    """The inbox write a request waits on did not finish in time; it was not stored (a 503)."""


class EventNotFound(PipelineError):
    """A job or a command names an event that is not in the inbox."""


class BadQuery(PipelineError, ValueError):
    """A report parameter is malformed; the message names it (a JSON 400 over HTTP)."""


class ReplayError(PipelineError, ValueError):
    """A fixture file is unreadable or holds something that is not a Stripe event."""


class StripeAccessError(PipelineError):
    """A use case that reads Stripe's API cannot run as configured (no API key, a
    window out of range)."""
