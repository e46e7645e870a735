"""`mrr rebuild` on PostgreSQL: the whole ledger recomputed in one pass over the inbox,
written with COPY into fresh tables that are swapped in for the live ones at once.

The incremental path (`pipeline.apply`) rewrites customers a chunk at a time under
their locks: right for a worker, slow for a million events (many small selects,
deletes and executemany inserts against indexed tables). Here:

1. **Snapshot.** One REPEATABLE READ transaction streams every subscription event the
   ledger may use, in customer order, through a server-side cursor (`InboxSnapshot`).
   Each customer's rows are noted as a digest of (event id, row version `xmin`).
2. **Compute.** Each payload is parsed once (orjson first) and each customer's ledger
   derived by the same pure functions as the incremental path (`ledger.events`,
   `ledger.timeline`), priced with the cached Stripe objects, in batches of customers.
   The daily rollup is summed on the way.
3. **Write.** Rows go by COPY into empty copies of the derived tables, created in one
   transaction of another connection (`FreshLedger`); the rollup last.
4. **Swap.** In that same transaction the live tables are locked, dropped, and the
   fresh ones renamed into their place (indexes and constraints keep their names), then
   it commits: readers see the old ledger or the new one, never a mix.
5. **Catch up.** Every customer whose events changed since the snapshot is rewritten
   by the incremental path (`apply_customers`, under its lock), and so are those the
   bulk pass left to it (below). Then inbox rows the snapshot saw pending are marked
   processed, and derived rows of customers with no events left are deleted.

Why this is safe while workers run: workers go on writing the *live* tables during
steps 1–3; whatever they write there is dropped at the swap, and what the snapshot
did not see is exactly what step 5 redoes. An event E of customer C falls in one case:

* committed before the snapshot: the fresh ledger of C was derived with it;
* committed after the snapshot and before the swap's commit: C's rows differ from the
  snapshot's (a new row, or a row version changed by a worker marking it processed),
  so step 5, which reads the inbox after the swap, rewrites C;
* committed after the swap: any job that applies E starts after E's commit, so it
  writes into the new tables, under C's lock, from all of C's events.

Deleted events (`mrr backfill` replacing synthetic history) and quarantines change a
row or remove it, so they too make C differ. A worker's transaction that is writing
when the swap wants the tables holds their locks, and the swap waits for it (its lock
attempts time out and retry before PostgreSQL's deadlock detector would pick a
victim); statements queued behind the swap resolve the table names again once they
get their locks, and so land in the new tables.

Left to the incremental path, so both paths stay one definition of the ledger:
customers with an event the ledger can never apply (it quarantines them), an event
whose parsed customer differs from the inbox's column, and, with `STRIPE_API_KEY` set,
customers whose events need Stripe details not cached yet (it fetches them first).

SQLite keeps the incremental path (`pipeline.apply.rebuild`).
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import multiprocessing
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import InvalidEvent, InvalidValue
from ledger.events import SubscriptionEvent, parse_event
from ledger.segments import derive_with_segments
from ledger.timeline import CustomerLedger
from models import bulk_ledger, ledger_store
from models.bulk_ledger import FreshLedger, InboxRow, InboxSnapshot
from models.clock import utcnow
from models.db import transaction
from models.ledger_store import RollupKey, SegmentRollupKey, SegmentTrialKey, at
from pipeline import enrich
from pipeline.intake import loads
from pipeline.runtime import Runtime, bootstrap
from pipeline.settings import Settings

#: Events parsed and derived per batch (one catalog lookup and three COPYs each).
BATCH_EVENTS = 5_000
#: Customers per transaction when the incremental path catches up.
CATCH_UP_CHUNK = 50


@dataclass
class BulkOutcome:
    """What a bulk rebuild did: customers and events in the new ledger, how many
    customers the incremental path rewrote after the swap, and orphans deleted."""

    customers: int = 0
    events: int = 0
    caught_up: int = 0
    orphans_deleted: int = 0


@dataclass
class Part:
    """What one process made of its range of customers (picklable, merged by the caller)."""

    #: Customer → digest of its rows' (id, version) in the snapshot.
    seen: dict[str, bytes] = field(default_factory=dict)
    #: Customers left to the incremental path.
    deferred: set[str] = field(default_factory=set)
    #: Rows to mark processed (or whose warnings change), by customer.
    marks: dict[str, list[InboxRow]] = field(default_factory=dict)
    warnings: dict[str, tuple[str, ...]] = field(default_factory=dict)
    daily: dict[RollupKey, list[int]] = field(default_factory=dict)
    segment_daily: dict[SegmentRollupKey, list[int]] = field(default_factory=dict)
    segment_trial_daily: dict[SegmentTrialKey, list[int]] = field(default_factory=dict)
    #: Customer → events its fresh ledger was derived from.
    counts: dict[str, int] = field(default_factory=dict)


class _Pass:
    """One pass over a range of the snapshot, writing into the fresh tables."""

    def __init__(self, runtime: Runtime, fresh: FreshLedger) -> None:
        self.runtime = runtime
        self.fresh = fresh
        self.fetching = runtime.settings.stripe_api_key is not None
        self.now = utcnow()
        self.part = Part()
        self.daily: dict[RollupKey, list[int]] = defaultdict(lambda: [0, 0])
        self.segment_daily: dict[SegmentRollupKey, list[int]] = defaultdict(lambda: [0, 0])
        self.segment_trial_daily: dict[SegmentTrialKey, list[int]] = defaultdict(lambda: [0, 0])

    def run(self, snapshot: InboxSnapshot) -> Part:
        batch: list[tuple[str, list[InboxRow]]] = []
        size = 0
        seen = self.part.seen
        for customer, rows in snapshot.customers():
            seen[customer] = digest((r.id, r.version) for r in rows)
            batch.append((customer, rows))
            size += len(rows)
            if size >= BATCH_EVENTS:
                self.flush(batch)
                batch, size = [], 0
        self.flush(batch)
        self.part.daily = dict(self.daily)
        self.part.segment_daily = dict(self.segment_daily)
        self.part.segment_trial_daily = dict(self.segment_trial_daily)
        return self.part

    def flush(self, batch: list[tuple[str, list[InboxRow]]]) -> None:
        parsed: list[tuple[str, list[InboxRow], list[SubscriptionEvent]]] = []
        for customer, rows in batch:
            events = self.parse(customer, rows)
            if events is not None:
                parsed.append((customer, rows, events))
        with self.runtime.sessions() as session:
            catalog = enrich.cached_catalog(session, (e.snapshot for *_, es in parsed for e in es))
        ledgers: list[CustomerLedger] = []
        for customer, rows, events in parsed:
            if self.fetching and enrich.missing((e.snapshot for e in events), catalog):
                self.part.deferred.add(customer)  # the incremental path fetches them first
                continue
            try:
                ledger = derive_with_segments(customer, events, catalog)
            except InvalidValue:
                self.part.deferred.add(customer)  # it quarantines the event, with its reason
                continue
            ledgers.append(ledger)
            self.part.counts[customer] = len(events)
            if ledger.warnings:
                self.part.warnings.update(ledger.warnings)
            used = {e.id for e in events}
            pending = [
                r
                for r in rows
                if r.id in used
                and (r.status != "processed" or r.warnings is not None or r.id in ledger.warnings)
            ]
            if pending:
                self.part.marks[customer] = pending
        self.write(ledgers)

    def parse(self, customer: str, rows: list[InboxRow]) -> list[SubscriptionEvent] | None:
        """The customer's events, or None when it is left to the incremental path.
        Payloads that cannot be parsed are left out, as `pipeline.apply` does."""
        events = []
        for row in rows:
            try:
                event = parse_event(loads(row.payload))
            except InvalidValue:
                self.part.deferred.add(customer)
                return None
            except (InvalidEvent, ValueError):
                continue
            if event.customer != customer:
                self.part.deferred.add(customer)
                return None
            events.append(event)
        return events

    def write(self, ledgers: list[CustomerLedger]) -> None:
        movements = []
        daily = self.daily
        for ledger in ledgers:
            for m in ledger.movements:
                occurred = at(m.occurred_at)
                reason_key = m.reason_key
                kind = m.kind.value if m.kind else None
                movements.append(
                    (
                        m.customer_id,
                        m.currency,
                        m.seq,
                        occurred,
                        occurred.date(),
                        m.event_id,
                        m.subscription_id,
                        m.type.value,
                        m.amount,
                        m.mrr_before,
                        m.mrr_after,
                        kind,
                        m.churn_reason,
                        m.churn_feedback,
                        reason_key,
                        m.delinquent,
                        json.dumps(list(m.subscription_ids)),
                        json.dumps(list(m.event_ids)),
                    )
                )
                entry = daily[
                    RollupKey(
                        m.currency,
                        occurred.date(),
                        m.type.value,
                        kind or "",
                        reason_key or "",
                        m.delinquent,
                    )
                ]
                entry[0] += m.amount
                entry[1] += 1
        subscriptions = [
            (
                s.id,
                s.customer_id,
                s.currency,
                s.status,
                s.mrr,
                s.scheduled_to_cancel,
                s.last_event_id,
                at(s.last_event_created),
                ledger_store.encode_warnings(s.warnings),
            )
            for ledger in ledgers
            for s in ledger.subscriptions
        ]
        balances = [
            (
                b.customer_id,
                b.currency,
                b.mrr,
                b.scheduled_churn,
                at(b.first_new_at) if b.first_new_at is not None else None,
                self.now,
            )
            for ledger in ledgers
            for b in ledger.balances
        ]
        self.fresh.copy("ledger_movements", bulk_ledger.MOVEMENT_COLUMNS, movements)
        self.fresh.copy("subscriptions", bulk_ledger.SUBSCRIPTION_COLUMNS, subscriptions)
        self.fresh.copy("customer_balances", bulk_ledger.BALANCE_COLUMNS, balances)
        trials = [
            tuple(ledger_store.trial_row(t)[c] for c in bulk_ledger.TRIAL_COLUMNS)
            for ledger in ledgers
            for t in ledger.trials
        ]
        self.fresh.copy("trial_transitions", bulk_ledger.TRIAL_COLUMNS, trials)
        self.write_segments(ledgers)

    def write_segments(self, ledgers: list[CustomerLedger]) -> None:
        """The ledgers' item segments (SPEC §11), and their part of `segment_daily`."""
        segments, movements, trials = ledger_store.segment_rows(ledgers)
        for table, columns, rows in (
            ("customer_segments", ledger_store.SEGMENT_COLUMNS, segments),
            ("segment_movements", ledger_store.SEGMENT_MOVEMENT_COLUMNS, movements),
            ("segment_trials", ledger_store.SEGMENT_TRIAL_COLUMNS, trials),
        ):
            self.fresh.copy(table, columns, rows)
        daily = self.segment_daily
        trial_daily = self.segment_trial_daily
        for ledger in ledgers:
            for key, amount in ledger_store.segment_rollup_deltas(ledger):
                entry = daily[key]
                entry[0] += amount
                entry[1] += 1
            for trial_key, delta in ledger_store.segment_trial_deltas(ledger):
                entry = trial_daily[trial_key]
                entry[0] += delta
                entry[1] += 1


