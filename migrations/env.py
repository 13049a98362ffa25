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
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch-mode change rebuilds a table: a copy, then DROP TABLE of the old one, which fails while the
            # rows of other tables refer to it and foreign keys are enforced (Alembic's advice: enforcement off
            # meanwhile). Set on the driver's connection before any transaction (inside one SQLite ignores it);
            # the rows are checked once the migrations are done.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=sqlite)
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migrations left rows whose foreign keys name no row: {broken[:10]}")
    engine.dispose()


run_migrations_online()
