"""Server-rendered SVG charts: numbers in, markup out. No JavaScript, nothing fetched.

Each chart is an inline `<svg>` whose viewBox scales it to its container, so one drawing
serves a phone and a desktop. Every drawn figure is an element of class `mark` carrying
`data-value` and a `<title>` with the exact figure (the browser's tooltip), so a reader
hovering, a screen reader and a test all see the numbers behind the shapes. Colours come
from CSS classes (`service/static/dashboard.css`), never inline styles, so the page runs
under a Content-Security-Policy without `unsafe-inline`.

These functions draw; they compute nothing but geometry. The figures come from the
report documents of `pipeline/reports.py` unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

#: The drawing's coordinate space; the page scales it to the card's width.
WIDTH, HEIGHT = 480, 220
LEFT, RIGHT, TOP, BOTTOM = 54, 10, 12, 26
#: Most x-axis labels drawn; the others are left to the tooltips.
MAX_X_LABELS = 6

Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    """One stacked series: `sign` +1 stacks it above the zero line, -1 below it."""

    name: str
    css: str
    values: Sequence[float | None]
    sign: int = 1
    #: Per bar, where clicking it leads (the movements behind it); empty: nowhere.
    links: Sequence[str | None] = ()


@dataclass(frozen=True)
class Step:
    """One bar of a waterfall: a `total` stands on zero, `up`/`down` float on the run."""

    name: str
    short: str  # its x-axis label
    css: str
    value: float
    role: str  # "total", "up" or "down"
    #: Where clicking the bar leads (the movements behind it); None: nowhere.
    link: str | None = None


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 × 10ⁿ) covering [lo, hi], zero included
    when the range spans it. A range of zero width gets a unit range above it."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(lo / step)
    last = math.ceil(hi / step)
    return [round((first + k) * step, 10) for k in range(last - first + 1)]


class _Frame:
    """Maps values to the drawing's y axis and periods to its x slots."""

    def __init__(self, lo: float, hi: float, slots: int, height: int = HEIGHT) -> None:
        self.ticks = nice_ticks(lo, hi)
        self.lo, self.hi = self.ticks[0], self.ticks[-1]
        self.height = height
        self.slots = max(slots, 1)
        self.slot = (WIDTH - LEFT - RIGHT) / self.slots

    def y(self, value: float) -> float:
        span = self.hi - self.lo
        return TOP + (self.hi - value) / span * (self.height - TOP - BOTTOM)

    def x(self, index: int) -> float:
        """The left edge of slot `index`."""
        return LEFT + index * self.slot

    def centre(self, index: int) -> float:
        return self.x(index) + self.slot / 2

    def bar(self, index: int) -> tuple[float, float]:
        """(left, width) of a bar in slot `index`."""
        width = max(self.slot * 0.7, 1.0)
        return self.x(index) + (self.slot - width) / 2, width


def _n(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _text(value: str) -> str:
    return str(escape(value))


def _svg(parts: list[str], label: str, height: int = HEIGHT) -> Markup:
    head = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{_text(label)}" preserveAspectRatio="xMidYMid meet">'
    )
    # Every dynamic string above and in `parts` went through `_text`: the markup is ours.
    return Markup(head + "".join(parts) + "</svg>")


def _nothing(label: str, message: str, height: int = 80) -> Markup:
    """A chart with nothing to draw: its zero line and why, not empty axes."""
    y = height // 2
    return _svg(
        [
            f'<line class="zero" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>',
            f'<text class="na" x="{WIDTH // 2}" y="{y - 8}" text-anchor="middle">'
            f"{_text(message)}</text>",
        ],
        label,
        height,
    )


def _y_axis(frame: _Frame, axis: Formatter) -> list[str]:
    parts = ['<g class="axis">']
    for tick in frame.ticks:
        y = _n(frame.y(tick))
        css = "zero" if tick == 0 else "gridline"
        parts.append(f'<line class="{css}" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>')
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y}" text-anchor="end" '
            f'dominant-baseline="middle">{_text(axis(tick))}</text>'
        )
    parts.append("</g>")
    return parts


