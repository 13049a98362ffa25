"""Fixtures shared by every suite: the tiny DistilBERT checkpoints, built once per test session, and the
database + Redis backends the process-level suites run on."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from migrations import run_migrations
from tests.integration.backends import BACKENDS, RedisServer, create_postgres_database, drop_postgres_database

_REDIS_DBS = itertools.count(1)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.tiny_model import build

    return build(tmp_path_factory.mktemp("tiny-distilbert"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


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
    admin_url, database_url = create_postgres_database()
    redis_url = os.environ["DISTILQ_TEST_REDIS_URL"]
    redis.Redis.from_url(redis_url).flushdb()
    run_migrations(database_url)
    yield database_url, redis_url
    drop_postgres_database(admin_url, database_url)


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which the test may kill and start again (on the same port)."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    if server.process and server.process.poll() is None:
        server.kill()
