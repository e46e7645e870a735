"""The dashboard's figures, drawn from the report documents of `pipeline/reports.py`.

Each function takes a document exactly as `/reports/*` serves it (and the URL that
serves it) and says which of its keys feed which series; nothing here computes a
metric. The only arithmetic is display: voluntary churn is the row's `churn` less its
`delinquent_churn`, and the headline names the largest key of `expansion_by_kind`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from markupsafe import Markup

from reporting.display import compact_money, money, pct
from service import charts
from service.charts import Series, Step

#: Movement types in stacking order: money in above the zero line, money out below.
MOVEMENTS = (
    ("new", "New", 1),
    ("expansion", "Expansion", 1),
    ("reactivation", "Reactivation", 1),
    ("contraction", "Contraction", -1),
    ("churn", "Churn", -1),
)
#: The growth levers of SPEC §7, in the order a founder reads them.
KIND_LABELS = {
    "seats": "Seats",
    "upgrade": "Upgrade",
    "cross_sell": "Cross-sell",
    "discount": "Discount",
    "downgrade": "Downgrade",
    "other": "Other",
}
#: Colour classes for churn reasons, handed out in the order the reasons are listed.
REASON_COLOURS = 8


@dataclass(frozen=True)
class Figure:
    """One card of the dashboard: its charts, their legend, and the JSON they show."""

    id: str
    title: str
    source: str  # URL of the JSON document every number of the figure comes from
    charts: Sequence[Markup]
    legend: Sequence[tuple[str, str]] = ()  # (name, CSS class of its swatch)
    note: str = ""


@dataclass(frozen=True)
class Card:
    """A headline figure."""

    label: str
    value: str
    detail: str
    source: str
    tone: str = ""  # "good", "bad" or "" (a CSS class)


class Formats:
    """How one currency's amounts read: short on axes, exact in tooltips."""

    def __init__(self, currency: str) -> None:
        self.currency = currency

    def axis(self, value: float) -> str:
        return compact_money(value, self.currency)

    def exact(self, value: float) -> str:
        return f"{money(round(value), self.currency)} {self.currency.upper()}"


def rate_axis(value: float) -> str:
    return f"{value * 100:.0f} %" if abs(value) >= 0.1 or value == 0 else f"{value * 100:.1f} %"


def period_names(period: str, starts: Sequence[str]) -> tuple[list[str], list[str]]:
    """(short axis labels, full tooltip names) of periods given by their ISO start dates."""
    days = [date.fromisoformat(s) for s in starts]
    if period == "month":
        return [d.strftime("%b %y") for d in days], [d.strftime("%B %Y") for d in days]
    if period == "week":
        return [d.strftime("%d %b") for d in days], [f"week of {d.isoformat()}" for d in days]
    return [d.strftime("%d %b") for d in days], [d.isoformat() for d in days]


#: Where a figure of a period row leads: (row, detail parameters) → URL (SPEC §12).
Link = Callable[[dict[str, Any], dict[str, str]], str]


def _links(doc: dict[str, Any], link: Link | None, **figure: str) -> list[str | None]:
    """Per period row, the link to the movements behind one of its figures."""
    return [link(r, figure) if link else None for r in doc["periods"]]


def _labels(doc: dict[str, Any]) -> tuple[list[str], list[str]]:
    return period_names(doc["period"], [r["period_start"] for r in doc["periods"]])


#: A converted document's revaluation (SPEC §10): drawn apart from the movements.
FX_NAME = "Exchange-rate adjustment (not a movement)"


def converted(doc: dict[str, Any]) -> bool:
    """Whether a document is in the reporting currency (SPEC §10), not one currency's."""
    return "unconverted" in doc


def mrr_figure(doc: dict[str, Any], source: str, link: Link | None = None) -> Figure:
    """Ending MRR per period, below it the period's movements stacked, and, for a
    converted document, the exchange-rate adjustment on a chart of its own: rates that
    moved are not customers that moved."""
    rows, fmt = doc["periods"], Formats(doc["currency"])
    short, full = _labels(doc)
    line = charts.area(
        short, full, [r["ending_mrr"] for r in rows], fmt.axis, fmt.exact, "Ending MRR per period"
    )
    bars = charts.stacked_bars(
        short,
        full,
        [
            Series(name, f"k-{key}", [r[key] for r in rows], sign, _links(doc, link, type=key))
            for key, name, sign in MOVEMENTS
        ],
        fmt.axis,
        fmt.exact,
        "MRR movements per period",
    )
    legend = [("Ending MRR", "k-mrr")] + [(name, f"k-{key}") for key, name, _ in MOVEMENTS]
    if not converted(doc):
        return Figure("mrr", "MRR and its movements", source, (line, bars), legend)
    fx = charts.signed_bars(
        short,
        full,
        [r["fx_adjustment"] for r in rows],
        fmt.axis,
        fmt.exact,
        "Exchange-rate adjustment per period",
        css=("k-fx", "k-fx"),
        band=False,
        empty="exchange rates moved no MRR in this range",
    )
    return Figure(
        "mrr",
        "MRR, its movements, and exchange rates apart",
        source,
        (line, bars, fx),
        [*legend, (FX_NAME, "k-fx")],
    )


