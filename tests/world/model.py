"""The world's plain state: prices, coupons, customers, subscriptions, invoices.

Mutable where Stripe's objects change (a subscription, its items); the JSON each
API version shows of them is `tests.world.render`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LEGACY = "2024-06-20"
BASIL = "2025-03-31.basil"
CLOVER = "2025-09-30.clover"
VERSIONS = (LEGACY, BASIL, CLOVER)


def is_legacy(version: str) -> bool:
    """API versions before 2025-03-31 (basil) have the legacy shapes."""
    return version < "2025-03-31"


@dataclass(frozen=True)
class Price:
    id: str
    product: str
    currency: str
    unit_amount: int
    interval: str = "month"
    interval_count: int = 1
    usage_type: str = "licensed"
    nickname: str | None = None
    created: int = 1_672_531_200  # 2023-01-01

    @property
    def metered(self) -> bool:
        return self.usage_type == "metered"


@dataclass(frozen=True)
class Coupon:
    id: str
    duration: str = "forever"
    percent_off: float | None = None
    amount_off: int | None = None
    currency: str | None = None
    created: int = 1_672_531_200


@dataclass
class Customer:
    id: str
    created: int
    email: str
    name: str
    currency: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Discount:
    id: str
    coupon: Coupon
    start: int
    customer: str
    subscription: str


@dataclass
class Item:
    id: str
    price: Price
    quantity: int | None  # None for metered items
    created: int
    #: Start of the metered usage not billed yet.
    usage_since: int


@dataclass
class Line:
    id: str
    item: str
    price: Price
    quantity: int | None
    proration: bool
    start: int
    end: int
    amount: int
    description: str
    invoice_item: str | None = None  # prorations are invoice items
    #: What a credit proration reverses: (invoice id, line id) of the debit.
    credited: tuple[str, str] | None = None
    discount_amounts: tuple[tuple[str, int], ...] = ()


@dataclass
class Invoice:
    id: str
    number: str
    subscription: str
    customer: str
    currency: str
    created: int
    billing_reason: str
    lines: list[Line]
    discounts: list[Discount]
    period_start: int
    period_end: int
    status: str = "paid"

    @property
    def subtotal(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def discount_total(self) -> int:
        return sum(a for line in self.lines for _, a in line.discount_amounts)

    @property
    def total(self) -> int:
        return self.subtotal - self.discount_total


@dataclass
class Subscription:
    id: str
    customer: str
    currency: str
    created: int
    items: list[Item]
    status: str
    anchor: int
    period_start: int
    period_end: int
    trial_start: int | None = None
    trial_end: int | None = None
    trial_outcome: str = "convert"  # at the trial's end: convert, cancel or pause
    discount: Discount | None = None
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    ended_at: int | None = None
    cancellation: dict[str, str | None] = field(
        default_factory=lambda: {"comment": None, "feedback": None, "reason": None}
    )
    #: Proration invoice items waiting for the next invoice.
    pending: list[Line] = field(default_factory=list)
    latest_invoice: str | None = None
    #: The line that last billed each item: what a credit proration reverses.
    billed: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def item_of(self, price_id: str) -> Item | None:
        return next((i for i in self.items if i.price.id == price_id), None)

    @property
    def interval(self) -> tuple[str, int]:
        licensed = [i.price for i in self.items]
        return (licensed[0].interval, licensed[0].interval_count)
