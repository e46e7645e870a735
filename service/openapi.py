"""The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json`."""

from __future__ import annotations

from typing import Any

from reporting.rows import CONVERTED_FIELDS, FIELDS, KINDS, Field

_INT = {"type": "integer"}
_RATE = {"type": ["number", "null"]}
_DATE = {"type": "string", "format": "date"}
_STR = {"type": "string"}
_KIND_MAP = {
    "type": "object",
    "properties": {k: _INT for k in KINDS},
    "required": list(KINDS),
    "additionalProperties": False,
}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or list(props)}


ERROR = _obj({"error": _obj({"code": _STR, "message": _STR})})

#: The JSON schema of each kind of period-row field (reporting.rows.FIELDS).
_FIELD_SCHEMA: dict[str, dict[str, Any]] = {
    "period": _DATE,
    "balance": _INT,
    "flow": _INT,
    "customers": _INT,
    "rate": _RATE,
}
_BREAKDOWN_SCHEMA: dict[str, dict[str, Any]] = {
    "expansion_by_kind": _KIND_MAP,
    "contraction_by_kind": _KIND_MAP,
    "churn_by_reason": {"type": "object", "additionalProperties": _INT},
    "delinquent_churn": _INT,
}
#: The trial funnel of a period (SPEC §7): in every period row, and `/reports/trials`.
_TRIAL_KEYS: dict[str, dict[str, Any]] = {
    "trials_started": _INT,
    "trials_converted": _INT,
    "trials_lost": _INT,
    "trial_conversion_rate": _RATE,
    "trial_pipeline_mrr": _INT,
}


def _row(fields: tuple[Field, ...]) -> dict[str, Any]:
    return _obj({f.name: _FIELD_SCHEMA.get(f.kind) or _BREAKDOWN_SCHEMA[f.name] for f in fields})


#: A native row (`currency=xxx`), and a converted one (no `currency`: SPEC §10), which
#: adds `fx_adjustment`.
PERIOD_ROW = _obj(_row(FIELDS)["properties"] | _TRIAL_KEYS)
CONVERTED_ROW = _obj(_row(CONVERTED_FIELDS)["properties"] | _TRIAL_KEYS)
#: A converted document's: each currency the rates do not cover, with its native MRR.
UNCONVERTED = {"type": "object", "additionalProperties": _INT}
#: A converted document's: where its rates come from and their newest day.
RATES = _obj({"source": {"enum": ["shipped", "stored"]}, "newest": _DATE})
_CONVERTED = {"unconverted": UNCONVERTED, "rates": RATES}

TRIALS = _obj(
    {
        "currency": _STR,
        "period": {"enum": ["day", "week", "month"]},
        "start": _DATE,
        "end": _DATE,
        "periods": {
            "type": "array",
            "items": _obj({"period_start": _DATE, "period_end": _DATE} | _TRIAL_KEYS),
        },
        # Without `currency` (every currency, the pipeline MRR converted, SPEC §10):
        **_CONVERTED,
        # With `filter` or `group_by` (SPEC §11):
        "filter": {"type": "array", "items": _STR},
        "group_by": _STR,
        "groups": {
            "type": "array",
            "items": _obj({"key": _STR, "value": _STR, "periods": {"type": "array"}}),
        },
    },
    required=["currency", "period", "start", "end", "periods"],
)

#: A segment key (SPEC §11): an item key, or a customer key.
_KEY_PATTERN = r'^(plan|product|interval|country|metadata\.[^"\\\x00]{1,40})'
_SEGMENT_KEY = {"type": "string", "pattern": _KEY_PATTERN + "$"}

MOVEMENTS = _obj(
    {
        "currency": _STR,
        "period": {"enum": ["day", "week", "month"]},
        "start": _DATE,
        "end": _DATE,
        "periods": {"type": "array", "items": {"anyOf": [CONVERTED_ROW, PERIOD_ROW]}},
        **_CONVERTED,
        "filter": {"type": "array", "items": _STR},
        "group_by": _SEGMENT_KEY,
        "groups": {
            "type": "array",
            "items": _obj(
                {
                    "key": _STR,
                    "value": _STR,
                    "periods": {
                        "type": "array",
                        "items": {"anyOf": [CONVERTED_ROW, PERIOD_ROW]},
                    },
                }
            ),
        },
    },
    required=["currency", "period", "start", "end", "periods"],
)

