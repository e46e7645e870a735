"""`mrr replay --url`: events signed exactly as Stripe signs them, POSTed to a running server."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import click
import stripe


class Unreachable(click.ClickException):
    """Nothing answers at the URL (refused, unknown host, timed out)."""


def check_url(url: str) -> None:
    """A usage error for a URL `urllib` cannot post to, before anything is sent."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.UsageError(
            f"--url {url!r} is not an http(s) URL; e.g. http://127.0.0.1:8000/webhooks/stripe"
        )


def post_signed(url: str, secret: str, raw: str, timeout: float = 10.0) -> tuple[int, str]:
    """Sign `raw` as Stripe does and POST it to `url`; returns the HTTP status and, for a
    refusal, the server's reason (`code: message` of its JSON error body). Raises
    `Unreachable` when no server answers."""
    header = stripe.WebhookSignature.generate_signature_header(
        raw, secret, timestamp=int(time.time())
    )
    request = urllib.request.Request(
        url,
        data=raw.encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/json", "Stripe-Signature": header},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as exc:
        return int(exc.code), _reason(exc)
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        raise Unreachable(f"cannot reach {url}: {why}; is `mrr run` up, on that port?") from None


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        error = json.loads(exc.read() or b"{}").get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if isinstance(error, dict) and error.get("code"):
        return f"{error['code']}: {error.get('message', '')}".rstrip(": ")
    return exc.reason if isinstance(exc.reason, str) else ""
