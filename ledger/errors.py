"""Exceptions of the pure domain; `service/` translates them to HTTP."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error raised by `ledger`."""


class InvalidEvent(LedgerError):
    """A Stripe event (or the subscription it carries) cannot be applied as it is.

    Raised with a message that names the missing or malformed field, so the failed job
    tells an operator what is wrong without reading the payload.
    """
