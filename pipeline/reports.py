"""Report documents, shared by the HTTP views, the dashboard and `mrr report`, so all
show the same numbers. Each report is `report(runtime, query) -> document`; "now" is the
runtime's clock.

Without `currency` a report covers every currency, converted into `REPORTING_CURRENCY`
(SPEC §10, `reporting/fx.py`) with the rates in force (`pipeline/fx.py`): its rows carry
`fx_adjustment`, and the document lists in `unconverted` the currencies the rates do not
cover. With `currency=xxx` it is that currency's native report, unconverted.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from ledger.errors import InvalidEvent, InvalidValue
from ledger.events import SubscriptionEvent, parse_event
from ledger.mrr import Catalog
from ledger.segments import (
    NONE,
    BadSegment,
    Filter,
    Shares,
    check_key,
    grouped_ledgers,
    is_customer_key,
    segment_ledger,
    segment_trials,
)
from ledger.snapshot import storable
from ledger.timeline import CustomerLedger, Movement
from ledger.trials import TrialTransition
from models import queries
from models.queries import ItemRows
from pipeline import enrich, fx
from pipeline.errors import BadQuery
from pipeline.runtime import Runtime
from reporting.cohorts import cohort_table
from reporting.errors import NoRate
from reporting.fx import (
    Converter,
    Native,
    converted_cohort_table,
    converted_period_rows,
    converted_summary,
    converted_trial_rows,
    unconverted,
)
from reporting.periods import Period, boundaries, floor, snap
from reporting.rows import (
    Bucket,
    Opening,
    buckets_from_movements,
    opening_before,
    period_row,
    period_rows,
)
from reporting.summary import summary
from reporting.trials import (
    TRIAL_KEYS,
    TrialBucket,
    TrialRow,
    pipeline_before,
    trial_buckets,
    trial_rows,
)

T = TypeVar("T")

CURRENCY_RE = re.compile(r"^[a-z]{3}$")
MAX_PERIODS = 1000
MAX_COHORT_MONTHS = 120
#: Dates outside these years are refused (and keep period arithmetic far from year 9999).
MIN_YEAR, MAX_YEAR = 1970, 2200
TRAILING_DAYS = 30


@dataclass(frozen=True)
class Query:
    currency: str | None = None
    period: Period = Period.MONTH
    start: date | None = None
    end: date | None = None
    as_of: datetime | None = None
    #: SPEC §11: `filter=KEY:VALUE` (repeatable) and `group_by=KEY` (item keys).
    filters: tuple[str, ...] = ()
    group_by: str | None = None

    @property
    def segmented(self) -> bool:
        return bool(self.filters) or self.group_by is not None


#: The parameters each report takes; any other is refused (a typo never goes unnoticed).
PARAMETERS = {
    "summary": frozenset({"currency", "as_of", "filter", "group_by"}),
    "movements": frozenset({"period", "start", "end", "currency", "as_of", "filter", "group_by"}),
    "cohorts": frozenset({"start", "end", "currency", "as_of"}),
    "trials": frozenset({"period", "start", "end", "currency", "as_of", "filter", "group_by"}),
}


def parse_query(
    args: dict[str, str],
    allowed: frozenset[str] = PARAMETERS["movements"],
    filters: Sequence[str] = (),
) -> Query:
    """Validate report parameters (strings, as from a query string or the CLI); the
    repeatable `filter` comes apart as `filters`."""
    given = set(args) | ({"filter"} if filters else set())
    unknown = sorted(given - allowed)
    if unknown:
        raise BadQuery(
            f"unknown parameter {unknown[0]!r}; this report takes {', '.join(sorted(allowed))}"
        )
    period_raw = args.get("period", "month").strip().lower()
    try:
        period = Period(period_raw)
    except ValueError:
        raise BadQuery(f"period must be one of day, week, month (got {period_raw!r})") from None
    currency = args.get("currency")
    if currency is not None:
        currency = currency.strip().lower()
        if not CURRENCY_RE.match(currency):
            raise BadQuery(f"currency must be a three-letter ISO code (got {currency!r})")
    start = _date(args.get("start"), "start")
    end = _date(args.get("end"), "end")
    if start and end and start >= end:
        raise BadQuery("start must be before end (end is exclusive)")
    group_by = args.get("group_by")
    try:
        Filter.parse(filters)
        if group_by is not None:
            check_key(group_by)
    except BadSegment as exc:
        raise BadQuery(str(exc)) from None
    return Query(currency, period, start, end, _as_of(args.get("as_of")), tuple(filters), group_by)


Document = dict[str, Any]
Report = Callable[[Runtime, Query], Document]


@dataclass(frozen=True)
class Conversion:
    """What a converted report converts with: the rates in force, into the reporting
    currency."""

    rates: fx.Rates
    converter: Converter

    @property
    def target(self) -> str:
        return self.converter.target

    def describe(self) -> dict[str, Any]:
        """The document's `rates`: where they come from and the newest day."""
        return {"source": self.rates.source, "newest": self.rates.history.newest.isoformat()}


