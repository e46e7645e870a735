"""Configuration is read once, validated at boot, and documented in .env.example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_match_the_spec() -> None:
    s = Settings.from_env({})
    assert s.database_url == "sqlite:///mrr.db"
    assert s.redis_url == "redis://localhost:6379/0"
    assert (s.webhook_tolerance_s, s.max_body_bytes, s.sweep_after_s) == (300, 1048576, 30)
    assert s.ops_token is None and s.stripe_api_key is None and s.webhook_secrets == ()


def test_secret_roll_and_blank_values() -> None:
    s = Settings.from_env(
        {"STRIPE_WEBHOOK_SECRET": " whsec_a , whsec_b ,", "OPS_TOKEN": " ", "STRIPE_API_KEY": ""}
    )
    assert s.webhook_secrets == ("whsec_a", "whsec_b")
    assert s.ops_token is None and s.stripe_api_key is None


@pytest.mark.parametrize("name", ["WEBHOOK_TOLERANCE_S", "MAX_BODY_BYTES", "SWEEP_AFTER_S"])
@pytest.mark.parametrize("value", ["abc", "0", "-5"])
def test_bad_numbers_fail_at_boot(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_periodic_reconcile_is_off_by_default_and_needs_the_api_key() -> None:
    assert Settings.from_env({}).reconcile_every_s is None
    on = Settings.from_env({"RECONCILE_EVERY_S": "86400", "STRIPE_API_KEY": "sk_test_x"})
    assert on.reconcile_every_s == 86400
    with pytest.raises(SettingsError, match="RECONCILE_EVERY_S needs STRIPE_API_KEY"):
        Settings.from_env({"RECONCILE_EVERY_S": "86400"})
    with pytest.raises(SettingsError, match="RECONCILE_EVERY_S must be positive"):
        Settings.from_env({"RECONCILE_EVERY_S": "0", "STRIPE_API_KEY": "sk_test_x"})


def test_web_process_requires_a_secret() -> None:
    with pytest.raises(SettingsError, match="STRIPE_WEBHOOK_SECRET"):
        Settings.from_env({}).require_webhook_secret()


def test_env_example_lists_every_variable_read() -> None:
    source = (ROOT / "pipeline" / "settings.py").read_text()
    read = set(re.findall(r'get\("([A-Z_]+)"\)', source))
    listed = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read and read <= listed


def test_reporting_currency_and_fx_rates_url() -> None:
    default = Settings.from_env({})
    assert (default.reporting_currency, default.fx_rates_url) == ("usd", None)
    assert default.fx_source.startswith("https://www.ecb.europa.eu/")
    chosen = Settings.from_env({"REPORTING_CURRENCY": " EUR ", "FX_RATES_URL": "/srv/r.zip"})
    assert (chosen.reporting_currency, chosen.fx_source) == ("eur", "/srv/r.zip")
    with pytest.raises(SettingsError, match="REPORTING_CURRENCY"):
        Settings.from_env({"REPORTING_CURRENCY": "dollars"})


def test_alert_settings() -> None:
    s = Settings.from_env({})
    assert (s.alert_webhook_url, s.alert_min_mrr, s.digest_hour_utc, s.public_url) == (
        None,
        10_000,
        8,
        None,
    )
    on = Settings.from_env(
        {
            "ALERT_WEBHOOK_URL": "https://hooks.example.com/services/T/B/x",
            "ALERT_MIN_MRR": "0",
            "DIGEST_HOUR_UTC": "0",
            "PUBLIC_URL": "https://mrr.example.com/",
        }
    )
    assert on.alert_min_mrr == 0 and on.digest_hour_utc == 0
    assert on.public_url == "https://mrr.example.com"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DIGEST_HOUR_UTC", "24"),
        ("DIGEST_HOUR_UTC", "-1"),
        ("ALERT_MIN_MRR", "-5"),
        ("ALERT_MIN_MRR", "1e4"),
        ("ALERT_WEBHOOK_URL", "hooks.example.com/secret-token"),
        ("PUBLIC_URL", "mrr.example.com"),
    ],
)
def test_bad_alert_settings_fail_at_boot_without_echoing_urls(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})
    assert name in str(raised.value)
    if "URL" in name:
        assert value not in str(raised.value)