def digest(rows: Iterable[tuple[str, str]]) -> bytes:
    """A digest of a customer's (event id, row version) pairs, whatever their order, and
    the same in every process (Python's `hash` of a string is not)."""
    text = "\n".join(sorted(f"{event_id} {version}" for event_id, version in rows))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def rebuild_range(settings: Settings, snapshot: str, low: str | None, high: str | None) -> Part:
    """Derive the customers `low` ≤ c < `high` of the exported `snapshot` and append
    their ledgers to the fresh tables, committed. Runs in a process of its own for a
    parallel rebuild (with its own runtime), or in the caller's."""
    runtime = bootstrap(settings)
    url = settings.database_url
    # The pass keeps no reference cycles alive; the collector would only rescan each
    # batch's parsed payloads over and over (with it, json parsing alone took 2-5x).
    collecting = gc.isenabled()
    gc.disable()
    try:
        with bulk_ledger.connect(url) as reader, bulk_ledger.connect(url) as writer:
            part = InboxSnapshot(reader, snapshot, low, high)
            fresh = FreshLedger(writer)
            try:
                found = _Pass(runtime, fresh).run(part)
                fresh.commit()
            finally:
                fresh.close()
                part.close()
        return found
    finally:
        if collecting:
            gc.enable()


def bulk_rebuild(
    runtime: Runtime, progress: Callable[[int], None] | None = None, jobs: int = 1
) -> BulkOutcome:
    """Rebuild the whole ledger on PostgreSQL (see the module's docstring).

    With `jobs` > 1 the customers are split in that many ranges of about equal events,
    each derived by a process started afresh (spawned) in the same snapshot. `progress`
    is called with the number of customers of each range when it is done.
    """
    from pipeline.apply import apply_customers

    settings = runtime.settings
    url = settings.database_url
    outcome = BulkOutcome()
    merged = Part()
    daily: dict[RollupKey, list[int]] = defaultdict(lambda: [0, 0])
    segment_daily: dict[SegmentRollupKey, list[int]] = defaultdict(lambda: [0, 0])
    trial_daily: dict[SegmentTrialKey, list[int]] = defaultdict(lambda: [0, 0])
    with bulk_ledger.connect(url) as guard:
        bulk_ledger.rebuild_lock(guard)
        with bulk_ledger.connect(url) as reader, bulk_ledger.connect(url) as writer:
            bulk_ledger.create_fresh(writer)
            try:
                snapshot = InboxSnapshot(reader)
                exported = snapshot.export()
                cuts = snapshot.bounds(jobs)
                ranges = list(itertools.pairwise(cuts))
                for part in _parts(settings, exported, ranges, jobs):
                    _merge(merged, (daily, segment_daily, trial_daily), part)
                    if progress is not None:
                        progress(len(part.seen))
                snapshot.close()
                fresh = FreshLedger(writer)
                try:
                    fresh.copy(
                        "ledger_daily",
                        bulk_ledger.DAILY_COLUMNS,
                        [(*key, amount, count) for key, (amount, count) in sorted(daily.items())],
                    )
                    for table, columns, sums in (
                        ("segment_daily", bulk_ledger.SEGMENT_DAILY_COLUMNS, segment_daily),
                        (
                            "segment_trial_daily",
                            bulk_ledger.SEGMENT_TRIAL_DAILY_COLUMNS,
                            trial_daily,
                        ),
                    ):
                        summed = [
                            (*k, amount, count) for k, (amount, count) in sorted(sums.items())
                        ]
                        fresh.copy(table, columns, summed)
                    # The fresh tables hold no customer without events: the swap drops them.
                    with runtime.sessions() as session:
                        outcome.orphans_deleted = ledger_store.count_orphans(session)
                    fresh.swap()
                finally:
                    fresh.close()
            except BaseException:
                bulk_ledger.drop_fresh(writer)
                raise
            changed = _changed_since(merged.seen, bulk_ledger.event_versions(reader))
        todo = sorted(changed | merged.deferred)
        caught_up = 0
        for start in range(0, len(todo), CATCH_UP_CHUNK):
            chunk = todo[start : start + CATCH_UP_CHUNK]
            caught_up += len(apply_customers(runtime, chunk, batch=0, force=True).processed)
        skip = set(todo)
        with transaction(runtime.sessions) as session:
            rows = [r for c, marks in merged.marks.items() if c not in skip for r in marks]
            ledger_store.mark_applied(session, rows, merged.warnings, utcnow())
        with transaction(runtime.sessions) as session:
            late = ledger_store.delete_orphans(session)  # their events went meanwhile
            if late:
                ledger_store.rebuild_rollups(session)
            outcome.orphans_deleted += late
    outcome.customers = len(set(merged.seen) | skip)
    outcome.events = caught_up + sum(n for c, n in merged.counts.items() if c not in skip)
    outcome.caught_up = len(todo)
    return outcome


