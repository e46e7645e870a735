"""The SVG charts as plain functions: values in, markup out."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from reporting.display import compact_money
from service import charts
from service.charts import Series, Step


def values(markup: str) -> list[float]:
    return [float(v) for v in re.findall(r'class="mark[^"]*"[^>]*data-value="([-0-9.e]+)"', markup)]


@pytest.mark.parametrize(
    ("lo", "hi", "ticks"),
    [
        (0, 312, [0, 100, 200, 300, 400]),
        (-160, 290, [-200, 0, 200, 400]),
        (0, 0, [0, 0.25, 0.5, 0.75, 1]),
        (-0.87, 0.6, [-1, -0.5, 0, 0.5, 1]),
    ],
)
def test_nice_ticks_are_round_and_cover_the_range(lo, hi, ticks) -> None:
    assert charts.nice_ticks(lo, hi) == ticks


def test_stacked_bars_stack_money_in_up_and_money_out_down() -> None:
    svg = charts.stacked_bars(
        ["Jan", "Feb"],
        ["January", "February"],
        [Series("New", "k-new", [100, None]), Series("Churn", "k-churn", [0, 40], sign=-1)],
        str,
        str,
        "movements",
    )
    assert values(svg) == [100, -40]  # nothing drawn for 0 or a missing value
    assert "<title>New, January: 100</title>" in svg
    assert "<title>Churn, February: -40</title>" in svg


def test_text_is_escaped_everywhere() -> None:
    hostile = '<script>alert("x")</script>'
    svg = charts.stacked_bars(
        [hostile], [hostile], [Series(hostile, "k-new", [1])], str, str, hostile
    )
    table = charts.heatmap([(hostile, [0.5])], 1, hostile)
    for markup in (svg, table):
        assert "<script>" not in markup
        assert "&lt;script&gt;" in markup


def test_a_chart_with_nothing_to_draw_says_so_instead_of_empty_axes() -> None:
    svg = charts.stacked_bars(["Jan"], ["January"], [Series("New", "k-new", [0])], str, str, "x")
    assert "nothing in this range" in svg
    assert values(svg) == []
    assert "no starting MRR" in charts.signed_bars(["Jan"], ["January"], [None], str, str, "x")
    assert "nothing in this range" in charts.area(["Jan"], ["January"], [0], str, str, "x")


def test_signed_bars_highlight_net_negative_periods() -> None:
    svg = charts.signed_bars(["a", "b", "c"], ["A", "B", "C"], [0.1, -0.05, None], str, str, "x")
    assert values(svg) == [0.1, -0.05]
    assert svg.count('class="band"') == 1
    assert 'class="mark neg"' in svg and 'class="mark pos"' in svg
    assert ">n/a<" in svg


def test_signed_bars_of_one_sign_stand_on_the_zero_line() -> None:
    """A conversion rate of 100 % in every period is a full bar from 0, not a sliver on
    an axis that starts at 100 %."""
    svg = charts.signed_bars(["a", "b"], ["A", "B"], [1.0, 1.0], str, str, "x")
    ticks = [float(t) for t in re.findall(r'class="tick"[^>]*>([-0-9.]+)<', svg)]
    assert ticks and min(ticks) == 0 and max(ticks) >= 1.0
    heights = [
        float(h) for h in re.findall(r'<rect class="mark[^"]*"[^>]* height="([0-9.]+)"', svg)
    ]
    assert len(heights) == 2 and all(h > 50 for h in heights)


def test_the_waterfall_floats_movements_on_the_running_total() -> None:
    steps = [
        Step("Starting MRR", "Start", "k-mrr", 300, "total"),
        Step("Expansion", "Exp.", "k-expansion", 50, "up"),
        Step("Churn", "Churn", "k-churn", 100, "down"),
        Step("Ending MRR", "End", "k-mrr", 250, "total"),
    ]
    svg = charts.waterfall(steps, str, str, "waterfall")
    assert values(svg) == [300, 50, -100, 250]
    tops = [float(y) for y in re.findall(r'<rect class="mark[^"]*" x="[^"]*" y="([^"]+)"', svg)]
    heights = [float(h) for h in re.findall(r'<rect class="mark[^"]*"[^>]* height="([^"]+)"', svg)]
    # The churn bar hangs from the top of the expansion bar down to the ending total.
    assert tops[2] == pytest.approx(tops[1], abs=0.15)
    assert tops[2] + heights[2] == pytest.approx(tops[3], abs=0.15)  # coordinates: 0.1
    assert svg.count('class="connector"') == 3


def test_the_step_line_marks_every_change() -> None:
    points = [
        (datetime(2024, 1, 1, tzinfo=UTC), 100),
        (datetime(2024, 3, 1, tzinfo=UTC), 0),
    ]
    svg = charts.step_line(points, datetime(2024, 6, 1, tzinfo=UTC), str, str, "mrr")
    assert values(svg) == [100, 0]
    assert 'class="step"' in svg
    # Ended at zero: the axis stops just after the churn, not at `until`; month ticks.
    assert ">Feb 2024<" in svg and ">Mar 2024<" in svg and "2024-06" not in svg
    assert "Jun 2024" not in svg


def test_a_live_step_line_runs_to_now_with_a_few_month_ticks() -> None:
    points = [(datetime(2024, 1, 9, tzinfo=UTC), 100), (datetime(2024, 3, 17, tzinfo=UTC), 150)]
    svg = charts.step_line(points, datetime(2026, 12, 3, tzinfo=UTC), str, str, "mrr")
    ticks = re.findall(r'class="tick"[^>]*text-anchor="middle">([^<]+)<', svg)
    assert 2 <= len(ticks) <= 4
    assert all(re.fullmatch(r"[A-Z][a-z]{2} 20\d\d", t) for t in ticks)
    assert ticks[0] == "Feb 2024" and ticks[-1].endswith("2026")


@pytest.mark.parametrize(
    ("rate", "css"),
    [
        (None, "heat-na"),
        (0, "heat-0"),
        (0.04, "heat-0"),
        (0.05, "heat-1"),
        (1, "heat-10"),
        (1.2, "heat-over"),
    ],
)
def test_heat_classes(rate, css) -> None:
    assert charts.heat_class(rate) == css


def test_heatmap_rows_end_where_the_cohort_ends() -> None:
    table = charts.heatmap([("2024-01", [1.0, 0.5]), ("2024-02", [None])], 2, "retention")
    assert table.count('<td class="void">') == 1
    assert ">–<" in table  # an empty cohort
    assert 'title="2024-01, M1: 50.00 %"' in table


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (0, "usd", "0"),
        (31200, "usd", "312"),
        (-10000, "usd", "-100"),
        (1234567, "usd", "12.3k"),
        (250, "usd", "2.5"),
        (5_000_000, "jpy", "5.0M"),
        (123_456_789_00, "eur", "123M"),
    ],
)
def test_compact_money(amount, currency, text) -> None:
    assert compact_money(amount, currency) == text
