"""Shared fixtures: a database and a Redis of the suite's own, the runtime, the app, and
signing helpers.

Nothing here can reach an operator's data:
* the suite's database is `TEST_DATABASE_URL`, else a SQLite file in pytest's temporary
  folder; it refuses to start on a database that holds tables it did not create (it marks
  the databases it creates with the table `mrr_test_suite`);
* its Redis is `TEST_REDIS_URL`, else an embedded server started for the session, even
  when a Redis answers on localhost;
* the configuration an operator may have exported (`DATABASE_URL`, `REDIS_URL`, Stripe's
  key, the secrets) is removed from the environment before any test runs, so neither the
  suite nor a process it starts can read it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.embedded_redis import EmbeddedRedis
from migrations import upgrade
from models.db import dispose_engines, make_engine, session_factory
from models.tables import Base
from pipeline.runtime import Runtime, bootstrap, install
from pipeline.samples import EVENTS as SAMPLE_EVENTS
from pipeline.settings import Settings
from service.app import create_app
from service.extensions import INTAKE

SECRET = "whsec_test_secret"
OPS_TOKEN = "ops-test-token"
FIXTURES = SAMPLE_EVENTS
#: Fixtures that need STRIPE_API_KEY to be priced right (not in the demo).
NEEDS_API = Path(__file__).parent / "fixtures" / "stripe-needs-api"
#: The table that marks a database as the suite's own, to wipe at will.
MARKER_TABLE = "mrr_test_suite"
#: What an operator may have configured; the suite and its processes never see it.
OPERATOR_CONFIG = (
    "DATABASE_URL",
    "REDIS_URL",
    "STRIPE_API_KEY",
    "STRIPE_API_BASE",
    "STRIPE_WEBHOOK_SECRET",
    "OPS_TOKEN",
    "MRR_QUEUE",
    "RECONCILE_EVERY_S",
    "REPORTING_CURRENCY",
    "FX_RATES_URL",
)
#: What the suite was started with, for the test that checks the scrubbing.
STARTED_WITH = {name: os.environ[name] for name in OPERATOR_CONFIG if name in os.environ}
for _name in OPERATOR_CONFIG:
    os.environ.pop(_name, None)

stripe.max_network_retries = 0


class ForeignDatabase(Exception):
    """The database named for the tests holds tables the suite did not create."""


def sign(body: str | bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    text_body = body.decode() if isinstance(body, bytes) else body
    return stripe.WebhookSignature.generate_signature_header(text_body, secret, timestamp)


def load_fixture_events(folder: Path = FIXTURES) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]


def claim(url: str) -> None:
    """Make `url` the suite's: refuse a database that holds tables the suite did not
    create, then drop everything in it and migrate it afresh (marked as the suite's)."""
    engine = make_engine(url)
    try:
        names = set(inspect(engine).get_table_names())
        if names and MARKER_TABLE not in names:
            raise ForeignDatabase(
                f"TEST_DATABASE_URL names a database that holds tables the test suite did not "
                f"create ({', '.join(sorted(names)[:5])}…). The suite wipes its database: give "
                "it an empty one of its own, e.g. `createdb mrr_test` and "
                "TEST_DATABASE_URL=postgresql://…/mrr_test."
            )
        with engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
            conn.execute(text(f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (created TEXT)"))
    finally:
        engine.dispose()
    upgrade(url)  # the schema under test is the migrations', not create_all's


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL", "").strip() or (
        f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    )
    try:
        claim(url)
    except ForeignDatabase as exc:
        pytest.exit(str(exc), returncode=4)
    yield url
    dispose_engines()


def empty_tables(factory: sessionmaker[Session]) -> None:
    with factory() as session, session.begin():
        names = [t.name for t in reversed(Base.metadata.sorted_tables)]
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY"))
        else:
            for name in names:
                session.execute(text(f"DELETE FROM {name}"))


@pytest.fixture
def db(database_url: str) -> sessionmaker[Session]:
    """A session factory on freshly emptied tables."""
    factory = session_factory(database_url)
    empty_tables(factory)
    return factory


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tests' Redis for the whole session: `TEST_REDIS_URL`, else a private server."""
    url = os.environ.get("TEST_REDIS_URL", "").strip()
    if url:
        yield url
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """The tests' Redis database, empty at the start and the end of the test."""
    with Redis.from_url(redis_server_url) as conn:
        conn.flushdb()
        yield redis_server_url
        conn.flushdb()


@pytest.fixture
def settings(db: sessionmaker[Session], database_url: str, redis_url: str) -> Settings:
    return Settings(
        webhook_secrets=(SECRET,),
        database_url=database_url,
        redis_url=redis_url,
        ops_token=OPS_TOKEN,
        queue_name="mrr-test",
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """The test's runtime, installed for the jobs an in-process worker runs."""
    built = bootstrap(settings)
    install(built)
    yield built
    install(None)


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    application = create_app(runtime=runtime)
    application.testing = True
    return application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPS_TOKEN}"}


def flush_intake(app: Flask) -> None:
    """Wait until the app's webhook deliveries are enqueued (the enqueue follows the
    answer, in the background: SPEC §2)."""
    assert app.extensions[INTAKE].enqueue.flush(timeout=10), "the enqueue did not finish"


@pytest.fixture
def post_event(client: FlaskClient) -> Callable[..., Any]:
    """POST an event (dict or raw text), signed unless a header is given; returns once
    the answer is in and the enqueue that follows it is done."""

    def post(event: dict[str, Any] | str | bytes, signature: str | None = None, **kw: Any) -> Any:
        body = event if isinstance(event, str | bytes) else json.dumps(event)
        header = sign(body) if signature is None else signature
        response = client.post(
            "/webhooks/stripe", data=body, headers={"Stripe-Signature": header}, **kw
        )
        flush_intake(client.application)
        return response

    return post


class _QuietWorker(SimpleWorker):
    """The tests' in-process worker, without RQ's pubsub listener thread: nothing sends
    it commands, and unsubscribing can stall on the listener's socket (a CI run once
    spent 60 s there after its jobs were done; rq/rq#1613)."""

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


@pytest.fixture
def run_worker(runtime: Runtime, request: pytest.FixtureRequest) -> Callable[[], int]:
    """Drain the queue with an in-process RQ worker (after the test's app has enqueued
    what its webhooks stored); returns the failed-job count."""

    def work() -> int:
        if "app" in request.fixturenames:
            flush_intake(request.getfixturevalue("app"))
        queue = runtime.queue
        worker = _QuietWorker([queue], connection=queue.connection, serializer=JSONSerializer)
        worker.work(burst=True)
        from rq.registry import FailedJobRegistry

        return FailedJobRegistry(queue=queue).count

    return work
