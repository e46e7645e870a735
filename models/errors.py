"""Errors of persistence: what the database did to a write, in terms the use cases act on."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of the errors `models/` raises on purpose."""


class InboxUnavailable(StoreError):
    """The inbox could not be written (the database is down or timed out): retry later."""


class InboxRefused(StoreError):
    """The database refused the row itself (a value it can never store): never retry."""
