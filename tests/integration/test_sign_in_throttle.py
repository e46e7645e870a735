"""The dashboard's sign-in throttle holds across web processes (SPEC §13): two of the
Procfile's `web` processes on one database, failed sign-ins spread over both, and the
next attempt is refused by either."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from pipeline.sign_in import FAILURES
from tests.conftest import OPS_TOKEN, SECRET
from tests.integration.processes import free_port, start_process, stop_process, wait_until

pytestmark = pytest.mark.slow


class Browser:
    """A browser of its own (a cookie jar) on one web process."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def sign_in(self, token: str) -> tuple[int, dict[str, str]]:
        with self.opener.open(f"{self.base}/dashboard/login", timeout=10) as form:
            html = form.read().decode()
        found = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert found, "no CSRF token in the form"
        body = urllib.parse.urlencode({"csrf_token": found.group(1), "token": token}).encode()
        try:
            with self.opener.open(f"{self.base}/dashboard/login", body, timeout=10) as answer:
                return answer.status, dict(answer.headers)
        except urllib.error.HTTPError as refused:
            return refused.code, dict(refused.headers)


def test_failed_sign_ins_on_two_web_processes_add_up(
    database_url: str, redis_url: str, db, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    log = tmp_path / "web.log"
    webs = [
        start_process(
            "web",
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "STRIPE_WEBHOOK_SECRET": SECRET,
                "OPS_TOKEN": OPS_TOKEN,
                "PORT": str(port),
                "WEB_CONCURRENCY": "1",
            },
            log,
        )
        for port in ports
    ]
    try:
        browsers = [Browser(port) for port in ports]
        for browser in browsers:
            wait_until(lambda b=browser: b.sign_in("warming up")[0] == 401, 60, "a web up")
        # Two failures already; the rest alternate between the processes.
        for n in range(FAILURES - 2):
            assert browsers[n % 2].sign_in("a guess")[0] == 401
        for browser in browsers:  # each process alone saw about half: both refuse now
            status, headers = browser.sign_in(OPS_TOKEN)
            assert status == 429, log.read_text()[-2000:]
            assert int(headers["Retry-After"]) > 0
    finally:
        for web in webs:
            stop_process(web)
