"""The layers import only downward: the pure core loads no infrastructure, workers no Flask."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def loaded_after(imports: list[str], forbidden: set[str]) -> list[str]:
    """Modules under the `forbidden` top-level packages loaded by importing `imports`."""
    code = (
        "import json, sys\n"
        + "".join(f"import {name}\n" for name in imports)
        + f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return list(json.loads(out.stdout))


def test_ledger_and_reporting_import_no_infrastructure() -> None:
    core = [
        "ledger.backfill",
        "ledger.events",
        "ledger.mrr",
        "ledger.snapshot",
        "ledger.timeline",
        "reporting.rows",
        "reporting.summary",
        "reporting.periods",
        "reporting.cohorts",
        "reporting.display",
    ]
    infrastructure = {
        "flask",
        "sqlalchemy",
        "redis",
        "rq",
        "stripe",
        "requests",
        "models",
        "workers",
        "service",
    }
    assert loaded_after(core, infrastructure) == []


def test_workers_never_import_flask() -> None:
    jobs = [
        "workers.jobs",
        "workers.runtime",
        "pipeline.sweep",
        "pipeline.enrich",
        "pipeline.queue",
        "pipeline.backfill",
        "pipeline.reconcile",
    ]
    assert loaded_after(jobs, {"flask", "service"}) == []
