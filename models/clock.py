"""The one clock of the service: aware UTC. The pure core never reads it; everything
that needs "now" calls this (tests pass times in explicitly instead)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