def conversion(session: Session, runtime: Runtime) -> Conversion:
    """The conversion into `REPORTING_CURRENCY` with the rates in force; raises `NoRate`
    when they do not cover it."""
    rates = fx.rates_in(session, runtime.settings.database_url)
    return Conversion(rates, rates.converter(runtime.settings.reporting_currency))


def _report(build: Callable[[Session, Query, datetime, Conversion | None], Document]) -> Report:
    """A report as the entry points call it: on the runtime's sessions and clock, and
    converted when the query names no currency."""

    def report(runtime: Runtime, query: Query) -> Document:
        with runtime.sessions() as session:
            converting = None if query.currency else conversion(session, runtime)
            return build(session, query, runtime.now(), converting)

    report.__doc__ = build.__doc__
    return report


def natives(session: Session, lo: date, hi: date) -> dict[str, Native]:
    """Every currency's opening at `lo` and buckets in [lo, hi)."""
    opens = queries.openings(session, lo)
    found = queries.buckets_by_currency(session, lo, hi)
    return {c: Native(opens.get(c, Opening()), found.get(c, [])) for c in sorted({*opens, *found})}


def _movements(
    session: Session, query: Query, now: datetime, converting: Conversion | None
) -> dict[str, Any]:
    """One SPEC §7 row per period of the query's range (default: the last 12 periods)."""
    lo, hi = _range(query, now, query.period, MAX_PERIODS)
    head = {"period": query.period.value, "start": lo.isoformat(), "end": hi.isoformat()}
    if query.segmented:
        return _segmented_movements(session, query, lo, hi, converting)
    if converting is not None:
        done = converted_period_rows(
            natives(session, lo, hi), converting.converter, lo, hi, query.period
        )
        trials = _converted_trial_rows(session, converting.converter, lo, hi, query.period)
        return {
            "currency": done.currency,
            **head,
            "periods": [
                row.to_json() | t.to_json(dates=False)
                for row, t in zip(done.rows, trials, strict=True)
            ],
            "unconverted": done.unconverted,
            "rates": converting.describe(),
        }
    currency = query.currency or "usd"
    opening = queries.opening(session, currency, lo)
    rows = period_rows(opening, queries.buckets(session, currency, lo, hi), lo, hi, query.period)
    trials = _trial_rows(session, currency, lo, hi, query.period)
    return {
        "currency": currency,
        **head,
        "periods": [
            row.to_json() | t.to_json(dates=False) for row, t in zip(rows, trials, strict=True)
        ],
    }


def stored_histories(
    session: Session,
) -> tuple[dict[str, list[SubscriptionEvent]], Catalog]:
    """Every customer's stored subscription events in the ledger's order, customers
    sorted, and the catalog that prices them: what a report derives segments from."""
    by_customer: dict[str, list[SubscriptionEvent]] = defaultdict(list)
    for customer, payload in queries.subscription_event_payloads(session):
        try:
            event = parse_event(json.loads(payload))
        except (InvalidEvent, InvalidValue, ValueError):
            continue  # the ledger leaves it out too (failed or quarantined)
        if event.customer == customer:
            by_customer[customer].append(event)
    catalog = enrich.cached_catalog(
        session, [e.snapshot for events in by_customer.values() for e in events]
    )
    return {c: by_customer[c] for c in sorted(by_customer)}, catalog


def priced(
    events: list[SubscriptionEvent], derive: Callable[[list[SubscriptionEvent]], T]
) -> tuple[T, list[SubscriptionEvent]]:
    """`derive` over a customer's events, and the events it used: as the ledger does, an
    event priced out of range is left out."""
    while True:
        try:
            return derive(events), events
        except InvalidValue as exc:
            if exc.event_id is None:
                raise
            events = [e for e in events if e.id != exc.event_id]


def customer_test(session: Session, wanted: dict[str, frozenset[str]]) -> Callable[[str], bool]:
    """Whether a customer passes the customer keys' filters, by its attributes as of now
    (`none` for a customer never seen as an object)."""
    keys = sorted(wanted)
    known = queries.customer_key_values(session, keys) if keys else {}
    unseen = (NONE,) * len(keys)

    def passes(customer: str) -> bool:
        values = known.get(customer, unseen)
        return all(v in wanted[k] for k, v in zip(keys, values, strict=True))

    return passes


def segment_movements(session: Session, matches: Filter) -> list[Movement]:
    """Every movement of the segment of the items that pass `matches`, of the customers
    that pass its customer keys (SPEC §11)."""
    passes = customer_test(session, matches.customers)
    histories, catalog = stored_histories(session)
    found: list[Movement] = []
    items = matches.items
    for customer, stored in histories.items():
        if not passes(customer):
            continue
        derive = partial(segment_ledger, customer, matches=items, catalog=catalog)
        ledger, _ = priced(stored, derive)
        found += ledger.movements
    return found


def segment_natives(movements: Sequence[Movement], lo: date) -> dict[str, Native]:
    """Every currency's opening at `lo` and daily buckets of a segment's movements, as
    `natives` reads them of the whole ledger."""
    by_currency: dict[str, list[Movement]] = defaultdict(list)
    for m in movements:
        by_currency[m.currency].append(m)
    found = {}
    for currency in sorted(by_currency):
        buckets = buckets_from_movements(by_currency[currency])
        found[currency] = Native(opening_before(buckets, lo), buckets)
    return found


def _parts(
    customer: str,
    matches: Filter,
    group_by: str | None,
    catalog: Catalog,
    shares: Shares,
    events: list[SubscriptionEvent],
) -> tuple[list[Movement], dict[str, CustomerLedger]]:
    """The customer's movements in the segment, and its ledger per group."""
    mine = segment_ledger(customer, events, matches, catalog, shares).movements
    if group_by is None:
        return list(mine), {}
    return list(mine), grouped_ledgers(customer, events, group_by, matches, catalog, shares)


@dataclass
class Segment:
    """What one segment's rows are made of, per currency: its opening at the range's
    start and daily buckets, its trial pipeline at the start and trial buckets."""

    natives: dict[str, Native] = field(default_factory=dict)
    pipelines: dict[str, int] = field(default_factory=dict)
    trials: dict[str, list[TrialBucket]] = field(default_factory=dict)

    def rows(
        self, query: Query, lo: date, hi: date, converting: Conversion | None
    ) -> tuple[list[dict[str, Any]], dict[str, int] | None]:
        """The segment's period rows, in `query.currency` or converted; and, converted,
        the currencies left out."""
        if converting is None:
            currency = query.currency or "usd"
            native = self.natives.get(currency, Native(Opening(), []))
            flows = period_rows(native.opening, native.buckets, lo, hi, query.period)
            ends = trial_rows(
                self.pipelines.get(currency, 0), self.trials.get(currency, []), lo, hi, query.period
            )
            joined = [
                r.to_json() | t.to_json(dates=False) for r, t in zip(flows, ends, strict=True)
            ]
            return joined, None
        done = converted_period_rows(self.natives, converting.converter, lo, hi, query.period)
        spans = boundaries(lo, hi, query.period)
        per_currency = {
            c: trial_rows(self.pipelines.get(c, 0), self.trials.get(c, []), lo, hi, query.period)
            for c in sorted({*self.pipelines, *self.trials})
        }
        ends = converted_trial_rows(per_currency, converting.converter, spans)
        joined = [
            r.to_json() | t.to_json(dates=False) for r, t in zip(done.rows, ends, strict=True)
        ]
        return joined, done.unconverted