SUMMARY = _obj(
    {
        "currency": _STR,
        "mrr": _INT,
        "arr": _INT,
        "customers": _INT,
        "arpa": {"type": ["integer", "null"]},
        "scheduled_churn": {"type": ["integer", "null"]},
        "customer_churn_rate": _RATE,
        "gross_mrr_churn_rate": _RATE,
        "net_mrr_churn_rate": _RATE,
        "trailing_30d": {"type": "object"},
        "expansion_share": _RATE,
        "ltv": {"type": ["integer", "null"]},
        "projection": {"type": "array", "items": _INT, "minItems": 12, "maxItems": 12},
        "as_of": _STR,
        "currencies": {
            "type": "array",
            "items": _obj({"currency": _STR, "mrr": _INT, "customers": _INT}),
        },
        **_CONVERTED,
        # With `filter` or `group_by` (SPEC §11): each group a summary of its own.
        "filter": {"type": "array", "items": _STR},
        "group_by": _SEGMENT_KEY,
        "groups": {
            "type": "array",
            "items": _obj(
                {"key": _STR, "value": _STR, "mrr": _INT, "trailing_30d": {"type": "object"}}
            ),
        },
    },
    required=[
        "currency",
        "mrr",
        "arr",
        "customers",
        "arpa",
        "scheduled_churn",
        "customer_churn_rate",
        "gross_mrr_churn_rate",
        "net_mrr_churn_rate",
        "trailing_30d",
        "ltv",
        "projection",
        "as_of",
        "currencies",
    ],
)

COHORTS = _obj(
    {
        "currency": _STR,
        "start": _DATE,
        "end": _DATE,
        "cohorts": {
            "type": "array",
            "items": _obj(
                {
                    "cohort": _STR,
                    "customers": _INT,
                    "new_mrr": _INT,
                    "months": {
                        "type": "array",
                        "items": _obj(
                            {
                                "month": _STR,
                                "offset": _INT,
                                "customers": _INT,
                                "customer_retention": _RATE,
                                "mrr": _INT,
                                "revenue_retention": _RATE,
                            }
                        ),
                    },
                }
            ),
        },
        **_CONVERTED,
    },
    required=["currency", "start", "end", "cohorts"],
)

CUSTOMER = _obj(
    {
        "customer_id": _STR,
        "mrr": {"type": "object", "additionalProperties": _INT},
        "subscriptions": {"type": "array", "items": {"type": "object"}},
        "timeline": {"type": "array", "items": _obj({"at": _STR, "currency": _STR, "mrr": _INT})},
        "movements": {"type": "array", "items": {"type": "object"}},
        "converted": {
            "type": ["object", "null"],
            "properties": {"currency": _STR, "mrr": _INT, "unconverted": UNCONVERTED},
        },
    }
)

#: One movement as the detail and the activity list it (SPEC §12).
MOVEMENT = _obj(
    {
        "customer_id": _STR,
        "subscription_ids": {"type": "array", "items": _STR},
        "type": {"enum": ["new", "expansion", "contraction", "churn", "reactivation"]},
        "kind": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        # In the document's currency; null in a converted activity for a currency the
        # rates do not cover (the native amount stays).
        "amount": {"type": ["integer", "null"]},
        "native_amount": _INT,
        "native_currency": _STR,
        "date": _STR,
        "events": {
            "type": "array",
            "items": _obj({"id": _STR, "synthetic": {"type": "boolean"}}),
        },
    }
)

DETAIL = _obj(
    {
        "currency": _STR,
        "start": _STR,
        "end": _STR,
        "type": _STR,
        "kind": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        "delinquent": {"type": ["boolean", "null"]},
        "amount": _INT,
        "count": _INT,
        "movements": {"type": "array", "items": MOVEMENT},
        # With `filter` (SPEC §11): the filters, as given.
        "filter": {"type": "array", "items": _STR},
        # Without `currency` (converted into the reporting currency, SPEC §10) only:
        **_CONVERTED,
    },
    required=[
        "currency",
        "start",
        "end",
        "type",
        "kind",
        "reason",
        "delinquent",
        "amount",
        "count",
        "movements",
    ],
)