def _x_labels(frame: _Frame, labels: Sequence[str], most: int = MAX_X_LABELS) -> list[str]:
    every = max(1, math.ceil(len(labels) / most))
    y = _n(frame.height - 8)
    parts = ['<g class="axis">']
    for i, label in enumerate(labels):
        if i % every == 0:
            parts.append(
                f'<text class="tick" x="{_n(frame.centre(i))}" y="{y}" '
                f'text-anchor="middle">{_text(label)}</text>'
            )
    parts.append("</g>")
    return parts


def _rect(css: str, x: float, y0: float, y1: float, width: float, value: float, title: str) -> str:
    top, bottom = min(y0, y1), max(y0, y1)
    return (
        f'<rect class="mark {css}" x="{_n(x)}" y="{_n(top)}" width="{_n(width)}" '
        f'height="{_n(max(bottom - top, 0.5))}" data-value="{value:g}">'
        f"<title>{_text(title)}</title></rect>"
    )


def stacked_bars(
    labels: Sequence[str],
    titles: Sequence[str],
    series: Sequence[Series],
    axis: Formatter,
    exact: Formatter,
    label: str,
) -> Markup:
    """One bar per period: series of sign +1 stacked up from zero, of sign -1 down.

    `labels` are the short x-axis names, `titles` the full names used in tooltips. A
    missing or zero value draws nothing.
    """
    n = len(labels)
    ups = [sum(s.values[i] or 0 for s in series if s.sign > 0) for i in range(n)]
    downs = [sum(s.values[i] or 0 for s in series if s.sign < 0) for i in range(n)]
    if not any(ups) and not any(downs):
        return _nothing(label, "nothing in this range")
    frame = _Frame(-max(downs, default=0), max(ups, default=0), n)
    parts = _y_axis(frame, axis)
    for i in range(n):
        x, width = frame.bar(i)
        level = {1: 0.0, -1: 0.0}
        for s in series:
            value = s.values[i] or 0
            if value <= 0:
                continue
            sign = 1 if s.sign > 0 else -1
            start = level[sign]
            level[sign] = start + sign * value
            rect = _rect(
                s.css,
                x,
                frame.y(start),
                frame.y(level[sign]),
                width,
                sign * value,
                f"{s.name}, {titles[i]}: {exact(sign * value)}",
            )
            href = s.links[i] if i < len(s.links) else None
            parts.append(f'<a href="{_text(href)}">{rect}</a>' if href else rect)
    parts += _x_labels(frame, labels)
    return _svg(parts, label)


def signed_bars(
    labels: Sequence[str],
    titles: Sequence[str],
    values: Sequence[float | None],
    axis: Formatter,
    exact: Formatter,
    label: str,
    css: tuple[str, str] = ("neg", "pos"),
    band: bool = True,
    empty: str = "no starting MRR in this range",
) -> Markup:
    """One bar per period from the zero line; negative periods are highlighted (class
    `css[0]` on the bar and, with `band`, a band behind it; `css[1]` on the others). A
    missing value is marked `n/a` on the zero line (a rate whose denominator was 0)."""
    present = [v for v in values if v is not None]
    if not present or (not band and not any(present)):  # a flow chart of zeros: say so
        return _nothing(label, empty)
    frame = _Frame(min(0, *present), max(0, *present), len(labels))  # bars stand on zero
    parts = []
    for i, value in enumerate(values):
        if band and value is not None and value < 0:
            parts.append(
                f'<rect class="band" x="{_n(frame.x(i))}" y="{TOP}" width="{_n(frame.slot)}" '
                f'height="{frame.height - TOP - BOTTOM}"/>'
            )
    parts += _y_axis(frame, axis)
    for i, value in enumerate(values):
        x, width = frame.bar(i)
        if value is None:
            why = empty.removesuffix(" in this range")
            parts.append(
                f'<text class="na" x="{_n(frame.centre(i))}" y="{_n(frame.y(0) - 4)}" '
                f'text-anchor="middle">n/a<title>{_text(titles[i])}: {_text(why)}</title>'
                "</text>"
            )
            continue
        parts.append(
            _rect(
                css[0] if value < 0 else css[1],
                x,
                frame.y(0),
                frame.y(value),
                width,
                value,
                f"{titles[i]}: {exact(value)}",
            )
        )
    parts += _x_labels(frame, labels)
    return _svg(parts, label)


