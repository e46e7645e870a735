"""`POST /webhooks/stripe`: verify the raw bytes, store, enqueue, answer (SPEC §4).

Each refusal raises; `service/errors.py` turns it into its status and JSON body.

Persist-then-ack: the 200 goes out only after the event is committed to the inbox, so
an acknowledged event can never be lost; the enqueue after the commit may fail (Redis
down) without harm, because the sweeper re-enqueues pending rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import stripe
from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from pipeline import intake
from service.errors import ApiError
from service.extensions import group_commit, runtime

log = logging.getLogger(__name__)
bp = Blueprint("webhook", __name__)


class SignatureError(ApiError):
    """The Stripe-Signature header is missing, malformed, expired or does not match."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "bad_signature", message)


def verify_signature(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    tolerance_s: int,
    now: float | None = None,
) -> None:
    """Check `header` against every secret (a secret roll signs with two).

    The header must carry exactly one timestamp (`t=`), and it must lie within
    `tolerance_s` of now in **both** directions (stripe-python only rejects old ones).
    stripe-python then verifies the HMAC of that same timestamp and the raw body, in
    constant time: a second `t=` can never make an old signature look fresh.
    """
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    if not header.isascii():
        raise SignatureError("Stripe-Signature header is not ASCII")
    timestamp = _timestamp(header)
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"signature timestamp outside the {tolerance_s}s tolerance")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("body is not UTF-8") from None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance=None)
            return
        except stripe.SignatureVerificationError:
            continue
    raise SignatureError("no signature matches the configured secret(s)")


@bp.post("/webhooks/stripe")
def stripe_webhook() -> Response:
    settings = runtime().settings
    limit = settings.max_body_bytes
    # The app reads at most one byte more than the limit (MAX_CONTENT_LENGTH): that byte
    # tells a chunked body over the limit from one exactly at it.
    try:
        payload = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise _too_large(limit) from None
    if len(payload) > limit:
        raise _too_large(limit)
    verify_signature(
        payload,
        request.headers.get("Stripe-Signature"),
        settings.webhook_secrets,
        settings.webhook_tolerance_s,
    )
    event = intake.parse_envelope(payload)
    try:
        stored = group_commit().submit(event, payload.decode("utf-8"))
    except intake.InboxRefused as exc:
        log.warning("inbox refused event %s: %s", event["id"], exc)
        raise
    except (intake.InboxUnavailable, intake.IntakeTimeout) as exc:
        log.error("inbox write failed for event %s: %s", event["id"], exc)
        raise
    return jsonify({"received": True, "id": stored.event_id, "duplicate": not stored.inserted})


def _timestamp(header: str) -> int:
    """The one `t=` of the header (parsed as stripe-python parses it)."""
    stamps = [kv[1] for kv in (item.split("=", 1) for item in header.split(",")) if kv[0] == "t"]
    if len(stamps) != 1:
        raise SignatureError("Stripe-Signature header must carry exactly one timestamp")
    try:
        return int(stamps[0])
    except ValueError:
        raise SignatureError("Stripe-Signature header has no valid timestamp") from None


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"body exceeds MAX_BODY_BYTES ({limit} bytes)")
