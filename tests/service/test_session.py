"""Sign-in helpers as plain functions: the session key, token comparison, the throttle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.sign_in import SignInThrottle
from service.session import session_key, token_matches


def test_the_session_key_is_derived_from_the_token_one_way() -> None:
    assert session_key("a") == session_key("a")
    assert session_key("a") != session_key("b")
    assert len(session_key("a")) == 64


def test_token_matches_only_the_token() -> None:
    assert token_matches("secret", "secret")
    assert not token_matches("secre", "secret")
    assert not token_matches("", "secret")


def test_the_login_throttle_counts_failures_per_address_in_a_window(runtime) -> None:
    throttle = SignInThrottle(runtime, failures=3, window_s=60)
    t0 = datetime(2026, 12, 3, tzinfo=UTC)

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    for t in (0, 1, 2):
        assert throttle.retry_after("a", now=at(t)) == 0
        throttle.failed("a", now=at(t))
    assert throttle.retry_after("a", now=at(3)) == 57
    assert throttle.retry_after("b", now=at(3)) == 0  # another address
    assert throttle.retry_after("a", now=at(60.5)) == 0  # the first has left the window
    throttle.failed("a", now=at(61))
    throttle.succeeded("a")
    assert throttle.retry_after("a", now=at(61)) == 0


def test_failures_are_forgotten_once_out_of_the_window(runtime) -> None:
    from models import throttle as store

    throttle = SignInThrottle(runtime, failures=3, window_s=60)
    t0 = datetime(2026, 12, 3, tzinfo=UTC)
    for n in range(5):
        throttle.failed(f"10.0.0.{n}", now=t0)
    throttle.failed("10.0.0.9", now=t0 + timedelta(seconds=61))
    with runtime.sessions() as session:
        assert store.count(session) == 1  # the table holds one window at most
