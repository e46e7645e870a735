"""`mrr replay --url`: events signed exactly as Stripe signs them, POSTed to a running server."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import stripe


def post_signed(url: str, secret: str, raw: str, timeout: float = 10.0) -> int:
    """Sign `raw` as Stripe does and POST it to `url`; returns the HTTP status."""
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
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