def waterfall_figure(
    doc: dict[str, Any], row: dict[str, Any], source: str, link: Link | None = None
) -> Figure:
    """From starting to ending MRR of one period through each movement."""
    fmt = Formats(doc["currency"])
    _, full = period_names(doc["period"], [row["period_start"]])

    def to(movement_type: str) -> str | None:
        return link(row, {"type": movement_type}) if link else None

    steps = [
        Step("Starting MRR", "Start", "k-mrr", row["starting_mrr"], "total"),
        Step("New", "New", "k-new", row["new"], "up", to("new")),
        Step("Expansion", "Exp.", "k-expansion", row["expansion"], "up", to("expansion")),
        Step(
            "Reactivation",
            "React.",
            "k-reactivation",
            row["reactivation"],
            "up",
            to("reactivation"),
        ),
        Step(
            "Contraction", "Contr.", "k-contraction", row["contraction"], "down", to("contraction")
        ),
        Step("Churn", "Churn", "k-churn", row["churn"], "down", to("churn")),
    ]
    if converted(doc):
        fx = row["fx_adjustment"]
        steps.append(Step(FX_NAME, "FX", "k-fx", abs(fx), "up" if fx >= 0 else "down"))
    steps.append(Step("Ending MRR", "End", "k-mrr", row["ending_mrr"], "total"))
    chart = charts.waterfall(steps, fmt.axis, fmt.exact, f"MRR waterfall, {full[0]}")
    return Figure("waterfall", f"Waterfall: {full[0]}", source, (chart,))


#: The flows of a period row: a period where one is not zero is one where MRR moved.
MOVEMENT_KEYS = ("new", "expansion", "contraction", "churn", "reactivation")


def net_churn_figure(doc: dict[str, Any], source: str) -> Figure:
    """Net MRR churn rate per period around its zero line; below zero is net negative."""
    short, full = _labels(doc)
    rates = [r["net_mrr_churn_rate"] for r in doc["periods"]]
    chart = charts.signed_bars(short, full, rates, rate_axis, pct, "Net MRR churn rate")
    return Figure(
        "net-churn",
        "Net MRR churn rate",
        source,
        (chart,),
        [("Net negative (expansion beats churn)", "k-neg"), ("Net churn", "k-pos")],
    )


#: ChartMogul's SaaS benchmarks of expansion's share of new MRR (SPEC §7).
EXPANSION_SHARE_BENCHMARKS = ((2020, 0.288), (2023, 0.323))


def expansion_share_figure(doc: dict[str, Any], source: str) -> Figure:
    """Expansion's share of the MRR won per period, beside ChartMogul's benchmark."""
    short, full = _labels(doc)
    shares = [r["expansion_share"] for r in doc["periods"]]
    chart = charts.signed_bars(
        short,
        full,
        shares,
        rate_axis,
        pct,
        "Expansion share of new MRR",
        empty="nothing won in this range",
    )
    benchmark = ", ".join(f"{pct(v)} in {year}" for year, v in EXPANSION_SHARE_BENCHMARKS)
    return Figure(
        "expansion-share",
        "Expansion's share of new MRR",
        source,
        (chart,),
        [("Expansion ÷ (new + expansion + reactivation)", "k-pos")],
        note=f"ChartMogul's SaaS benchmark: {benchmark}.",
    )


def count_axis(value: float) -> str:
    return f"{value:,.0f}"


def trials(value: float) -> str:
    return f"{value:,.0f} trial{'' if abs(value) == 1 else 's'}"


def trials_figure(doc: dict[str, Any], source: str) -> Figure:
    """The trial funnel per period (SPEC §7): trials converted above the line and lost
    below it, the conversion rate of the trials that ended, and the pipeline."""
    rows, fmt = doc["periods"], Formats(doc["currency"])
    short, full = _labels(doc)
    started = charts.signed_bars(
        short,
        full,
        [r["trials_started"] for r in rows],
        count_axis,
        trials,
        "Trials started per period",
        css=("k-trial", "k-trial"),
        band=False,
        empty="no trial started in this range",
    )
    outcomes = charts.stacked_bars(
        short,
        full,
        [
            Series("Converted", "k-new", [r["trials_converted"] for r in rows]),
            Series("Lost", "k-churn", [r["trials_lost"] for r in rows], -1),
        ],
        count_axis,
        trials,
        "Trials converted, above the line, and lost, below it",
    )
    rate = charts.signed_bars(
        short,
        full,
        [r["trial_conversion_rate"] for r in rows],
        rate_axis,
        pct,
        "Trial conversion rate",
        css=("k-new", "k-new"),
        band=False,
        empty="no trial ended in this range",
    )
    last = rows[-1] if rows else None
    pipeline = (
        f"Running trials at the end of {full[-1]} would add "
        f"{fmt.exact(last['trial_pipeline_mrr'])} of MRR if they converted as they are."
        if last
        else ""
    )
    return Figure(
        "trials",
        "Trial funnel",
        source,
        (started, outcomes, rate),
        [("Started", "k-trial"), ("Converted", "k-new"), ("Lost", "k-churn")],
        note=pipeline,
    )


