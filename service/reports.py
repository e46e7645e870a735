"""Bearer-protected report endpoints (SPEC §4, §7): JSON, amounts in minor units."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from models.tables import utcnow
from service import report_data
from service.auth import require_ops_token
from service.errors import ApiError
from service.extensions import services

bp = Blueprint("reports", __name__, url_prefix="/reports")


def _query() -> report_data.Query:
    try:
        return report_data.parse_query(request.args.to_dict())
    except report_data.BadQuery as exc:
        raise ApiError(400, "bad_query", str(exc)) from None


@bp.get("/summary")
@require_ops_token
def summary() -> Response:
    query = _query()
    with services().sessions() as session:
        return jsonify(report_data.summary_report(session, query, utcnow()))


@bp.get("/movements")
@require_ops_token
def movements() -> Response:
    query = _query()
    with services().sessions() as session:
        try:
            return jsonify(report_data.movements_report(session, query, utcnow()))
        except report_data.BadQuery as exc:
            raise ApiError(400, "bad_query", str(exc)) from None


@bp.get("/customers/<customer_id>")
@require_ops_token
def customer(customer_id: str) -> Response:
    with services().sessions() as session:
        doc = report_data.customer_report(session, customer_id)
    if doc is None:
        raise ApiError(404, "unknown_customer", "no subscription events for this customer")
    return jsonify(doc)