ACTIVITY = _obj(
    {
        "currency": _STR,
        "limit": _INT,
        "movements": {"type": "array", "items": MOVEMENT},
        "rates": RATES,
    }
)

STATUS = _obj(
    {
        "redis": {"type": "boolean"},
        "database": {"type": "boolean"},
        "queue": {"type": "object"},
        "inbox": {"type": ["object", "null"]},
        "last_event": {"type": ["object", "null"]},
        "lag_s": {"type": ["number", "null"]},
        "mrr": {"type": "object", "additionalProperties": _INT},
        "reconcile": {
            "type": ["object", "null"],
            "properties": {
                "at": _STR,
                "checked": _INT,
                "drifted": _INT,
                "fixed": _INT,
                "drift": {"type": "object", "additionalProperties": _INT},
            },
        },
        "fx": {
            "type": ["object", "null"],
            "properties": {
                "reporting_currency": _STR,
                "source": {"enum": ["shipped", "stored"]},
                "newest": _DATE,
            },
        },
        "alerts": {
            "type": ["object", "null"],
            "properties": {
                "enabled": {"type": "boolean"},
                "pending": _INT,
                "failed": _INT,
                "sent": _INT,
                "unconfirmed": _INT,
            },
        },
        "warnings": {"type": "array", "items": _STR},
    },
    required=["redis", "database", "queue", "inbox", "last_event", "lag_s", "mrr", "warnings"],
)


def _param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


CURRENCY = _param(
    "currency",
    {"type": "string", "pattern": "^[a-zA-Z]{3}$"},
    "ISO currency: that currency's native report; default: every currency converted "
    "into REPORTING_CURRENCY",
)
PERIOD = _param("period", {"enum": ["day", "week", "month"]}, "default month")
START = _param("start", _DATE, "snapped outward to a period start")
END = _param("end", _DATE, "exclusive; snapped outward")
AS_OF = _param("as_of", {"type": "string", "format": "date"}, "default: now")
FILTER = {
    **_param(
        "filter",
        {"type": "array", "items": {"type": "string", "pattern": _KEY_PATTERN + ":.+$"}},
        "KEY:VALUE (SPEC §11: plan, product, interval, country, metadata.NAME); repeatable: "
        "the same key OR, different keys AND",
    ),
    "explode": True,
}
GROUP_BY = _param("group_by", _SEGMENT_KEY, "adds `groups`")
FORMAT = _param(
    "format",
    {"enum": ["json", "csv"]},
    "csv: the same document as CSV (also with Accept: text/csv); default json",
)


def _required(param: dict[str, Any]) -> dict[str, Any]:
    return {**param, "required": True}


