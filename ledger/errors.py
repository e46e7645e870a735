"""Exceptions of the pure domain; `service/` translates them to HTTP."""

from __future__ import annotations

from collections.abc import Iterable


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


class InvalidInvoice(LedgerError):
    """An invoice cannot be read as it is (a draft, no subscription, lines not all listed).

    The message names the invoice and what is wrong with it.
    """


class UnresolvedPrice(InvalidInvoice):
    """Lines name prices by id only and the caller's `prices` lack them: fetch each of
    `price_ids` once (`GET /v1/prices/{id}`) and read again."""

    def __init__(self, price_ids: Iterable[str]) -> None:
        self.price_ids = tuple(sorted(set(price_ids)))
        super().__init__(
            "invoice lines name prices that were not supplied: " + ", ".join(self.price_ids)
        )
