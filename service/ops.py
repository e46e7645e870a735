"""`/healthz`, `/status` (SPEC §6), `/metrics` and `/openapi.json`.

Nothing here shows ids of customers or subscriptions, URLs or secrets.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect, url_for
from prometheus_client import CONTENT_TYPE_LATEST

from pipeline.status import status as status_document
from service.auth import require_ops_token
from service.extensions import runtime
from service.openapi import build_openapi
from service.prometheus import render

bp = Blueprint("ops", __name__)


@bp.get("/")
def root() -> Response:
    """A browser pointed at the server lands on the dashboard (its sign-in page first)."""
    return redirect(url_for("dashboard.index"))  # type: ignore[return-value]


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"ok": True})


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(build_openapi())


@bp.get("/metrics")
@require_ops_token
def metrics() -> Response:
    return Response(render(runtime()), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/status")
@require_ops_token
def status() -> Response:
    return jsonify(status_document(runtime()))
