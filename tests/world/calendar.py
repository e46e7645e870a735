"""Billing-period arithmetic as Stripe does it: periods anchored on the billing cycle anchor.

A monthly period keeps the anchor's day of month and time of day, on the month's last
day when the month is shorter (an anchor on January 31 renews on February 29, then on
March 31); a yearly one keeps the anchor's date (February 29 → February 28); weeks and
days are exact multiples of seven days and of one day.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

DAY = 86_400


def boundary(anchor: int, interval: str, interval_count: int, k: int) -> int:
    """The `k`-th period boundary after `anchor` (k = 0 is the anchor itself)."""
    if interval == "day":
        return anchor + k * interval_count * DAY
    if interval == "week":
        return anchor + k * interval_count * 7 * DAY
    start = datetime.fromtimestamp(anchor, UTC)
    months = k * interval_count * (12 if interval == "year" else 1)
    year, month0 = divmod(start.month - 1 + months, 12)
    year += start.year
    month = month0 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    moved = start.replace(year=year, month=month, day=day)
    return int(moved.timestamp())


def next_boundary(anchor: int, interval: str, interval_count: int, after: int) -> int:
    """The first period boundary of the anchor's cycle strictly after `after`."""
    k = 1
    while (t := boundary(anchor, interval, interval_count, k)) <= after:
        k += 1
    return t


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Unix seconds of a UTC moment."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp())


def days(n: float) -> int:
    return int(n * DAY)


def date_text(t: int) -> str:
    """How Stripe writes a date in proration descriptions: `21 Apr 2023`."""
    return datetime.fromtimestamp(t, UTC).strftime("%d %b %Y")
