"""Queries that feed `reporting/`: daily buckets, openings, balances. Read-only."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from typing import cast as typing_cast

from sqlalchemy import Date, Table, case, cast, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from ledger.events import SUBSCRIPTION_EVENT_TYPES
from ledger.segments import ITEM_KEYS
from ledger.timeline import MovementType
from models.ledger_store import RollupKey
from models.tables import (
    CustomerBalance,
    CustomerRow,
    CustomerSegment,
    EventStatus,
    InboxEvent,
    LedgerDaily,
    LedgerMovement,
    SegmentDaily,
    SegmentMovement,
    SegmentTrial,
    SegmentTrialDaily,
    SubscriptionRow,
    TrialTransitionRow,
)
from reporting.cohorts import CohortFlow
from reporting.rows import Bucket, Opening
from reporting.trials import TrialBucket


@dataclass(frozen=True)
class CurrencyTotals:
    currency: str
    mrr: int
    customers: int
    scheduled_churn: int


def buckets(session: Session, currency: str, start: date, end: date) -> list[Bucket]:
    """Movements of `currency` in [start, end), summed per day, type, kind and reason.

    Read from the `ledger_daily` rollup: a year is a few thousand rows at most,
    whatever the number of customers.
    """
    return buckets_by_currency(session, start, end, currency).get(currency, [])


def buckets_by_currency(
    session: Session, start: date, end: date, currency: str | None = None
) -> dict[str, list[Bucket]]:
    """`buckets` of every currency (or of `currency` only), by currency."""
    d = LedgerDaily
    where = [d.day >= start, d.day < end, d.count != 0]
    if currency is not None:
        where.append(d.currency == currency)
    # On the session's connection: Core rows, without the ORM's result layer; all at
    # once: iterating a result fetches row by row, a driver call each.
    rows: Iterable[Any] = (
        session.connection()
        .execute(select(*RollupKey.of_rollup(), d.amount, d.count).where(*where))
        .all()
    )
    found: dict[str, list[Bucket]] = {}
    # Unpacked in RollupKey's order, without a RollupKey per row: a converted year is
    # tens of thousands of rows, and building objects is most of the report's time.
    for code, day, type_, kind, reason, delinquent, amount, count in rows:
        into = found.get(code)
        if into is None:
            into = found[code] = []
        into.append(
            Bucket(
                day, type_, int(amount), int(count), kind or None, reason or None, bool(delinquent)
            )
        )
    return found


def trial_buckets(session: Session, currency: str, start: date, end: date) -> list[TrialBucket]:
    """Trial transitions of `currency` in [start, end), counted per day and transition."""
    return trial_buckets_by_currency(session, start, end, currency).get(currency, [])


def trial_buckets_by_currency(
    session: Session, start: date, end: date, currency: str | None = None
) -> dict[str, list[TrialBucket]]:
    """`trial_buckets` of every currency (or of `currency`), by currency."""
    t = TrialTransitionRow
    conditions = [t.occurred_day >= start, t.occurred_day < end]
    if currency is not None:
        conditions.append(t.currency == currency)
    rows = session.execute(
        select(t.currency, t.occurred_day, t.transition, func.count(), func.sum(t.pipeline_delta))
        .where(*conditions)
        .group_by(t.currency, t.occurred_day, t.transition)
    )
    found: dict[str, list[TrialBucket]] = defaultdict(list)
    for code, day, kind, count, delta in rows:
        found[str(code)].append(TrialBucket(_as_date(day), str(kind), int(count), int(delta or 0)))
    return dict(found)


def trial_pipeline(session: Session, currency: str, before: date) -> int:
    """The pipeline MRR of `currency`'s running trials at the start of day `before`."""
    return trial_pipelines(session, before, currency).get(currency, 0)


def trial_pipelines(session: Session, before: date, currency: str | None = None) -> dict[str, int]:
    """`trial_pipeline` of every currency with a trial before `before` (or of `currency`)."""
    t = TrialTransitionRow
    conditions = [t.occurred_day < before]
    if currency is not None:
        conditions.append(t.currency == currency)
    rows = session.execute(
        select(t.currency, func.coalesce(func.sum(t.pipeline_delta), 0))
        .where(*conditions)
        .group_by(t.currency)
    )
    return {str(code): int(total or 0) for code, total in rows}


def opening(session: Session, currency: str, before: date) -> Opening:
    """MRR and paying customers of `currency` at the start of day `before`.

    Each customer's MRR is the sum of its signed movements, and the paying customers
    the sum of the movements' paying deltas (`MovementType`): two sums over the daily
    rollup, no scan per customer.
    """
    return openings(session, before, currency).get(currency, Opening())


def openings(session: Session, before: date, currency: str | None = None) -> dict[str, Opening]:
    """`opening` of every currency with a movement before `before` (or of `currency`)."""
    d = LedgerDaily
    # The movement types' own rules (sign, paying delta), as SQL.
    signed = case(*((d.type == t.value, t.sign * d.amount) for t in MovementType))
    joins = case(
        *((d.type == t.value, t.paying_delta * d.count) for t in MovementType if t.paying_delta),
        else_=0,
    )
    where = [d.day < before]
    if currency is not None:
        where.append(d.currency == currency)
    rows = session.execute(
        select(d.currency, func.coalesce(func.sum(signed), 0), func.coalesce(func.sum(joins), 0))
        .where(*where)
        .group_by(d.currency)
    )
    return {c: Opening(int(mrr), int(customers)) for c, mrr, customers in rows}


def currencies(session: Session) -> list[str]:
    """Every currency with a movement in the ledger, sorted."""
    d = LedgerDaily
    return sorted(session.scalars(select(d.currency).group_by(d.currency)))


def cohort_flows(session: Session, currency: str, start: date, end: date) -> list[CohortFlow]:
    """Movements of customers whose first `new` is in [start, end), per cohort month,
    movement month and type (a join with `customer_balances.first_new_at`)."""
    m, b = LedgerMovement, CustomerBalance
    start_at = datetime.combine(start, time(), tzinfo=UTC)
    end_at = datetime.combine(end, time(), tzinfo=UTC)
    cohort = _month(session, b.first_new_at)
    month = _month(session, m.occurred_day)
    rows = session.execute(
        select(cohort, month, m.type, func.sum(m.amount), func.count())
        .join(b, (b.customer_id == m.customer_id) & (b.currency == m.currency))
        .where(
            m.currency == currency,
            b.first_new_at >= start_at,
            b.first_new_at < end_at,
            m.occurred_day < end,
        )
        .group_by(cohort, month, m.type)
    )
    return [CohortFlow(_as_date(c), _as_date(mo), t, int(a), int(n)) for c, mo, t, a, n in rows]


def _month(session: Session, column: Any) -> Any:
    """First day of the column's month, as a date (PostgreSQL) or an ISO string (SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.date_trunc("month", column), Date)
    return func.strftime("%Y-%m-01", column)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def currency_totals(session: Session) -> list[CurrencyTotals]:
    """Current MRR, paying customers and scheduled churn per currency, most MRR first."""
    b = CustomerBalance
    rows = session.execute(
        select(
            b.currency,
            func.sum(b.mrr),
            func.sum(case((b.mrr > 0, 1), else_=0)),
            func.sum(b.scheduled_churn),
        ).group_by(b.currency)
    )
    totals = [CurrencyTotals(c, int(m or 0), int(n or 0), int(s or 0)) for c, m, n, s in rows]
    return sorted(totals, key=lambda t: (-t.mrr, t.currency))


def customer_movements(session: Session, customer_id: str) -> list[LedgerMovement]:
    return list(
        session.scalars(
            select(LedgerMovement)
            .where(LedgerMovement.customer_id == customer_id)
            .order_by(LedgerMovement.occurred_at, LedgerMovement.currency, LedgerMovement.seq)
        )
    )


def customer_subscriptions(session: Session, customer_id: str) -> list[SubscriptionRow]:
    return list(
        session.scalars(
            select(SubscriptionRow)
            .where(SubscriptionRow.customer_id == customer_id)
            .order_by(SubscriptionRow.id)
        )
    )


def find_customers(session: Session, text: str, limit: int) -> list[str]:
    """Up to `limit` customer ids containing `text` (case-insensitive; `%` and `_` are
    literal), the exact id first, then in order."""
    ids = SubscriptionRow.customer_id
    found = session.scalars(
        select(ids)
        .where(ids.icontains(text, autoescape=True))
        .group_by(ids)
        .order_by(case((ids == text, 0), else_=1), ids)
        .limit(limit)
    )
    return list(found)


@dataclass(frozen=True)
class LedgerSubscription:
    """A subscription as the ledger holds it, for reconcile: who, status, MRR."""

    id: str
    customer_id: str
    status: str
    currency: str
    mrr: int
    last_event_id: str


def ledger_subscriptions(session: Session) -> dict[str, LedgerSubscription]:
    """Every subscription in the ledger, by id (a few columns each: 100k fit in memory)."""
    s = SubscriptionRow
    rows = session.execute(
        select(s.id, s.customer_id, s.status, s.currency, s.mrr, s.last_event_id)
    )
    return {r[0]: LedgerSubscription(*r) for r in rows}


def movements_between(
    session: Session,
    currency: str | None,
    start: date,
    end: date,
    movement_type: str,
    kind: str | None = None,
    reason_key: str | None = None,
    delinquent: bool | None = None,
) -> list[LedgerMovement]:
    """The stored movements behind one figure of a period row (SPEC §12): those of
    `currency` (None: every currency) and `movement_type` on the UTC days [start, end),
    of `kind` or churn `reason_key` when given; in time order, ties by customer id,
    currency and sequence."""
    m = LedgerMovement
    conditions = [
        # The time range too, which the index on `occurred_at` serves for every currency.
        m.occurred_at >= datetime.combine(start, time(), UTC),
        m.occurred_at < datetime.combine(end, time(), UTC),
        m.occurred_day >= start,
        m.occurred_day < end,
        m.type == movement_type,
    ]
    if currency is not None:
        conditions.append(m.currency == currency)
    if kind is not None:
        conditions.append(m.kind == kind)
    if reason_key is not None:
        conditions.append(m.reason_key == reason_key)
    if delinquent is not None:
        conditions.append(m.delinquent == delinquent)
    return list(
        session.scalars(
            select(m).where(*conditions).order_by(m.occurred_at, m.customer_id, m.currency, m.seq)
        )
    )


def latest_movements(session: Session, limit: int) -> list[LedgerMovement]:
    """The `limit` latest movements of every currency, newest first, ties by customer id
    (then currency and sequence, so the order is total)."""
    m = LedgerMovement
    return list(
        session.scalars(
            select(m).order_by(m.occurred_at.desc(), m.customer_id, m.currency, m.seq).limit(limit)
        )
    )


def movements_on_days(session: Session, start: date, end: date) -> list[LedgerMovement]:
    """Every movement of every currency on the UTC days [start, end), in time order,
    ties by customer id and currency."""
    m = LedgerMovement
    return list(
        session.scalars(
            select(m)
            .where(m.occurred_day >= start, m.occurred_day < end)
            .order_by(m.occurred_at, m.customer_id, m.currency, m.seq)
        )
    )


def subscription_event_payloads(session: Session) -> list[tuple[str, str]]:
    """(customer id, payload) of every stored subscription event the ledger may use
    (quarantined ones left out, as in `ledger_store.customer_rows`)."""
    e = InboxEvent
    rows = session.execute(
        select(e.customer_id, e.payload).where(
            e.type.in_(SUBSCRIPTION_EVENT_TYPES),
            e.status != EventStatus.QUARANTINED,
            e.customer_id.is_not(None),
        )
    )
    return [(str(c), str(p)) for c, p in rows]


# Segments by customer keys (SPEC §11): the movements of the customers whose attributes
# (as of now, the `customers` table) pass the filters, summed by SQL like the rollup's
# buckets; a customer never seen as an object is `none` for every key.

#: A customer key's filter: {key: the values any one of which passes}.
CustomerFilter = dict[str, frozenset[str]]
NONE = "none"


def customer_value(session: Session, key: str) -> Any:
    """A customer key's value as SQL over `customers` (outer-joined: NULL columns when
    the customer was never seen), `none` when absent."""
    c = CustomerRow
    if key == "country":
        return func.coalesce(c.country, c.shipping_country, NONE)
    name = key.removeprefix("metadata.")
    found: Any
    if session.get_bind().dialect.name == "postgresql":
        found = cast(c.metadata_json, JSONB).op("->>")(name)
    else:
        found = func.json_extract(c.metadata_json, f'$."{name}"')  # the key has no quote
    # An empty value is a removed one (Stripe unsets metadata with an empty string).
    return func.coalesce(func.nullif(found, ""), NONE)


@dataclass(frozen=True)
class ItemRows:
    """Which item segments a segment query reads (SPEC §11): the ledgers of the values
    of the item key `key` (all of them, or those in `values`), as stored at apply time
    (`ledger.segments.item_segments`)."""

    key: str
    values: frozenset[str] | None = None


#: The columns of a customer's rows that segment queries read, per table they read.
_MOVEMENT_COLUMNS = (
    *("customer_id", "currency", "occurred_day", "type", "kind", "reason_key"),
    *("delinquent", "amount"),
)
_TRIAL_COLUMNS = ("customer_id", "currency", "occurred_day", "transition", "pipeline_delta")


def _movement_source(items: ItemRows | None) -> Any:
    """The movements a segment query sums: the ledger's own, or the item segments'."""
    return _source(LedgerMovement, SegmentMovement, _MOVEMENT_COLUMNS, items)


def _trial_source(items: ItemRows | None) -> Any:
    """The trial transitions a segment query sums, as `_movement_source`."""
    return _source(TrialTransitionRow, SegmentTrial, _TRIAL_COLUMNS, items)


def _source(
    whole_model: Any, own_model: Any, columns: Sequence[str], items: ItemRows | None
) -> Any:
    """The customers' own rows of `whole_model` (no `items`), or the item segments'
    rows with their `value`: a `whole` segment's read through `whole_model` joined with
    `customer_segments`, the others' from `own_model`."""
    w = cast_table(whole_model)
    if items is None:
        return w
    cs, s = cast_table(CustomerSegment), cast_table(own_model)
    whole = (
        select(cs.c.value, *(w.c[n] for n in columns))
        .select_from(w)
        .join(cs, (cs.c.customer_id == w.c.customer_id) & (cs.c.key == items.key) & cs.c.whole)
    )
    own = select(s.c.value, *(s.c[n] for n in columns)).where(s.c.key == items.key)
    if items.values is not None:
        whole = whole.where(cs.c.value.in_(sorted(items.values)))
        own = own.where(s.c.value.in_(sorted(items.values)))
    return whole.union_all(own).subquery(f"{own_model.__tablename__}_rows")


def cast_table(model: Any) -> Table:
    return typing_cast(Table, model.__table__)


def _group_value(session: Session, group: str | None, source: Any) -> tuple[Any, ...]:
    """The columns a segment query adds to its select and GROUP BY: the customer key's
    value, the item key's (the source's `value`), or none."""
    if group is None:
        return ()
    if group in ITEM_KEYS:
        return (source.c.value,)
    return (customer_value(session, group),)


def _split_group(row: Any, group: str | None) -> tuple[str | None, tuple[Any, ...]]:
    """(the group's value or None, the rest of a segment query's row)."""
    values = tuple(row)
    return (str(values[0]), values[1:]) if group else (None, values)


def _customer_conditions(session: Session, wanted: CustomerFilter) -> list[Any]:
    return [customer_value(session, k).in_(sorted(v)) for k, v in sorted(wanted.items())]


def _joined(query: Any, source: Any, session: Session, wanted: CustomerFilter, group: Any) -> Any:
    """`query` over `source`, outer-joined with `customers` when a customer key is
    filtered or grouped by."""
    query = query.select_from(source)
    c = CustomerRow
    if wanted and not any(NONE in values for values in wanted.values()):
        # Only customers seen as objects can pass: an inner join lets PostgreSQL find
        # the matching customers first and their rows by the customer index (a tenth of
        # the customers: a nested loop instead of hashing them all and every row).
        query = query.join(c, c.id == source.c.customer_id)
    elif wanted or (group is not None and group not in ITEM_KEYS):
        query = query.outerjoin(c, c.id == source.c.customer_id)
    return query.where(*_customer_conditions(session, wanted))


