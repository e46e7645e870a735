"""Bearer-token guard of every ops endpoint: no `OPS_TOKEN`, no access (never open)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import request

from service.errors import ApiError
from service.extensions import services

F = TypeVar("F", bound=Callable[..., Any])


def bearer_ok(header: str | None, token: str) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())


def require_ops_token(view: F) -> F:
    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        token = services().settings.ops_token
        if token is None:
            raise ApiError(503, "ops_disabled", "OPS_TOKEN is not configured on this server")
        if not bearer_ok(request.headers.get("Authorization"), token):
            raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer' token is required")
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]
