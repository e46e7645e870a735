"""`/dashboard` (SPEC §4): the charts of the report documents, customer pages, sign-in.

Views stay thin: documents from `pipeline/reports.py` (the very ones `/reports/*`
serves), figures from `service/figures.py`, pages from `service/templates/dashboard/`.
Pages answer to a dashboard session (`service/session.py`) or the bearer header; without
either they redirect to the sign-in form. Errors here are HTML pages, not JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, ServiceUnavailable

from pipeline import drill
from pipeline import reports as report_docs
from pipeline.errors import BadQuery
from pipeline.runtime import Runtime
from pipeline.sign_in import SignInThrottle
from pipeline.status import status as status_document
from reporting.display import money, pct
from service import figures
from service.auth import bearer_ok
from service.extensions import runtime
from service.session import (
    csrf_ok,
    csrf_token,
    sign_in,
    sign_out,
    signed_in,
    token_matches,
)

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

#: The report parameters the page's pickers send (`focus` picks the waterfall's period;
#: `filter` and `group_by` the segment of the period charts, SPEC §11).
PICKERS = frozenset({"currency", "period", "start", "end", "filter", "group_by"})
#: What the picker offers to group the period charts by (SPEC §11).
GROUP_KEYS = ("plan", "product", "interval", "country")
SEARCH_LIMIT = 20
#: Movements in the dashboard's activity panel.
ACTIVITY_LIMIT = 20
#: Sent with every page: no scripts at all, styles and forms of this site only.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

F = TypeVar("F", bound=Callable[..., Any])
Documents = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


def require_sign_in(view: F) -> F:
    """Let in a dashboard session or the bearer token; send anyone else to the form."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        token = runtime().settings.ops_token
        if token is None:
            raise ServiceUnavailable("Set OPS_TOKEN on the server to open the dashboard.")
        if signed_in() or bearer_ok(request.headers.get("Authorization"), token):
            return view(*args, **kwargs)
        return redirect(url_for(".login", next=request.full_path.rstrip("?")))

    return guarded  # type: ignore[return-value]


@bp.get("")
@require_sign_in
def index() -> str:
    """The dashboard for the picked currency, period and range (the reports' defaults)."""
    args = _filled(request.args)
    focus = args.pop("focus", None)
    filters = _segment(request.args.getlist("filter"))
    args.pop("filter", None)
    current = runtime()
    try:
        query = report_docs.parse_query(args, PICKERS, filters)
        docs = _documents(current, query)
    except BadQuery as exc:
        raise BadRequest(str(exc)) from None
    status = status_document(current)
    if docs is None:
        return render_template(
            "dashboard/first_run.html",
            webhook_url=url_for("webhook.stripe_webhook", _external=True),
            status=status,
        )
    summary, movements, cohorts = docs
    # None: every currency, converted into the reporting currency (SPEC §10).
    currency = None if figures.converted(movements) else movements["currency"]
    rows = movements["periods"]
    # Default: the latest period where MRR moved (the current one may be quiet yet).
    moved = [r for r in rows if any(r[k] for k in figures.MOVEMENT_KEYS)] or rows
    row = next((r for r in rows if r["period_start"] == focus), moved[-1])

    def link(period: dict[str, Any], figure: dict[str, str]) -> str:
        """The detail page of one figure of a period row (every bar leads to one); in
        the converted view, the movements of every currency in the reporting one."""
        return _detail_url(period, currency, figure, filters)

    sources = {
        "summary": url_for("reports.summary", currency=currency),
        "movements": url_for(
            "reports.movements",
            period=movements["period"],
            start=movements["start"],
            end=movements["end"],
            currency=currency,
            filter=filters or None,
            group_by=query.group_by,
        ),
        "cohorts": url_for(
            "reports.cohorts", start=cohorts["start"], end=cohorts["end"], currency=currency
        ),
    }
    return render_template(
        "dashboard/index.html",
        converted=figures.converted(movements),
        reporting=current.settings.reporting_currency,
        summary=summary,
        movements=movements,
        focus=row,
        focus_names=figures.period_names(movements["period"], [r["period_start"] for r in rows]),
        cards=figures.headline(summary, movements, row, sources["summary"], sources["movements"]),
        figures=[
            figures.mrr_figure(movements, sources["movements"], link),
            figures.waterfall_figure(movements, row, sources["movements"], link),
            figures.net_churn_figure(movements, sources["movements"]),
            figures.levers_figure(movements, sources["movements"], link),
            figures.expansion_share_figure(movements, sources["movements"]),
            figures.churn_figure(movements, sources["movements"], link),
            figures.trials_figure(movements, sources["movements"]),
            *([figures.groups_figure(movements, sources["movements"])] if query.group_by else []),
            figures.cohorts_figure(cohorts, sources["cohorts"]),
        ],
        status=status,
        sources=sources,
        segment=" ".join(filters),
        group_by=query.group_by,
        group_keys=GROUP_KEYS,
        focus_figures=_focus_figures(row, currency, filters),
        activity=drill.activity_report(current, {"limit": str(ACTIVITY_LIMIT)}),
    )


def _focus_figures(
    row: dict[str, Any], currency: str | None, filters: list[str]
) -> list[tuple[str, int, str]]:
    """Every figure of a period row with the link to the movements behind it (SPEC §12)."""

    def link(**figure: str) -> str:
        return _detail_url(row, currency, figure, filters)

    found = []
    for kind in ("new", "expansion", "contraction", "churn", "reactivation"):
        found.append((kind, row[kind], link(type=kind)))
        breakdown = {"expansion": "expansion_by_kind", "contraction": "contraction_by_kind"}
        if kind in breakdown:
            for lever, amount in row[breakdown[kind]].items():
                found.append((f"{kind} · {lever}", amount, link(type=kind, kind=lever)))
        if kind == "churn":
            for reason, amount in row["churn_by_reason"].items():
                found.append((f"churn · {reason}", amount, link(type="churn", reason=reason)))
            delinquent = link(type="churn", delinquent="true")
            found.append(("churn · delinquent", row["delinquent_churn"], delinquent))
    return found


def _detail_url(
    row: dict[str, Any], currency: str | None, figure: dict[str, str], filters: list[str]
) -> str:
    """`currency` None: the converted detail (url_for leaves the parameter out); of the
    segment `filters` select, if any."""
    values: dict[str, Any] = {
        "start": row["period_start"],
        "end": row["period_end"],
        "currency": currency,
        **figure,
        "filter": filters or None,
    }
    return url_for(".detail", **values)


def _segment(raw: list[str]) -> list[str]:
    """The picker's segment: `KEY:VALUE` filters, several to a field when separated by
    spaces or commas (the API takes one per `filter` parameter)."""
    return [part for text in raw for part in text.replace(",", " ").split()]


@bp.get("/movements/detail")
@require_sign_in
def detail() -> str:
    """The movements behind one figure of a period row, customers linked to their pages."""
    args: dict[str, Any] = _filled(request.args)
    filters = [f for f in request.args.getlist("filter") if f.strip()]
    args.pop("filter", None)
    try:
        doc = drill.detail_report(runtime(), args, filters)
    except BadQuery as exc:
        raise BadRequest(str(exc)) from None
    source = url_for("reports.movements_detail", **args, filter=filters or None)
    return render_template("dashboard/detail.html", doc=doc, source=source)


def _documents(current: Runtime, query: report_docs.Query) -> Documents | None:
    """The summary, movements and cohorts documents of the picked currency, else of every
    currency converted into the reporting currency (SPEC §10), each exactly what its
    `/reports/*` URL serves; None while the ledger has no customer (the first-run page,
    not empty axes)."""
    currency = query.currency
    summary = report_docs.summary_report(current, report_docs.Query(currency=currency))
    if not summary["currencies"]:
        return None
    movements = report_docs.movements_report(
        current,
        report_docs.Query(
            currency,
            query.period,
            query.start,
            query.end,
            filters=query.filters,
            group_by=query.group_by,
        ),
    )
    cohorts = report_docs.cohorts_report(
        current, report_docs.Query(currency, start=query.start, end=query.end)
    )
    return summary, movements, cohorts


@bp.get("/customers")
@require_sign_in
def search() -> ResponseReturnValue:
    """Find a customer by id or part of one; a single match opens its page."""
    text = request.args.get("q", "").strip()
    if not text:
        return redirect(url_for(".index"))
    matches = report_docs.find_customers(runtime(), text, SEARCH_LIMIT)
    if matches and (matches[0] == text or len(matches) == 1):
        return redirect(url_for(".customer", customer_id=matches[0]))
    return render_template("dashboard/search.html", q=text, matches=matches, limit=SEARCH_LIMIT)


@bp.get("/customers/<customer_id>")
@require_sign_in
def customer(customer_id: str) -> str:
    """A customer's MRR over time, subscriptions and movements."""
    current = runtime()
    doc = report_docs.customer_report(current, customer_id)
    if doc is None:
        raise NotFound(f"No subscription events for customer {customer_id!r}.")
    return render_template(
        "dashboard/customer.html",
        doc=doc,
        charts=figures.customer_charts(doc, current.now()),
        source=url_for("reports.customer", customer_id=customer_id),
    )


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The sign-in form: the token goes in a POST body, never a URL, and comes back
    as a session cookie."""
    token = runtime().settings.ops_token
    if token is None:
        raise ServiceUnavailable("Set OPS_TOKEN on the server to open the dashboard.")
    next_page = _next_page(request.values.get("next"))
    if request.method == "GET":
        if signed_in():
            return redirect(next_page)
        return render_template("dashboard/login.html", next=next_page)
    if not csrf_ok(request.form.get("csrf_token")):
        return _login_error(400, next_page, "The form had expired. Please sign in again.")
    throttle = SignInThrottle(runtime())
    address = request.remote_addr or "unknown"
    wait = throttle.retry_after(address)
    if wait:
        return _login_error(
            429, next_page, f"Too many attempts. Try again in {wait} s.", {"Retry-After": str(wait)}
        )
    if not token_matches(request.form.get("token", ""), token):
        throttle.failed(address)
        return _login_error(401, next_page, "That is not the token.")
    throttle.succeeded(address)
    sign_in()
    return redirect(next_page)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    if not csrf_ok(request.form.get("csrf_token")):
        raise BadRequest("The form had expired; reload the page and sign out again.")
    sign_out()
    return redirect(url_for(".login"))


def _login_error(
    status: int, next_page: str, message: str, headers: Mapping[str, str] | None = None
) -> tuple[str, int, dict[str, str]]:
    page = render_template("dashboard/login.html", next=next_page, error=message)
    return page, status, dict(headers or {})


def _next_page(raw: str | None) -> str:
    """Where sign-in leads: a dashboard path of this site, never another site."""
    home = url_for(".index")
    if not raw:
        return home
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or "\\" in raw or not parts.path.startswith(home):
        return home
    return raw


def _filled(args: Mapping[str, str]) -> dict[str, str]:
    """The form's fields that were filled in (an empty date input means "the default")."""
    return {name: value for name, value in args.items() if value.strip()}


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"money": money, "pct": pct, "csrf_token": csrf_token}


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@bp.errorhandler(HTTPException)
def _error_page(exc: HTTPException) -> tuple[str, int]:
    code = exc.code or 500
    page = render_template(
        "dashboard/message.html", code=code, title=exc.name, message=exc.description
    )
    return page, code
