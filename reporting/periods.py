"""Calendar arithmetic of report periods: UTC days, ISO weeks, calendar months."""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def floor(day: date, period: Period) -> date:
    """Start of the period that contains `day`."""
    if period is Period.DAY:
        return day
    if period is Period.WEEK:
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    return day.replace(day=1)


def following(start: date, period: Period) -> date:
    """Start of the period after the one starting at `start` (a period boundary)."""
    if period is Period.DAY:
        return start + timedelta(days=1)
    if period is Period.WEEK:
        return start + timedelta(days=7)
    if start.month == 12:
        return date(start.year + 1, 1, 1)
    return date(start.year, start.month + 1, 1)


def snap(start: date, end: date, period: Period) -> tuple[date, date]:
    """Widen [start, end) outward to whole periods; `end` stays exclusive."""
    lo = floor(start, period)
    hi = floor(end, period)
    if hi < end:
        hi = following(hi, period)
    if hi <= lo:
        hi = following(lo, period)
    return lo, hi


def boundaries(start: date, end: date, period: Period) -> list[tuple[date, date]]:
    """Consecutive [start, end) pairs covering the snapped range."""
    lo, hi = snap(start, end, period)
    pairs = []
    while lo < hi:
        nxt = following(lo, period)
        pairs.append((lo, nxt))
        lo = nxt
    return pairs
