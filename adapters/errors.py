"""Errors of the adapters."""

from __future__ import annotations


class AdapterError(RuntimeError):
    """Base class of the errors `adapters/` raises on purpose."""


class EmbeddedRedisError(AdapterError):
    """The embedded server cannot be found, started, or owned (a clear message for the user)."""