def _parts(
    settings: Settings,
    snapshot: str,
    ranges: list[tuple[str | None, str | None]],
    jobs: int,
) -> Iterator[Part]:
    if jobs <= 1 or len(ranges) <= 1:
        for low, high in ranges:
            yield rebuild_range(settings, snapshot, low, high)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(rebuild_range, settings, snapshot, lo, hi) for lo, hi in ranges]
        for future in as_completed(futures):
            yield future.result()


def _merge(into: Part, rollups: tuple[dict[Any, list[int]], ...], part: Part) -> None:
    """Add a range's part to the whole: its bookkeeping, and its sums to `rollups`
    (`ledger_daily`'s, `segment_daily`'s and `segment_trial_daily`'s, in that order)."""
    into.seen.update(part.seen)
    into.deferred |= part.deferred
    into.marks.update(part.marks)
    into.warnings.update(part.warnings)
    into.counts.update(part.counts)
    found: tuple[dict[Any, list[int]], ...] = (
        part.daily,
        part.segment_daily,
        part.segment_trial_daily,
    )
    for sums, mine in zip(rollups, found, strict=True):
        for key, (amount, count) in mine.items():
            entry = sums[key]
            entry[0] += amount
            entry[1] += count


def _changed_since(seen: dict[str, bytes], now: Iterable[tuple[str, str, str]]) -> set[str]:
    """Customers whose rows differ from the snapshot's: new, changed, gone or added."""
    current: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for customer, event_id, version in now:
        current[customer].append((event_id, version))
    changed = {c for c in current if seen.get(c) != digest(current[c])}
    changed |= set(seen) - set(current)
    return changed