MOVEMENT_TYPE = _param(
    "type",
    {"enum": ["new", "expansion", "contraction", "churn", "reactivation"]},
    "the row's figure: a movement type",
)
KIND = _param(
    "kind",
    {"enum": ["seats", "upgrade", "downgrade", "cross_sell", "discount", "other"]},
    "an expansion's or a contraction's lever (expansion_by_kind, contraction_by_kind)",
)
REASON = _param(
    "reason",
    {"type": "string", "minLength": 1, "maxLength": 255},
    "a churn's reason key (churn_by_reason); unknown: neither feedback nor reason",
)
DELINQUENT = _param(
    "delinquent", {"enum": ["true", "false"]}, "true: the delinquent churn (delinquent_churn)"
)
LIMIT = _param("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "how many; default 50")
DAY_START = _param("start", _DATE, "the row's period_start (a UTC day)")
DAY_END = _param("end", _DATE, "the row's period_end (exclusive)")


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _with_csv(response: dict[str, Any]) -> dict[str, Any]:
    """A report's 200: its JSON document, or the same as CSV (`format=csv`)."""
    response["content"]["text/csv"] = {"schema": _STR}
    return response


#: A converted report (no `currency`) needs a rate the history lacks (SPEC §10).
NO_RATE = "no exchange rate for REPORTING_CURRENCY, or for an amount before the history"


def _report(
    summary: str,
    schema: dict[str, Any],
    params: list[dict[str, Any]],
    csv: bool = True,
    converts: bool = True,
) -> dict[str, Any]:
    ok = _json(schema, "the report")
    return {
        "get": {
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": [*params, FORMAT] if csv else params,
            "responses": {
                "200": _with_csv(ok) if csv else ok,
                "400": _json(ERROR, "a bad period, date or currency"),
                "401": _json(ERROR, "missing or wrong bearer token"),
                **({"422": _json(ERROR, NO_RATE)} if converts else {}),
                "503": _json(ERROR, "OPS_TOKEN is not configured"),
            },
        }
    }


def build_openapi() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "stripe-mrr",
            "version": "1",
            "description": "Stripe subscription webhooks → exact MRR ledger → churn and "
            "expansion. Amounts are integers in minor units; rates are decimals.",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "liveness",
                    "responses": {"200": _json(_obj({"ok": {"const": True}}), "the process is up")},
                }
            },
            "/webhooks/stripe": {
                "post": {
                    "summary": "Stripe webhook intake (Stripe-Signature on the raw body)",
                    "parameters": [
                        {
                            "name": "Stripe-Signature",
                            "in": "header",
                            "required": True,
                            "schema": _STR,
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "200": _json(
                            _obj(
                                {
                                    "received": {"type": "boolean"},
                                    "id": _STR,
                                    "duplicate": {"type": "boolean"},
                                }
                            ),
                            "stored",
                        ),
                        "400": _json(ERROR, "bad signature or not a Stripe event"),
                        "413": _json(ERROR, "body larger than MAX_BODY_BYTES"),
                        "503": _json(ERROR, "the inbox cannot be written"),
                    },
                }
            },
            "/status": _report("pipeline status for ops", STATUS, [], csv=False, converts=False),
            "/reports/summary": _report(
                "MRR, ARR, ARPA, churn, LTV, projection",
                SUMMARY,
                [CURRENCY, AS_OF, FILTER, GROUP_BY],
            ),
            "/reports/movements": _report(
                "one row per period",
                MOVEMENTS,
                [PERIOD, START, END, CURRENCY, AS_OF, FILTER, GROUP_BY],
            ),
            "/reports/trials": _report(
                "the trial funnel per period",
                TRIALS,
                [PERIOD, START, END, CURRENCY, AS_OF, FILTER, GROUP_BY],
            ),
            "/reports/movements/detail": _report(
                "the movements behind one figure of a period row, with their Stripe events",
                DETAIL,
                [
                    _required(DAY_START),
                    _required(DAY_END),
                    _required(MOVEMENT_TYPE),
                    KIND,
                    REASON,
                    DELINQUENT,
                    CURRENCY,
                    FILTER,
                ],
            ),
            "/reports/activity": _report(
                "the latest movements, newest first (ties by customer id)", ACTIVITY, [LIMIT]
            ),
            "/reports/cohorts": _report(
                "retention by month of first new", COHORTS, [START, END, CURRENCY, AS_OF]
            ),
            "/reports/customers/{customer_id}": {
                "get": {
                    "summary": "a customer's MRR timeline and movements",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {"name": "customer_id", "in": "path", "required": True, "schema": _STR},
                        FORMAT,
                    ],
                    "responses": {
                        "200": _with_csv(_json(CUSTOMER, "the customer")),
                        "400": _json(ERROR, "an odd customer id, or a parameter but format"),
                        "401": _json(ERROR, "missing or wrong bearer token"),
                        "404": _json(ERROR, "unknown customer"),
                        "503": _json(ERROR, "OPS_TOKEN is not configured"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": _STR}},
                        },
                        "401": _json(ERROR, "missing or wrong bearer token"),
                        "503": _json(ERROR, "OPS_TOKEN is not configured"),
                    },
                }
            },
        },
    }
