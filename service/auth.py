"""Guard of every ops endpoint: no `OPS_TOKEN`, no access (never open).

A request gets in with `Authorization: Bearer $OPS_TOKEN` or with the signed session
cookie of a dashboard sign-in (`service/session.py`), so each figure of the dashboard
can link to the JSON it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import request

from service.errors import ApiError
from service.extensions import runtime
from service.session import signed_in, token_matches

F = TypeVar("F", bound=Callable[..., Any])


def bearer_ok(header: str | None, token: str) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    return token_matches(header[len("Bearer ") :].strip(), token)


def require_ops_token(view: F) -> F:
    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        token = runtime().settings.ops_token
        if token is None:
            raise ApiError(503, "ops_disabled", "OPS_TOKEN is not configured on this server")
        if not (bearer_ok(request.headers.get("Authorization"), token) or signed_in()):
            raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer' token is required")
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]