def stored_plan(matches: Filter, group: str | None) -> tuple[bool, ItemRows | None]:
    """Whether the segments are sums over stored rows (SPEC §11), and which item
    segments they read (None: the customers' whole ledgers).

    Stored are the ledgers of each single value of each item key: a filter on at most
    one item key with one value, grouped by nothing, a customer key or that same item
    key. Anything else (two item keys, two values of one) has movements of its own,
    derived from the events at report time.
    """
    wanted = matches.items.values
    if not wanted:
        grouped = group is not None and not is_customer_key(group)
        return True, ItemRows(group) if grouped and group is not None else None
    if len(wanted) == 1:
        [(key, values)] = wanted.items()
        if len(values) == 1 and (group is None or is_customer_key(group) or group == key):
            return True, ItemRows(key, values)
    return False, None


def sql_segments(
    session: Session,
    wanted: dict[str, frozenset[str]],
    group: str | None,
    lo: date,
    hi: date,
    items: ItemRows | None = None,
    monthly: bool = False,
) -> dict[str | None, Segment]:
    """Segments summed by SQL over stored rows (`stored_plan`): None the whole, and with
    `group` each of its values. With no customer key, item segments come from their
    daily rollups (`segment_daily`, `segment_trial_daily`; `monthly`: summed per month,
    for monthly rows), else from the stored rows joined with `customers`."""
    found: dict[str | None, Segment] = defaultdict(Segment)
    filtered = items if items is not None and items.values is not None else None
    for key in [None] if group is None else [None, group]:
        source = items if key is not None and not is_customer_key(key) else filtered
        opens: Mapping[tuple[str | None, str], Opening]
        buckets: Mapping[tuple[str | None, str], list[Bucket]]
        pipelines: Mapping[tuple[str | None, str], int]
        trials: Mapping[tuple[str | None, str], list[TrialBucket]]
        if wanted or (key is not None and is_customer_key(key)) or source is None:
            if not wanted and key is None:  # the whole ledger
                opens = {(None, c): o for c, o in queries.openings(session, lo).items()}
                daily = queries.buckets_by_currency(session, lo, hi)
                buckets = {(None, c): b for c, b in daily.items()}
            else:
                opens = queries.segment_openings(session, lo, wanted, key, source)
                buckets = queries.segment_buckets(session, lo, hi, wanted, key, source)
            pipelines, trials = queries.segment_trials(session, lo, hi, wanted, key, source)
        else:  # one or every value of an item key
            rolled = queries.item_rollup_openings(session, lo, source)
            opens = {(v if key else None, c): o for (v, c), o in rolled.items()}
            found_buckets = queries.item_rollup_buckets(session, lo, hi, source, monthly)
            buckets = {(v if key else None, c): b for (v, c), b in found_buckets.items()}
            begun, funnels = queries.item_rollup_trials(session, lo, hi, source, monthly)
            pipelines = {(v if key else None, c): n for (v, c), n in begun.items()}
            trials = {(v if key else None, c): f for (v, c), f in funnels.items()}
        for value, currency in {*opens, *buckets}:
            found[value].natives[currency] = Native(
                opens.get((value, currency), Opening()), buckets.get((value, currency), [])
            )
        for (value, currency), amount in pipelines.items():
            found[value].pipelines[currency] = amount
        for (value, currency), funnel in trials.items():
            found[value].trials[currency] = funnel
    found.setdefault(None, Segment())
    return dict(found)


