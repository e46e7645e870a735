"""Shared fixtures: a real database (PostgreSQL when DATABASE_URL points at it, a SQLite
file otherwise), a Redis database of the tests' own, the app, and signing helpers.

Redis, in order: `TEST_REDIS_URL`; else database 15 of the Redis answering at
`MRR_REDIS_PROBE` (default localhost:6379); else an embedded server started once for
the session (`pipeline.embedded_redis`), so the suite needs no Redis installed.
`REDIS_URL` is never used: the tests flush their database.
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
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from migrations import upgrade
from models.db import dispose_engines, make_engine, session_factory
from models.tables import Base
from pipeline.embedded_redis import EmbeddedRedis, local_redis_url
from pipeline.queue import make_queue, redis_for
from pipeline.settings import Settings
from service.app import create_app
from workers import context

SECRET = "whsec_test_secret"
OPS_TOKEN = "ops-test-token"
FIXTURES = Path(__file__).parent / "fixtures" / "stripe"
#: The database of a developer's own Redis the tests may flush.
LOCAL_REDIS_DB = 15

stripe.max_network_retries = 0


def sign(body: str | bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    text_body = body.decode() if isinstance(body, bytes) else body
    return stripe.WebhookSignature.generate_signature_header(text_body, secret, timestamp)


def load_fixture_events(folder: Path = FIXTURES) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("DATABASE_URL") or (
        f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    )
    engine = make_engine(url)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    upgrade(url)  # the schema under test is the migrations', not create_all's
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
    """The tests' Redis for the whole session (see the module docstring)."""
    url = os.environ.get("TEST_REDIS_URL", "").strip() or local_redis_url(
        os.environ, db=LOCAL_REDIS_DB
    )
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
def settings(db: sessionmaker[Session], database_url: str, redis_url: str) -> Iterator[Settings]:
    s = Settings(
        webhook_secrets=(SECRET,),
        database_url=database_url,
        redis_url=redis_url,
        ops_token=OPS_TOKEN,
        queue_name="mrr-test",
    )
    context.configure(s)
    yield s
    context.configure(None)


@pytest.fixture
def app(settings: Settings) -> Flask:
    application = create_app(settings)
    application.testing = True
    return application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPS_TOKEN}"}


@pytest.fixture
def post_event(client: FlaskClient) -> Callable[..., Any]:
    """POST an event (dict or raw text), signed unless a header is given."""

    def post(event: dict[str, Any] | str | bytes, signature: str | None = None, **kw: Any) -> Any:
        body = event if isinstance(event, str | bytes) else json.dumps(event)
        header = sign(body) if signature is None else signature
        return client.post(
            "/webhooks/stripe", data=body, headers={"Stripe-Signature": header}, **kw
        )

    return post


@pytest.fixture
def run_worker(settings: Settings) -> Callable[[], int]:
    """Drain the queue with an in-process RQ worker; returns the failed-job count."""

    def work() -> int:
        queue = make_queue(settings.redis_url, settings.queue_name)
        worker = SimpleWorker(
            [queue], connection=redis_for(settings.redis_url), serializer=JSONSerializer
        )
        worker.work(burst=True)
        from rq.registry import FailedJobRegistry

        return FailedJobRegistry(queue=queue).count

    return work
