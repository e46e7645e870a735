"""A Stripe customer's attributes from a `customer.*` event (webhook or the backfill's
list): what segments by customer need (SPEC §11). Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: The events that carry a Customer object (every API version: `data.object` is the
#: customer; for `customer.deleted`, the customer as it was when deleted).
CUSTOMER_EVENT_TYPES = frozenset({"customer.created", "customer.updated", "customer.deleted"})


@dataclass(frozen=True)
class CustomerAttributes:
    id: str
    country: str | None
    shipping_country: str | None
    metadata: dict[str, str]
    deleted: bool
    #: The event's `created` (unix seconds) and id: the newest event wins.
    at: int
    event_id: str


def customer_attributes(event: Mapping[str, Any]) -> CustomerAttributes | None:
    """The attributes `event` states, or None when it is no readable customer event.

    Fields read (Customer object, stable across API versions): `id`, `address.country`,
    `shipping.address.country`, `metadata`, `deleted` (set on the stub a deletion
    returns); a `customer.deleted` event marks the customer deleted and keeps the rest.
    """
    if event.get("type") not in CUSTOMER_EVENT_TYPES:
        return None
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping) or not isinstance(obj.get("id"), str):
        return None
    created = event.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        return None
    metadata = obj.get("metadata")
    return CustomerAttributes(
        id=str(obj["id"]),
        country=_country(obj.get("address")),
        shipping_country=_country(_get(obj.get("shipping"), "address")),
        metadata={str(k): str(v) for k, v in metadata.items()}
        if isinstance(metadata, Mapping)
        else {},
        deleted=event.get("type") == "customer.deleted" or obj.get("deleted") is True,
        at=created,
        event_id=str(event.get("id")),
    )


def newest(attributes: Iterable[CustomerAttributes]) -> list[CustomerAttributes]:
    """One per customer: the newest (by time, then event id), sorted by customer id."""
    kept: dict[str, CustomerAttributes] = {}
    for a in attributes:
        old = kept.get(a.id)
        if old is None or (a.at, a.event_id) >= (old.at, old.event_id):
            kept[a.id] = a
    return [kept[k] for k in sorted(kept)]


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def _country(address: Any) -> str | None:
    country = _get(address, "country")
    return country[:8] if isinstance(country, str) and country else None
