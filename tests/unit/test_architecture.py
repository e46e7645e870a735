"""The pure core stays pure: importing it loads no web, database or queue library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ledger_and_reporting_import_no_infrastructure() -> None:
    code = (
        "import json, sys\n"
        "import ledger.events, ledger.mrr, ledger.snapshot, ledger.timeline\n"
        "import reporting.metrics, reporting.periods\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'flask', 'sqlalchemy', 'redis', 'rq', 'stripe', 'requests', 'models', 'workers', "
        "'service'})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_workers_never_import_flask() -> None:
    code = (
        "import json, sys\n"
        "import workers.jobs, workers.sweeper, workers.enrich, workers.queue\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'flask', 'service'})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []
