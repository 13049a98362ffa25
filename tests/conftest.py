"""Fixtures shared by every suite: the tiny DistilBERT checkpoints, built once per test session; the database +
Redis backends the process-level suites run on; and the one `stack` fixture they start distilq with.

A module says what its stack runs with a marker, e.g.
`pytestmark = pytest.mark.stack(start=("api", "worker"), env={"DISTILQ_RATE_LIMIT": "8/minute"})`:
- `start`: which parts run from the start, in order: `api`, `worker`, `webhooks`, `beat` (default: `api`);
- `env`: settings for every part;
- `models`: `tiny` (default) or `slow` (a wider encoder: a batch takes about a second);
- `own_redis`: a Redis of the test's own, which the test may kill (only with `fresh_stack`).
`stack` is shared by a module's tests; `fresh_stack` is the same, started anew for each test on a database of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from distilq.stack import EmbeddedRedis
from migrations import run_migrations
from tests.integration.backends import (
    BACKENDS,
    create_postgres_database,
    drop_postgres_database,
    machine_redis_url,
)
from tests.integration.stack import Stack

_REDIS_DBS = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stack(start, env, models, own_redis): what the module's stack runs")


#: Module-scoped fixtures that start processes: the tests sharing one are kept on one pytest-xdist worker.
_SHARED_PROCESSES = {"stack", "receiver"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` deals the tests out to pytest-xdist workers one by one (`--dist loadgroup`), except those that
    share a module's stack or webhook receiver: each module's (and backend's) such tests are one group, run in
    order on one worker, so that the stack starts once, as without xdist."""
    for item in items:
        if _SHARED_PROCESSES & set(getattr(item, "fixturenames", ())):
            callspec = getattr(item, "callspec", None)
            backend = callspec.params.get("backend_kind", "") if callspec else ""
            item.add_marker(pytest.mark.xdist_group(f"{item.nodeid.split('::')[0]}[{backend}]"))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.tiny_model import build

    return build(tmp_path_factory.mktemp("tiny-distilbert"))


@pytest.fixture(scope="session")
def slow_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny tokenizer on a wider encoder, so that the chaos tests can catch a batch while it runs: 8 texts of
    120–160 words (~1,000 tokens) take ~0.1 s on a recent 2-core Xeon, several times that on slower machines; a test
    that needs a batch still running after some step must give it more work than that. Weights scaled about
    1/sqrt(dim), like a trained model's, so activations stay in a realistic range."""
    from tests.tiny_model import build

    return build(tmp_path_factory.mktemp("slow-distilbert"), dim=384, n_layers=4, hidden_dim=1536, weight_std=0.05)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False)
    server.start()
    yield server
    server.kill()


@contextmanager
def _database(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a fresh, migrated database of `kind` (sqlite, postgres), dropped afterwards."""
    if kind == "sqlite":
        database_url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'distilq.db'}"
        run_migrations(database_url)
        yield database_url
        return
    admin_url, database_url = create_postgres_database()
    try:
        run_migrations(database_url)
        yield database_url
    finally:
        drop_postgres_database(admin_url, database_url)


@pytest.fixture(params=BACKENDS, scope="module")
def backend_kind(request: pytest.FixtureRequest, redis_server: EmbeddedRedis) -> tuple[str, str]:
    """(the kind of database: sqlite or postgres, the URL of an empty Redis database) of the module's tests."""
    if request.param == "sqlite":
        redis_url = redis_server.url.replace("/0", f"/{1 + next(_REDIS_DBS) % 15}")
    else:
        redis_url = machine_redis_url()
    redis.Redis.from_url(redis_url).flushdb()
    return request.param, redis_url


@pytest.fixture(scope="module")
def backend(backend_kind: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(database URL, Redis URL) of a fresh, migrated database and an empty Redis database, the module's."""
    kind, redis_url = backend_kind
    with _database(kind, tmp_path_factory) as database_url:
        yield database_url, redis_url


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of the test's own, which the test may kill and start again (on the same port)."""
    server = EmbeddedRedis(tmp_path, persist=False)
    server.start()
    yield server
    server.kill()


@contextmanager
def _started_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   backend: tuple[str, str]) -> Iterator[Stack]:
    marker = request.node.get_closest_marker("stack")
    spec = dict(marker.kwargs) if marker else {}
    models = request.getfixturevalue(f"{spec.get('models', 'tiny')}_models")
    redis_url = backend[1]
    if spec.get("own_redis"):
        redis_url = request.getfixturevalue("own_redis").url
    else:
        redis.Redis.from_url(redis_url).flushdb()
    stack = Stack(tmp_path_factory.mktemp("stack"), backend[0], redis_url, models, spec.get("env"))
    try:
        for part in spec.get("start", ("api",)):
            if part == "api":
                stack.start_api()
            elif part == "worker":
                stack.start_worker()
            elif part == "webhooks":
                stack.start("webhooks", "worker", "--queues", "webhooks")
            elif part == "beat":
                stack.start("beat", "beat")
                stack.wait_for_beat()
            else:
                raise ValueError(f"no part {part!r} to start")
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          backend: tuple[str, str]) -> Iterator[Stack]:
    with _started_stack(request, tmp_path_factory, backend) as started:
        yield started


@pytest.fixture()
def fresh_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                backend_kind: tuple[str, str]) -> Iterator[Stack]:
    """On a database of its own too (not the module's `backend`, which a module of fresh stacks never makes): what
    an earlier test left queued or running (a chaos test may stop with jobs in flight) is not this test's to run,
    whatever order the tests run in."""
    kind, redis_url = backend_kind
    with (_database(kind, tmp_path_factory) as database_url,
          _started_stack(request, tmp_path_factory, (database_url, redis_url)) as started):
        yield started
