"""Terminal tables of the report documents (rich), for `mrr report`."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.table import Table

from reporting.display import decimal, money, pct
from reporting.rows import CONVERTED_FIELDS, FIELDS, Field


def summary_table(doc: dict[str, Any]) -> Table:
    cur = doc["currency"]
    title = f"Summary ({doc['currency']}, as of {doc['as_of'][:10]})"
    if doc.get("filter"):
        title += f", {' '.join(doc['filter'])}"
    table = Table(title=title, show_header=False)
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
    table.caption = _unconverted_note(doc, table.caption)
    return table


def summary_groups_table(doc: dict[str, Any]) -> Table:
    """A grouped summary's groups (SPEC §11), most MRR first."""
    cur = doc["currency"]
    table = Table(title=f"By {doc['group_by']}")
    for heading in (doc["group_by"], "MRR", "customers", "net MRR churn (30 d)", "expansion share"):
        table.add_column(heading, justify="left" if heading == doc["group_by"] else "right")
    for g in doc["groups"]:
        table.add_row(
            str(g["value"]),
            money(g["mrr"], cur),
            str(g["customers"]),
            pct(g["net_mrr_churn_rate"]),
            pct(g["expansion_share"]),
        )
    return table


def _unconverted_note(doc: dict[str, Any], caption: Any) -> str | None:
    """A converted document's caption: what it left out (no rate) and its rates' date."""
    notes = [str(caption)] if caption else []
    left = doc.get("unconverted") or {}
    if left:
        shown = ", ".join(f"{money(m, c)} {c}" for c, m in left.items())
        notes.append(f"not converted (no exchange rate): {shown}")
    rates = doc.get("rates")
    if rates:
        notes.append(f"converted with the {rates['source']} ECB rates up to {rates['newest']}")
    return "; ".join(notes) or None


def _noted(doc: dict[str, Any], tables: list[Table]) -> list[Table]:
    """`tables` with a converted document's note under the last one."""
    if tables:
        tables[-1].caption = _unconverted_note(doc, None)
    return tables


#: Each column's padding and border in rich's default box.
_COLUMN_CHROME = 3


def movements_table(doc: dict[str, Any], width: int | None = None) -> list[Table]:
    """The period rows, with the columns `reporting.rows.FIELDS` gives a heading (and
    `fx_adjustment` in a converted document): the flows first, then the counts and
    rates, in tables that fit `width` (None: one)."""
    currency = doc["currency"]
    converted = "unconverted" in doc
    columns = [f for f in (CONVERTED_FIELDS if converted else FIELDS) if f.heading]
    headings = [f.heading or f.name for f in columns]
    right = [f.kind != "period" for f in columns]
    title = f"MRR movements ({currency}, by {doc['period']})"
    if doc.get("filter"):
        title += f", {' '.join(doc['filter'])}"
    tables = []
    for name, rows in [(title, doc["periods"])] + [
        (f"{title}, {g['key']} {g['value']}", g["periods"]) for g in doc.get("groups", [])
    ]:
        cells = [[_cell(f, row[f.name], currency) for f in columns] for row in rows]
        tables += packed(name, headings, right, cells, width)
    return _noted(doc, tables)


def _cell(f: Field, value: Any, currency: str) -> str:
    if f.kind in ("balance", "flow"):
        return money(value, currency)
    if f.kind == "rate":
        text = pct(value) if f.percent else decimal(value)
        negative_net = f.name == "net_mrr_churn_rate" and value is not None and value < 0
        return f"[green]{text}[/green]" if negative_net else text  # net negative churn
    return str(value)


def cohorts_table(doc: dict[str, Any], width: int | None = None) -> list[Table]:
    cohorts = doc["cohorts"]
    months = max((len(c["months"]) for c in cohorts), default=0)
    headings = ["cohort", "customers", "new MRR", *(f"M{k}" for k in range(months))]
    cells = []
    for c in cohorts:
        shown = [pct(m["revenue_retention"]) for m in c["months"]]
        cells.append(
            [
                c["cohort"],
                str(c["customers"]),
                money(c["new_mrr"], doc["currency"]),
                *shown,
                *([""] * (months - len(shown))),
            ]
        )
    right = [False, *([True] * (len(headings) - 1))]
    title = f"Revenue retention by cohort ({doc['currency']})"
    return _noted(doc, packed(title, headings, right, cells, width))