def segment_buckets(
    session: Session,
    start: date,
    end: date,
    wanted: CustomerFilter,
    group: str | None,
    items: ItemRows | None = None,
) -> dict[tuple[str | None, str], list[Bucket]]:
    """Buckets of the matching customers' movements (of the item segments `items`, else
    their whole ledgers) in [start, end), by (the group's value or None; currency)."""
    m = _movement_source(items)
    value = _group_value(session, group, m)
    keys = (m.c.currency, m.c.occurred_day, m.c.type, m.c.kind, m.c.reason_key, m.c.delinquent)
    query = select(*value, *keys, func.sum(m.c.amount), func.count())
    rows = session.execute(
        _joined(query, m, session, wanted, group)
        .where(m.c.occurred_day >= start, m.c.occurred_day < end)
        .group_by(*value, *keys)
    ).all()
    found: dict[tuple[str | None, str], list[Bucket]] = defaultdict(list)
    for row in rows:
        v, (code, day, type_, kind, reason, delinquent, amount, count) = _split_group(row, group)
        found[(v, code)].append(
            Bucket(
                _as_date(day),
                type_,
                int(amount),
                int(count),
                kind or None,
                reason or None,
                bool(delinquent),
            )
        )
    return dict(found)


def segment_openings(
    session: Session,
    before: date,
    wanted: CustomerFilter,
    group: str | None,
    items: ItemRows | None = None,
) -> dict[tuple[str | None, str], Opening]:
    """MRR and paying customers of the matching customers (of the item segments
    `items`) at the start of `before`."""
    m = _movement_source(items)
    value = _group_value(session, group, m)
    signed = case(*((m.c.type == t.value, t.sign * m.c.amount) for t in MovementType))
    joins = case(
        *((m.c.type == t.value, t.paying_delta) for t in MovementType if t.paying_delta), else_=0
    )
    query = select(*value, m.c.currency, func.sum(signed), func.sum(joins))
    rows = session.execute(
        _joined(query, m, session, wanted, group)
        .where(m.c.occurred_day < before)
        .group_by(*value, m.c.currency)
    )
    found = {}
    for row in rows:
        v, (code, mrr, n) = _split_group(row, group)
        found[(v, code)] = Opening(int(mrr or 0), int(n or 0))
    return found


def segment_trials(
    session: Session,
    start: date,
    end: date,
    wanted: CustomerFilter,
    group: str | None,
    items: ItemRows | None = None,
) -> tuple[dict[tuple[str | None, str], int], dict[tuple[str | None, str], list[TrialBucket]]]:
    """The matching customers' (item segments') trial pipeline at `start` and trial
    buckets in [start, end), by (value of `group` or None, currency)."""
    t = _trial_source(items)
    value = _group_value(session, group, t)
    begun_query = select(*value, t.c.currency, func.sum(t.c.pipeline_delta))
    pipelines = session.execute(
        _joined(begun_query, t, session, wanted, group)
        .where(t.c.occurred_day < start)
        .group_by(*value, t.c.currency)
    )
    query = select(
        *value,
        t.c.currency,
        t.c.occurred_day,
        t.c.transition,
        func.count(),
        func.sum(t.c.pipeline_delta),
    )
    rows = session.execute(
        _joined(query, t, session, wanted, group)
        .where(t.c.occurred_day >= start, t.c.occurred_day < end)
        .group_by(*value, t.c.currency, t.c.occurred_day, t.c.transition)
    )
    found: dict[tuple[str | None, str], list[TrialBucket]] = defaultdict(list)
    for row in rows:
        v, (code, day, kind, count, delta) = _split_group(row, group)
        found[(v, code)].append(TrialBucket(_as_date(day), str(kind), int(count), int(delta or 0)))
    begun = {}
    for row in pipelines:
        v, (code, amount) = _split_group(row, group)
        begun[(v, code)] = int(amount or 0)
    return begun, dict(found)