def _derived_segments(
    session: Session, matches: Filter, group: str | None, lo: date
) -> dict[str | None, Segment]:
    """Segments with an item key (a filter or the group), derived from the stored events
    of the customers the customer keys let through (SPEC §11)."""
    passes = customer_test(session, matches.customers)
    item_group = group if group is not None and not is_customer_key(group) else None
    values = {}
    if group is not None and item_group is None:
        values = {c: v[0] for c, v in queries.customer_key_values(session, [group]).items()}
    histories, catalog = stored_histories(session)
    moved: dict[str | None, list[Movement]] = defaultdict(list)
    trials: dict[str | None, list[TrialTransition]] = defaultdict(list)
    items = matches.items
    for customer, stored in histories.items():
        if not passes(customer):
            continue
        shares = Shares()  # each event priced once, whatever the number of groups
        derive = partial(_parts, customer, items, item_group, catalog, shares)
        (mine, parts), events = priced(stored, derive)
        mine_trials = segment_trials(customer, events, items, catalog=catalog, shares=shares)
        moved[None] += mine
        trials[None] += mine_trials
        if group is not None and item_group is None:  # by a customer key
            mine_value = values.get(customer, NONE)
            moved[mine_value] += mine
            trials[mine_value] += mine_trials
        for value, ledger in parts.items():
            moved[value] += ledger.movements
            trials[value] += segment_trials(
                customer, events, items, item_group, value, catalog, shares
            )
    found: dict[str | None, Segment] = {}
    for key in {None, *moved, *trials}:
        segment = Segment(natives=segment_natives(moved[key], lo))
        by_currency: dict[str, list[TrialTransition]] = defaultdict(list)
        for t in trials[key]:
            by_currency[t.currency].append(t)
        for currency, transitions in by_currency.items():
            funnel = trial_buckets(transitions)
            segment.pipelines[currency] = pipeline_before(funnel, lo)
            segment.trials[currency] = funnel
        found[key] = segment
    return found


def _segmented_movements(
    session: Session, query: Query, lo: date, hi: date, converting: Conversion | None
) -> dict[str, Any]:
    """The movements of the segment the filters select, and with `group_by` of each of
    its groups (SPEC §11): summed by SQL over the stored ledgers where they are stored
    (`stored_plan`), else derived from the stored events."""
    group = query.group_by
    # Summed per month only in one currency: converting, each day's flows take its rate.
    monthly = query.period is Period.MONTH and converting is None
    segments = segments_of(session, query, lo, hi, monthly)
    periods, left_out = segments[None].rows(query, lo, hi, converting)
    doc: dict[str, Any] = {
        "currency": converting.target if converting else (query.currency or "usd"),
        "period": query.period.value,
        "start": lo.isoformat(),
        "end": hi.isoformat(),
        "filter": list(query.filters),
        "periods": periods,
    }
    if converting is not None:
        doc["unconverted"] = left_out
        doc["rates"] = converting.describe()
    if group is not None:
        grouped = [
            (segment.rows(query, lo, hi, converting)[0], value)
            for value, segment in sorted(
                ((v, s) for v, s in segments.items() if v is not None), key=lambda vs: str(vs[0])
            )
        ]
        grouped.sort(key=lambda g: -(g[0][-1]["ending_mrr"] if g[0] else 0))  # stable
        doc["group_by"] = group
        doc["groups"] = [
            {"key": group, "value": value, "periods": periods} for periods, value in grouped
        ]
    return doc


def _trial_rows(
    session: Session, currency: str, lo: date, hi: date, period: Period
) -> list[TrialRow]:
    pipeline = queries.trial_pipeline(session, currency, lo)
    return trial_rows(pipeline, queries.trial_buckets(session, currency, lo, hi), lo, hi, period)


def _converted_trial_rows(
    session: Session, converter: Converter, lo: date, hi: date, period: Period
) -> list[TrialRow]:
    """Every currency's trial funnel in one (SPEC §7, §10): counts summed, the pipeline
    MRR converted at each period's end."""
    pipelines = queries.trial_pipelines(session, lo)
    found = queries.trial_buckets_by_currency(session, lo, hi)
    per_currency = {
        c: trial_rows(pipelines.get(c, 0), found.get(c, []), lo, hi, period)
        for c in sorted({*pipelines, *found})
    }
    return converted_trial_rows(per_currency, converter, boundaries(lo, hi, period))


def _trial_keys(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: r[k] for k in ("period_start", "period_end", *TRIAL_KEYS)} for r in rows]


def _trials(
    session: Session, query: Query, now: datetime, converting: Conversion | None
) -> dict[str, Any]:
    """The trial funnel per period of the query's range (default: the last 12 periods):
    of `currency`, else of every currency, the pipeline MRR converted into the
    reporting currency."""
    lo, hi = _range(query, now, query.period, MAX_PERIODS)
    head = {"period": query.period.value, "start": lo.isoformat(), "end": hi.isoformat()}
    if query.segmented:  # the trial keys of the segment's period rows (SPEC §11)
        doc = _segmented_movements(session, query, lo, hi, converting)
        doc["periods"] = _trial_keys(doc["periods"])
        for group in doc.get("groups", []):
            group["periods"] = _trial_keys(group["periods"])
        return doc
    if converting is not None:
        rows = _converted_trial_rows(session, converting.converter, lo, hi, query.period)
        ending = {c: o.mrr for c, o in queries.openings(session, hi).items()}
        return {
            "currency": converting.target,
            **head,
            "periods": [t.to_json() for t in rows],
            "unconverted": unconverted(ending, converting.rates.history),
            "rates": converting.describe(),
        }
    currency = query.currency or "usd"
    return {
        "currency": currency,
        **head,
        "periods": [t.to_json() for t in _trial_rows(session, currency, lo, hi, query.period)],
    }


def _summary(
    session: Session, query: Query, now: datetime, converting: Conversion | None
) -> dict[str, Any]:
    """MRR, ARR, ARPA, trailing rates, LTV and projection as of now or `as_of`."""
    totals = queries.currency_totals(session)
    as_of = query.as_of or now
    day = as_of.date()
    lo, hi = day - timedelta(days=TRAILING_DAYS - 1), day + timedelta(days=1)
    if query.segmented:
        return _segmented_summary(session, query, as_of, lo, hi, converting)
    if converting is not None:
        if query.as_of is None:
            standing = {t.currency: Opening(t.mrr, t.customers) for t in totals}
            scheduled: dict[str, int] | None = {t.currency: t.scheduled_churn for t in totals}
        else:
            standing = queries.openings(session, hi)
            scheduled = None  # only known for the present
        doc = converted_summary(
            converting.converter, day, standing, scheduled, natives(session, lo, hi), lo, hi
        )
        doc["rates"] = converting.describe()
    else:
        currency = query.currency or "usd"
        if query.as_of is None:
            current = next((t for t in totals if t.currency == currency), None)
            mrr = current.mrr if current else 0
            customers = current.customers if current else 0
            scheduled_native: int | None = current.scheduled_churn if current else 0
        else:
            state = queries.opening(session, currency, hi)
            mrr, customers = state.mrr, state.customers
            scheduled_native = None  # only known for the present
        trailing = period_row(
            queries.opening(session, currency, lo),
            queries.buckets(session, currency, lo, hi),
            lo,
            hi,
        )
        doc = summary(currency, mrr, customers, scheduled_native or 0, trailing)
        doc["scheduled_churn"] = scheduled_native
    doc["as_of"] = as_of.isoformat()
    doc["currencies"] = [
        {"currency": t.currency, "mrr": t.mrr, "customers": t.customers} for t in totals
    ]
    return doc


def segments_of(
    session: Session, query: Query, lo: date, hi: date, monthly: bool = False
) -> dict[str | None, Segment]:
    """The segments the query's filters select (None) and, with `group_by`, its groups:
    summed by SQL where the stored ledgers answer (`stored_plan`), else derived.
    `monthly`: the rows are calendar months from `lo` (buckets may be summed so)."""
    matches = Filter.parse(query.filters)
    stored, items = stored_plan(matches, query.group_by)
    if stored:
        return sql_segments(session, matches.customers, query.group_by, lo, hi, items, monthly)
    return _derived_segments(session, matches, query.group_by, lo)


