"""The one settings object: defaults that run on a laptop, refusals outside development."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from distilq.settings import Settings


def test_development_defaults_run_on_sqlite() -> None:
    settings = Settings(_env_file=None)
    settings.check_production(processes=4)
    assert settings.resolved_database_url.startswith("sqlite:///")


@pytest.mark.parametrize(("kwargs", "processes", "message"), [
    ({}, 1, "DISTILQ_DATABASE_URL must be set"),
    ({"database_url": "sqlite:////tmp/x.db"}, 2, "SQLite cannot serve several API processes"),
    ({"database_url": "postgresql+psycopg://u@h/db", "debug": True}, 1, "DISTILQ_DEBUG must be off"),
])
def test_production_refuses_unsafe_settings(kwargs: dict[str, object], processes: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(env="production", **kwargs).check_production(processes)  # type: ignore[arg-type]


def test_production_accepts_postgres() -> None:
    Settings(env="production", database_url="postgresql+psycopg://u@h/db").check_production(processes=8)


@pytest.mark.parametrize("bad", ["lots", "10/fortnight", ""])
def test_rate_limit_must_parse(bad: str) -> None:
    with pytest.raises(ValidationError):
        Settings(rate_limit=bad)


def test_the_cli_refuses_to_start_the_api_unsafely(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILQ_")}
    env.update(DISTILQ_ENV="production", DISTILQ_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "distilq.cli", "api"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "refusing to start: DISTILQ_DATABASE_URL must be set" in result.stderr