def item_rollup_buckets(
    session: Session, start: date, end: date, items: ItemRows, monthly: bool = False
) -> dict[tuple[str, str], list[Bucket]]:
    """Buckets of the item segments `items` in [start, end) by (value, currency), read
    from the `segment_daily` rollup. `monthly`: summed per calendar month, dated its
    first day (for monthly rows: a thirtieth of the rows to read and build)."""
    d = SegmentDaily
    day: Any = _month(session, d.day) if monthly else d.day
    where = [d.key == items.key, d.day >= start, d.day < end, d.count != 0]
    if items.values is not None:
        where.append(d.value.in_(sorted(items.values)))
    keys = (d.value, d.currency, day, d.type, d.kind, d.reason_key, d.delinquent)
    rows = (
        session.connection()
        .execute(select(*keys, func.sum(d.amount), func.sum(d.count)).where(*where).group_by(*keys))
        .all()
    )
    found: dict[tuple[str, str], list[Bucket]] = defaultdict(list)
    for value, code, on, type_, kind, reason, delinquent, amount, count in rows:
        found[(value, code)].append(
            Bucket(
                _as_date(on),
                type_,
                int(amount),
                int(count),
                kind or None,
                reason or None,
                bool(delinquent),
            )
        )
    return dict(found)


def item_rollup_trials(
    session: Session, start: date, end: date, items: ItemRows, monthly: bool = False
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], list[TrialBucket]]]:
    """The item segments' trial pipelines at `start` and trial buckets in [start, end)
    by (value, currency), from `segment_trial_daily` (`monthly` as for the buckets)."""
    d = SegmentTrialDaily
    where = [d.key == items.key]
    if items.values is not None:
        where.append(d.value.in_(sorted(items.values)))
    begun = session.execute(
        select(d.value, d.currency, func.sum(d.amount))
        .where(*where, d.day < start)
        .group_by(d.value, d.currency)
    )
    pipelines = {(str(v), str(c)): int(total or 0) for v, c, total in begun}
    day: Any = _month(session, d.day) if monthly else d.day
    keys = (d.value, d.currency, day, d.transition)
    rows = session.execute(
        select(*keys, func.sum(d.count), func.sum(d.amount))
        .where(*where, d.day >= start, d.day < end, d.count != 0)
        .group_by(*keys)
    )
    found: dict[tuple[str, str], list[TrialBucket]] = defaultdict(list)
    for value, code, on, kind, count, delta in rows:
        found[(str(value), str(code))].append(
            TrialBucket(_as_date(on), str(kind), int(count), int(delta or 0))
        )
    return pipelines, dict(found)


def item_rollup_openings(
    session: Session, before: date, items: ItemRows
) -> dict[tuple[str, str], Opening]:
    """Openings of the item segments `items` at the start of `before` by (value,
    currency), from `segment_daily`."""
    d = SegmentDaily
    signed = case(*((d.type == t.value, t.sign * d.amount) for t in MovementType))
    joins = case(
        *((d.type == t.value, t.paying_delta * d.count) for t in MovementType if t.paying_delta),
        else_=0,
    )
    where = [d.key == items.key, d.day < before]
    if items.values is not None:
        where.append(d.value.in_(sorted(items.values)))
    rows = session.execute(
        select(d.value, d.currency, func.sum(signed), func.sum(joins))
        .where(*where)
        .group_by(d.value, d.currency)
    )
    return {(v, c): Opening(int(mrr or 0), int(n or 0)) for v, c, mrr, n in rows}


def customer_key_values(session: Session, keys: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each customer seen as an object: its values of `keys`, in order (the same SQL as
    the segment queries'). A customer not listed is `none` for every key."""
    c = CustomerRow
    rows = session.execute(select(c.id, *(customer_value(session, k) for k in keys)))
    return {str(row[0]): tuple(str(v) for v in row[1:]) for row in rows}
