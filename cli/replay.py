"""`mrr replay --url`: events signed exactly as Stripe signs them, POSTed to a running server."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import stripe


@dataclass(frozen=True)
class Answer:
    """The server's answer to one POST: its status, and the `code` and `message` of its
    JSON error body (SPEC's `{"error": {"code", "message"}}`) when it refused."""

    status: int
    code: str = ""
    message: str = ""

    @property
    def permanent(self) -> bool:
        """A refusal the next events would get too (a bad secret, a wrong path): 4xx but
        429. A 5xx or a 429 may pass on the next event."""
        return 400 <= self.status < 500 and self.status != 429

    def reason(self) -> str:
        # A 404's or 405's message is werkzeug's generic paragraph: the code says it all.
        message = "" if self.status in (404, 405) else self.message
        detail = ": ".join(part for part in (self.code, message) if part)
        return f"HTTP {self.status}" + (f" {detail}" if detail else "")


class Unreachable(Exception):
    """The URL cannot be POSTed to at all: no scheme, nothing listening, a bad host."""


def post_signed(url: str, secret: str, raw: str, timeout: float = 10.0) -> Answer:
    """Sign `raw` as Stripe does and POST it to `url`; returns the server's answer.
    Raises `Unreachable`, with one line saying why, when no server answers."""
    header = stripe.WebhookSignature.generate_signature_header(
        raw, secret, timestamp=int(time.time())
    )
    try:
        request = urllib.request.Request(
            url,
            data=raw.encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json", "Stripe-Signature": header},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(int(response.status))
    except urllib.error.HTTPError as exc:
        return _refusal(exc)
    except urllib.error.URLError as exc:
        raise Unreachable(_why(exc.reason)) from None
    except ValueError as exc:  # "unknown url type", no scheme
        raise Unreachable(f"not an http(s) URL ({exc})") from None
    except OSError as exc:  # a timeout or a reset mid-answer
        raise Unreachable(_why(exc)) from None


def _refusal(exc: urllib.error.HTTPError) -> Answer:
    code = message = ""
    try:
        body = json.loads(exc.read() or b"{}")
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code, message = str(error.get("code", "")), str(error.get("message", ""))
    except (ValueError, OSError):
        pass  # not our server's JSON: the status says enough
    return Answer(int(exc.code), code, message)


def _why(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)
