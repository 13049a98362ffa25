"""Alembic environment: runs migrations online against the URL `migrations.alembic_config` set."""

from __future__ import annotations

from alembic import context

import models.tables  # noqa: F401  (registers the tables on Base.metadata)
from models.db import Base, make_engine

target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
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


run_migrations_online()
