"""Sign-in helpers as plain functions: the session key, token comparison, the throttle."""

from __future__ import annotations

from service.session import LoginThrottle, session_key, token_matches


def test_the_session_key_is_derived_from_the_token_one_way() -> None:
    assert session_key("a") == session_key("a")
    assert session_key("a") != session_key("b")
    assert len(session_key("a")) == 64


def test_token_matches_only_the_token() -> None:
    assert token_matches("secret", "secret")
    assert not token_matches("secre", "secret")
    assert not token_matches("", "secret")


def test_the_login_throttle_counts_failures_per_address_in_a_window() -> None:
    throttle = LoginThrottle(failures=3, window_s=60)
    for t in (0, 1, 2):
        assert throttle.retry_after("a", now=t) == 0
        throttle.failed("a", now=t)
    assert throttle.retry_after("a", now=3) == 57
    assert throttle.retry_after("b", now=3) == 0  # another address
    assert throttle.retry_after("a", now=60.5) == 0  # the first failure has left the window
    throttle.failed("a", now=61)
    throttle.succeeded("a")
    assert throttle.retry_after("a", now=61) == 0


def test_the_login_throttle_keeps_a_bounded_number_of_addresses() -> None:
    throttle = LoginThrottle(failures=1, window_s=10, most_addresses=2)
    throttle.failed("a", now=0)
    throttle.failed("b", now=0)
    throttle.failed("c", now=1)  # full of live entries: not tracked
    assert throttle.retry_after("c", now=1) == 0
    throttle.failed("c", now=20)  # a and b have expired and are forgotten
    assert throttle.retry_after("c", now=20) == 10
