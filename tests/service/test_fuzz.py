"""Fuzzing the intake with signed, mutated subscription events (hypothesis): every answer
is a 200, 400 or 413 with a JSON body, no job hangs, and every stored event ends applied,
ignored, quarantined, or failed for a reason the ledger names (a missing field, SPEC §8)
— never stuck pending, never failed for an error of the service's own."""

from __future__ import annotations

import copy
import json
import time
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from adapters import queue as queue_module
from models.tables import EventStatus, InboxEvent
from tests.conftest import load_fixture_events, sign

SUBSCRIPTION_EVENTS = [
    e for e in load_fixture_events() if e["type"].startswith("customer.subscription.")
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None), max_size=300),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for n, value in enumerate(node):
            found += paths(value, (*prefix, n))
    return found


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    event = copy.deepcopy(draw(st.sampled_from(SUBSCRIPTION_EVENTS)))
    event["id"] = f"evt_fz_{uuid.uuid4().hex}"  # each example its own event and customer
    obj = event["data"]["object"]
    customer = f"cus_fz_{uuid.uuid4().hex[:12]}"
    obj["customer"] = customer
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(event)))
        parent = event
        for step in where[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            parent.pop(where[-1], None)
        else:
            parent[where[-1]] = draw(JSON_VALUES)
    return event


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(event=mutated_events())
def test_mutated_events_get_a_clear_answer_and_a_final_state(
    event, client, db, run_worker, monkeypatch
) -> None:
    monkeypatch.setattr(queue_module, "RETRY_INTERVALS", (0, 0, 0))
    monkeypatch.setattr(queue_module, "JOB_TIMEOUT_S", 10)
    body = json.dumps(event)  # may hold NaN, lone surrogates as escapes, deep nesting
    response = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": sign(body)})
    assert response.status_code in (200, 400, 413), response.data[:300]
    assert response.is_json and response.json is not None
    started = time.monotonic()
    run_worker()
    assert time.monotonic() - started < 30, "a job hung"
    event_id = event.get("id")
    if response.status_code != 200 or not isinstance(event_id, str):
        return
    with db() as session:
        row = session.execute(
            select(InboxEvent.status, InboxEvent.last_error).where(InboxEvent.id == event_id)
        ).one()
    assert row.status in (
        EventStatus.PROCESSED,
        EventStatus.IGNORED,
        EventStatus.QUARANTINED,
        EventStatus.FAILED,
    ), row
    if row.status == EventStatus.FAILED:
        assert row.last_error.startswith("InvalidEvent: "), row.last_error
