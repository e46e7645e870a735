"""Report periods: UTC days, ISO weeks and calendar months, snapped outward."""

from __future__ import annotations

from datetime import date

import pytest

from reporting.periods import Period, boundaries, floor, snap


@pytest.mark.parametrize(
    ("start", "end", "period", "expected"),
    [
        (date(2024, 3, 15), date(2024, 5, 2), Period.MONTH, (date(2024, 3, 1), date(2024, 6, 1))),
        (date(2024, 3, 1), date(2024, 5, 1), Period.MONTH, (date(2024, 3, 1), date(2024, 5, 1))),
        (
            date(2024, 12, 15),
            date(2024, 12, 16),
            Period.MONTH,
            (date(2024, 12, 1), date(2025, 1, 1)),
        ),
        # 2024-03-13 is a Wednesday; ISO weeks start on Monday.
        (date(2024, 3, 13), date(2024, 3, 19), Period.WEEK, (date(2024, 3, 11), date(2024, 3, 25))),
        (date(2024, 3, 13), date(2024, 3, 14), Period.DAY, (date(2024, 3, 13), date(2024, 3, 14))),
    ],
)
def test_snap_widens_outward_with_end_exclusive(start, end, period, expected) -> None:
    assert snap(start, end, period) == expected


def test_boundaries_cover_the_range() -> None:
    spans = boundaries(date(2023, 11, 20), date(2024, 2, 2), Period.MONTH)
    assert [s.isoformat() for s, _ in spans] == [
        "2023-11-01",
        "2023-12-01",
        "2024-01-01",
        "2024-02-01",
    ]
    assert floor(date(2024, 1, 1), Period.WEEK) == date(2024, 1, 1)  # a Monday
    assert floor(date(2023, 12, 31), Period.WEEK) == date(2023, 12, 25)
