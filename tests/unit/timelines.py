"""Events and timelines of one customer (`cus_1`), as the pure unit tests build them."""

from __future__ import annotations

from typing import Any

from ledger.events import SubscriptionEvent, parse_event
from ledger.mrr import Catalog
from ledger.timeline import derive_ledger
from tests import factories as f

T = 1704067200
PRO = f.price("price_pro", 1000, product="prod_pro")
PLUS = f.price("price_plus", 3000, product="prod_plus")
ADDON = f.price("price_addon", 500, product="prod_addon")


def sub(items: list[dict[str, Any]], sub_id: str = "sub_1", **kw: Any) -> dict[str, Any]:
    return f.subscription(sub_id, "cus_1", items, **kw)


def ev(
    event_id: str,
    event_type: str,
    created: int,
    obj: dict[str, Any],
    prev: dict[str, Any] | None = None,
) -> SubscriptionEvent:
    return parse_event(
        f.event(
            event_id, f"customer.subscription.{event_type}", created, obj, previous_attributes=prev
        )
    )


def moves(
    *events: SubscriptionEvent, catalog: Catalog | None = None
) -> list[tuple[str, int, int, str | None]]:
    """(type, amount, MRR after, kind) of each movement of cus_1's ledger."""
    ledger = (
        derive_ledger("cus_1", events)
        if catalog is None
        else derive_ledger("cus_1", events, catalog)
    )
    return [
        (m.type.value, m.amount, m.mrr_after, m.kind.value if m.kind else None)
        for m in ledger.movements
    ]
