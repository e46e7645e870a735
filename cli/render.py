"""Terminal tables of the report documents (rich), for `mrr report`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from reporting.display import money, pct, ratio


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


def movements_table(doc: dict[str, Any]) -> Table:
    cur = doc["currency"]
    table = Table(title=f"MRR movements ({doc['currency']}, by {doc['period']})")
    for col in (
        "period",
        "starting",
        "new",
        "expansion",
        "contraction",
        "churn",
        "reactivation",
        "ending",
        "customers",
        "net churn",
        "NRR",
        "quick ratio",
    ):
        table.add_column(col, justify="left" if col == "period" else "right")
    for r in doc["periods"]:
        net = r["net_mrr_churn_rate"]
        table.add_row(
            r["period_start"],
            money(r["starting_mrr"], cur),
            money(r["new"], cur),
            money(r["expansion"], cur),
            money(r["contraction"], cur),
            money(r["churn"], cur),
            money(r["reactivation"], cur),
            money(r["ending_mrr"], cur),
            str(r["ending_customers"]),
            f"[green]{pct(net)}[/green]" if net is not None and net < 0 else pct(net),
            pct(r["nrr"]),
            ratio(r["quick_ratio"]),
        )
    return table


def cohorts_table(doc: dict[str, Any]) -> Table:
    cohorts = doc["cohorts"]
    width = max((len(c["months"]) for c in cohorts), default=0)
    table = Table(title=f"Revenue retention by cohort ({doc['currency']})")
    table.add_column("cohort")
    table.add_column("customers", justify="right")
    table.add_column("new MRR", justify="right")
    for offset in range(width):
        table.add_column(f"M{offset}", justify="right")
    for c in cohorts:
        cells = [pct(m["revenue_retention"]) for m in c["months"]]
        table.add_row(
            c["cohort"],
            str(c["customers"]),
            money(c["new_mrr"], doc["currency"]),
            *cells,
            *([""] * (width - len(cells))),
        )
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


RENDERERS = {"summary": summary_table, "movements": movements_table, "cohorts": cohorts_table}


#: Width when stdout is not a terminal (a pipe or a file): never fold the figures.
PIPE_WIDTH = 200


def print_report(kind: str, doc: dict[str, Any], console: Console | None = None) -> None:
    print_table(RENDERERS[kind](doc), console)


def print_table(table: Table, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=PIPE_WIDTH)
    console.print(table)
