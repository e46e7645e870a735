"""The suite removes an operator's configuration before any test runs (tests/conftest.py).

Trivially true when nothing is exported; `tests/integration/test_suite_safety.py` runs it
in a suite started with `DATABASE_URL` and `REDIS_URL` pointing at data."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import OPERATOR_CONFIG, STARTED_WITH


def test_no_operator_setting_is_left_in_the_environment() -> None:
    assert [name for name in OPERATOR_CONFIG if name in os.environ] == []


def test_a_process_the_suite_starts_sees_none_of_them() -> None:
    names = ",".join(OPERATOR_CONFIG)
    code = f"import os; print([n for n in {names!r}.split(',') if n in os.environ])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert isinstance(STARTED_WITH, dict)
