"""Bearer-protected report endpoints (SPEC §4, §7): JSON, amounts in minor units."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.orm import Session

from models.tables import utcnow
from service import report_data
from service.auth import require_ops_token
from service.errors import ApiError
from service.extensions import services

bp = Blueprint("reports", __name__, url_prefix="/reports")

Report = Callable[[Session, report_data.Query, datetime], dict[str, Any]]


def _respond(name: str, build: Report) -> Response:
    """Parse the query string, build the report, and turn a bad parameter into a 400."""
    try:
        query = report_data.parse_query(request.args.to_dict(), report_data.PARAMETERS[name])
        with services().sessions() as session:
            return jsonify(build(session, query, utcnow()))
    except report_data.BadQuery as exc:
        raise ApiError(400, "bad_query", str(exc)) from None


@bp.get("/summary")
@require_ops_token
def summary() -> Response:
    return _respond("summary", report_data.summary_report)


@bp.get("/movements")
@require_ops_token
def movements() -> Response:
    return _respond("movements", report_data.movements_report)


@bp.get("/cohorts")
@require_ops_token
def cohorts() -> Response:
    return _respond("cohorts", report_data.cohorts_report)


@bp.get("/customers/<customer_id>")
@require_ops_token
def customer(customer_id: str) -> Response:
    with services().sessions() as session:
        doc = report_data.customer_report(session, customer_id)
    if doc is None:
        raise ApiError(404, "unknown_customer", "no subscription events for this customer")
    return jsonify(doc)