def area(
    labels: Sequence[str],
    titles: Sequence[str],
    values: Sequence[float],
    axis: Formatter,
    exact: Formatter,
    label: str,
    height: int = 170,
) -> Markup:
    """A filled line through one value per period (e.g. ending MRR), a point on each."""
    if not any(values):
        return _nothing(label, "nothing in this range")
    frame = _Frame(min(0, *values) if values else 0, max(values, default=0), len(values), height)
    parts = _y_axis(frame, axis)
    points = [(frame.centre(i), frame.y(v)) for i, v in enumerate(values)]
    if points:
        line = " ".join(f"{_n(x)},{_n(y)}" for x, y in points)
        base = _n(frame.y(max(frame.lo, 0)))
        parts.append(
            f'<path class="fill" d="M{_n(points[0][0])},{base} L{line} '
            f'L{_n(points[-1][0])},{base} Z"/>'
        )
        parts.append(f'<polyline class="line" points="{line}"/>')
    for (x, y), value, title in zip(points, values, titles, strict=True):
        parts.append(
            f'<circle class="mark point" cx="{_n(x)}" cy="{_n(y)}" r="3" data-value="{value:g}">'
            f"<title>{_text(title)}: {_text(exact(value))}</title></circle>"
        )
    parts += _x_labels(frame, labels)
    return _svg(parts, label, height)


def waterfall(steps: Sequence[Step], axis: Formatter, exact: Formatter, label: str) -> Markup:
    """Totals standing on zero and movements floating from the running total between
    them, each labelled with its amount; dashed connectors carry the running total."""
    levels = []
    run = 0.0
    spans = []
    for step in steps:
        if step.role == "total":
            start, run = 0.0, step.value
        else:
            start = run
            run = run + step.value if step.role == "up" else run - step.value
        spans.append((start, run))
        levels += [start, run]
    if not any(levels):
        return _nothing(label, "nothing in this period")
    frame = _Frame(min(0, *levels) if levels else 0, max(levels, default=0), len(steps))
    parts = _y_axis(frame, axis)
    for i, (step, (start, end)) in enumerate(zip(steps, spans, strict=True)):
        x, width = frame.bar(i)
        signed = -step.value if step.role == "down" else step.value
        title = f"{step.name}: {exact(signed)}"
        rect = _rect(step.css, x, frame.y(start), frame.y(end), width, signed, title)
        parts.append(f'<a href="{_text(step.link)}">{rect}</a>' if step.link else rect)
        top = frame.y(max(start, end))
        parts.append(
            f'<text class="value" x="{_n(frame.centre(i))}" y="{_n(top - 4)}" '
            f'text-anchor="middle">{_text(axis(signed))}</text>'
        )
        if i + 1 < len(steps):
            y = _n(frame.y(end))
            parts.append(
                f'<line class="connector" x1="{_n(x + width)}" x2="{_n(frame.bar(i + 1)[0])}" '
                f'y1="{y}" y2="{y}"/>'
            )
    parts += _x_labels(frame, [s.short for s in steps], most=len(steps))
    return _svg(parts, label)


