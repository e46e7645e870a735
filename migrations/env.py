"""Alembic environment: the URL comes from `mrr migrate` or from DATABASE_URL."""

from __future__ import annotations

from alembic import context

from models.db import make_engine
from models.tables import Base
from pipeline.settings import Settings

config = context.config
url = config.attributes.get("database_url") or Settings.from_env().database_url
target_metadata = Base.metadata


def run_offline() -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
