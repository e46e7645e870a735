"""Dashboard sessions: `OPS_TOKEN` exchanged once, through a form, for a signed cookie.

* The cookie is Flask's signed session (HMAC-SHA256 over its content and issue time),
  HttpOnly, SameSite=Strict, Secure when the request came over HTTPS (directly or as a
  proxy's `X-Forwarded-Proto` says), and expires `SESSION_LIFETIME` after sign-in: it
  is not refreshed by use.
* Its signing key is derived from `OPS_TOKEN` (an HMAC of a fixed label), so there is no
  second secret to configure, every web process agrees on it, and changing the token
  ends every session.
* Forms that change state (sign-in, sign-out) carry a CSRF token bound to the session
  and compared in constant time.
* Failed sign-ins are throttled per client address, in the database, so the throttle
  holds across every web process and host (`pipeline.sign_in`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import Flask, Request, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

SESSION_COOKIE = "mrr_session"
SESSION_LIFETIME = timedelta(hours=12)
_KEY_LABEL = b"stripe-mrr dashboard session v1"


def session_key(ops_token: str) -> str:
    """The session signing key for `ops_token`: one-way, so a cookie reveals nothing of it."""
    return hmac.new(ops_token.encode(), _KEY_LABEL, hashlib.sha256).hexdigest()


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie session, signed with SHA-256 and Secure over HTTPS.

    Stripe's deliveries never carry a session: for them no session is opened (Flask
    opens one for every request, and building its signer was ~5 % of a webhook's CPU).
    """

    digest_method = staticmethod(hashlib.sha256)
    #: Paths that are never signed in to: they get Flask's null session.
    SESSIONLESS = ("/webhooks/",)

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(self.SESSIONLESS):
            return None  # Flask substitutes its null session, and never saves it
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return request.is_secure or forwarded == "https" or super().get_cookie_secure(app)


def configure(app: Flask, ops_token: str | None) -> None:
    """Session cookies of `app`; without a token there is no
    signing key, so no session can be made or read."""
    app.session_interface = SessionCookies()
    app.config.update(
        SECRET_KEY=session_key(ops_token) if ops_token else None,
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        # The cookie keeps the time of sign-in, so a session ends on time however used.
        SESSION_REFRESH_EACH_REQUEST=False,
    )


def token_matches(given: str, ops_token: str) -> bool:
    """Whether `given` is the token, in time independent of where they differ and of
    either length (both sides are hashed to one length first)."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(ops_token.encode()).digest()
    )


def signed_in() -> bool:
    """Whether this request carries a valid, unexpired dashboard session."""
    return session.get("signed_in") is True


def sign_in() -> None:
    """Start a session: the old content (and its CSRF token) is dropped, a new one made."""
    session.clear()
    session.permanent = True
    session["signed_in"] = True
    session["csrf"] = secrets.token_urlsafe(32)


def sign_out() -> None:
    session.clear()


def csrf_token() -> str:
    """The session's CSRF token for a form, created (in the cookie) on first use."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(given: str | None) -> bool:
    """Whether a form's CSRF token is the session's (constant time)."""
    expected = session.get("csrf")
    if not isinstance(expected, str) or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
