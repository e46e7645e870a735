"""`mrr replay` in its three modes, and the fixture-file formats it reads."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from werkzeug.serving import make_server

from cli.main import cli
from models import ledger_store
from pipeline import apply as apply_module
from pipeline.errors import ReplayError
from pipeline.replay import read_events, shift_to_now
from tests.conftest import FIXTURES, SECRET, load_fixture_events
from tests.integration.expected import EXPECTED_MOVEMENTS
from tests.integration.helpers import movement_rows


@pytest.fixture
def env(settings, monkeypatch) -> dict[str, str]:
    values = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "MRR_QUEUE": settings.queue_name,
        "STRIPE_WEBHOOK_SECRET": SECRET,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_replay_sync_applies_inline_without_redis(env, db, monkeypatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # Redis is not needed
    code, out, _ = run("replay", "--sync", "--json", str(FIXTURES))
    assert code == 0
    assert json.loads(out) == {
        "events": 20,
        "stored": 20,
        "duplicates": 0,
        "applied": 19,
        "failed": 0,
        "quarantined": 0,
    }
    assert movement_rows(db) == sorted(EXPECTED_MOVEMENTS)
    code, out, _ = run("replay", "--sync", "--json", str(FIXTURES))  # a second replay
    assert json.loads(out)["duplicates"] == 20
    assert movement_rows(db) == sorted(EXPECTED_MOVEMENTS)


def test_replay_enqueues_for_the_worker(env, db, run_worker) -> None:
    code, out, _ = run("replay", "--json", str(FIXTURES))
    assert code == 0
    assert json.loads(out)["enqueued"] == 19
    assert run_worker() == 0
    assert movement_rows(db) == sorted(EXPECTED_MOVEMENTS)


@pytest.fixture
def server(app) -> Iterator[str]:
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}/webhooks/stripe"
    srv.shutdown()


def test_replay_url_signs_and_posts_to_a_running_server(env, db, server, run_worker) -> None:
    code, out, _ = run("replay", "--json", "--url", server, "--secret", SECRET, str(FIXTURES))
    assert code == 0
    assert json.loads(out) == {"events": 20, "accepted": 20, "refused": 0}
    run_worker()
    assert movement_rows(db) == sorted(EXPECTED_MOVEMENTS)


def test_replay_url_with_the_wrong_secret_reports_refusals(env, db, server) -> None:
    code, out, _ = run(
        "replay",
        "--json",
        "--url",
        server,
        "--secret",
        "whsec_wrong",
        str(FIXTURES / "2020-08-27" / "acme_01_created_trialing.json"),
    )
    assert code == 1
    assert json.loads(out) == {"events": 1, "accepted": 0, "refused": 1}


def test_arrays_json_lines_and_directories(tmp_path: Path) -> None:
    events = load_fixture_events()
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    (tmp_path / "array.json").write_text(json.dumps(events[:3]))
    (tmp_path / "nested" / "lines.jsonl").write_text(
        "\n".join(json.dumps(e) for e in events[3:6]) + "\n\n"
    )
    (tmp_path / "nested" / "deeper" / "one.json").write_text(json.dumps(events[6], indent=2))
    (tmp_path / "notes.txt").write_text("not an event file")
    got = list(read_events([tmp_path]))
    assert sorted(e.event["id"] for e in got) == sorted(e["id"] for e in events[:7])
    assert {e.source.split("/")[-1].split(":")[0].split("[")[0] for e in got} == {
        "array.json",
        "lines.jsonl",
        "one.json",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "evt_1", "object": "event"}', "no string type"),
        ('[{"id": "evt_1", "type": "x", "object": "event"}, 3]', "not a JSON object"),
        ('{"id": "e", "type": "t", "object": "event"}\n{oops', "not JSON"),
    ],
)
def test_bad_fixture_files_name_the_place(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ReplayError, match=message) as info:
        list(read_events([path]))
    assert "bad.json" in str(info.value)


def test_replay_of_a_missing_path_is_a_clear_error(env) -> None:
    result = CliRunner().invoke(cli, ["replay", "--sync", "/no/such/fixtures"])
    assert result.exit_code == 1
    assert "no such file or directory" in result.stderr


@pytest.mark.parametrize(
    ("kind", "args"),
    [
        ("summary", ["--currency", "usd", "--as-of", "2024-03-25"]),
        ("summary", ["--as-of", "2024-06-30"]),
        ("movements", ["--currency", "usd", "--start", "2024-01-01", "--end", "2024-07-01"]),
        (
            "movements",
            [
                "--currency",
                "eur",
                "--period",
                "week",
                "--start",
                "2024-02-01",
                "--end",
                "2024-04-15",
            ],
        ),
        ("cohorts", ["--currency", "usd", "--start", "2024-01-01", "--end", "2024-07-01"]),
    ],
)
def test_report_json_is_the_http_document(kind, args, env, db, client, auth) -> None:
    code, out, _ = run("replay", "--sync", str(FIXTURES))
    assert code == 0
    code, out, err = run("report", kind, "--json", *args)
    assert code == 0, err
    cli_doc = json.loads(out)  # exactly one JSON document on stdout
    query = "&".join(
        f"{a[2:].replace('-', '_')}={b}" for a, b in zip(args[::2], args[1::2], strict=True)
    )
    http_doc = client.get(f"/reports/{kind}?{query}", headers=auth).json
    assert cli_doc == http_doc


def test_report_tables_show_the_same_numbers(env, db) -> None:
    run("replay", "--sync", str(FIXTURES))
    code, out, _ = run(
        "report", "movements", "--currency", "usd", "--start", "2024-01-01", "--end", "2024-07-01"
    )
    assert code == 0
    assert "288.33" in out and "311.67" in out  # January new and February ending MRR
    code, out, _ = run("report", "summary", "--currency", "eur")
    assert code == 0 and "211.00" in out
    code, out, _ = run(
        "report", "cohorts", "--currency", "usd", "--start", "2024-01-01", "--end", "2024-03-01"
    )
    assert code == 0 and "108.09 %" in out  # February revenue retention of January


def test_report_bad_parameters_are_usage_errors(env, db) -> None:
    result = CliRunner().invoke(cli, ["report", "movements", "--start", "2024-02-30"])
    assert result.exit_code == 2
    assert "start must be a date" in result.stderr


def analyze_counts(db) -> dict[str, int]:
    with db() as session:
        return dict(
            session.execute(text("SELECT relname, analyze_count FROM pg_stat_user_tables")).all()
        )


def test_rebuild_keeps_the_planners_statistics_in_step(env, db, monkeypatch) -> None:
    assert run("replay", "--sync", "--json", str(FIXTURES))[0] == 0
    calls: list[int] = []
    refresh = ledger_store.refresh_statistics
    monkeypatch.setattr(apply_module._Statistics, "FIRST", 5)
    monkeypatch.setattr(ledger_store, "refresh_statistics", lambda s: (calls.append(1), refresh(s)))
    postgres = db.kw["bind"].dialect.name == "postgresql"
    before = analyze_counts(db) if postgres else {}
    result = CliRunner().invoke(cli, ["rebuild", "--json", "--jobs", "1"], catch_exceptions=False)
    assert json.loads(result.stdout)["events"] == 19
    assert movement_rows(db) == sorted(EXPECTED_MOVEMENTS)
    if not postgres:
        # The incremental path: at the start, and again once the events rewritten reach
        # 5 (all 19 come in one chunk here; a long rebuild samples again each time they
        # double).
        assert len(calls) >= 2
        return
    # The bulk path: the fresh tables were sampled before they were swapped in (their
    # counts start afresh), and the inbox it read once more.
    fresh = ("ledger_movements", "subscriptions", "customer_balances", "ledger_daily")
    deadline = time.monotonic() + 5  # statistics views may trail by a moment
    while True:
        after = analyze_counts(db)
        behind = [t for t in fresh if after[t] < 1]
        if after["inbox_events"] <= before.get("inbox_events", 0):
            behind.append("inbox_events")
        if not behind or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert behind == []


def test_rebuild_restores_the_trial_transitions(env, db) -> None:
    assert run("replay", "--sync", "--json", str(FIXTURES))[0] == 0
    query = text(
        "SELECT customer_id, subscription_id, seq, transition, pipeline_delta, ended_status "
        "FROM trial_transitions ORDER BY customer_id, subscription_id, seq"
    )
    with db() as session:
        applied = [tuple(r) for r in session.execute(query)]
        session.execute(text("DELETE FROM trial_transitions"))
        session.commit()
    # Acme's trial of 3 seats at 15.00, converted.
    assert applied == [
        ("cus_acme", "sub_acme", 1, "started", 4_500, None),
        ("cus_acme", "sub_acme", 2, "converted", -4_500, "active"),
    ]
    result = CliRunner().invoke(cli, ["rebuild", "--json", "--jobs", "1"], catch_exceptions=False)
    assert result.exit_code == 0
    with db() as session:
        assert [tuple(r) for r in session.execute(query)] == applied


# --- the first hour's mistakes: one line each, with what to do (issue 16) -----------------


def one_line_no_traceback(stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if line.strip() and "posting" not in line]
    assert "Traceback" not in stderr
    assert 1 <= len(lines) <= 2, lines
    return lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_replay_url_where_nothing_listens_is_one_line_naming_mrr_run(env) -> None:
    url = f"http://127.0.0.1:{free_port()}/webhooks/stripe"
    result = CliRunner().invoke(cli, ["replay", "--url", url, "--secret", SECRET, str(FIXTURES)])
    assert result.exit_code == 1
    (line,) = one_line_no_traceback(result.stderr)
    assert url in line and "is `mrr run` up" in line


@pytest.mark.parametrize("url", ["127.0.0.1:8000/webhooks/stripe", "localhost", "ftp://x/y"])
def test_replay_url_without_a_scheme_is_a_usage_error(env, url: str) -> None:
    result = CliRunner().invoke(cli, ["replay", "--url", url, "--secret", SECRET, str(FIXTURES)])
    assert result.exit_code == 2
    assert "is not an http(s) URL" in result.stderr and "Traceback" not in result.stderr


def test_replay_with_the_wrong_secret_says_the_servers_reason_once(env, db, server) -> None:
    result = CliRunner().invoke(
        cli, ["replay", "--url", server, "--secret", "whsec_wrong", str(FIXTURES)]
    )
    assert result.exit_code == 1
    lines = one_line_no_traceback(result.stderr)
    assert "1 event(s) refused: HTTP 400 bad_signature" in lines[0]
    assert "STRIPE_WEBHOOK_SECRET" in lines[0]  # what to do
    assert "not_sent: 19" in lines[-1]  # it stopped after the first: all would fail alike


def test_replay_to_a_wrong_path_names_the_webhook_path(env, db, server) -> None:
    wrong = server.replace("/webhooks/stripe", "/webhook")
    result = CliRunner().invoke(cli, ["replay", "--url", wrong, "--secret", SECRET, str(FIXTURES)])
    assert result.exit_code == 1
    lines = one_line_no_traceback(result.stderr)
    assert "HTTP 404" in lines[0] and "/webhooks/stripe" in lines[0]


def test_replay_without_url_says_a_worker_applies_the_events(env, db) -> None:
    result = CliRunner().invoke(cli, ["replay", str(FIXTURES)])
    assert result.exit_code == 0
    assert "a worker applies them" in result.stderr


def test_shift_to_now_moves_the_demo_so_its_last_event_is_today(env, db) -> None:
    events = list(read_events([FIXTURES]))
    now = 1_800_000_000
    moved = shift_to_now(events, now)
    assert [e.event["id"] for e in moved] == [e.event["id"] for e in events]
    assert max(e.event["created"] for e in moved) // 86400 == now // 86400
    deltas = {m.event["created"] - e.event["created"] for m, e in zip(moved, events, strict=True)}
    assert len(deltas) == 1 and deltas.pop() % 86400 == 0  # whole days, all alike
    for m, e in zip(moved, events, strict=True):
        before, after = e.event["data"]["object"], m.event["data"]["object"]
        for key in ("start_date", "current_period_start", "trial_end"):
            if isinstance(before.get(key), int):
                assert after[key] - before[key] == m.event["created"] - e.event["created"]
        assert json.loads(m.raw) == m.event


def test_an_unexpected_error_is_one_line_naming_verbose(env, db, monkeypatch) -> None:
    import pipeline.redrive

    def broken(runtime: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(pipeline.redrive, "failed", broken)
    result = CliRunner().invoke(cli, ["failed"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unexpected KeyError" in lines[0] and "mrr -v failed" in lines[0]
    verbose = CliRunner().invoke(cli, ["-v", "failed"])
    assert isinstance(verbose.exception, KeyError)  # -v raises it, traceback and all


def test_report_takes_filters_and_a_group_by(env, db) -> None:
    assert run("replay", "--sync", "--json", str(FIXTURES))[0] == 0
    span = ("--currency", "usd", "--start", "2024-01-01", "--end", "2024-07-01")
    code, out, _ = run("report", "movements", "--json", "--group-by", "product", *span)
    assert code == 0
    doc = json.loads(out)
    assert doc["group_by"] == "product" and doc["groups"]
    last = doc["periods"][-1]["ending_mrr"]
    assert sum(g["periods"][-1]["ending_mrr"] for g in doc["groups"]) == last
    product = doc["groups"][0]["value"]
    code, out, _ = run("report", "movements", "--json", "--filter", f"product:{product}", *span)
    assert json.loads(out)["periods"] == doc["groups"][0]["periods"]
    code, out, _ = run("report", "movements", "--group-by", "product", *span)
    assert code == 0 and f"product {product}" in out  # a table per group
    code, out, _ = run("report", "trials", "--json", *span)
    assert code == 0 and json.loads(out)["periods"][0]["trials_converted"] == 1
    as_of = ("--currency", "usd", "--as-of", "2024-06-30")
    code, out, _ = run("report", "summary", "--json", "--group-by", "product", *as_of)
    summary = json.loads(out)
    assert code == 0 and sum(g["mrr"] for g in summary["groups"]) == summary["mrr"]
    code, out, _ = run("report", "summary", "--group-by", "product", *as_of)
    assert code == 0 and "By product" in out and summary["groups"][0]["value"] in out
