"""Bearer-protected report endpoints (SPEC §4, §7): JSON, amounts in minor units."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from pipeline import reports as report_docs
from service.auth import require_ops_token
from service.errors import ApiError
from service.extensions import runtime

bp = Blueprint("reports", __name__, url_prefix="/reports")


def _args() -> dict[str, str]:
    """The query string as single values; a parameter given twice is a 400, not a guess."""
    repeated = sorted(k for k, values in request.args.lists() if len(values) > 1)
    if repeated:
        raise ApiError(400, "bad_query", f"parameter {repeated[0]!r} is given more than once")
    return request.args.to_dict()


def _respond(name: str) -> Response:
    """Parse the query string and build report `name` (a bad parameter is a 400)."""
    query = report_docs.parse_query(_args(), report_docs.PARAMETERS[name])
    return jsonify(report_docs.REPORTS[name](runtime(), query))


@bp.get("/summary")
@require_ops_token
def summary() -> Response:
    return _respond("summary")


@bp.get("/movements")
@require_ops_token
def movements() -> Response:
    return _respond("movements")


@bp.get("/cohorts")
@require_ops_token
def cohorts() -> Response:
    return _respond("cohorts")


@bp.get("/customers/<customer_id>")
@require_ops_token
def customer(customer_id: str) -> Response:
    if request.args:
        raise ApiError(400, "bad_query", "this report takes no parameters")
    if not report_docs.valid_customer_id(customer_id):
        raise ApiError(400, "bad_query", "not a valid customer id")
    doc = report_docs.customer_report(runtime(), customer_id)
    if doc is None:
        raise ApiError(404, "unknown_customer", "no subscription events for this customer")
    return jsonify(doc)
