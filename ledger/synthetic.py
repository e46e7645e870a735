"""Synthetic events: Stripe-shaped event envelopes made up by `mrr backfill` and
`mrr reconcile` (SPEC §9), with deterministic ids, so storing one twice adds nothing.

Pure, like the rest of `ledger`: the callers store them through the same intake as
webhooks, so the ledger stays a function of the stored events.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

#: Every synthetic event id starts so; Stripe's own start with `evt_`.
SYNTHETIC_PREFIX = "bf_"
CREATED = "customer.subscription.created"
UPDATED = "customer.subscription.updated"
DELETED = "customer.subscription.deleted"
CUSTOMER_UPDATED = "customer.updated"
#: What each synthetic event stands for, as it appears in its id.
SYNTHETIC_KINDS = frozenset(
    {"created", "updated", "trial", "deleted", "reconcile", "gone", "customer"}
)
#: The kinds of a subscription's history (`ledger.history`), which a later backfill may
#: replace; reconcile's are the ledger's corrections and stay.
HISTORY_KINDS = frozenset({"created", "updated", "trial", "deleted"})
#: Width of the inbox's id column.
MAX_ID_LENGTH = 255
#: RQ job ids (which carry event ids) allow letters, digits, `_` and `-` only.
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def synthetic_id(subscription_id: str, kind: str, at: int) -> str:
    """`bf_<subscription>_<kind>_<at>`: the same arguments always give the same id.

    At most 255 characters of letters, digits, `_` and `-`; a subscription id that
    needs shortening or has other characters is kept apart from others by a digest.
    """
    if kind not in SYNTHETIC_KINDS:
        raise ValueError(f"unknown synthetic event kind {kind!r}")
    safe = _UNSAFE.sub("-", subscription_id)
    suffix = f"_{kind}_{at}"
    if safe != subscription_id or len(SYNTHETIC_PREFIX) + len(safe) + len(suffix) > MAX_ID_LENGTH:
        digest = hashlib.sha256(subscription_id.encode()).hexdigest()[:16]
        room = MAX_ID_LENGTH - len(SYNTHETIC_PREFIX) - len(suffix) - len(digest) - 1
        safe = f"{safe[:room]}-{digest}"
    return f"{SYNTHETIC_PREFIX}{safe}{suffix}"


def is_synthetic_id(event_id: str) -> bool:
    """Whether `event_id` was made up by `mrr backfill` or `mrr reconcile`."""
    return event_id.startswith(SYNTHETIC_PREFIX)


def is_history_id(event_id: str) -> bool:
    """Whether `event_id` is a synthetic history event's (`bf_<sub>_<kind>_<time>` with
    a kind of `HISTORY_KINDS`)."""
    if not event_id.startswith(SYNTHETIC_PREFIX):
        return False
    parts = event_id.rsplit("_", 2)
    return len(parts) == 3 and parts[1] in HISTORY_KINDS and parts[2].isdigit()


def customer_snapshot_id(customer_id: str, obj: Mapping[str, Any]) -> str:
    """`bf_<customer>_customer_<digest>`: a customer object as `mrr backfill` lists it,
    named by its content, so an unchanged customer listed again adds nothing."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
    return synthetic_id(customer_id, "customer", int(digest[:12], 16))


def undo_previous(obj: Mapping[str, Any], previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The object as it was before the change an event's `previous_attributes` describes.

    Values listed in `previous` are put back: nested objects key by key, lists and
    scalars whole (Stripe lists the whole old `items.data`). A null stands for a value
    that was null or absent, as in the ordering rule's chain. `obj` is not modified.
    """
    result: dict[str, Any] = clone(obj)
    if previous:
        _put_back(result, previous)
    return result


def _put_back(target: dict[str, Any], previous: Mapping[str, Any]) -> None:
    for key, old in previous.items():
        current = target.get(key)
        if isinstance(old, dict) and isinstance(current, dict):
            _put_back(current, old)
        else:
            target[key] = clone(old)


def synthetic_event(
    event_id: str,
    event_type: str,
    created: int,
    obj: Mapping[str, Any],
    *,
    api_version: str | None,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A Stripe event envelope around `obj`, shaped like the ones Stripe sends. It holds
    `obj` and `previous` themselves, not copies."""
    data: dict[str, Any] = {"object": obj}
    if previous:
        data["previous_attributes"] = previous
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": bool(obj.get("livemode")),
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def clone(value: Any) -> Any:
    """A deep copy of JSON data; several times faster than `copy.deepcopy`, which took
    most of an opening's time."""
    return json.loads(json.dumps(value))


def fix_event(current: Mapping[str, Any], now: int, *, api_version: str | None) -> dict[str, Any]:
    """`mrr reconcile --fix`: Stripe's current object as an `updated` event dated `now`."""
    sub_id = str(current.get("id"))
    return synthetic_event(
        synthetic_id(sub_id, "reconcile", now),
        UPDATED,
        now,
        clone(current),
        api_version=api_version,
    )


def gone_event(last: Mapping[str, Any], now: int, *, api_version: str | None) -> dict[str, Any]:
    """`mrr reconcile --fix` for a subscription Stripe no longer has: its last stored
    object as a `deleted` event dated `now`, which ends it (SPEC §7)."""
    event_id = synthetic_id(str(last.get("id")), "gone", now)
    return synthetic_event(event_id, DELETED, now, clone(last), api_version=api_version)
