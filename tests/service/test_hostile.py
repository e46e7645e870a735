"""Every bad byte a hostile or broken sender can produce gets a clear answer, and a poison
event never freezes its customer: one table per finding of the security review."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stripe
from sqlalchemy import func, select

from ledger.snapshot import MAX_MRR
from models.clock import utcnow
from models.tables import EventStatus, InboxEvent, LedgerMovement
from service.app import create_app
from tests import factories as f
from tests.conftest import OPS_TOKEN, SECRET, sign

T = 1704067200
PRICE = f.price("price_h", 1000)


def sub_event(event_id: str, customer: str, created: int = T, **changes: Any) -> dict[str, Any]:
    sub = f.subscription(f"sub_{event_id}", customer, [f.item(PRICE, 2)])
    sub.update(changes)
    return f.event(event_id, "customer.subscription.created", created, sub)


def stored(db) -> int:
    with db() as session:
        return int(session.scalar(select(func.count()).select_from(InboxEvent)) or 0)


def statuses(db) -> dict[str, str]:
    with db() as session:
        return dict(session.execute(select(InboxEvent.id, InboxEvent.status)).all())


# 1. One timestamp per signature, within the tolerance both ways --------------------------


def forged_headers(body: str) -> list[tuple[str, str]]:
    now = int(time.time())
    old = now - 30 * 86400
    valid_old = stripe.WebhookSignature.generate_signature_header(body, SECRET, old)
    future = stripe.WebhookSignature.generate_signature_header(body, SECRET, now + 365 * 86400)
    return [
        ("an old signature freshened by a second t=", f"{valid_old},t={now}"),
        ("a second t= in front", f"t={now},{valid_old}"),
        ("a signature a year in the future", future),
        ("a non-ASCII v1", f"t={now},v1=ñ{'0' * 63}"),
        ("no timestamp", f"v1={'0' * 64}"),
    ]


def test_signatures_are_checked_against_exactly_one_fresh_timestamp(client, db) -> None:
    body = json.dumps(sub_event("evt_sig", "cus_sig"))
    for name, header in forged_headers(body):
        response = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": header})
        assert response.status_code == 400, name
        assert response.json["error"]["code"] == "bad_signature", name
    assert stored(db) == 0


# 2. A poison event is quarantined; the customer's other events are applied --------------


def poison_cases() -> list[tuple[str, Callable[[dict[str, Any]], None], str]]:
    def item0(e: dict[str, Any]) -> dict[str, Any]:
        return e["data"]["object"]["items"]["data"][0]

    return [
        (
            "a list as the billing interval",
            lambda e: item0(e)["price"]["recurring"].update(interval=["month"]),
            "no recurring interval",
        ),
        (
            "a currency longer than the column",
            lambda e: e["data"]["object"].update(currency="usdollars"),
            "invalid currency",
        ),
        ("created in the year 31 million", lambda e: e.update(created=10**15), "out of range"),
        (
            "a NUL in the churn feedback",
            lambda e: e["data"]["object"].update(
                cancellation_details={"feedback": "too\x00expensive", "reason": None}
            ),
            "NUL",
        ),
        (
            "an MRR beyond a 64-bit column",
            lambda e: (
                item0(e).update(quantity=10**9)
                or item0(e)["price"].update(unit_amount_decimal=str(10**12))
            ),
            "MRR beyond",
        ),
        (
            "a decimal of a billion digits",
            lambda e: item0(e)["price"].update(unit_amount_decimal="1e999999999"),
            "out of range",
        ),
        (
            "a decimal of a huge exponent",
            lambda e: item0(e)["price"].update(unit_amount_decimal="1e9999"),
            "out of range",
        ),
    ]


@pytest.mark.parametrize(
    ("name", "poison", "reason"), poison_cases(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_a_poison_event_is_quarantined_and_never_blocks_its_customer(
    name, poison, reason, post_event, run_worker, db
) -> None:
    customer = "cus_poison"
    before = sub_event("evt_before", customer, T)
    bad = sub_event("evt_bad", customer, T + 60)
    bad["data"]["object"]["id"] = "sub_evt_before"  # the same subscription, changed
    poison(bad)
    after = sub_event("evt_after", customer, T + 120)
    for event in (before, bad, after):
        assert post_event(event).status_code == 200, name
    started = time.monotonic()
    assert run_worker() == 0  # nothing retried, nothing in the failed registry
    assert time.monotonic() - started < 30, "the worker must not hang"
    assert statuses(db) == {
        "evt_before": EventStatus.PROCESSED,
        "evt_bad": EventStatus.QUARANTINED,
        "evt_after": EventStatus.PROCESSED,
    }
    with db() as session:
        assert reason in session.get(InboxEvent, "evt_bad").last_error
        # `new` of the first subscription, then `expansion` by the second
        assert session.scalar(select(func.count()).select_from(LedgerMovement)) == 2
    assert MAX_MRR < 2**63


def test_a_subscription_id_another_customer_also_names_freezes_nobody(
    post_event, run_worker, db
) -> None:
    first = sub_event("evt_one", "cus_one")
    second = sub_event("evt_two", "cus_two")
    second["data"]["object"]["id"] = first["data"]["object"]["id"]
    later = sub_event("evt_two_later", "cus_two", T + 60)
    for event in (first, second, later):
        assert post_event(event).status_code == 200
    assert run_worker() == 0
    assert set(statuses(db).values()) == {EventStatus.PROCESSED}
    with db() as session:
        customers = session.scalars(select(LedgerMovement.customer_id)).all()
    assert sorted(customers) == ["cus_one", "cus_two", "cus_two"]


# 3 and 4. What can never be stored is a 400, with a JSON body; nothing is stored --------


def refused_bodies() -> list[tuple[str, str]]:
    def event_with(**changes: Any) -> str:
        event = sub_event("evt_ok", "cus_ok")
        event.update(changes)
        return json.dumps(event)

    customer_300 = sub_event("evt_c300", "c" * 300)
    return [
        ("an id of 256 characters", event_with(id="e" * 256)),
        ("a type of 300 characters", event_with(type="t" * 300)),
        ("a customer id of 300 characters", json.dumps(customer_300)),
        ("an api_version of 65 characters", event_with(api_version="v" * 65)),
        ("created = 2^63", event_with(created=2**63)),
        ("a NUL in the id", event_with(id="evt_\x00")),
        ("a lone surrogate in the id", event_with(id="evt_\ud800")),
        ("a body nested 100,000 deep", "[" * 100_000 + "]" * 100_000),
        ("a JSON array", json.dumps([sub_event("evt_arr", "cus_arr")])),
    ]


@pytest.mark.parametrize(
    ("name", "body"), refused_bodies(), ids=lambda x: x[:40] if isinstance(x, str) else ""
)
def test_what_can_never_be_stored_is_a_400_with_a_json_body(name, body, client, db) -> None:
    response = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": sign(body)})
    assert response.status_code == 400, name
    assert response.is_json and response.json["error"]["code"] == "bad_event", name
    assert stored(db) == 0


def test_odd_customer_ids_in_report_urls_are_a_400(client) -> None:
    headers = {"Authorization": f"Bearer {OPS_TOKEN}"}
    for path in ("/reports/customers/%00", "/reports/customers/" + "c" * 300):
        response = client.get(path, headers=headers)
        assert response.status_code == 400 and response.is_json, path


def test_an_unexpected_error_is_a_json_500_without_its_traceback(app, client, monkeypatch) -> None:
    from service import ops

    def boom(*_: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(ops, "status_document", boom)
    app.testing = False  # production error handling
    response = client.get("/status", headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert response.status_code == 500
    assert response.json == {
        "error": {"code": "internal_error", "message": "an unexpected error occurred"}
    }


# 7. A database that accepts connections and never answers ------------------------------


@pytest.fixture
def silent_database() -> Iterator[str]:
    """A TCP server that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"postgresql://nobody@127.0.0.1:{server.getsockname()[1]}/silent"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_silent_database_is_reported_in_seconds(settings, silent_database) -> None:
    app = create_app(settings.with_overrides(database_url=silent_database, db_connect_timeout_s=1))
    client = app.test_client()
    body = json.dumps(sub_event("evt_silent", "cus_silent"))
    started = time.monotonic()
    response = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": sign(body)})
    assert response.status_code == 503 and response.json["error"]["code"] == "inbox_unavailable"
    status = client.get("/status", headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert status.status_code == 200 and status.json["database"] is False
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert metrics.status_code == 200 and b"mrr_database_up 0.0" in metrics.data
    assert client.get("/healthz").status_code == 200
    assert time.monotonic() - started < 10


# 8. Logs and last_error carry ids and reasons, never payloads or SQL parameters --------


def test_a_failed_inbox_write_logs_no_payload(settings, silent_database, caplog) -> None:
    app = create_app(settings.with_overrides(database_url=silent_database, db_connect_timeout_s=1))
    marker = "customer-secret-marker"
    event = sub_event("evt_log", "cus_log")
    event["data"]["object"]["metadata"] = {"note": marker}
    body = json.dumps(event)
    with caplog.at_level(logging.DEBUG):
        response = app.test_client().post(
            "/webhooks/stripe", data=body, headers={"Stripe-Signature": sign(body)}
        )
    assert response.status_code == 503
    assert "evt_log" in caplog.text
    assert marker not in caplog.text


def test_database_errors_are_described_without_parameters(db) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from models.db import describe

    marker = "customer-secret-marker"
    row = {
        "id": "evt_dup",
        "type": "x",
        "payload": marker,
        "status": "pending",
        "attempts": 0,
        "received_at": utcnow(),
    }
    with db() as session:
        session.execute(InboxEvent.__table__.insert(), row)
        with pytest.raises(SQLAlchemyError) as caught:  # the same id again
            session.execute(InboxEvent.__table__.insert(), row)
    text = describe(caught.value)
    assert marker not in text and "evt_dup" not in text
    assert marker not in str(caught.value)  # hide_parameters: not even in the exception


# 9. Strict parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/reports/summary?currency=usd&currency=eur",
        "/reports/movements?period=month&period=week",
        "/reports/customers/cus_x?verbose=1",
        "/reports/summary?as_of=1970-01-01T00:00%2B14:00",
    ],
)
def test_ambiguous_report_parameters_are_a_400(path, client) -> None:
    response = client.get(path, headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_query"
