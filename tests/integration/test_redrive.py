"""Failed and quarantined events: `/status` and `/metrics` count them alike, `mrr failed`
lists them, `mrr retry` re-drives them, also while Redis is down."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import cli
from models.tables import EventStatus, InboxEvent
from pipeline import intake
from pipeline.apply import apply_inline
from pipeline.redrive import retry
from pipeline.runtime import Runtime, bootstrap
from tests import factories as f
from tests.conftest import OPS_TOKEN

T = 1_717_200_000  # 2024-06-01
PRICE = f.price("price_r", 1500)
KEYS = ("received", "processed", "failed", "pending")


def created(event_id: str, customer: str, at: int = T) -> dict[str, Any]:
    sub = f.subscription(f"sub_{event_id}", customer, [f.item(PRICE, 1)])
    return f.event(event_id, "customer.subscription.created", at, sub)


def store(runtime: Runtime, *events: dict[str, Any]) -> list[str]:
    return [intake.store(runtime, e, json.dumps(e)).event_id for e in events]


@pytest.fixture
def troubled(runtime: Runtime) -> Runtime:
    """An inbox of six events: three applied, one ignored type, one quarantined (a value
    out of range), one failed (no items: the job would be retried; inline it fails at
    once), and one still pending."""
    poison = created("evt_poison", "cus_b", T + 60)
    poison["data"]["object"]["currency"] = "usdollars"
    broken = created("evt_broken", "cus_c")
    del broken["data"]["object"]["items"]
    ignored = f.event("evt_invoice", "invoice.paid", T, {"object": "invoice", "id": "in_1"})
    ids = store(
        runtime,
        created("evt_a1", "cus_a"),
        created("evt_b1", "cus_b"),
        poison,
        broken,
        ignored,
        created("evt_d1", "cus_d"),
    )
    done = apply_inline(runtime, [i for i in ids if i != "evt_d1"])
    assert set(done.quarantined) == {"evt_poison"} and set(done.failed) == {"evt_broken"}
    return runtime


def metric_sums(text: str) -> dict[str, int]:
    """The inbox figures of `/metrics`, summed over event types."""
    sums = dict.fromkeys(KEYS, 0)
    for key in KEYS:
        pattern = rf"^mrr_events_{key}(?:_total)?(?:\{{[^}}]*\}})? ([0-9.e+]+)$"
        sums[key] = int(sum(float(v) for v in re.findall(pattern, text, re.MULTILINE)))
    return sums


def test_status_and_metrics_count_the_inbox_alike(troubled: Runtime, client) -> None:
    auth = {"Authorization": f"Bearer {OPS_TOKEN}"}
    inbox = client.get("/status", headers=auth).json["inbox"]
    metrics = metric_sums(client.get("/metrics", headers=auth).get_data(as_text=True))
    assert {k: inbox[k] for k in KEYS} == {"received": 6, "processed": 3, "failed": 2, "pending": 1}
    assert metrics == {k: inbox[k] for k in KEYS}


def run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def cli_env(runtime: Runtime, **changes: str) -> dict[str, str]:
    s = runtime.settings
    return {
        "DATABASE_URL": s.database_url,
        "REDIS_URL": s.redis_url,
        "MRR_QUEUE": s.queue_name,
        **changes,
    }


def test_mrr_failed_lists_ids_types_and_reasons_never_payloads(troubled: Runtime) -> None:
    code, out, _ = run("failed", "--json", env=cli_env(troubled))
    assert code == 0
    events = {e["id"]: e for e in json.loads(out)["events"]}
    assert set(events) == {"evt_poison", "evt_broken"}
    assert events["evt_poison"]["status"] == "quarantined"
    assert "invalid currency" in events["evt_poison"]["reason"]
    assert events["evt_broken"]["status"] == "failed" and "items" in events["evt_broken"]["reason"]
    assert "usdollars" not in json.dumps(events["evt_broken"])  # no payload
    code, out, _ = run("failed", env=cli_env(troubled))
    assert code == 0 and "evt_poison" in out and "evt_broken" in out


def test_mrr_failed_says_so_when_nothing_failed(runtime: Runtime) -> None:
    code, out, err = run("failed", env=cli_env(runtime))
    assert (code, out) == (0, "")
    assert err.strip() == "no failed or quarantined events"


def test_retry_makes_events_pending_and_enqueues_them(troubled: Runtime) -> None:
    result = retry(troubled, ["evt_broken", "evt_a1"])
    assert result.retried == ("evt_broken",) and result.not_failed == ("evt_a1",)
    assert result.enqueued
    with troubled.sessions() as s:
        row = s.get(InboxEvent, "evt_broken")
        assert (row.status, row.attempts, row.last_error) == (EventStatus.PENDING, 0, None)
    assert troubled.queue.count == 1


def test_mrr_retry_with_redis_down_is_one_line_and_leaves_it_to_the_sweeper(
    troubled: Runtime,
) -> None:
    env = cli_env(troubled, REDIS_URL="redis://127.0.0.1:1/0")
    code, out, err = run("retry", "--all", env=env)
    assert code == 3
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "reset 2 event(s) to pending" in err and "sweeper" in err
    with troubled.sessions() as s:
        assert s.get(InboxEvent, "evt_poison").status == EventStatus.PENDING
    # Once Redis answers, the sweeper's rule applies: they are enqueued like any intake.
    assert bootstrap(troubled.settings).queue.count == 0


def test_mrr_retry_names_what_is_not_failed(troubled: Runtime) -> None:
    code, out, _ = run("retry", "evt_a1", "--json", env=cli_env(troubled))
    assert code == 1
    assert json.loads(out) == {"retried": [], "not_failed": ["evt_a1"], "enqueued": True}


def test_mrr_failed_with_the_database_down_is_one_line() -> None:
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "REDIS_URL": "redis://x:1"}
    code, _, err = run("failed", env=env)
    assert code == 1
    assert err.startswith("Error: database: ") and len(err.strip().splitlines()) == 1
