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
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ledger.errors import InvalidEvent, InvalidValue
from ledger.events import SubscriptionEvent, parse_event
from ledger.timeline import CustomerLedger, derive_ledger
from models import bulk_ledger, ledger_store
from models.bulk_ledger import FreshLedger, InboxRow, InboxSnapshot
from models.clock import utcnow
from models.db import transaction
from models.ledger_store import RollupKey, at
from pipeline import enrich
from pipeline.intake import loads
from pipeline.runtime import Runtime

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


class _Pass:
    """State of one pass over the snapshot."""

    def __init__(self, runtime: Runtime, fresh: FreshLedger) -> None:
        self.runtime = runtime
        self.fresh = fresh
        self.fetching = runtime.settings.stripe_api_key is not None
        self.now = utcnow()
        #: Customer → digest of its rows' (id, version) in the snapshot.
        self.seen: dict[str, int] = {}
        #: Customers left to the incremental path.
        self.deferred: set[str] = set()
        #: Rows to mark processed (or whose warnings change), by customer.
        self.marks: dict[str, list[InboxRow]] = {}
        self.warnings: dict[str, tuple[str, ...]] = {}
        self.daily: dict[RollupKey, list[int]] = defaultdict(lambda: [0, 0])
        #: Customer → events its fresh ledger was derived from.
        self.counts: dict[str, int] = {}

    def run(self, snapshot: InboxSnapshot, progress: Callable[[int], None] | None) -> None:
        batch: list[tuple[str, list[InboxRow]]] = []
        size = 0
        for customer, rows in snapshot.customers():
            self.seen[customer] = digest((r.id, r.version) for r in rows)
            batch.append((customer, rows))
            size += len(rows)
            if size >= BATCH_EVENTS:
                self.flush(batch)
                if progress is not None:
                    progress(len(batch))
                batch, size = [], 0
        self.flush(batch)
        if progress is not None and batch:
            progress(len(batch))
        self.fresh.copy(
            "ledger_daily",
            bulk_ledger.DAILY_COLUMNS,
            [(*key, amount, count) for key, (amount, count) in sorted(self.daily.items())],
        )

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
                self.deferred.add(customer)  # the incremental path fetches them first
                continue
            try:
                ledger = derive_ledger(customer, events, catalog)
            except InvalidValue:
                self.deferred.add(customer)  # it quarantines the event, with its reason
                continue
            ledgers.append(ledger)
            self.counts[customer] = len(events)
            if ledger.warnings:
                self.warnings.update(ledger.warnings)
            used = {e.id for e in events}
            pending = [
                r
                for r in rows
                if r.id in used
                and (r.status != "processed" or r.warnings is not None or r.id in ledger.warnings)
            ]
            if pending:
                self.marks[customer] = pending
        self.write(ledgers)

    def parse(self, customer: str, rows: list[InboxRow]) -> list[SubscriptionEvent] | None:
        """The customer's events, or None when it is left to the incremental path.
        Payloads that cannot be parsed are left out, as `pipeline.apply` does."""
        events = []
        for row in rows:
            try:
                event = parse_event(loads(row.payload))
            except InvalidValue:
                self.deferred.add(customer)
                return None
            except (InvalidEvent, ValueError):
                continue
            if event.customer != customer:
                self.deferred.add(customer)
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


def digest(rows: Iterable[tuple[str, str]]) -> int:
    """An order-free digest of a customer's (event id, row version) pairs."""
    total = 0
    for row in rows:
        total = (total + hash(row)) & 0xFFFFFFFFFFFFFFFF
    return total


def bulk_rebuild(runtime: Runtime, progress: Callable[[int], None] | None = None) -> BulkOutcome:
    """Rebuild the whole ledger on PostgreSQL (see the module's docstring).

    `progress` is called with the number of customers done after each batch (the
    customers caught up after the swap are not counted again).
    """
    from pipeline.apply import apply_customers

    url = runtime.settings.database_url
    outcome = BulkOutcome()
    with bulk_ledger.connect(url) as guard:
        bulk_ledger.rebuild_lock(guard)
        with bulk_ledger.connect(url) as reader, bulk_ledger.connect(url) as writer:
            snapshot = InboxSnapshot(reader)
            fresh = FreshLedger(writer)
            state = _Pass(runtime, fresh)
            # The pass keeps no cycles alive; the collector would only rescan each
            # batch's parsed payloads over and over (it doubled json parsing alone).
            collecting = gc.isenabled()
            gc.disable()
            try:
                state.run(snapshot, progress)
                snapshot.close()
                # The fresh tables hold no customer without events: the swap drops them.
                with runtime.sessions() as session:
                    outcome.orphans_deleted = ledger_store.count_orphans(session)
                fresh.swap()
            except BaseException:
                fresh.close()
                raise
            finally:
                if collecting:
                    gc.enable()
            changed = _changed_since(state.seen, bulk_ledger.event_versions(reader))
        todo = sorted(changed | state.deferred)
        caught_up = 0
        for start in range(0, len(todo), CATCH_UP_CHUNK):
            part = todo[start : start + CATCH_UP_CHUNK]
            caught_up += len(apply_customers(runtime, part, batch=0, force=True).processed)
        skip = set(todo)
        with transaction(runtime.sessions) as session:
            rows = [r for c, marks in state.marks.items() if c not in skip for r in marks]
            ledger_store.mark_applied(session, rows, state.warnings, utcnow())
        with transaction(runtime.sessions) as session:
            late = ledger_store.delete_orphans(session)  # their events went meanwhile
            if late:
                ledger_store.rebuild_rollups(session)
            outcome.orphans_deleted += late
    outcome.customers = len(set(state.seen) | skip)
    outcome.events = caught_up + sum(n for c, n in state.counts.items() if c not in skip)
    outcome.caught_up = len(todo)
    return outcome


def _changed_since(seen: dict[str, int], now: Iterable[tuple[str, str, str]]) -> set[str]:
    """Customers whose rows differ from the snapshot's: new, changed, gone or added."""
    current: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for customer, event_id, version in now:
        current[customer].append((event_id, version))
    changed = {c for c in current if seen.get(c) != digest(current[c])}
    changed |= set(seen) - set(current)
    return changed
