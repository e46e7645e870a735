"""Exceptions of the pure reporting layer; entry points translate them (HTTP, exit codes)."""

from __future__ import annotations


class ReportingError(Exception):
    """Base class of every error raised by `reporting`."""


class MalformedRates(ReportingError, ValueError):
    """An exchange-rate file is not in the ECB `eurofxref-hist` format.

    The message names what is wrong and where (line, column), so an operator can fix the
    file; nothing of a malformed file is ever used.
    """


class NoRate(ReportingError, LookupError):
    """A conversion needs a rate the history does not have: a currency the rates do not
    cover as the reporting currency, or a non-zero amount dated before the history's
    first rate of its currency."""