def _segmented_summary(
    session: Session,
    query: Query,
    as_of: datetime,
    lo: date,
    hi: date,
    converting: Conversion | None,
) -> dict[str, Any]:
    """The summary of the segment the filters select, and with `group_by` of each group
    (SPEC §11), from its trailing window [lo, hi). Scheduled churn is known per customer
    only: a segment's is null, as for a past `as_of`."""
    day = as_of.date()

    def summarised(segment: Segment) -> dict[str, Any]:
        window = {
            c: Native(n.opening, [b for b in n.buckets if lo <= b.day < hi])
            for c, n in segment.natives.items()
        }
        standing = {c: period_row(n.opening, n.buckets, lo, hi).ending for c, n in window.items()}
        if converting is None:
            currency = query.currency or "usd"
            native = window.get(currency, Native(Opening(), []))
            trailing = period_row(native.opening, native.buckets, lo, hi)
            doc = summary(currency, trailing.ending_mrr, trailing.ending_customers, 0, trailing)
            doc["scheduled_churn"] = None
        else:
            doc = converted_summary(converting.converter, day, standing, None, window, lo, hi)
            doc["rates"] = converting.describe()
        doc["as_of"] = as_of.isoformat()
        doc["currencies"] = [
            {"currency": c, "mrr": o.mrr, "customers": o.customers}
            for c, o in sorted(standing.items(), key=lambda co: (-co[1].mrr, co[0]))
            if o.mrr or o.customers
        ]
        return doc

    segments = segments_of(session, query, lo, hi)
    doc = summarised(segments[None])
    doc["filter"] = list(query.filters)
    if query.group_by is not None:
        groups = [
            {"key": query.group_by, "value": value, **summarised(segment)}
            for value, segment in sorted(
                ((v, s) for v, s in segments.items() if v is not None), key=lambda vs: str(vs[0])
            )
        ]
        groups.sort(key=lambda g: -g["mrr"])  # stable: by value among equals
        doc["group_by"] = query.group_by
        doc["groups"] = groups
    return doc


def _cohorts(
    session: Session, query: Query, now: datetime, converting: Conversion | None
) -> dict[str, Any]:
    """Cohorts by month of first `new`; default: the 12 months up to `as_of`'s month."""
    lo, hi = _range(query, now, Period.MONTH, MAX_COHORT_MONTHS)
    head = {"start": lo.isoformat(), "end": hi.isoformat()}
    if converting is not None:
        flows = {c: queries.cohort_flows(session, c, lo, hi) for c in queries.currencies(session)}
        ending = {c: o.mrr for c, o in queries.openings(session, hi).items()}
        return {
            "currency": converting.target,
            **head,
            "cohorts": converted_cohort_table(flows, converting.converter, lo, hi),
            "unconverted": unconverted(ending, converting.rates.history),
            "rates": converting.describe(),
        }
    currency = query.currency or "usd"
    return {
        "currency": currency,
        **head,
        "cohorts": cohort_table(queries.cohort_flows(session, currency, lo, hi), lo, hi),
    }


summary_report = _report(_summary)
movements_report = _report(_movements)
cohorts_report = _report(_cohorts)
trials_report = _report(_trials)
#: The reports `mrr report` and `/reports/<name>` share, by name.
REPORTS: dict[str, Report] = {
    "summary": summary_report,
    "movements": movements_report,
    "cohorts": cohorts_report,
    "trials": trials_report,
}


def valid_customer_id(customer_id: str) -> bool:
    """Whether `customer_id` could be stored at all (a NUL or over-long id never was)."""
    try:
        storable(customer_id, "customer id")
    except InvalidValue:
        return False
    return True