def packed(
    title: str,
    headings: list[str],
    right: list[bool],
    rows: list[list[str]],
    width: int | None,
) -> list[Table]:
    """Tables of the columns that fit `width` each, the first column in every one; a
    cell is never cut (None: one table of every column)."""

    def need(k: int) -> int:
        shown = [_plain(r[k]) for r in rows]
        return max([len(headings[k]), *map(len, shown)]) + _COLUMN_CHROME

    groups: list[list[int]] = []
    room = 0
    for k in range(1, len(headings)):
        if width is None or not groups or room < need(k):
            if width is None and groups:
                groups[0].append(k)
                continue
            groups.append([k])
            room = (width or 0) - 1 - need(0) - need(k)
        else:
            groups[-1].append(k)
            room -= need(k)
    tables = []
    for n, group in enumerate(groups or [[]]):
        suffix = f" ({n + 1}/{len(groups)})" if len(groups) > 1 else ""
        table = Table(title=title + suffix)
        for k in (0, *group):
            table.add_column(headings[k], justify="right" if right[k] else "left", no_wrap=True)
        for r in rows:
            table.add_row(*(r[k] for k in (0, *group)))
        tables.append(table)
    return tables


def _plain(text: str) -> str:
    """A cell's text without rich's markup (`[green]…[/green]`)."""
    return re.sub(r"\[/?[a-z ]+\]", "", text)


def rates_table(doc: dict[str, Any]) -> Table:
    """`mrr fx show`: units of each currency per EUR in force on the date."""
    table = Table(title=f"Exchange rates on {doc['date']} (units per EUR)")
    table.add_column("currency")
    table.add_column("per EUR", justify="right")
    for currency, per_eur in doc["rates"].items():
        table.add_row(currency.upper(), str(per_eur))
    return table


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


def activity_table(doc: dict[str, Any]) -> Table:
    """`mrr activity`: one line per movement, newest first."""
    moves = doc["movements"]
    table = Table(title=f"Latest movements ({len(moves)})")
    for col in ("date", "customer", "type", "lever or reason", "amount", "events"):
        table.add_column(col, justify="right" if col == "amount" else "left", overflow="fold")
    for m in moves:
        sign = "-" if m["type"] in ("contraction", "churn") else "+"
        table.add_row(
            m["date"][:19].replace("T", " "),
            m["customer_id"],
            m["type"],
            m["kind"] or m["reason"] or "",
            _movement_amount(sign, m, doc.get("currency")),
            " ".join(e["id"] + (" (synthetic)" if e["synthetic"] else "") for e in m["events"]),
        )
    return table


def _movement_amount(sign: str, m: dict[str, Any], currency: str | None) -> str:
    """A movement's amount in the document's currency, with its own beside it when that
    differs (a converted document, SPEC §10)."""
    native = f"{sign}{money(m['native_amount'], m['native_currency'])} {m['native_currency']}"
    if currency is None or m["native_currency"] == currency or m["amount"] is None:
        return native
    return f"{sign}{money(m['amount'], currency)} {currency} ({native})"


def trials_table(doc: dict[str, Any], width: int | None = None) -> list[Table]:
    """The trial funnel per period: started, converted, lost, conversion, pipeline."""
    currency = doc["currency"]
    headings = ["period", "started", "converted", "lost", "conversion", "pipeline MRR"]
    cells = [
        [
            r["period_start"],
            str(r["trials_started"]),
            str(r["trials_converted"]),
            str(r["trials_lost"]),
            pct(r["trial_conversion_rate"]),
            money(r["trial_pipeline_mrr"], currency),
        ]
        for r in doc["periods"]
    ]
    right = [False, *([True] * (len(headings) - 1))]
    return packed(f"Trials ({currency}, by {doc['period']})", headings, right, cells, width)


RENDERERS = {"movements": movements_table, "cohorts": cohorts_table, "trials": trials_table}


#: Width when stdout is not a terminal (a pipe or a file): never fold the figures.
PIPE_WIDTH = 200


def print_report(
    kind: str, doc: dict[str, Any], console: Console | None = None, *, wide: bool = False
) -> None:
    """A report as tables that fit the terminal: the columns packed into as many tables as
    it takes, the first column repeated in each (`wide`, or not a terminal: one table)."""
    console = console or _console()
    width = None if wide or not console.is_terminal else console.width
    if kind == "summary":
        console.print(summary_table(doc))
        if doc.get("groups"):
            console.print(summary_groups_table(doc))
        return
    for table in RENDERERS[kind](doc, width):
        console.print(table)


def print_table(table: Table, console: Console | None = None) -> None:
    (console or _console()).print(table)


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=PIPE_WIDTH)


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
