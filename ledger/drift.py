"""The drift of one subscription between the ledger and Stripe (`mrr reconcile`, SPEC §9).

Pure: both sides are priced by the ledger's own rules and compared; the caller stores
the fixes (`ledger.synthetic.fix_event`, `gone_event`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ledger.mrr import EMPTY_CATALOG, Catalog, subscription_mrr
from ledger.snapshot import ENDED_STATUSES, Snapshot


@dataclass(frozen=True)
class Standing:
    """One side's view of a subscription: status, currency and MRR in minor units."""

    status: str
    currency: str
    mrr: int


def standing(snapshot: Snapshot, catalog: Catalog = EMPTY_CATALOG) -> Standing:
    """A subscription object (Stripe's current one) priced as the ledger prices events."""
    return Standing(
        snapshot.effective_status, snapshot.currency, subscription_mrr(snapshot, catalog).amount
    )


@dataclass(frozen=True)
class Drift:
    """How the ledger's view of one subscription differs from Stripe's."""

    subscription_id: str
    ledger: Standing | None
    stripe: Standing | None
    #: |ledger MRR − Stripe MRR| per currency (each side's MRR when currencies differ);
    #: empty when only the status differs.
    amounts: Mapping[str, int]


def compare(subscription_id: str, ledger: Standing | None, stripe: Standing | None) -> Drift | None:
    """The drift of one subscription, or None when the ledger agrees with Stripe.

    `stripe` is None for a subscription Stripe does not have: a ledger that holds it
    ended, with no MRR, agrees.
    """
    if ledger == stripe:
        return None
    gone_and_ended = ledger is not None and ledger.mrr == 0 and ledger.status in ENDED_STATUSES
    if stripe is None and gone_and_ended:
        return None
    amounts: dict[str, int] = defaultdict(int)
    if ledger is not None and stripe is not None and ledger.currency == stripe.currency:
        amounts[ledger.currency] = abs(ledger.mrr - stripe.mrr)
    else:
        for side in (ledger, stripe):
            if side is not None:
                amounts[side.currency] += side.mrr
    return Drift(subscription_id, ledger, stripe, {c: a for c, a in sorted(amounts.items()) if a})


def total_drift(drifts: Iterable[Drift]) -> dict[str, int]:
    """Σ |ledger MRR − Stripe MRR| per currency, minor units (SPEC §9)."""
    totals: dict[str, int] = defaultdict(int)
    for drift in drifts:
        for currency, amount in drift.amounts.items():
            totals[currency] += amount
    return dict(sorted(totals.items()))