def step_line(
    points: Sequence[tuple[datetime, float]],
    until: datetime,
    axis: Formatter,
    exact: Formatter,
    label: str,
) -> Markup:
    """A value over real time that holds between changes (a customer's MRR): a step
    path from the first point to `until` (to just after the last change when it ends at
    zero: a churned history keeps its width), a mark at every change, ticks on months."""
    if not points:
        return _svg([], label)
    t0 = points[0][0].timestamp()
    last = points[-1][0].timestamp()
    end = until.timestamp() if points[-1][1] else last + max((last - t0) / 10, 86_400)
    t1 = max(end, last, t0 + 1)
    frame = _Frame(0, max(v for _, v in points), 1)
    span = WIDTH - LEFT - RIGHT

    def x(moment: datetime) -> float:
        return LEFT + (moment.timestamp() - t0) / (t1 - t0) * span

    parts = _y_axis(frame, axis)
    path = [f"M{_n(x(points[0][0]))},{_n(frame.y(0))}"]
    for moment, value in points:
        path.append(f"H{_n(x(moment))} V{_n(frame.y(value))}")
    path.append(f"H{_n(WIDTH - RIGHT)}")
    parts.append(f'<path class="step" d="{" ".join(path)}"/>')
    for moment, value in points:
        parts.append(
            f'<circle class="mark point" cx="{_n(x(moment))}" cy="{_n(frame.y(value))}" r="3.5" '
            f'data-value="{value:g}"><title>{_text(moment.strftime("%Y-%m-%d %H:%M"))} UTC: '
            f"{_text(exact(value))}</title></circle>"
        )
    y = _n(frame.height - 8)
    parts.append('<g class="axis">')
    for moment, text in _time_ticks(points[0][0], datetime.fromtimestamp(t1, tz=UTC)):
        parts.append(
            f'<text class="tick" x="{_n(x(moment))}" y="{y}" '
            f'text-anchor="middle">{_text(text)}</text>'
        )
    parts.append("</g>")
    return _svg(parts, label)


def _time_ticks(start: datetime, end: datetime, most: int = 4) -> list[tuple[datetime, str]]:
    """Ticks on the first of a month (every k months, at most `most`), labelled
    "Mar 2024"; over less than two months, on `most` evenly spaced days."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    months = (end.year - start.year) * 12 + end.month - start.month
    if months < 2:
        step = (end - start) / most
        return [
            (start + step * (k + 0.5), (start + step * (k + 0.5)).strftime("%b %d"))
            for k in range(most)
        ]
    every = math.ceil(months / most)
    ticks = []
    index = start.year * 12 + start.month  # the month after start's: its first day
    while True:
        moment = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
        if moment > end:
            break
        ticks.append((moment, moment.strftime("%b %Y")))
        index += every
    return ticks


def heat_class(rate: float | None) -> str:
    """The CSS class of a retention cell: `heat-0` … `heat-10` by tenths of the rate,
    `heat-over` above 100 % (revenue retention through expansion), `heat-na` for none."""
    if rate is None:
        return "heat-na"
    if rate > 1:
        return "heat-over"
    return f"heat-{max(0, min(10, math.floor(rate * 10 + 0.5)))}"


def heatmap(
    rows: Sequence[tuple[str, Sequence[float | None]]],
    columns: int,
    caption: str,
) -> Markup:
    """A table of rates (rows of cohorts, columns of months since), each cell coloured
    by `heat_class` and showing the whole percentage; its exact value in the tooltip."""
    head = "".join(f'<th scope="col">M{k}</th>' for k in range(columns))
    body = []
    for name, rates in rows:
        cells = []
        for k in range(columns):
            if k >= len(rates):
                cells.append('<td class="void"></td>')
                continue
            rate = rates[k]
            shown = "–" if rate is None else f"{rate * 100:.0f}"
            exact = "no customers" if rate is None else f"{rate * 100:.2f} %"
            cells.append(
                f'<td class="mark {heat_class(rate)}" data-value="{"" if rate is None else rate}"'
                f' title="{_text(f"{name}, M{k}: {exact}")}">{shown}</td>'
            )
        body.append(f'<tr><th scope="row">{_text(name)}</th>{"".join(cells)}</tr>')
    # Every dynamic string went through `_text`: the markup is ours.
    return Markup(
        f'<table class="heatmap"><caption>{_text(caption)}</caption>'
        f'<thead><tr><th scope="col">cohort</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
