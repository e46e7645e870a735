"""Terminal tables of the report documents (rich), for `mrr report`."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reporting.display import decimal, money, pct
from reporting.rows import FIELDS, Field


def summary_table(doc: dict[str, Any]) -> Table:
    cur = doc["currency"]
    table = Table(
        title=f"Summary ({doc['currency']}, as of {doc['as_of'][:10]})", show_header=False
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("MRR", money(doc["mrr"], cur)),
        ("ARR", money(doc["arr"], cur)),
        ("Paying customers", str(doc["customers"])),
        ("ARPA", money(doc["arpa"], cur)),
        ("Scheduled churn", money(doc["scheduled_churn"], cur)),
        ("Customer churn (30 d)", pct(doc["customer_churn_rate"])),
        ("Gross MRR churn (30 d)", pct(doc["gross_mrr_churn_rate"])),
        ("Net MRR churn (30 d)", pct(doc["net_mrr_churn_rate"])),
        ("LTV", money(doc["ltv"], cur)),
        ("MRR in 12 months", money(doc["projection"][-1], cur)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    others = ", ".join(
        f"{c['currency']} {money(c['mrr'], c['currency'])}" for c in doc["currencies"]
    )
    table.caption = f"all currencies: {others}" if others else None
    return table


#: Width the tables fit by default (`--wide`: every column, whatever the width).
FIT_WIDTH = 100
#: Movements columns kept first when not all fit (then the rest, in `FIELDS` order).
MOVEMENTS_PRIORITY = (
    "period_start",
    "new",
    "expansion",
    "contraction",
    "churn",
    "net_mrr_churn_rate",
    "ending_mrr",
)


def movements_table(doc: dict[str, Any], width: int | None = None) -> Table:
    """The period rows, with the columns `reporting.rows.FIELDS` gives a heading: those
    that fit `width` whole (None: all), the most telling first; never a cut figure."""
    currency = doc["currency"]
    fields = [f for f in FIELDS if f.heading]
    columns = [
        (f.heading or f.name, [_cell(f, row[f.name], currency) for row in doc["periods"]])
        for f in fields
    ]
    names = [f.name for f in fields]
    rank = [names.index(n) for n in MOVEMENTS_PRIORITY if n in names]
    rank += [n for n in range(len(fields)) if n not in rank]
    return _fitted(f"MRR movements ({currency}, by {doc['period']})", columns, rank, width)


def _fitted(
    title: str,
    columns: list[tuple[str, list[str]]],
    rank: list[int],
    width: int | None,
    contiguous: bool = False,
) -> Table:
    """A table of `columns` (heading, cells), keeping, in `rank` order, those that fit
    `width` at their full width (all when None; with `contiguous`, up to the first
    that does not), shown in their own order; the first is left-aligned. A caption
    counts those left out and names `--wide`."""
    kept: set[int] = set()
    used = 1  # the table's edge
    for n in rank:
        heading, cells = columns[n]
        need = max([len(heading), *(Text.from_markup(c).cell_len for c in cells)]) + 3
        if width is not None and kept and used + need > width:
            if contiguous:
                break
            continue
        kept.add(n)
        used += need
    shown = [columns[n] for n in sorted(kept)]
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for n, (heading, _) in enumerate(shown):
        table.add_column(heading, justify="left" if n == 0 else "right", no_wrap=True)
    for row in zip(*(cells for _, cells in shown), strict=True):
        table.add_row(*row)
    hidden = len(columns) - len(kept)
    if hidden:
        table.caption = f"{hidden} more column(s): --wide shows them all"
    return table


def _cell(f: Field, value: Any, currency: str) -> str:
    if f.kind in ("balance", "flow"):
        return money(value, currency)
    if f.kind == "rate":
        text = pct(value) if f.percent else decimal(value)
        negative_net = f.name == "net_mrr_churn_rate" and value is not None and value < 0
        return f"[green]{text}[/green]" if negative_net else text  # net negative churn
    return str(value)


def cohorts_table(doc: dict[str, Any], width: int | None = None) -> Table:
    """One row per cohort: its months' revenue retention, as many months as fit `width`."""
    cohorts = doc["cohorts"]
    months = max((len(c["months"]) for c in cohorts), default=0)
    columns = [
        ("cohort", [c["cohort"] for c in cohorts]),
        ("customers", [str(c["customers"]) for c in cohorts]),
        ("new MRR", [money(c["new_mrr"], doc["currency"]) for c in cohorts]),
    ]
    for offset in range(months):
        cells = [
            pct(c["months"][offset]["revenue_retention"]) if offset < len(c["months"]) else ""
            for c in cohorts
        ]
        columns.append((f"M{offset}", cells))
    title = f"Revenue retention by cohort ({doc['currency']})"
    return _fitted(title, columns, list(range(len(columns))), width, contiguous=True)


def problems_table(found: list[Any]) -> Table:
    """Failed and quarantined events (`mrr failed`): ids and reasons, never payloads."""
    table = Table(title=f"Failed or quarantined events ({len(found)})")
    for col in ("event", "type", "status", "attempts", "received", "reason"):
        table.add_column(col, overflow="fold")
    for p in found:
        table.add_row(
            p.id, p.type, p.status, str(p.attempts), p.received_at.isoformat()[:19], p.reason or ""
        )
    return table


RENDERERS = {"summary": summary_table, "movements": movements_table, "cohorts": cohorts_table}


#: Width when stdout is not a terminal (a pipe or a file): never fold the figures.
PIPE_WIDTH = 200


def print_report(
    kind: str, doc: dict[str, Any], console: Console | None = None, wide: bool = False
) -> None:
    """The report's table: at most `FIT_WIDTH` columns wide (the terminal's, if
    narrower) unless `wide`, which shows every column however wide."""
    console = console or _console()
    if kind == "summary":
        print_table(summary_table(doc), console)
        return
    width = None if wide else min(console.width, FIT_WIDTH)
    table = movements_table(doc, width) if kind == "movements" else cohorts_table(doc, width)
    if wide:  # never folded: as wide as the table needs
        needed = console.measure(table, options=console.options.update_width(10_000)).maximum
        console = Console(file=console.file, width=max(console.width, needed))
    print_table(table, console)


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=PIPE_WIDTH)


def print_table(table: Table, console: Console | None = None) -> None:
    (console or _console()).print(table)


def drift_table(doc: dict[str, Any]) -> Table:
    """`mrr reconcile`: one row per drifted subscription, totals in the caption."""
    table = Table(title=f"Reconcile: {doc['drifted']} of {doc['checked']} subscriptions drift")
    for col in ("subscription", "customer", "ledger", "Stripe", "drift"):
        table.add_column(col, justify="right" if col == "drift" else "left")

    def side(s: dict[str, Any] | None) -> str:
        if s is None:
            return "—"
        return f"{s['status']} {money(s['mrr'], s['currency'])} {s['currency']}"

    for sub in doc["subscriptions"]:
        amounts = ", ".join(f"{money(a, c)} {c}" for c, a in sub["drift"].items())
        table.add_row(
            sub["id"],
            sub["customer"] or "—",
            side(sub["ledger"]),
            side(sub["stripe"]),
            amounts or "status",
        )
    total = ", ".join(f"{money(a, c)} {c}" for c, a in doc["drift"].items()) or "0"
    table.caption = f"total drift {total}; fixed {doc['fixed']}"
    return table


def print_drift(doc: dict[str, Any]) -> None:
    if doc["subscriptions"]:
        print_table(drift_table(doc))
    else:
        Console(stderr=False).print(
            f"no drift: the ledger agrees with Stripe on {doc['checked']} subscriptions"
        )
