"""SPEC §9, pure: reading invoices of both shapes (recorded and world-rendered) into lines."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.invoices import (
    InvalidInvoice,
    Shape,
    UnresolvedPrice,
    discounts_by_id,
    invoice_catalog,
    invoice_subscription,
    missing_coupons,
    missing_prices,
    read_discount,
    read_invoice,
    read_invoices,
    read_pending_items,
)
from ledger.mrr import Catalog
from tests import factories as f
from tests.world import BASIL, CLOVER, LEGACY, VERSIONS, World
from tests.world.calendar import utc

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "invoices"
PAY_SUB = "sub_1MzOlhKXBGcbgpbZEyl9nOSn"
PAY_ITEM = "si_NkuasfcBppZ2n4"
CHANGE = 1682101996  # 2023-04-21T18:33:16Z: the swap to yearly


def load(rel: str) -> dict[str, Any]:
    return json.loads((FIXTURES / rel).read_text())


CREATE = load("2022-11-15/pay_invoice_subscription_create.json")
SWAP = load("2022-11-15/pay_invoice_subscription_update_proration.json")
SWAP_CLOVER = load("2025-10-29.clover/pay_invoice_swap_reconstructed.json")
MANUAL = load("2025-02-24.acacia/openapi_invoice_manual.json")
DRAFT = load("2026-07-29.dahlia/openapi_invoice_draft.json")
#: The two prices of the pay recording, as `GET /v1/prices/{id}` gives them.
PAY_PRICES = {line["price"]["id"]: line["price"] for line in SWAP["lines"]["data"]}


def lines_of(invoice: dict[str, Any], prices: dict[str, Any] | None = None) -> list[tuple]:
    read = read_invoice(invoice, prices or {})
    return [
        (ln.subscription_item, ln.price_id, ln.quantity, ln.proration, ln.credit, ln.start, ln.end)
        for ln in read.lines
    ]


# --- the recorded shapes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("invoice", "prices", "shape", "expected"),
    [
        pytest.param(
            CREATE,
            None,
            Shape.LEGACY,
            [(PAY_ITEM, "small-monthly", 1, False, False, 1682101993, 1684693993)],
            id="legacy first invoice",
        ),
        pytest.param(
            SWAP,
            None,
            Shape.LEGACY,
            [
                (PAY_ITEM, "small-monthly", 1, True, True, CHANGE, 1684693993),  # unused time
                (PAY_ITEM, "small-annual", 1, False, False, CHANGE, 1713724396),  # a new year
            ],
            id="legacy cycle reset: a credit and a whole new period",
        ),
        pytest.param(
            SWAP_CLOVER,
            PAY_PRICES,
            Shape.BASIL,
            [
                (PAY_ITEM, "small-monthly", 1, True, True, CHANGE, 1684693993),
                (PAY_ITEM, "small-annual", 1, True, False, CHANGE, 1713724396),  # remaining time
            ],
            id="clover: a credit and a remaining-time debit over the new year",
        ),
    ],
)
def test_subscription_lines_of_both_shapes(invoice, prices, shape, expected) -> None:
    read = read_invoice(invoice, prices or {})
    assert read.shape is shape
    assert read.subscription == PAY_SUB
    assert read.customer == "cus_NkuahmIPvlZ9cf"
    assert lines_of(invoice, prices) == expected


def test_the_invoice_of_a_subscription_in_either_shape() -> None:
    assert invoice_subscription(SWAP) == PAY_SUB  # legacy: `subscription`
    assert invoice_subscription(SWAP_CLOVER) == PAY_SUB  # basil+: parent.subscription_details
    assert invoice_subscription(MANUAL) is None  # a one-off invoice
    # The fixture's placeholder names "subscription" under a quote parent.
    assert invoice_subscription(DRAFT) == "subscription"


def test_prices_named_by_id_come_from_the_callers_prices_and_are_reported_when_missing() -> None:
    assert missing_prices([SWAP_CLOVER]) == {"small-monthly", "small-annual"}
    assert missing_prices([SWAP_CLOVER], {"small-monthly": {}}) == {"small-annual"}
    assert missing_prices([SWAP]) == set()  # legacy lines embed their price
    with pytest.raises(UnresolvedPrice) as caught:
        read_invoices([SWAP_CLOVER, CREATE])
    assert caught.value.price_ids == ("small-annual", "small-monthly")
    assert "small-annual, small-monthly" in str(caught.value)
    read = read_invoices([SWAP_CLOVER], PAY_PRICES)[0]
    assert read.lines[1].price is PAY_PRICES["small-annual"]


def test_drafts_and_one_off_invoices_are_left_out() -> None:
    assert read_invoices([DRAFT, MANUAL]) == []
    with pytest.raises(InvalidInvoice, match="is a draft"):
        read_invoice(DRAFT)
    finalized = {**MANUAL, "status": "open"}  # the fixture is a draft too
    assert read_invoices([finalized]) == []
    with pytest.raises(InvalidInvoice, match="bills no subscription"):
        read_invoice(finalized)


def test_one_off_lines_and_other_subscriptions_lines_are_skipped_and_counted() -> None:
    invoice = copy.deepcopy(SWAP)
    one_off = copy.deepcopy(MANUAL["lines"]["data"][0])  # an invoice item, no sub item
    elsewhere = copy.deepcopy(invoice["lines"]["data"][1])
    elsewhere["subscription"] = "sub_other"
    invoice["lines"]["data"] += [one_off, elsewhere]
    read = read_invoice(invoice)
    assert len(read.lines) == 2
    assert read.skipped_lines == 2

    basil = copy.deepcopy(SWAP_CLOVER)
    item_details = copy.deepcopy(basil["lines"]["data"][0])
    item_details["parent"] = {"type": "invoice_item_details", "invoice_item_details": {}}
    basil["lines"]["data"].append(item_details)
    assert read_invoice(basil, PAY_PRICES).skipped_lines == 1


def test_an_invoice_with_more_lines_than_it_embeds_is_refused() -> None:
    invoice = copy.deepcopy(SWAP)
    invoice["lines"]["has_more"] = True
    with pytest.raises(InvalidInvoice, match="GET /v1/invoices/in_1MzOlkKXBGcbgpbZ5XarMvXj/lines"):
        read_invoice(invoice)


@pytest.mark.parametrize(
    ("amount", "credited", "description", "credit"),
    [
        (-2500, None, "whatever", True),
        (2500, None, "Unused time on X", False),  # the sign decides when there is one
        (0, {"invoice": "in_1", "invoice_line_items": ["il_1"]}, "x", True),
        (0, None, "Unused time on Free after 1 May 2024", True),
        (0, None, "Remaining time on Free after 1 May 2024", False),
    ],
)
def test_a_credit_is_told_by_its_sign_else_by_what_it_reverses(
    amount, credited, description, credit
) -> None:
    invoice = copy.deepcopy(SWAP)
    line = invoice["lines"]["data"][0]
    line.update(amount=amount, description=description)
    line["proration_details"]["credited_items"] = credited
    assert read_invoice(invoice).lines[0].credit is credit


def test_a_metered_lines_quantity_is_usage_not_the_items_quantity() -> None:
    invoice = copy.deepcopy(CREATE)
    line = invoice["lines"]["data"][0]
    line["price"]["recurring"]["usage_type"] = "metered"
    line["quantity"] = 1234
    read = read_invoice(invoice).lines[0]
    assert read.metered and read.quantity is None


# --- discounts ----------------------------------------------------------------------------

COUPON = f.coupon("FOREVER20", percent_off=20.0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("di_1", ("di_1", None, None, False)),
        (f.discount("di_2", COUPON), ("di_2", "FOREVER20", 1700000000, False)),  # coupon
        (f.discount("di_3", COUPON, clover=True), ("di_3", "FOREVER20", 1700000000, False)),
        (
            {**f.discount("di_4", COUPON, clover=True), "source": {"coupon": "C4"}},
            ("di_4", "C4", 1700000000, False),  # clover: source.coupon not expanded
        ),
        (
            {**f.discount("di_5", COUPON), "subscription": None},
            ("di_5", "FOREVER20", 1700000000, True),
        ),
        (None, None),
        ({"object": "discount"}, None),
    ],
)
def test_discounts_as_ids_or_objects_of_every_version(raw, expected) -> None:
    read = read_discount(raw)
    got = None if read is None else (read.id, read.coupon_id, read.start, read.customer_level)
    assert got == expected


def test_an_ended_discount_is_resolved_from_the_invoices_that_listed_it() -> None:
    """Issue 18, acceptance 4: a basil event names a discount by id; once it has ended no
    subscription carries it, but the invoices listed with `expand[]=data.discounts` do."""
    legacy = copy.deepcopy(SWAP)
    legacy["discount"] = f.discount("di_legacy", COUPON)
    legacy["discounts"] = ["di_legacy"]
    clover = copy.deepcopy(SWAP_CLOVER)
    clover["discounts"] = [
        {**f.discount("di_clover", COUPON, clover=True), "source": {"coupon": "C9"}}
    ]
    invoices = read_invoices([legacy, clover], PAY_PRICES)
    found = discounts_by_id(invoices)
    assert sorted(found) == ["di_clover", "di_legacy"]
    assert found["di_legacy"].coupon is not None  # the object won over the bare id
    assert missing_coupons(invoices) == {"C9"}
    c9 = f.coupon("C9", amount_off=500, currency="usd")
    catalog = invoice_catalog(invoices, {"C9": c9}, base=Catalog(discount_coupons={"di_x": "X"}))
    assert catalog.discount_coupons == {"di_x": "X", "di_legacy": "FOREVER20", "di_clover": "C9"}
    assert sorted(catalog.coupons) == ["C9", "FOREVER20"]
    assert missing_coupons(invoices, {"C9": c9}) == set()


# --- world-rendered invoices of every version ---------------------------------------------


def billed_world(version: str) -> World:
    """A seat change left pending, one invoiced at once, an added item, a discount."""
    w = World(version)
    pro = w.price("price_pro", 2500)
    addon = w.price("price_addon", 700)
    forever = w.coupon("F10", percent_off=10.0)
    cus = w.customer(utc(2024, 1, 1))
    sub = w.subscribe(cus, utc(2024, 1, 2, 10), [(pro, 3)], coupon=forever)
    w.set_quantity(sub, utc(2024, 1, 20, 12), pro, 5)  # pending until the renewal
    w.set_quantity(sub, utc(2024, 2, 10, 12), pro, 4, "always_invoice")
    w.add_item(sub, utc(2024, 3, 15, 9), addon, 2)  # still pending at the end
    return w.run(utc(2024, 3, 20))


@pytest.mark.parametrize("version", VERSIONS)
def test_world_invoices_read_the_same_in_every_shape(version: str) -> None:
    w = billed_world(version)
    raw = w.invoices()
    assert missing_prices(raw) == (set() if version == LEGACY else {"price_pro"})
    invoices = read_invoices(raw, w.prices())
    got = [
        (
            i.billing_reason,
            [(ln.price_id, ln.quantity, ln.proration, ln.credit, ln.start) for ln in i.lines],
            sorted(i.discount_ids),
        )
        for i in invoices
    ]
    t1, t2 = utc(2024, 1, 20, 12), utc(2024, 2, 10, 12)
    assert got == [
        (
            "subscription_create",
            [("price_pro", 3, False, False, utc(2024, 1, 2, 10))],
            ["di_W000001"],
        ),
        (
            "subscription_cycle",
            [
                ("price_pro", 3, True, True, t1),
                ("price_pro", 5, True, False, t1),
                ("price_pro", 5, False, False, utc(2024, 2, 2, 10)),
            ],
            ["di_W000001"],
        ),
        (
            "subscription_update",
            [("price_pro", 5, True, True, t2), ("price_pro", 4, True, False, t2)],
            ["di_W000001"],
        ),
        (
            "subscription_cycle",
            [("price_pro", 4, False, False, utc(2024, 3, 2, 10))],
            ["di_W000001"],
        ),
    ]
    pending = read_pending_items(w.pending_invoice_items(), w.prices())
    assert [(p.subscription, p.line.price_id, p.line.quantity, p.line.credit) for p in pending] == [
        ("sub_W000001", "price_addon", 2, False)
    ]
    # Proration amounts carry the discount; its object comes expanded with its coupon.
    discount = discounts_by_id(invoices)["di_W000001"]
    assert discount.start == utc(2024, 1, 2, 10)
    assert discount.coupon_id == "F10"
    assert (discount.coupon is None) == (version == CLOVER)  # clover: source.coupon is an id


@pytest.mark.parametrize("version", [LEGACY, BASIL])
def test_pending_items_name_their_prices_like_lines(version: str) -> None:
    w = billed_world(version)
    items = w.pending_invoice_items()
    if version == LEGACY:
        assert missing_prices(items) == set()
    else:
        assert missing_prices(items) == {"price_addon"}
        with pytest.raises(UnresolvedPrice):
            read_pending_items(items)
    invoiced = [{**items[0], "invoice": "in_1"}]  # no longer pending: left out
    assert read_pending_items(invoiced, w.prices()) == []


def test_invoices_parsed_into_ordered_dicts_read_alike() -> None:
    """stripe-python parses API responses with `object_pairs_hook=OrderedDict`: an
    invoice listed through the client must read as the same JSON given as dicts."""
    import json
    from collections import OrderedDict

    from tests.world import BASIL
    from tests.world.scenarios import central

    world = central(BASIL)
    raw = world.invoices()
    ordered = json.loads(json.dumps(raw), object_pairs_hook=OrderedDict)
    assert read_invoices(ordered, world.prices()) == read_invoices(raw, world.prices())
    assert any(i.discounts for i in read_invoices(ordered, world.prices()))
