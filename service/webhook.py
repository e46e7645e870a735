"""`POST /webhooks/stripe`: verify the raw bytes, store, enqueue, answer (SPEC §4).

Each refusal raises; `service/errors.py` turns it into its status and JSON body.

Persist-then-ack: the 200 goes out only after the event is committed to the inbox, so
an acknowledged event can never be lost; the enqueue after the commit may fail (Redis
down) without harm, because the sweeper re-enqueues pending rows.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import stripe
from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from pipeline import intake
from pipeline.runtime import Runtime
from service.errors import ApiError, error_body, mapped
from service.extensions import INTAKE, RUNTIME, group_commit, runtime

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)
bp = Blueprint("webhook", __name__)
PATH = "/webhooks/stripe"


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


@bp.post(PATH)
def stripe_webhook() -> Response:
    """The route Flask knows (so that other methods answer 405); POSTs are answered by
    `WebhookEndpoint` before Flask sees them, this view only where it is not mounted."""
    limit = runtime().settings.max_body_bytes
    try:
        payload = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise _too_large(limit) from None
    header = request.headers.get("Stripe-Signature")
    return jsonify(receive(runtime(), group_commit(), payload, header))


def receive(
    runtime: Runtime, commit: intake.GroupCommit, payload: bytes, header: str | None
) -> dict[str, Any]:
    """Verify, parse and store one delivery; the answer's document. Refusals raise."""
    settings = runtime.settings
    if len(payload) > settings.max_body_bytes:
        raise _too_large(settings.max_body_bytes)
    verify_signature(payload, header, settings.webhook_secrets, settings.webhook_tolerance_s)
    event = intake.parse_envelope(payload)
    try:
        stored = commit.submit(event, payload.decode("utf-8"))
    except intake.InboxRefused as exc:
        log.warning("inbox refused event %s: %s", event["id"], exc)
        raise
    except (intake.InboxUnavailable, intake.IntakeTimeout) as exc:
        log.error("inbox write failed for event %s: %s", event["id"], exc)
        raise
    return {"received": True, "id": stored.event_id, "duplicate": not stored.inserted}


class WebhookEndpoint:
    """`POST /webhooks/stripe` as a plain WSGI app in front of Flask's.

    The profile of a loaded web worker put Flask's per-request machinery (request
    context, routing, `before_request`, the session interface, `jsonify`, the response
    object) at about a seventh of a webhook's CPU: more than the signature and the JSON
    parse together. A webhook needs none of it, so its POSTs are answered here, with the
    same `receive` and the same error table as the view; everything else, other methods
    on this path included, goes on to Flask.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.next = app.wsgi_app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.next(environ, start_response)
        runtime, commit = self.app.extensions[RUNTIME], self.app.extensions[INTAKE]
        limit = runtime.settings.max_body_bytes
        try:
            # One byte over the limit is read, so a chunked body over it is told apart.
            stream = get_input_stream(environ, max_content_length=limit + 1)
            status, document = (
                200,
                receive(
                    runtime, commit, stream.read(limit + 1), environ.get("HTTP_STRIPE_SIGNATURE")
                ),
            )
        except RequestEntityTooLarge:
            status, document = 413, _document(_too_large(limit))
        except Exception as exc:  # every error body is JSON, as Flask's handlers answer
            answer = mapped(exc)
            if answer is None:
                log.error("unhandled %s on %s", type(exc).__name__, PATH, exc_info=exc)
                answer = (500, "internal_error", "an unexpected error occurred")
            status, document = answer[0], error_body(answer[1], answer[2])
        body = json.dumps(document, separators=(",", ":")).encode() + b"\n"
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]


def _document(error: ApiError) -> dict[str, Any]:
    return error_body(error.code, error.message)


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
