"""The words of alerts and digests (SPEC §12), Slack-compatible plain text. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reporting.display import money, pct

#: Backoff of a failed post: 60 s, doubling, at most 10 minutes, for up to an hour.
FIRST_RETRY_S, MOST_RETRY_S, GIVE_UP_AFTER_S = 60, 600, 3600

_VERB = {
    "new": "New customer",
    "expansion": "Expansion",
    "contraction": "Contraction",
    "churn": "Churn",
    "reactivation": "Reactivation",
}
_NEGATIVE = ("contraction", "churn")


def retry_after_s(attempts: int) -> int:
    """Seconds to wait after the `attempts`-th failed post (1 → 60, 2 → 120, … ≤ 600)."""
    return int(min(FIRST_RETRY_S * 2 ** max(attempts - 1, 0), MOST_RETRY_S))


def signed(movement_type: str, amount: int, currency: str) -> str:
    sign = "−" if movement_type in _NEGATIVE else "+"
    return f"{sign}{money(amount, currency)} {currency.upper()}"


def customer_link(customer_id: str, public_url: str | None) -> str:
    """The customer by its Stripe id, linked to its dashboard page when there is one."""
    if public_url is None:
        return customer_id
    return f"<{public_url}/dashboard/customers/{customer_id}|{customer_id}>"


def movement_text(
    customer_id: str,
    movement_type: str,
    amount: int,
    currency: str,
    lever: str | None,
    public_url: str | None,
    converted: tuple[int, str] | None = None,
) -> str:
    """One movement: what, who, how much (and, from another currency, how much in the
    reporting currency: `converted`), which lever or churn reason."""
    why = f" ({lever.replace('_', ' ')})" if lever else ""
    also = ""
    if converted is not None and converted[1] != currency:
        also = f" (≈ {signed(movement_type, *converted)})"
    return (
        f"{_VERB.get(movement_type, movement_type)}{why}: "
        f"{customer_link(customer_id, public_url)} {signed(movement_type, amount, currency)}"
        f"{also} MRR"
    )


def digest_text(
    day: str,
    rows: Mapping[str, Mapping[str, Any]],
    largest: Sequence[Mapping[str, Any]],
    public_url: str | None,
    reporting: str | None = None,
) -> str:
    """Yesterday per currency (its day row: MRR, net new MRR by type, net MRR churn) and
    the day's largest movements (`amount` in the `reporting` currency, beside their own
    `native_amount`)."""
    lines = [f"MRR digest for {day} (UTC)"]
    if not rows:
        lines.append("No MRR yet.")
    for currency, row in rows.items():
        net = (
            row["new"] + row["expansion"] + row["reactivation"] - row["contraction"] - row["churn"]
        )
        parts = ", ".join(
            f"{t} {signed(t, row[t], currency)}"
            for t in ("new", "expansion", "reactivation", "contraction", "churn")
            if row[t]
        )
        lines.append(
            f"{currency.upper()}: MRR {money(row['ending_mrr'], currency)}; "
            f"net new MRR {'−' if net < 0 else '+'}{money(abs(net), currency)}"
            f"{f' ({parts})' if parts else ''}; "
            f"net MRR churn {pct(row['net_mrr_churn_rate'])}"
        )
    if largest:
        lines.append("Largest movements:")
        for m in largest:
            lines.append(
                "• "
                + movement_text(
                    m["customer_id"],
                    m["type"],
                    m["native_amount"],
                    m["native_currency"],
                    m["kind"] or m["reason"],
                    public_url,
                    None if reporting is None or m["amount"] is None else (m["amount"], reporting),
                )
            )
    return "\n".join(lines)