#: Segments drawn in a colour of their own; the rest share one.
GROUP_COLOURS = 7


def groups_figure(doc: dict[str, Any], source: str) -> Figure:
    """Ending MRR per period by segment (SPEC §11, `group_by`): a plan's or a country's
    share of the whole, the largest segments in colours of their own."""
    fmt = Formats(doc["currency"])
    short, full = _labels(doc)
    groups = doc["groups"]
    shown, rest = groups[:GROUP_COLOURS], groups[GROUP_COLOURS:]
    series = [
        Series(g["value"], f"r{n}", [r["ending_mrr"] for r in g["periods"]])
        for n, g in enumerate(shown)
    ]
    if rest:
        others = [sum(g["periods"][i]["ending_mrr"] for g in rest) for i in range(len(short))]
        series.append(Series(f"{len(rest)} more", "r7", others))
    key = doc["group_by"]
    chart = charts.stacked_bars(
        short, full, series, fmt.axis, fmt.exact, f"Ending MRR by {key} per period"
    )
    return Figure(
        "groups",
        f"MRR by {key}",
        source,
        (chart,),
        [(s.name, s.css) for s in series],
        note="Sorted by the last period's ending MRR; each segment is the ledger of its own "
        + ("items." if key in ("plan", "product", "interval") else "customers."),
    )


def levers_figure(doc: dict[str, Any], source: str, link: Link | None = None) -> Figure:
    """Expansion by lever above the zero line, contraction by kind below it."""
    rows, fmt = doc["periods"], Formats(doc["currency"])
    short, full = _labels(doc)
    series = [
        Series(
            f"{name} expansion",
            f"k-{kind}",
            [r["expansion_by_kind"][kind] for r in rows],
            links=_links(doc, link, type="expansion", kind=kind),
        )
        for kind, name in KIND_LABELS.items()
    ] + [
        Series(
            f"{name} contraction",
            f"k-{kind}",
            [r["contraction_by_kind"][kind] for r in rows],
            -1,
            _links(doc, link, type="contraction", kind=kind),
        )
        for kind, name in KIND_LABELS.items()
    ]
    chart = charts.stacked_bars(
        short, full, series, fmt.axis, fmt.exact, "Expansion by lever, contraction by kind"
    )
    used = {
        kind
        for r in rows
        for kind in KIND_LABELS
        if r["expansion_by_kind"][kind] or r["contraction_by_kind"][kind]
    }
    return Figure(
        "levers",
        "Expansion by lever (up), contraction by kind (down)",
        source,
        (chart,),
        [(name, f"k-{kind}") for kind, name in KIND_LABELS.items() if kind in used],
    )


def churn_figure(doc: dict[str, Any], source: str, link: Link | None = None) -> Figure:
    """Churned MRR per period by reason, and split into voluntary and delinquent."""
    rows, fmt = doc["periods"], Formats(doc["currency"])
    short, full = _labels(doc)
    reasons = sorted(
        {reason for r in rows for reason in r["churn_by_reason"]},
        key=lambda reason: (reason == "unknown", reason),
    )
    colour = {reason: f"r{n % REASON_COLOURS}" for n, reason in enumerate(reasons)}
    by_reason = charts.stacked_bars(
        short,
        full,
        [
            Series(
                _words(reason),
                colour[reason],
                [r["churn_by_reason"].get(reason) for r in rows],
                links=_links(doc, link, type="churn", reason=reason),
            )
            for reason in reasons
        ],
        fmt.axis,
        fmt.exact,
        "Churned MRR by reason",
    )
    split = charts.stacked_bars(
        short,
        full,
        [
            Series(
                "Voluntary",
                "k-voluntary",
                [r["churn"] - r["delinquent_churn"] for r in rows],
                links=_links(doc, link, type="churn", delinquent="false"),
            ),
            Series(
                "Delinquent",
                "k-delinquent",
                [r["delinquent_churn"] for r in rows],
                links=_links(doc, link, type="churn", delinquent="true"),
            ),
        ],
        fmt.axis,
        fmt.exact,
        "Churned MRR, voluntary and delinquent",
    )
    return Figure(
        "churn",
        "Churn by reason; voluntary and delinquent",
        source,
        (by_reason, split),
        [(_words(reason), colour[reason]) for reason in reasons]
        + [("Voluntary", "k-voluntary"), ("Delinquent (payment failed, unpaid)", "k-delinquent")],
    )


