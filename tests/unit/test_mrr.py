"""SPEC §7 MRR, clause by clause, with hand-computed expectations (both payload shapes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import mrr as mrr_module
from ledger.errors import InvalidEvent, InvalidValue
from ledger.mrr import EMPTY_CATALOG, Catalog, Need, needs, subscription_mrr
from ledger.snapshot import Tier, parse_coupon, parse_price, parse_subscription
from tests import factories as f

USD_1000 = f.price("price_a", 1000)
EUR_4900 = f.price("price_eur", 4900, currency="eur", product="prod_eur")
VOLUME = [
    {
        "up_to": 10,
        "unit_amount": 500,
        "unit_amount_decimal": "500",
        "flat_amount": 1000,
        "flat_amount_decimal": "1000",
    },
    {
        "up_to": None,
        "unit_amount": 400,
        "unit_amount_decimal": "400",
        "flat_amount": None,
        "flat_amount_decimal": None,
    },
]
GRADUATED = [
    {
        "up_to": 10,
        "unit_amount": 500,
        "unit_amount_decimal": "500",
        "flat_amount": 1000,
        "flat_amount_decimal": "1000",
    },
    {
        "up_to": None,
        "unit_amount": 400,
        "unit_amount_decimal": "400",
        "flat_amount": 200,
        "flat_amount_decimal": "200",
    },
]
CATALOG_TIERS = Catalog(
    tiers={
        "price_tiered": (
            Tier(10, Decimal(500), Decimal(1000)),
            Tier(None, Decimal(400), Decimal(0)),
        )
    }
)


def basil(*items: dict[str, Any], **kw: Any) -> dict[str, Any]:
    currency = items[0]["price"]["currency"] if items else "usd"
    return f.subscription(
        "sub_t", "cus_t", list(items), currency=kw.pop("currency", currency), **kw
    )


def legacy(*items: dict[str, Any], **kw: Any) -> dict[str, Any]:
    legacy_items = []
    for it in items:
        it = dict(it)
        it["plan"] = f.plan_of(it["price"])
        it.pop("discounts", None)
        it.pop("current_period_start", None)
        it.pop("current_period_end", None)
        legacy_items.append(it)
    currency = items[0]["price"]["currency"]
    return f.subscription(
        "sub_t", "cus_t", legacy_items, legacy=True, currency=kw.pop("currency", currency), **kw
    )


def legacy_plan_only(*items: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """Legacy payload whose items carry only `plan` (API versions before prices existed)."""
    sub = legacy(*items, **kw)
    for it in sub["items"]["data"]:
        del it["price"]
    return sub


def no_currency_field(sub: dict[str, Any]) -> dict[str, Any]:
    del sub["currency"]  # old payloads: the currency comes from the price
    return sub


@dataclass
class Case:
    name: str
    sub: dict[str, Any]
    expected: int
    catalog: Catalog = field(default_factory=Catalog)
    warns: bool = False


pct25 = f.coupon("P25", percent_off=25.0)
pct3333 = f.coupon("P3333", percent_off=33.33)
pct50 = f.coupon("P50", percent_off=50.0)
pct10 = f.coupon("P10", percent_off=10.0)
once50 = f.coupon("ONCE50", percent_off=50.0, duration="once")
rep50 = f.coupon("REP50", percent_off=50.0, duration="repeating", duration_in_months=3)
off300 = f.coupon("OFF300", amount_off=300, currency="usd")
off1200 = f.coupon("OFF1200", amount_off=1200, currency="usd")
off100 = f.coupon("OFF100", amount_off=100, currency="usd")
off_eur = f.coupon("OFFEUR", amount_off=300, currency="eur")
off5000 = f.coupon("OFF5000", amount_off=5000, currency="usd")
multi = {
    **f.coupon("MULTI", amount_off=500, currency="usd"),
    "currency_options": {"eur": {"amount_off": 700}, "usd": {"amount_off": 500}},
}
only_b = f.coupon("ONLYB", percent_off=50.0, products=["prod_b"])
price_b = f.price("price_b", 2000, product="prod_b")

CASES = [
    # --- per-unit licensed items, quantity, currency ---
    Case("basil monthly 1000 x1", basil(f.item(USD_1000, 1)), 1000),
    Case("basil quantity 5", basil(f.item(USD_1000, 5)), 5000),
    Case("basil quantity null counts 1", basil(f.item(USD_1000, None)), 1000),
    Case("basil quantity 0", basil(f.item(USD_1000, 0)), 0),
    Case("legacy plan and price, quantity 3", legacy(f.item(USD_1000, 3)), 3000),
    Case("legacy plan only (pre-price payload)", legacy_plan_only(f.item(USD_1000, 2)), 2000),
    Case("legacy without subscription currency", no_currency_field(legacy(f.item(USD_1000))), 1000),
    Case("eur 4900 x2", basil(f.item(EUR_4900, 2)), 9800),
    Case(
        "legacy eur yearly 99000",
        legacy(f.item(f.price("p", 99000, currency="eur", interval="year"))),
        8250,
    ),
    Case("jpy zero-decimal 5000", basil(f.item(f.price("p", 5000, currency="jpy"))), 5000),
    Case("two items summed", basil(f.item(USD_1000, 1), f.item(price_b, 2)), 5000),
    # --- interval normalisation ---
    Case("yearly 12000", basil(f.item(f.price("p", 12000, interval="year"))), 1000),
    Case("yearly 10000 = 833.33", basil(f.item(f.price("p", 10000, interval="year"))), 833),
    Case(
        "every 2 years 24000",
        basil(f.item(f.price("p", 24000, interval="year", interval_count=2))),
        1000,
    ),
    Case("quarterly 30000", basil(f.item(f.price("p", 30000, interval_count=3))), 10000),
    Case(
        "every 6 months 10000 = 1666.67", basil(f.item(f.price("p", 10000, interval_count=6))), 1667
    ),
    Case("weekly 1000 = 4333.33", basil(f.item(f.price("p", 1000, interval="week"))), 4333),
    Case(
        "every 2 weeks 1000 = 2166.67",
        basil(f.item(f.price("p", 1000, interval="week", interval_count=2))),
        2167,
    ),
    Case(
        "legacy every 3 weeks 1000 = 1444.44",
        legacy(f.item(f.price("p", 1000, interval="week", interval_count=3))),
        1444,
    ),
    Case("daily 100 = 3041.67", basil(f.item(f.price("p", 100, interval="day"))), 3042),
    Case(
        "every 7 days 700 = 3041.67",
        basil(f.item(f.price("p", 700, interval="day", interval_count=7))),
        3042,
    ),
    # --- exactness and the single half-even rounding ---
    Case(
        "decimal 0.5 x 1001 = 500.5 -> 500",
        basil(f.item(f.price("p", None, unit_amount_decimal="0.5"), 1001)),
        500,
    ),
    Case(
        "decimal 1.5 -> 2 (half-even)",
        basil(f.item(f.price("p", None, unit_amount_decimal="1.5"))),
        2,
    ),
    Case(
        "decimal 2.5 -> 2 (half-even)",
        basil(f.item(f.price("p", None, unit_amount_decimal="2.5"))),
        2,
    ),
    Case(
        "decimal wins over unit_amount",
        basil(f.item(f.price("p", 1, unit_amount_decimal="1.25"), 10)),
        12,
    ),
    Case(
        "two items of 0.5 round once to 1",
        basil(
            f.item(f.price("p1", None, unit_amount_decimal="0.5", product="x")),
            f.item(f.price("p2", None, unit_amount_decimal="0.5", product="y")),
        ),
        1,
    ),
    Case(
        "12 decimals: 0.000000000001 x 10^12",
        basil(f.item(f.price("p", None, unit_amount_decimal="0.000000000001"), 10**12)),
        1,
    ),
    Case(
        "weekly thirds and yearly fractions sum exactly",
        basil(
            f.item(f.price("pw", 1, interval="week", product="w"), 3),
            f.item(f.price("py", 1, interval="year", product="y"), 1),
        ),
        13,
    ),
    # --- metered ---
    Case("metered alone is 0", basil(f.item(f.price("m", 5, usage_type="metered"), None)), 0),
    Case(
        "metered beside licensed",
        basil(f.item(USD_1000), f.item(f.price("m", 5, usage_type="metered", product="api"), None)),
        1000,
    ),
    # --- status ---
    *[
        Case(f"status {s} counts 0", basil(f.item(USD_1000), status=s), 0)
        for s in ("trialing", "incomplete", "incomplete_expired", "unpaid", "canceled", "paused")
    ],
    Case("status past_due counts", basil(f.item(USD_1000), status="past_due"), 1000),
    Case("legacy past_due counts", legacy(f.item(USD_1000), status="past_due"), 1000),
    Case(
        "pause_collection keeps MRR",
        {**basil(f.item(USD_1000)), "pause_collection": {"behavior": "void", "resumes_at": None}},
        1000,
    ),
    # --- tiers ---
    Case(
        "volume 5 units in tier 1 + flat",
        basil(
            f.item(
                f.price("pv", None, billing_scheme="tiered", tiers_mode="volume", tiers=VOLUME), 5
            )
        ),
        3500,
    ),
    Case(
        "volume 15 units all at tier 2",
        basil(
            f.item(
                f.price("pv", None, billing_scheme="tiered", tiers_mode="volume", tiers=VOLUME), 15
            )
        ),
        6000,
    ),
    Case(
        "volume 10 units, boundary stays in tier 1",
        basil(
            f.item(
                f.price("pv", None, billing_scheme="tiered", tiers_mode="volume", tiers=VOLUME), 10
            )
        ),
        6000,
    ),
    Case(
        "graduated 15 units",
        basil(
            f.item(
                f.price(
                    "pg", None, billing_scheme="tiered", tiers_mode="graduated", tiers=GRADUATED
                ),
                15,
            )
        ),
        8200,
    ),
    Case(
        "graduated 10 units: tier 2 not entered",
        basil(
            f.item(
                f.price(
                    "pg", None, billing_scheme="tiered", tiers_mode="graduated", tiers=GRADUATED
                ),
                10,
            )
        ),
        6000,
    ),
    Case(
        "graduated yearly 15 units / 12",
        basil(
            f.item(
                f.price(
                    "pg",
                    None,
                    billing_scheme="tiered",
                    tiers_mode="graduated",
                    tiers=GRADUATED,
                    interval="year",
                ),
                15,
            )
        ),
        683,
    ),
    Case(
        "tiers missing, no catalog: 0 and a warning",
        basil(
            f.item(f.price("price_tiered", None, billing_scheme="tiered", tiers_mode="volume"), 5)
        ),
        0,
        warns=True,
    ),
    Case(
        "tiers from the catalog (fetched price)",
        basil(
            f.item(f.price("price_tiered", None, billing_scheme="tiered", tiers_mode="volume"), 5)
        ),
        3500,
        catalog=CATALOG_TIERS,
    ),
    Case(
        "legacy tiered plan from the catalog",
        legacy(
            f.item(f.price("price_tiered", None, billing_scheme="tiered", tiers_mode="volume"), 12)
        ),
        4800,
        catalog=CATALOG_TIERS,
    ),
    # --- transform_quantity ---
    Case(
        "transform divide 10 round up: 11 -> 2",
        basil(f.item(f.price("p", 1000, transform_quantity={"divide_by": 10, "round": "up"}), 11)),
        2000,
    ),
    Case(
        "transform divide 10 round down: 19 -> 1",
        basil(
            f.item(f.price("p", 1000, transform_quantity={"divide_by": 10, "round": "down"}), 19)
        ),
        1000,
    ),
    Case(
        "transform exact multiple 20 -> 2",
        basil(f.item(f.price("p", 1000, transform_quantity={"divide_by": 10, "round": "up"}), 20)),
        2000,
    ),
    Case(
        "legacy transform_usage on the plan",
        legacy_plan_only(
            f.item(f.price("p", 1000, transform_quantity={"divide_by": 5, "round": "up"}), 6)
        ),
        2000,
    ),
    # --- coupons ---
    Case(
        "legacy forever 50%", legacy(f.item(USD_1000), discount_obj=f.discount("di_1", pct50)), 500
    ),
    Case(
        "basil discount object forever 25%",
        basil(f.item(USD_1000), discounts=[f.discount("di_1", pct25)]),
        750,
    ),
    Case(
        "clover source.coupon forever 25%",
        basil(f.item(USD_1000), discounts=[f.discount("di_1", pct25, clover=True)]),
        750,
    ),
    Case(
        "percent 33.33 on 1000 = 666.7",
        basil(f.item(USD_1000), discounts=[f.discount("di_1", pct3333)]),
        667,
    ),
    Case(
        "once coupon ignored", basil(f.item(USD_1000), discounts=[f.discount("di", once50)]), 1000
    ),
    Case(
        "repeating coupon ignored",
        legacy(f.item(USD_1000), discount_obj=f.discount("di", rep50)),
        1000,
    ),
    Case(
        "legacy percent_off_precise wins over the rounded percent_off",
        legacy(
            f.item(USD_1000),
            discount_obj=f.discount(
                "di", {**f.coupon("P", percent_off=33), "percent_off_precise": 33.5}
            ),
        ),
        665,
    ),
    Case(
        "percent_off_precise null: percent_off applies",
        legacy(
            f.item(USD_1000),
            discount_obj=f.discount("di", {**pct25, "percent_off_precise": None}),
        ),
        750,
    ),
    Case(
        "amount_off 300 monthly", basil(f.item(USD_1000), discounts=[f.discount("di", off300)]), 700
    ),
    Case(
        "amount_off 1200 per yearly invoice = 100 a month",
        basil(f.item(f.price("p", 12000, interval="year")), discounts=[f.discount("di", off1200)]),
        900,
    ),
    Case(
        "amount_off in another currency ignored",
        basil(f.item(USD_1000), discounts=[f.discount("di", off_eur)]),
        1000,
    ),
    Case(
        "amount_off eur on an eur subscription",
        basil(f.item(EUR_4900), discounts=[f.discount("di", off_eur)]),
        4600,
    ),
    Case(
        "amount_off floored at 0", basil(f.item(USD_1000), discounts=[f.discount("di", off5000)]), 0
    ),
    Case(
        "currency_options amount for eur",
        basil(f.item(EUR_4900), discounts=[f.discount("di", multi)]),
        4200,
    ),
    Case(
        "percent then amount, in order",
        basil(f.item(USD_1000), discounts=[f.discount("d1", pct10), f.discount("d2", off100)]),
        800,
    ),
    Case(
        "amount_off normalised with the first licensed item (quarterly)",
        basil(
            f.item(f.price("pm", 5, usage_type="metered", product="m"), None),
            f.item(f.price("pq", 30000, interval_count=3, product="q")),
            discounts=[f.discount("di", off300)],
        ),
        9900,
    ),
    Case(
        "applies_to restricts the percentage",
        basil(f.item(USD_1000), f.item(price_b), discounts=[f.discount("di", only_b)]),
        2000,
    ),
    Case(
        "item-level discount object",
        basil(f.item(USD_1000), f.item(price_b, discounts=[f.discount("di_item", pct50)])),
        2000,
    ),
    Case(
        "discount ids only, no catalog: undiscounted with a warning",
        basil(f.item(USD_1000), discounts=["di_123"]),
        1000,
        warns=True,
    ),
    Case(
        "discount id resolved through the catalog",
        basil(f.item(USD_1000), discounts=["di_123"]),
        750,
        catalog=Catalog(coupons={"P25": parse_coupon(pct25)}, discount_coupons={"di_123": "P25"}),
    ),
    Case(
        "clover source.coupon as id, coupon in catalog",
        basil(
            f.item(USD_1000),
            discounts=[
                {
                    **f.discount("di_9", pct25, clover=True),
                    "source": {"type": "coupon", "coupon": "P25"},
                }
            ],
        ),
        750,
        catalog=Catalog(coupons={"P25": parse_coupon(pct25)}),
    ),
]


def test_at_least_forty_cases_across_shapes_and_currencies() -> None:
    assert len(CASES) >= 40
    assert {c.sub.get("currency") or "from price" for c in CASES} >= {"usd", "eur"}
    assert any("plan" in c.sub for c in CASES) and any("discounts" in c.sub for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_subscription_mrr(case: Case) -> None:
    result = subscription_mrr(parse_subscription(case.sub), case.catalog)
    assert result.amount == case.expected
    assert bool(result.warnings) == case.warns
    assert isinstance(result.amount, int)


def test_needs_name_what_the_api_must_supply() -> None:
    tiered = parse_subscription(
        basil(
            f.item(f.price("price_tiered", None, billing_scheme="tiered", tiers_mode="volume"), 5)
        )
    )
    assert needs(tiered) == {Need("price", "price_tiered")}
    assert needs(tiered, CATALOG_TIERS) == frozenset()
    legacy_tiered = parse_subscription(
        legacy_plan_only(
            f.item(f.price("plan_t", None, billing_scheme="tiered", tiers_mode="graduated"), 5)
        )
    )
    assert needs(legacy_tiered) == {Need("plan", "plan_t")}
    by_id = parse_subscription(basil(f.item(USD_1000), discounts=["di_1"]))
    assert needs(by_id) == {Need("discount", "di_1", "sub_t")}
    assert needs(by_id, Catalog(discount_coupons={"di_1": "CO"})) == {Need("coupon", "CO")}
    embedded = parse_subscription(basil(f.item(USD_1000), discounts=[f.discount("d", pct25)]))
    assert needs(embedded) == frozenset()


# --- SPEC §7: what the ledger refuses, and what it never refuses -----------------------

MALFORMED = f.price("price_bad", 1000, interval="fortnight")


@pytest.mark.parametrize("shape", [basil, legacy], ids=["basil", "legacy"])
def test_an_item_in_another_currency_is_a_clear_error(shape: Any) -> None:
    sub = shape(f.item(USD_1000), f.item(EUR_4900))
    with pytest.raises(InvalidEvent, match="is in usd but its item si_eur is in eur"):
        parse_subscription(sub)


def test_the_subscription_currency_is_the_one_items_are_checked_against() -> None:
    with pytest.raises(InvalidEvent, match="is in eur but its item si_a is in usd"):
        parse_subscription(basil(f.item(USD_1000), currency="eur"))


@pytest.mark.parametrize(
    "status", ["canceled", "incomplete_expired", "trialing", "unpaid", "paused", "incomplete"]
)
@pytest.mark.parametrize(
    "items", [[f.item(MALFORMED)], [f.item(USD_1000), f.item(EUR_4900)]], ids=["bad", "foreign"]
)
def test_a_subscription_counting_zero_is_never_refused_for_its_prices(status, items) -> None:
    snapshot = parse_subscription(basil(*items, status=status, currency="usd"))
    assert subscription_mrr(snapshot).amount == 0
    assert snapshot.currency == "usd"


@pytest.mark.parametrize("status", ["active", "past_due"])
def test_a_counting_subscription_is_refused_for_a_malformed_price(status: str) -> None:
    with pytest.raises(InvalidEvent, match="no recurring interval"):
        parse_subscription(basil(f.item(MALFORMED), status=status, currency="usd"))


@pytest.mark.parametrize("status", ["active", "past_due", "trialing", "canceled"])
def test_an_ended_subscription_counts_zero_whatever_its_status(status: str) -> None:
    snapshot = parse_subscription(basil(f.item(USD_1000), status=status), ended=True)
    assert subscription_mrr(snapshot).amount == 0
    assert snapshot.effective_status == "canceled"


def test_an_ended_subscription_keeps_how_it_ended() -> None:
    snapshot = parse_subscription(basil(f.item(USD_1000), status="incomplete_expired"), ended=True)
    assert snapshot.effective_status == "incomplete_expired"


@pytest.mark.parametrize(
    ("cancel_at_period_end", "cancel_at", "as_of", "scheduled"),
    [
        (False, None, 100, False),
        (True, None, 100, True),
        (False, 101, 100, True),
        (False, 100, 100, False),  # the moment it ends is not "later"
        (False, 99, 100, False),  # already past: schedules nothing
        (True, 99, 100, True),
    ],
)
def test_scheduled_to_cancel_as_of(cancel_at_period_end, cancel_at, as_of, scheduled) -> None:
    snapshot = parse_subscription(
        basil(f.item(USD_1000), cancel_at_period_end=cancel_at_period_end, cancel_at=cancel_at)
    )
    assert snapshot.scheduled_to_cancel(as_of) is scheduled


# The rebuild's fast paths (issue 23): a cache of parsed prices, and whole-number MRR
# without Fractions. Each must give exactly what the plain path gives.

_amounts = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**9).map(str),
    st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False).map(str),
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(
        st.tuples(
            _amounts,
            st.sampled_from(["day", "week", "month", "year"]),
            st.integers(min_value=1, max_value=12),
            st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)),
            st.sampled_from(["licensed", "metered"]),
        ),
        min_size=0,
        max_size=4,
    )
)
def test_whole_number_mrr_equals_the_exact_path(items) -> None:
    raw = [
        f.item(
            f.price(
                f"price_{n}",
                None,
                unit_amount_decimal=amount,
                interval=interval,
                interval_count=count,
                usage_type=usage,
            ),
            quantity,
            item_id=f"si_{n}",
        )
        for n, (amount, interval, count, quantity, usage) in enumerate(items)
    ]
    snapshot = parse_subscription(f.subscription("sub_p", "cus_p", raw))
    try:
        lines, exact = mrr_module._exact_mrr(snapshot, EMPTY_CATALOG, [])
    except InvalidValue:  # beyond MAX_MRR (10**9 a day × 10**6 seats): both paths refuse
        with pytest.raises(InvalidValue):
            subscription_mrr(snapshot)
        return
    assert subscription_mrr(snapshot).amount == round(exact)
    whole, shares = mrr_module.priced_items(snapshot)  # what segments price by, also fast
    assert whole == subscription_mrr(snapshot)
    assert shares == mrr_module._shares(lines, exact)


def test_a_cached_price_never_stands_for_different_fields() -> None:
    obj = f.price("price_cache", 1500)
    first = parse_price(obj, "price")
    assert first.unit_amount == 1500
    obj["unit_amount_decimal"] = "2500"  # the same dict, changed after it was parsed
    assert parse_price(obj, "price").unit_amount == 2500
    # A bool is not an amount, though True == 1 as a key.
    one = f.price("price_bool", 1)
    flag = {**one, "unit_amount": True, "unit_amount_decimal": None}
    assert parse_price(one, "price").unit_amount == 1
    assert parse_price(flag, "price").unit_amount is None
    # A float parses as its decimal value and is never cached beside the int.
    ten = {**f.price("price_f", 10), "unit_amount_decimal": None}
    assert parse_price({**ten, "unit_amount": 10.5}, "price").unit_amount == Decimal("10.5")
    assert parse_price(ten, "price").unit_amount == 10
