"""Exceptions of the pure domain; `service/` translates them to HTTP."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error raised by `ledger`."""


class InvalidEvent(LedgerError):
    """A Stripe event (or the subscription it carries) cannot be applied as it is.

    Raised with a message that names the missing or malformed field, so the failed job
    tells an operator what is wrong without reading the payload. `event_id` names the
    event when the error comes from a whole customer's timeline.
    """

    def __init__(self, message: str, event_id: str | None = None) -> None:
        super().__init__(message)
        self.event_id = event_id


class InvalidValue(InvalidEvent):
    """A field is present but its value can never be applied: out of range, malformed,
    or not storable (too long, a NUL character). Retrying cannot help, so the event is
    quarantined: kept in the inbox with this reason and left out of the ledger (SPEC §8).

    A *missing* field stays a plain `InvalidEvent`: the job fails visibly and is retried.
    """
