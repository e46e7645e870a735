"""Every refusal as one JSON shape, `{"error": {"code": ..., "message": ...}}`, mapped
from exceptions in one place.

Views raise; they never build an error response. `ApiError` is a view's own refusal (a
missing token, a parameter given twice); the use cases' and the store's errors map to
their status here; werkzeug's (404, 405, 413) keep their status; anything else is a
500 without its traceback. The dashboard's pages answer its errors in HTML instead
(`service/dashboard.py`).
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from models.errors import InboxRefused, InboxUnavailable
from pipeline.errors import BadEvent, BadQuery, EventNotFound, IntakeTimeout
from reporting.errors import NoRate


class ApiError(Exception):
    """A view's refusal: answer `status` with `code` and `message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


#: Errors of the layers below: (status, code, the message shown, or None for the error's
#: own). The inbox's are described without the database's words (they reach Stripe).
MAPPED: dict[type[Exception], tuple[int, str, str | None]] = {
    BadQuery: (400, "bad_query", None),
    BadEvent: (400, "bad_event", None),
    # A converted report needs a rate the history lacks (SPEC §10): e.g. a
    # REPORTING_CURRENCY the ECB does not publish.
    NoRate: (422, "no_rate", None),
    InboxRefused: (400, "bad_event", "the event cannot be stored"),
    EventNotFound: (404, "unknown_event", None),
    InboxUnavailable: (503, "inbox_unavailable", "the inbox cannot be written; retry later"),
    IntakeTimeout: (503, "inbox_unavailable", "the inbox cannot be written; retry later"),
    # The database away (restarting, unreachable, a connection it dropped): a retry will do.
    OperationalError: (503, "database_unavailable", "the database is unavailable; retry later"),
}


def mapped(exc: Exception) -> tuple[int, str, str] | None:
    """The status, code and message an error of a layer below answers, or None for an
    error no table names (a 500)."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message
    for error_type, (status, code, shown) in MAPPED.items():
        if isinstance(exc, error_type):
            return status, code, shown or str(exc)
    return None


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def json_error(status: int, code: str, message: str) -> Response:
    response = jsonify(error_body(code, message))
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return json_error(exc.status, exc.code, exc.message)

    for error_type in MAPPED:

        @app.errorhandler(error_type)
        def _mapped(exc: Exception) -> Response:
            status, code, message = mapped(exc) or (500, "internal_error", "")
            return json_error(status, code, message)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Logged with its traceback, answered without it: every error body is JSON.
        app.logger.error("unhandled %s on %s", type(exc).__name__, request.path, exc_info=exc)
        return json_error(500, "internal_error", "an unexpected error occurred")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        response = json_error(exc.code or 500, code, exc.description or exc.name)
        # Keep what the exception says beyond its body, e.g. `Allow` on a 405.
        for name, value in exc.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response
