"""Reading customers' events and writing their derived ledgers, in the caller's transaction.

Every function takes many customers at once: a worker applies a batch of customers in
one transaction with a fixed number of statements, whatever the batch's size.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Exists,
    Row,
    Select,
    Table,
    bindparam,
    delete,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy import insert as insert_into
from sqlalchemy.orm import Session

from ledger.events import SUBSCRIPTION_EVENT_TYPES
from ledger.timeline import CustomerLedger, Movement
from ledger.trials import TrialTransition
from models.clock import utcnow
from models.db import dialect_insert
from models.tables import (
    CustomerBalance,
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

#: Tables rewritten per customer, in the order a ledger write deletes from them.
DERIVED_BY_CUSTOMER = (
    LedgerMovement,
    SubscriptionRow,
    CustomerBalance,
    TrialTransitionRow,
    CustomerSegment,
    SegmentMovement,
    SegmentTrial,
)


def at(unix_seconds: int) -> datetime:
    return datetime.fromtimestamp(unix_seconds, UTC)


def customer_rows(session: Session, customers: Collection[str]) -> list[Row[Any]]:
    """Every stored subscription event of the customers that the ledger may use, as rows
    of `id, customer_id, status, received_at, warnings, payload` (no ORM objects).

    The ledger is a function of the events received, whatever their bookkeeping
    status; only quarantined events are left out of it (SPEC §8).
    """
    if not customers:
        return []
    e = InboxEvent
    return list(
        session.execute(
            select(e.id, e.customer_id, e.status, e.received_at, e.warnings, e.payload).where(
                e.customer_id.in_(sorted(customers)),
                e.type.in_(SUBSCRIPTION_EVENT_TYPES),
                e.status != EventStatus.QUARANTINED,
            )
        )
    )


def customers_with_events(session: Session) -> list[str]:
    """Every customer that has a stored subscription event, sorted."""
    return list(
        session.scalars(_customers_with_events().distinct().order_by(InboxEvent.customer_id))
    )


def _customers_with_events() -> Select[str | None]:
    """Customer ids of stored subscription events (one row per event)."""
    return select(InboxEvent.customer_id).where(
        InboxEvent.customer_id.is_not(None), InboxEvent.type.in_(SUBSCRIPTION_EVENT_TYPES)
    )


def delete_orphans(session: Session) -> int:
    """Delete derived rows of customers without stored events; returns customers affected.

    `NOT EXISTS`, not `NOT IN (subquery)`: PostgreSQL runs the latter as a nested loop
    over the whole inbox once its customer ids outgrow `work_mem` (a rebuild of
    1,000,000 events hit the statement timeout here); the former is an anti-join.
    """
    orphans = count_orphans(session)
    for table in DERIVED_BY_CUSTOMER:
        session.execute(delete(table).where(~_has_events(table.customer_id)))
    return orphans


def count_orphans(session: Session) -> int:
    """Customers with derived rows and no stored subscription event."""
    orphans = session.scalar(
        select(func.count(func.distinct(SubscriptionRow.customer_id))).where(
            ~_has_events(SubscriptionRow.customer_id)
        )
    )
    return int(orphans or 0)


def _has_events(customer_id: Any) -> Exists:
    """Whether the customer in `customer_id` has a stored subscription event."""
    return exists().where(
        InboxEvent.customer_id == customer_id, InboxEvent.type.in_(SUBSCRIPTION_EVENT_TYPES)
    )


def write_ledgers(
    session: Session,
    ledgers: Sequence[CustomerLedger],
    applied: Iterable[Row[Any]],
) -> None:
    """Replace the customers' ledger rows with `ledgers` and mark `applied` events processed.

    `applied` are the inbox rows the ledgers were derived from (loaded under the
    customers' locks). Idempotent: writing the same ledgers twice leaves the same rows.
    A fixed number of statements for any number of customers. Does not commit.
    """
    if not ledgers:
        return
    customers = sorted(ledger.customer_id for ledger in ledgers)
    _apply_rollup_delta(session, customers, ledgers)
    _apply_segment_rollup_delta(session, customers, ledgers)
    _apply_segment_trial_delta(session, customers, ledgers)
    for table in DERIVED_BY_CUSTOMER:
        session.execute(delete(table).where(table.customer_id.in_(customers)))
    movements = [_movement_row(m) for ledger in ledgers for m in ledger.movements]
    subscriptions = [
        {
            "id": s.id,
            "customer_id": s.customer_id,
            "currency": s.currency,
            "status": s.status,
            "mrr": s.mrr,
            "scheduled_to_cancel": s.scheduled_to_cancel,
            "last_event_id": s.last_event_id,
            "last_event_at": at(s.last_event_created),
            "warnings": encode_warnings(s.warnings),
        }
        for ledger in ledgers
        for s in ledger.subscriptions
    ]
    now = utcnow()
    balances = [
        {
            "customer_id": b.customer_id,
            "currency": b.currency,
            "mrr": b.mrr,
            "scheduled_churn": b.scheduled_churn,
            "first_new_at": at(b.first_new_at) if b.first_new_at is not None else None,
            "updated_at": now,
        }
        for ledger in ledgers
        for b in ledger.balances
    ]
    trials = [trial_row(t) for ledger in ledgers for t in ledger.trials]
    segments, segment_moves, segment_trials = (
        [dict(zip(columns, row, strict=True)) for row in rows]
        for columns, rows in zip(
            (SEGMENT_COLUMNS, SEGMENT_MOVEMENT_COLUMNS, SEGMENT_TRIAL_COLUMNS),
            segment_rows(ledgers),
            strict=True,
        )
    )
    for table, rows in (
        (LedgerMovement, movements),
        (SubscriptionRow, subscriptions),
        (CustomerBalance, balances),
        (TrialTransitionRow, trials),
        (CustomerSegment, segments),
        (SegmentMovement, segment_moves),
        (SegmentTrial, segment_trials),
    ):
        if rows:  # Core executemany: the ORM's bulk path costs five times the CPU
            session.execute(insert_into(cast(Table, table.__table__)), rows)
    warnings: dict[str, tuple[str, ...]] = {}
    for ledger in ledgers:
        warnings.update(ledger.warnings)
    mark_applied(session, applied, warnings, now)


def mark_applied(
    session: Session,
    applied: Iterable[Any],
    warnings: Mapping[str, tuple[str, ...]],
    now: datetime,
) -> None:
    """Mark inbox rows a written ledger was derived from as processed, with the warnings
    the ledger found for them (`applied` are rows as loaded: `id, status, received_at,
    warnings`); rows already so are left alone. Does not commit."""
    changes = []
    # In id order, as every writer of inbox rows, so two never wait on each other in a cycle.
    for row in sorted(applied, key=lambda r: r.id):
        encoded = encode_warnings(warnings.get(row.id, ()))
        values: dict[str, Any] = {}
        if encoded != row.warnings:
            values["warnings"] = encoded
        if row.status != EventStatus.PROCESSED:  # pending, or failed earlier for a passing cause
            latency_ms = int((now - row.received_at).total_seconds() * 1000)
            values.update(status=EventStatus.PROCESSED, processed_at=now, apply_ms=latency_ms)
        if values:
            changes.append({"id": row.id, **values})
    inbox = cast(Table, InboxEvent.__table__)
    for keys, group in _by_keys(changes):
        # Core, not ORM: an executemany by primary key, the loaded rows left as they are.
        session.execute(
            update(inbox)
            .where(inbox.c.id == _bind("id"))
            .values(**{k: _bind(k) for k in keys if k != "id"}),
            group,
        )


def encode_warnings(warnings: Sequence[str]) -> str | None:
    """A `warnings` column's value: a JSON list, or NULL for none."""
    return json.dumps(list(warnings)) if warnings else None


def _bind(name: str) -> Any:
    return bindparam(f"b_{name}")


Params = dict[str, Any]


def _by_keys(changes: list[Params]) -> Iterable[tuple[tuple[str, ...], list[Params]]]:
    """Group parameter sets by the columns they set (one executemany per group)."""
    groups: dict[tuple[str, ...], list[Params]] = defaultdict(list)
    for change in changes:
        keys = tuple(sorted(change))
        groups[keys].append({f"b_{k}": v for k, v in change.items()})
    return sorted(groups.items())


def trial_row(t: TrialTransition) -> dict[str, Any]:
    """A trial transition as its `trial_transitions` row."""
    return {
        "customer_id": t.customer_id,
        "subscription_id": t.subscription_id,
        "seq": t.seq,
        "currency": t.currency,
        "occurred_at": at(t.occurred_at),
        "occurred_day": at(t.occurred_at).date(),
        "event_id": t.event_id,
        "transition": t.transition.value,
        "pipeline_delta": t.pipeline_delta,
        "ended_status": t.ended_status,
    }


def detached(m: Movement) -> LedgerMovement:
    """A movement derived at report time (a segment's, SPEC §11) as a row that is never
    stored, so that views show it as they show stored ones."""
    return LedgerMovement(**_movement_row(m))


def _movement_row(m: Movement) -> dict[str, Any]:
    occurred = at(m.occurred_at)
    return {
        "customer_id": m.customer_id,
        "currency": m.currency,
        "seq": m.seq,
        "occurred_at": occurred,
        "occurred_day": occurred.date(),
        "event_id": m.event_id,
        "subscription_id": m.subscription_id,
        "type": m.type.value,
        "amount": m.amount,
        "mrr_before": m.mrr_before,
        "mrr_after": m.mrr_after,
        "kind": m.kind.value if m.kind else None,
        "churn_reason": m.churn_reason,
        "churn_feedback": m.churn_feedback,
        "reason_key": m.reason_key,
        "delinquent": m.delinquent,
        "subscription_ids": json.dumps(list(m.subscription_ids)),
        "event_ids": json.dumps(list(m.event_ids)),
    }


class RollupKey(NamedTuple):
    """The `ledger_daily` key: what reports group movements by. One definition for the
    rollup's incremental writes, its recount and its reads. Empty strings stand for
    "no kind" and "no reason", so the key can be a primary key."""

    currency: str
    day: date
    type: str
    kind: str
    reason_key: str
    delinquent: bool

    @classmethod
    def of(cls, m: Movement) -> RollupKey:
        return cls(
            m.currency,
            at(m.occurred_at).date(),
            m.type.value,
            m.kind.value if m.kind else "",
            m.reason_key or "",
            m.delinquent,
        )

    @classmethod
    def over_movements(cls) -> tuple[Any, ...]:
        """The key as SQL expressions over `ledger_movements` (NULL → '')."""
        m = LedgerMovement
        found = {"day": m.occurred_day, "kind": func.coalesce(m.kind, "")}
        found["reason_key"] = func.coalesce(m.reason_key, "")
        return tuple(found.get(name, getattr(m, name, None)) for name in cls._fields)

    @classmethod
    def of_rollup(cls, table: Any = LedgerDaily) -> tuple[Any, ...]:
        """The key's columns of `ledger_daily` (or `segment_daily`)."""
        return tuple(getattr(table, name) for name in cls._fields)


def _apply_rollup_delta(
    session: Session, customers: Sequence[str], ledgers: Sequence[CustomerLedger]
) -> None:
    """Add (new movements − stored movements) of the customers to `ledger_daily`.

    Keys are applied in sorted order so concurrent writers lock rollup rows in the same
    order and cannot deadlock. A rewrite that only appends touches only the new days.
    """
    delta: dict[RollupKey, list[int]] = defaultdict(lambda: [0, 0])
    key = RollupKey.over_movements()
    old = session.execute(
        select(*key, func.sum(LedgerMovement.amount), func.count())
        .where(LedgerMovement.customer_id.in_(customers))
        .group_by(*key)
    )
    for *fields, amount, count in old:
        entry = delta[RollupKey._make([*fields[:-1], bool(fields[-1])])]
        entry[0] -= int(amount)
        entry[1] -= int(count)
    for ledger in ledgers:
        for movement in ledger.movements:
            entry = delta[RollupKey.of(movement)]
            entry[0] += movement.amount
            entry[1] += 1
    _upsert_rollup(session, LedgerDaily, RollupKey._fields, delta)


#: Columns of the item segments' tables, in the order `segment_rows` gives values.
SEGMENT_COLUMNS = ("customer_id", "key", "value", "whole")
SEGMENT_MOVEMENT_COLUMNS = (
    *("customer_id", "key", "value", "currency", "seq", "occurred_day", "type", "amount"),
    *("kind", "reason_key", "delinquent"),
)
SEGMENT_TRIAL_COLUMNS = (
    *("customer_id", "key", "value", "subscription_id", "seq", "currency", "occurred_day"),
    *("transition", "pipeline_delta"),
)

Values = tuple[Any, ...]


def segment_rows(
    ledgers: Iterable[CustomerLedger],
) -> tuple[list[Values], list[Values], list[Values]]:
    """The ledgers' item segments as rows of `customer_segments`, `segment_movements`
    and `segment_trials` (values in `SEGMENT_COLUMNS`' … order; a `whole` segment has
    none of the latter two). Tuples, not dicts: a rebuild writes millions by COPY."""
    segments: list[Values] = []
    movements: list[Values] = []
    trials: list[Values] = []
    for ledger in ledgers:
        customer = ledger.customer_id
        for s in ledger.segments:
            segments.append((customer, s.key, s.value, s.whole))
            for m in s.movements:
                movements.append(
                    (
                        customer,
                        s.key,
                        s.value,
                        m.currency,
                        m.seq,
                        _day(m.occurred_at),
                        m.type.value,
                        m.amount,
                        m.kind.value if m.kind else None,
                        m.reason_key,
                        m.delinquent,
                    )
                )
            for t in s.trials:
                trials.append(
                    (
                        customer,
                        s.key,
                        s.value,
                        t.subscription_id,
                        t.seq,
                        t.currency,
                        _day(t.occurred_at),
                        t.transition.value,
                        t.pipeline_delta,
                    )
                )
    return segments, movements, trials


@lru_cache(maxsize=65536)
def _day(unix_seconds: int) -> date:
    """The UTC day of a moment (segments repeat the moments of their customer's ledger)."""
    return at(unix_seconds).date()


class SegmentRollupKey(NamedTuple):
    """The `segment_daily` key: an item key and value, then `RollupKey`'s fields."""

    key: str
    value: str
    currency: str
    day: date
    type: str
    kind: str
    reason_key: str
    delinquent: bool


def segment_rollup_deltas(ledger: CustomerLedger) -> Iterable[tuple[SegmentRollupKey, int]]:
    """Each movement of each of the ledger's item segments, by its `segment_daily` key
    (a `whole` segment's movements are the ledger's own)."""
    keys: dict[int, RollupKey] = {}  # a whole segment repeats the ledger's movements
    for s in ledger.segments:
        for m in ledger.movements if s.whole else s.movements:
            key = keys.get(id(m))
            if key is None:
                key = keys[id(m)] = RollupKey.of(m)
            yield SegmentRollupKey(s.key, s.value, *key), m.amount


def stored_segment_movements(customers: Sequence[str] | None = None) -> Any:
    """Every stored movement of the customers' item segments (all customers: None) as
    a subquery of `SegmentRollupKey`'s columns and `amount`: the movements of `whole`
    segments (`ledger_movements` joined with `customer_segments`) and of the others."""
    m, s = LedgerMovement, SegmentMovement
    own_key: tuple[Any, ...] = (s.currency, s.occurred_day, s.type)
    own_key += (func.coalesce(s.kind, ""), func.coalesce(s.reason_key, ""), s.delinquent)
    return _stored_union(
        "stored_segment_movements",
        SegmentRollupKey._fields,
        (m, (*RollupKey.over_movements(), m.amount)),
        (s, (*own_key, s.amount)),
        customers,
    )


def _stored_union(
    name: str,
    fields: Sequence[str],
    whole: tuple[Any, Sequence[Any]],
    own: tuple[Any, Sequence[Any]],
    customers: Sequence[str] | None,
) -> Any:
    """A subquery of `fields` and `amount` over the item segments' stored rows: the
    customer's own rows of `whole[0]` for each `whole` segment (its key and value, then
    the columns `whole[1]`), and the rows of `own[0]` for the others (`own[1]`)."""
    cs = CustomerSegment
    names = [*fields, "amount"]
    (w, w_columns), (o, o_columns) = whole, own
    w_all = (cs.key, cs.value, *w_columns)
    whole_rows = (
        select(*(c.label(n) for c, n in zip(w_all, names, strict=True)))
        .select_from(w)
        .join(cs, (cs.customer_id == w.customer_id) & cs.whole)
    )
    o_all = (o.key, o.value, *o_columns)
    own_rows: Any = select(*(c.label(n) for c, n in zip(o_all, names, strict=True)))
    if customers is not None:
        whole_rows = whole_rows.where(w.customer_id.in_(customers))
        own_rows = own_rows.where(o.customer_id.in_(customers))
    return whole_rows.union_all(own_rows).subquery(name)


def _apply_segment_rollup_delta(
    session: Session, customers: Sequence[str], ledgers: Sequence[CustomerLedger]
) -> None:
    """Add (new − stored) item segment movements of the customers to `segment_daily`,
    as `_apply_rollup_delta` does for `ledger_daily`."""
    new = (d for ledger in ledgers for d in segment_rollup_deltas(ledger))
    stored = stored_segment_movements(customers)
    _apply_delta(session, SegmentDaily, SegmentRollupKey, stored, new)


def _apply_delta(
    session: Session,
    table: Any,
    key_type: Any,
    stored: Any,
    new: Iterable[tuple[Any, int]],
) -> None:
    """Add to the rollup `table` the (amount, count) of the `new` (key, amount) pairs
    minus those of the `stored` subquery's rows (`key_type`'s columns and `amount`)."""
    delta: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    fields = [stored.c[n] for n in key_type._fields]
    old = session.execute(
        select(*fields, func.sum(stored.c.amount), func.count()).group_by(*fields)
    )
    for *values, amount, count in old:
        if "delinquent" in key_type._fields:  # SQLite answers booleans as integers
            values[-1] = bool(values[-1])
        entry = delta[key_type._make(values)]
        entry[0] -= int(amount)
        entry[1] -= int(count)
    for key, amount in new:
        entry = delta[key]
        entry[0] += amount
        entry[1] += 1
    _upsert_rollup(session, table, key_type._fields, delta)


class SegmentTrialKey(NamedTuple):
    """The `segment_trial_daily` key."""

    key: str
    value: str
    currency: str
    day: date
    transition: str


def segment_trial_deltas(ledger: CustomerLedger) -> Iterable[tuple[SegmentTrialKey, int]]:
    """Each trial transition of each of the ledger's item segments, by its
    `segment_trial_daily` key, with its pipeline change."""
    for s in ledger.segments:
        for t in ledger.trials if s.whole else s.trials:
            day = _day(t.occurred_at)
            yield (
                SegmentTrialKey(s.key, s.value, t.currency, day, t.transition.value),
                (t.pipeline_delta),
            )


def stored_segment_trials(customers: Sequence[str] | None = None) -> Any:
    """Every stored trial transition of the customers' item segments (all: None) as a
    subquery of `SegmentTrialKey`'s columns and `amount` (the pipeline change)."""
    t, s = TrialTransitionRow, SegmentTrial
    return _stored_union(
        "stored_segment_trials",
        SegmentTrialKey._fields,
        (t, (t.currency, t.occurred_day, t.transition, t.pipeline_delta)),
        (s, (s.currency, s.occurred_day, s.transition, s.pipeline_delta)),
        customers,
    )


def _apply_segment_trial_delta(
    session: Session, customers: Sequence[str], ledgers: Sequence[CustomerLedger]
) -> None:
    """Add (new − stored) item segment trial transitions to `segment_trial_daily`."""
    new = (d for ledger in ledgers for d in segment_trial_deltas(ledger))
    stored = stored_segment_trials(customers)
    _apply_delta(session, SegmentTrialDaily, SegmentTrialKey, stored, new)


def _upsert_rollup(
    session: Session, table: Any, fields: Sequence[str], delta: Mapping[Any, list[int]]
) -> None:
    """Add each key's (amount, count) to the rollup `table`, keys in sorted order so
    concurrent writers lock rows in the same order and cannot deadlock."""
    changes = sorted((k, v) for k, v in delta.items() if v != [0, 0])
    if not changes:
        return
    stmt = dialect_insert(session)(cast(Table, table.__table__))
    upsert = stmt.on_conflict_do_update(
        index_elements=list(fields),
        set_={
            "amount": stmt.table.c.amount + stmt.excluded.amount,
            "count": stmt.table.c.count + stmt.excluded.count,
        },
    )
    # One executemany; the driver runs the parameter sets in the (sorted) order given.
    session.execute(
        upsert,
        [{**key._asdict(), "amount": amount, "count": count} for key, (amount, count) in changes],
    )


def refresh_statistics(session: Session) -> None:
    """Have PostgreSQL sample the tables a rebuild reads and rewrites (`ANALYZE`).

    Every statement of a batch selects or deletes by a list of customer ids. Without
    statistics (a bulk load, a ledger grown from empty, autovacuum switched off) the
    planner guesses that such a list matches a quarter of the table and scans all of
    it, so each batch costs time in proportion to the whole inbox and ledger: a rebuild
    of 1,000,000 events slowed to a crawl. Sampling is cheap (at most 30,000 rows a
    table) and changes no data. SQLite's planner uses the indexes without statistics.
    """
    if session.get_bind().dialect.name == "postgresql":
        tables = (InboxEvent, *DERIVED_BY_CUSTOMER)
        session.execute(text(f"ANALYZE {', '.join(t.__tablename__ for t in tables)}"))


def rebuild_rollups(session: Session) -> None:
    """Recompute `ledger_daily`, `segment_daily` and `segment_trial_daily` from every
    movement and trial transition (after bulk loads, in `mrr rebuild`).

    On PostgreSQL the tables are locked for writes meanwhile: a worker's delta then lands
    after the recount, on top of it, never inside it.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("LOCK TABLE ledger_daily, segment_daily, segment_trial_daily IN EXCLUSIVE MODE")
        )
    key = RollupKey.over_movements()
    session.execute(delete(LedgerDaily))
    session.execute(
        insert_into(LedgerDaily).from_select(
            [*RollupKey._fields, "amount", "count"],
            select(*key, func.sum(LedgerMovement.amount), func.count()).group_by(*key),
        )
    )
    _recount(session, SegmentDaily, SegmentRollupKey, stored_segment_movements())
    _recount(session, SegmentTrialDaily, SegmentTrialKey, stored_segment_trials())


def _recount(session: Session, table: Any, key_type: Any, stored: Any) -> None:
    """Replace the rollup `table` with the `stored` subquery's rows (`key_type`'s
    columns and `amount`) summed per key."""
    fields = [stored.c[n] for n in key_type._fields]
    session.execute(delete(table))
    session.execute(
        insert_into(table).from_select(
            [*key_type._fields, "amount", "count"],
            select(*fields, func.sum(stored.c.amount), func.count()).group_by(*fields),
        )
    )
