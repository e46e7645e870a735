"""Every SPEC §4 answer of POST /webhooks/stripe, with real signatures; refusals store nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import stripe
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.tables import EventStatus, InboxEvent
from pipeline.runtime import bootstrap
from pipeline.settings import Settings
from service.app import create_app
from service.webhook import SignatureError, verify_signature
from tests import factories as f
from tests.conftest import OPS_TOKEN, SECRET, sign


def an_event(event_id: str = "evt_w1", event_type: str = "customer.subscription.created") -> dict:
    p = f.price("price_basic", 1000)
    sub = f.subscription("sub_w1", "cus_w1", [f.item(p, 2)])
    return f.event(event_id, event_type, 1704067200, sub)


def inbox_rows(db: sessionmaker[Session]) -> int:
    with db() as session:
        return session.scalar(select(func.count()).select_from(InboxEvent)) or 0


def test_signed_event_is_stored_enqueued_and_acknowledged(post_event, db, settings) -> None:
    response = post_event(an_event())
    assert response.status_code == 200
    assert response.json == {"received": True, "id": "evt_w1", "duplicate": False}
    with db() as session:
        row = session.get(InboxEvent, "evt_w1")
        assert row is not None
        assert row.status == EventStatus.PENDING
        assert row.customer_id == "cus_w1"
        assert json.loads(row.payload)["id"] == "evt_w1"
    queue = bootstrap(settings).queue
    assert queue.job_ids == ["apply-evt_w1"]
    job = queue.fetch_job("apply-evt_w1")
    assert job.args == ["evt_w1"]  # the job carries only the event id


def test_raw_body_is_stored_byte_for_byte(post_event, db) -> None:
    body = json.dumps(an_event(), indent=3, ensure_ascii=False)
    assert post_event(body).status_code == 200
    with db() as session:
        assert session.get(InboxEvent, "evt_w1").payload == body


def test_duplicate_delivery_is_200_and_stored_once(post_event, db, settings) -> None:
    assert post_event(an_event()).json["duplicate"] is False
    second = post_event(an_event())
    assert second.status_code == 200
    assert second.json["duplicate"] is True
    assert inbox_rows(db) == 1
    assert bootstrap(settings).queue.count == 1


def test_unknown_type_is_stored_as_ignored_without_a_job(post_event, db, settings) -> None:
    event = f.event("evt_inv", "invoice.paid", 1704067200, {"id": "in_1", "object": "invoice"})
    response = post_event(event)
    assert response.status_code == 200
    with db() as session:
        row = session.get(InboxEvent, "evt_inv")
        assert row.status == EventStatus.IGNORED
        assert row.processed_at is not None
    assert bootstrap(settings).queue.count == 0


def _header_with(timestamp: int, body: str, secret: str = SECRET) -> str:
    return sign(body, secret, timestamp)


BAD_SIGNATURES = {
    "missing header": lambda body: "",
    "garbage header": lambda body: "not-a-signature",
    "no v1 scheme": lambda body: f"t={int(time.time())},v0=abc",
    "wrong secret": lambda body: sign(body, "whsec_someone_else"),
    "expired (past)": lambda body: _header_with(int(time.time()) - 301, body),
    "too far in the future": lambda body: _header_with(int(time.time()) + 301, body),
    "signature of another body": lambda body: sign(body + " "),
}


@pytest.mark.parametrize("case", sorted(BAD_SIGNATURES))
def test_bad_signatures_are_400_and_store_nothing(case: str, client, db) -> None:
    body = json.dumps(an_event())
    header = BAD_SIGNATURES[case](body)
    headers = {"Stripe-Signature": header} if header else {}
    response = client.post("/webhooks/stripe", data=body, headers=headers)
    assert response.status_code == 400, case
    assert response.json["error"]["code"] == "bad_signature"
    assert inbox_rows(db) == 0


def test_timestamps_inside_tolerance_pass_both_ways(post_event) -> None:
    body = json.dumps(an_event())
    assert post_event(body, signature=_header_with(int(time.time()) - 250, body)).status_code == 200
    body2 = json.dumps(an_event("evt_w2"))
    assert (
        post_event(body2, signature=_header_with(int(time.time()) + 250, body2)).status_code == 200
    )


BAD_BODIES: dict[str, Any] = {
    "json array": "[]",
    "array of events": json.dumps([an_event()]),
    "string": '"evt_1"',
    "number": "42",
    "null": "null",
    "malformed json": '{"id": "evt_1", ',
    "not an event object": json.dumps({**an_event(), "object": "subscription"}),
    "no object key": json.dumps({k: v for k, v in an_event().items() if k != "object"}),
    "id not a string": json.dumps({**an_event(), "id": 12}),
    "empty id": json.dumps({**an_event(), "id": ""}),
    "no type": json.dumps({k: v for k, v in an_event().items() if k != "type"}),
    "type not a string": json.dumps({**an_event(), "type": ["x"]}),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_verified_non_events_are_400_and_store_nothing(case: str, post_event, db) -> None:
    response = post_event(BAD_BODIES[case])
    assert response.status_code == 400, case
    assert response.json["error"]["code"] == "bad_event"
    assert inbox_rows(db) == 0


def test_non_utf8_body_is_400(client, db) -> None:
    body = b'{"id": "evt_\xff"}'
    header = stripe.WebhookSignature.generate_signature_header("x", SECRET)
    response = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": header})
    assert response.status_code == 400
    assert inbox_rows(db) == 0


def test_oversized_body_is_413_and_stores_nothing(settings: Settings, db) -> None:
    app = create_app(settings.with_overrides(max_body_bytes=2000))
    client = app.test_client()
    event = an_event()
    event["data"]["object"]["metadata"] = {"pad": "x" * 3000}
    body = json.dumps(event)
    response = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": sign(body)})
    assert response.status_code == 413
    assert response.json["error"]["code"] == "too_large"
    assert inbox_rows(db) == 0
    # Just under the limit still passes.
    small = json.dumps(an_event())
    assert len(small) < 2000
    ok = client.post("/webhooks/stripe", data=small, headers={"Stripe-Signature": sign(small)})
    assert ok.status_code == 200


def test_secret_roll_accepts_either_secret_and_double_signatures(settings: Settings, db) -> None:
    old, new = "whsec_old", "whsec_new"
    client = create_app(settings.with_overrides(webhook_secrets=(new, old))).test_client()
    for n, secret in enumerate((old, new)):
        body = json.dumps(an_event(f"evt_roll_{n}"))
        headers = {"Stripe-Signature": sign(body, secret)}
        assert client.post("/webhooks/stripe", data=body, headers=headers).status_code == 200
    # During a roll Stripe sends one v1 signature per secret in a single header.
    body = json.dumps(an_event("evt_roll_both"))
    ts = int(time.time())
    header = sign(body, old, ts) + ",v1=" + sign(body, new, ts).split("v1=")[1]
    assert (
        client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": header}).status_code
        == 200
    )
    stranger = json.dumps(an_event("evt_roll_x"))
    refused = client.post(
        "/webhooks/stripe",
        data=stranger,
        headers={"Stripe-Signature": sign(stranger, "whsec_other")},
    )
    assert refused.status_code == 400
    assert inbox_rows(db) == 3


def test_database_down_is_503_and_stripe_will_retry(settings: Settings, tmp_path) -> None:
    missing_dir = tmp_path / "no" / "such" / "dir"
    down = settings.with_overrides(database_url=f"sqlite:///{missing_dir}/x.db")
    client = create_app(down).test_client()
    body = json.dumps(an_event())
    response = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": sign(body)})
    assert response.status_code == 503
    assert response.json["error"]["code"] == "inbox_unavailable"


def test_redis_down_still_stores_and_acknowledges(settings: Settings, db) -> None:
    down = settings.with_overrides(redis_url="redis://127.0.0.1:1/0")
    client = create_app(down).test_client()
    body = json.dumps(an_event())
    response = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": sign(body)})
    assert response.status_code == 200
    with db() as session:
        assert session.get(InboxEvent, "evt_w1").status == EventStatus.PENDING


def test_verify_signature_rejects_every_secret_mismatch() -> None:
    body = b'{"a": 1}'
    header = sign(body, "whsec_a", 1000)
    verify_signature(body, header, ["whsec_b", "whsec_a"], 300, now=1000)
    with pytest.raises(SignatureError):
        verify_signature(body, header, ["whsec_b"], 300, now=1000)
    with pytest.raises(SignatureError):
        verify_signature(body, header, ["whsec_a"], 300, now=1301)
    with pytest.raises(SignatureError):
        verify_signature(body, header, ["whsec_a"], 300, now=699)


def test_app_refuses_to_boot_without_a_webhook_secret(settings: Settings) -> None:
    from pipeline.settings import SettingsError

    with pytest.raises(SettingsError):
        create_app(settings.with_overrides(webhook_secrets=()))


def test_other_endpoints_answer_503_not_500_while_the_database_is_down(
    settings: Settings, tmp_path
) -> None:
    """A database that is away (restarting, unreachable) is a retry later, never a 500."""
    missing_dir = tmp_path / "no" / "such" / "dir"
    down = settings.with_overrides(database_url=f"sqlite:///{missing_dir}/x.db")
    client = create_app(down).test_client()
    response = client.get(
        "/reports/customers/cus_1", headers={"Authorization": f"Bearer {OPS_TOKEN}"}
    )
    assert response.status_code == 503
    assert response.json["error"]["code"] == "database_unavailable"