def cohorts_figure(doc: dict[str, Any], source: str) -> Figure:
    """Customer and revenue retention per cohort month, as two heatmaps."""
    cohorts = doc["cohorts"]
    width = max((len(c["months"]) for c in cohorts), default=0)

    def rows(key: str) -> list[tuple[str, list[float | None]]]:
        return [(c["cohort"], [m[key] for m in c["months"]]) for c in cohorts]

    return Figure(
        "cohorts",
        "Cohort retention (% of the cohort's month 0)",
        source,
        (
            charts.heatmap(rows("customer_retention"), width, "Customers still paying"),
            charts.heatmap(rows("revenue_retention"), width, "Revenue kept (above 100: expansion)"),
        ),
        note="" if any(c["customers"] for c in cohorts) else "No new customers in this range.",
    )


def headline(
    summary: dict[str, Any],
    movements: dict[str, Any],
    focus: dict[str, Any],
    summary_source: str,
    movements_source: str,
) -> list[Card]:
    """The first row: MRR, customers, trailing net churn, and the focus period's net
    churn with the expansion lever that moved most in it."""
    currency = summary["currency"]
    code = currency.upper()
    net = summary["net_mrr_churn_rate"]
    _, focus_name = period_names(movements["period"], [focus["period_start"]])
    levers = focus["expansion_by_kind"]
    top = max(levers, key=lambda kind: levers[kind]) if any(levers.values()) else None
    focus_net = focus["net_mrr_churn_rate"]
    trailing = summary.get("trailing_30d") or {}
    return [
        range_verdict(movements, currency, movements_source),
        Card(
            "MRR",
            f"{money(summary['mrr'], currency)} {code}",
            f"ARR {money(summary['arr'], currency)}",
            summary_source,
        ),
        Card(
            "Paying customers",
            f"{summary['customers']:,}",
            f"ARPA {money(summary['arpa'], currency)}",
            summary_source,
        ),
        Card(
            "Net MRR churn, last 30 days",
            pct(net),
            _verdict(net, any(trailing.get(k) for k in FLOWS)),
            summary_source,
            _tone(net),
        ),
        Card(
            f"Net MRR churn, {focus_name[0]}",
            pct(focus_net),
            f"top expansion lever: {KIND_LABELS[top]} (+{money(levers[top], currency)} {code})"
            if top
            else "no expansion",
            movements_source,
            _tone(focus_net),
        ),
    ]


def customer_charts(doc: dict[str, Any], now: datetime) -> list[tuple[str, Markup]]:
    """One MRR step line per currency of a customer's timeline, up to `now`."""
    out = []
    for currency in sorted({t["currency"] for t in doc["timeline"]}):
        fmt = Formats(currency)
        points = [
            (datetime.fromisoformat(t["at"]), t["mrr"])
            for t in doc["timeline"]
            if t["currency"] == currency
        ]
        out.append(
            (
                currency,
                charts.step_line(
                    points, now, fmt.axis, fmt.exact, f"MRR of the customer, {currency}"
                ),
            )
        )
    return out


#: The movement types of a period row.
FLOWS = ("new", "expansion", "contraction", "churn", "reactivation")


def range_verdict(movements: dict[str, Any], currency: str, source: str) -> Card:
    """Whether the business has net negative churn over the shown range, in a word:
    what existing customers added (expansion, reactivation) against what they took away
    (churn, contraction), over every period shown."""
    rows = movements["periods"]
    won = sum(r["expansion"] + r["reactivation"] for r in rows)
    lost = sum(r["churn"] + r["contraction"] for r in rows)
    code = currency.upper()
    if not any(r[k] for r in rows for k in FLOWS):
        return Card(
            "Net negative churn?", "No movements yet", "nothing moved in this range", source
        )
    detail = f"+{money(won, currency)} won vs −{money(lost, currency)} lost {code}"
    if won > lost:
        return Card("Net negative churn?", "Yes", detail, source, "good")
    return Card("Net negative churn?", "No", detail, source, "bad" if lost else "")


def _verdict(rate: float | None, moved: bool) -> str:
    if rate is None:
        return "no MRR 30 days ago"
    if not moved:
        return "no movements in the last 30 days"
    if rate < 0:
        return "net negative: expansion outgrows churn"
    return "churn outgrows expansion" if rate > 0 else "expansion exactly offsets churn"


def _tone(rate: float | None) -> str:
    if rate is None or rate == 0:
        return ""
    return "good" if rate < 0 else "bad"


def _words(key: str) -> str:
    return key.replace("_", " ").capitalize()
