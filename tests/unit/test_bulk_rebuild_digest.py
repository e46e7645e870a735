"""Which customers the bulk rebuild hands back to the incremental path after its swap."""

from __future__ import annotations

from pipeline.bulk_rebuild import _changed_since, digest


def test_a_digest_ignores_order_and_sees_every_id_and_version() -> None:
    rows = [("evt_1", "100"), ("evt_2", "101")]
    assert digest(rows) == digest(list(reversed(rows)))
    assert digest(rows) != digest([("evt_1", "100"), ("evt_2", "102")])
    assert digest(rows) != digest(rows[:1])


def test_changed_customers_are_the_new_the_gone_and_the_rewritten() -> None:
    seen = {
        "cus_same": digest([("evt_1", "7")]),
        "cus_updated": digest([("evt_2", "7")]),
        "cus_grown": digest([("evt_3", "7")]),
        "cus_gone": digest([("evt_4", "7")]),
    }
    now = [
        ("cus_same", "evt_1", "7"),
        ("cus_updated", "evt_2", "9"),  # a worker marked it processed meanwhile
        ("cus_grown", "evt_3", "7"),
        ("cus_grown", "evt_5", "8"),
        ("cus_new", "evt_6", "8"),
    ]
    assert _changed_since(seen, now) == {"cus_updated", "cus_grown", "cus_gone", "cus_new"}