def customer_report(runtime: Runtime, customer_id: str) -> dict[str, Any] | None:
    """A customer's MRR timeline and movements, and its MRR converted into the reporting
    currency at today's rates (`converted`); None for a customer never seen."""
    with runtime.sessions() as session:
        doc = _customer(session, customer_id)
        if doc is None:
            return None
        try:
            converting: Conversion | None = conversion(session, runtime)
        except NoRate:
            converting = None  # the reporting currency has no rate: nothing to convert into
    doc["converted"] = (
        None
        if converting is None
        else {
            "currency": converting.target,
            "mrr": converting.converter.total(doc["mrr"], runtime.now().date()),
            "unconverted": unconverted(doc["mrr"], converting.rates.history),
        }
    )
    return doc


def find_customers(runtime: Runtime, text: str, limit: int) -> list[str]:
    """Up to `limit` customer ids containing `text` (the dashboard's search)."""
    with runtime.sessions() as session:
        return queries.find_customers(session, text, limit)


def _customer(session: Session, customer_id: str) -> dict[str, Any] | None:
    subs = queries.customer_subscriptions(session, customer_id)
    if not subs:
        return None
    movements = queries.customer_movements(session, customer_id)
    mrr: dict[str, int] = {}
    for s in subs:
        mrr[s.currency] = mrr.get(s.currency, 0) + s.mrr
    return {
        "customer_id": customer_id,
        "mrr": mrr,
        "subscriptions": [
            {
                "id": s.id,
                "currency": s.currency,
                "status": s.status,
                "mrr": s.mrr,
                "scheduled_to_cancel": s.scheduled_to_cancel,
                "last_event_at": s.last_event_at.isoformat(),
            }
            for s in subs
        ],
        "timeline": [
            {"at": m.occurred_at.isoformat(), "currency": m.currency, "mrr": m.mrr_after}
            for m in movements
        ],
        "movements": [
            {
                "at": m.occurred_at.isoformat(),
                "currency": m.currency,
                "type": m.type,
                "amount": m.amount,
                "mrr_before": m.mrr_before,
                "mrr_after": m.mrr_after,
                "kind": m.kind,
                "subscription_id": m.subscription_id,
                "event_id": m.event_id,
                "churn_reason": m.churn_reason,
                "churn_feedback": m.churn_feedback,
                "delinquent": m.delinquent,
            }
            for m in movements
        ],
    }


def _range(query: Query, now: datetime, period: Period, most: int) -> tuple[date, date]:
    """The snapped [start, end) of a report; default: the 12 periods up to `as_of`."""
    end = query.end or (query.as_of or now).date() + timedelta(days=1)
    start = query.start
    if start is None:
        start = floor(end - timedelta(days=1), period)
        for _ in range(11):
            start = floor(start - timedelta(days=1), period)
    if start >= end:
        raise BadQuery("start must be before end (end is exclusive)")
    lo, hi = snap(start, end, period)
    if len(boundaries(lo, hi, period)) > most:
        raise BadQuery(f"at most {most} periods per request")
    return lo, hi


def _date(raw: str | None, name: str) -> date | None:
    if raw is None:  # absent: the default; present but empty is a bad date
        return None
    try:
        value = date.fromisoformat(raw.strip())
    except ValueError:
        raise BadQuery(f"{name} must be a date YYYY-MM-DD (got {raw!r})") from None
    return _in_range(value, name)


def _in_range(value: date, name: str) -> date:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise BadQuery(f"{name} must lie between {MIN_YEAR} and {MAX_YEAR}")
    return value


def _as_of(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    text = raw.strip()
    try:
        if len(text) == 10:  # a date: the end of that UTC day
            parsed = datetime.combine(date.fromisoformat(text), time(23, 59, 59), tzinfo=UTC)
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"as_of must be a date or an ISO-8601 time (got {raw!r})") from None
    try:
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:
        raise BadQuery(f"as_of is out of range (got {raw!r})") from None
    _in_range(parsed.date(), "as_of")  # in UTC: 1970-01-01T00:00+14:00 is 1969
    return parsed
