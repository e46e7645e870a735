"""Trial transitions → the trial funnel of one row per period (SPEC §7). Pure.

The input is trial transitions summed per UTC day and transition (`TrialBucket`): the
database hands over those sums, `trial_buckets` builds the same from plain
transitions. `trial_pipeline_mrr` at a period's end is the pipeline at its start plus
the period's pipeline deltas.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

from ledger.trials import Transition, TrialTransition
from reporting.periods import Period, boundaries
from reporting.rows import day_of, ratio, rounded

#: The trial keys of a period row, in their JSON order.
TRIAL_KEYS = (
    "trials_started",
    "trials_converted",
    "trials_lost",
    "trial_conversion_rate",
    "trial_pipeline_mrr",
)


@dataclass(frozen=True)
class TrialBucket:
    """Trial transitions of one day and kind, counted, with their pipeline change."""

    day: date
    transition: str
    count: int
    pipeline_delta: int


@dataclass(frozen=True)
class TrialRow:
    period_start: date
    period_end: date
    trials_started: int
    trials_converted: int
    trials_lost: int
    trial_pipeline_mrr: int  # at period_end

    @property
    def trial_conversion_rate(self) -> Fraction | None:
        """Converted ÷ (converted + lost); None when no trial ended."""
        return ratio(self.trials_converted, self.trials_converted + self.trials_lost)

    def to_json(self, dates: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if dates:
            doc = {
                "period_start": self.period_start.isoformat(),
                "period_end": self.period_end.isoformat(),
            }
        doc.update(
            trials_started=self.trials_started,
            trials_converted=self.trials_converted,
            trials_lost=self.trials_lost,
            trial_conversion_rate=rounded(self.trial_conversion_rate),
            trial_pipeline_mrr=self.trial_pipeline_mrr,
        )
        return doc


def trial_buckets(transitions: Iterable[TrialTransition]) -> list[TrialBucket]:
    """Sum plain transitions into buckets (the naive path, and the tests')."""
    sums: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for t in transitions:
        cell = sums[(day_of(t.occurred_at), t.transition.value)]
        cell[0] += 1
        cell[1] += t.pipeline_delta
    return [TrialBucket(d, k, c, p) for (d, k), (c, p) in sorted(sums.items())]


def pipeline_before(buckets: Iterable[TrialBucket], boundary: date) -> int:
    """The pipeline MRR at `boundary` from every bucket dated before it."""
    return sum(b.pipeline_delta for b in buckets if b.day < boundary)


def trial_rows(
    pipeline: int,
    buckets: Sequence[TrialBucket],
    start: date,
    end: date,
    period: Period,
) -> list[TrialRow]:
    """One row per period of the snapped [start, end); `pipeline` is the pipeline MRR at
    the snapped start (buckets before it are ignored)."""
    rows = []
    for lo, hi in boundaries(start, end, period):
        inside = [b for b in buckets if lo <= b.day < hi]
        counts = dict.fromkeys(Transition, 0)
        for b in inside:
            counts[Transition(b.transition)] += b.count
        pipeline += sum(b.pipeline_delta for b in inside)
        rows.append(
            TrialRow(
                period_start=lo,
                period_end=hi,
                trials_started=counts[Transition.STARTED],
                trials_converted=counts[Transition.CONVERTED],
                trials_lost=counts[Transition.LOST],
                trial_pipeline_mrr=pipeline,
            )
        )
    return rows
