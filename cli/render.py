"""Terminal tables of the report documents (rich), for `mrr report`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

#: Stripe's zero-decimal currencies: their minor unit is the major unit.
ZERO_DECIMAL = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)


def money(amount: int | None, currency: str = "usd") -> str:
    """Minor units as a major-unit figure (display only; JSON stays in minor units)."""
    if amount is None:
        return "—"
    if currency in ZERO_DECIMAL:
        return f"{amount:,}"
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.2f} %"


def ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


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


RENDERERS = {"summary": summary_table, "movements": movements_table, "cohorts": cohorts_table}


#: Width when stdout is not a terminal (a pipe or a file): never fold the figures.
PIPE_WIDTH = 200


def print_report(kind: str, doc: dict[str, Any], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=PIPE_WIDTH)
    console.print(RENDERERS[kind](doc))


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
    console = Console()
    if not console.is_terminal:
        console = Console(width=PIPE_WIDTH)
    if doc["subscriptions"]:
        console.print(drift_table(doc))
    else:
        console.print(f"no drift: the ledger agrees with Stripe on {doc['checked']} subscriptions")
