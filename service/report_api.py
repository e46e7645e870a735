"""Bearer-protected report endpoints (SPEC §4, §7): JSON, amounts in minor units, or the
same document as CSV (`format=csv`, or `Accept: text/csv`; `reporting/tabular.py`)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from pipeline import drill
from pipeline import reports as report_docs
from reporting.tabular import to_csv
from service.auth import require_ops_token
from service.errors import ApiError
from service.extensions import runtime

bp = Blueprint("reports", __name__, url_prefix="/reports")


#: What `format` may ask for (the document's shape is the same).
FORMATS = ("json", "csv")
#: Parameters that may be given more than once (SPEC §11: `filter=KEY:VALUE`).
REPEATABLE = ("filter",)


def _args() -> dict[str, str]:
    """The query string as single values, without `format`; a parameter given twice is
    a 400, not a guess."""
    repeated = sorted(
        k for k, values in request.args.lists() if len(values) > 1 and k not in REPEATABLE
    )
    if repeated:
        raise ApiError(400, "bad_query", f"parameter {repeated[0]!r} is given more than once")
    args = request.args.to_dict()
    args.pop("format", None)
    for key in REPEATABLE:
        args.pop(key, None)
    return args


def _wants_csv() -> bool:
    """`format=csv`, or no `format` and an Accept header that prefers text/csv to JSON."""
    asked = request.args.get("format")
    if asked is not None:
        if asked not in FORMATS:
            raise ApiError(400, "bad_query", f"format must be one of {', '.join(FORMATS)}")
        return asked == "csv"
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    return best == "text/csv"


def _render(doc: dict[str, Any]) -> Response:
    """The document as JSON, or as CSV when asked for."""
    if _wants_csv():
        return Response(to_csv(doc), mimetype="text/csv")
    return jsonify(doc)


def _respond(name: str) -> Response:
    """Parse the query string and build report `name` (a bad parameter is a 400)."""
    filters = request.args.getlist("filter")
    query = report_docs.parse_query(_args(), report_docs.PARAMETERS[name], filters)
    return _render(report_docs.REPORTS[name](runtime(), query))


@bp.get("/summary")
@require_ops_token
def summary() -> Response:
    return _respond("summary")


@bp.get("/movements")
@require_ops_token
def movements() -> Response:
    return _respond("movements")


@bp.get("/movements/detail")
@require_ops_token
def movements_detail() -> Response:
    return _render(drill.detail_report(runtime(), _args(), request.args.getlist("filter")))


@bp.get("/activity")
@require_ops_token
def activity() -> Response:
    return _render(drill.activity_report(runtime(), _args()))


@bp.get("/cohorts")
@require_ops_token
def cohorts() -> Response:
    return _respond("cohorts")


@bp.get("/trials")
@require_ops_token
def trials() -> Response:
    return _respond("trials")


@bp.get("/customers/<customer_id>")
@require_ops_token
def customer(customer_id: str) -> Response:
    if set(request.args) - {"format"}:
        raise ApiError(400, "bad_query", "this report takes no parameters but format")
    if not report_docs.valid_customer_id(customer_id):
        raise ApiError(400, "bad_query", "not a valid customer id")
    doc = report_docs.customer_report(runtime(), customer_id)
    if doc is None:
        raise ApiError(404, "unknown_customer", "no subscription events for this customer")
    return _render(doc)
