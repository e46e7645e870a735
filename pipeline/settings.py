"""Configuration, read once from the environment into a frozen object (SPEC §3).

`pipeline.runtime.bootstrap` turns it into the collaborators every entry point shares;
nothing here connects to anything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from models.db import Limits
from pipeline.errors import SettingsError

DEFAULT_DATABASE_URL = "sqlite:///mrr.db"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_REPORTING_CURRENCY = "usd"
#: The ECB's whole euro reference-rate history since 1999, zipped (SPEC §10).
ECB_RATES_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip"


@dataclass(frozen=True)
class Settings:
    webhook_secrets: tuple[str, ...] = ()
    stripe_api_key: str | None = None
    stripe_api_base: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    ops_token: str | None = None
    webhook_tolerance_s: int = 300
    max_body_bytes: int = 1_048_576
    sweep_after_s: int = 30
    queue_name: str = "mrr"
    db_connect_timeout_s: int = 5
    db_statement_timeout_s: int = 30
    #: Seconds between the worker's `mrr reconcile --fix` runs; None: never (the default).
    reconcile_every_s: int | None = None
    #: The one currency converted reports are in (SPEC §10), lowercase.
    reporting_currency: str = DEFAULT_REPORTING_CURRENCY
    #: Where `mrr fx update` fetches the rates; None: unset (the ECB's file is fetched,
    #: and `/status` does not warn about stale rates).
    fx_rates_url: str | None = None

    @property
    def fx_source(self) -> str:
        """The URL or path `mrr fx update` reads: `FX_RATES_URL`, else the ECB's."""
        return self.fx_rates_url or ECB_RATES_URL

    #: A Slack-compatible incoming webhook for movement alerts and the digest (SPEC §12).
    alert_webhook_url: str | None = None
    #: The smallest movement alerted at once, in minor units (of the movement's currency
    #: until reports convert, SPEC §10).
    alert_min_mrr: int = 10_000
    #: The UTC hour from which yesterday's digest is posted.
    digest_hour_utc: int = 8
    #: Where the dashboard is served from, for links in alerts; None: no links.
    public_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every SPEC §3 variable; blank values count as unset."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        secrets = tuple(s.strip() for s in (get("STRIPE_WEBHOOK_SECRET") or "").split(","))
        return cls(
            webhook_secrets=tuple(s for s in secrets if s),
            stripe_api_key=get("STRIPE_API_KEY"),
            stripe_api_base=get("STRIPE_API_BASE"),
            database_url=get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            redis_url=get("REDIS_URL") or DEFAULT_REDIS_URL,
            ops_token=get("OPS_TOKEN"),
            webhook_tolerance_s=_positive_int(
                get("WEBHOOK_TOLERANCE_S"), "WEBHOOK_TOLERANCE_S", 300
            ),
            max_body_bytes=_positive_int(get("MAX_BODY_BYTES"), "MAX_BODY_BYTES", 1_048_576),
            sweep_after_s=_positive_int(get("SWEEP_AFTER_S"), "SWEEP_AFTER_S", 30),
            queue_name=get("MRR_QUEUE") or "mrr",
            db_connect_timeout_s=_positive_int(
                get("DB_CONNECT_TIMEOUT_S"), "DB_CONNECT_TIMEOUT_S", 5
            ),
            db_statement_timeout_s=_positive_int(
                get("DB_STATEMENT_TIMEOUT_S"), "DB_STATEMENT_TIMEOUT_S", 30
            ),
            reconcile_every_s=_reconcile_every(get("RECONCILE_EVERY_S"), get("STRIPE_API_KEY")),
            reporting_currency=_currency(get("REPORTING_CURRENCY")),
            fx_rates_url=get("FX_RATES_URL"),
            alert_webhook_url=_http_url(get("ALERT_WEBHOOK_URL"), "ALERT_WEBHOOK_URL"),
            alert_min_mrr=_whole(get("ALERT_MIN_MRR"), "ALERT_MIN_MRR", 10_000, 0, None),
            digest_hour_utc=_whole(get("DIGEST_HOUR_UTC"), "DIGEST_HOUR_UTC", 8, 0, 23),
            public_url=_http_url(get("PUBLIC_URL"), "PUBLIC_URL"),
        )

    @property
    def db_limits(self) -> Limits:
        return Limits(self.db_connect_timeout_s, self.db_statement_timeout_s)

    def require_webhook_secret(self) -> Settings:
        """The web process refuses to start without a signing secret (never verify-less)."""
        if not self.webhook_secrets:
            raise SettingsError(
                "STRIPE_WEBHOOK_SECRET is required for the web process "
                "(comma-separate two secrets during a roll)"
            )
        return self

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _reconcile_every(raw: str | None, api_key: str | None) -> int | None:
    """RECONCILE_EVERY_S: blank is off; set, it needs the API key it will use."""
    if raw is None:
        return None
    every = _positive_int(raw, "RECONCILE_EVERY_S", 0)
    if api_key is None:
        raise SettingsError("RECONCILE_EVERY_S needs STRIPE_API_KEY (reconcile reads Stripe's API)")
    return every


def _currency(raw: str | None) -> str:
    """REPORTING_CURRENCY: a three-letter ISO code, any case (Stripe writes lowercase)."""
    if raw is None:
        return DEFAULT_REPORTING_CURRENCY
    code = raw.lower()
    if not (len(code) == 3 and code.isascii() and code.isalpha()):
        raise SettingsError(f"REPORTING_CURRENCY must be a three-letter ISO code, got {raw!r}")
    return code


def _http_url(raw: str | None, name: str) -> str | None:
    if raw is None:
        return None
    if not raw.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http:// or https:// URL")
    return raw.rstrip("/") if name == "PUBLIC_URL" else raw


def _whole(raw: str | None, name: str, default: int, lo: int, hi: int | None) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < lo or (hi is not None and value > hi):
        span = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
        raise SettingsError(f"{name} must be {span}, got {value}")
    return value


def _positive_int(raw: str | None, name: str, default: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value
