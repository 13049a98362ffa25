"""The one settings object: defaults that run on a laptop, refusals outside development."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings
from distilq.stack import free_port


def test_development_defaults_run_on_sqlite() -> None:
    settings = Settings(_env_file=None)
    settings.check_api_processes(4)
    assert settings.resolved_database_url.startswith("sqlite:///")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "DISTILQ_DATABASE_URL must be set"),
    ({"database_url": "postgresql+psycopg://u@h/db", "debug": True}, "DISTILQ_DEBUG must be off"),
])
def test_production_settings_are_refused_when_built(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(env="production", **kwargs)  # type: ignore[arg-type]


def test_production_refuses_sqlite_behind_several_api_processes() -> None:
    settings = Settings(env="production", database_url="sqlite:////tmp/x.db")
    settings.check_api_processes(1)
    with pytest.raises(ValueError, match="SQLite cannot serve several API processes"):
        settings.check_api_processes(2)


@pytest.mark.parametrize(("env", "url", "processes"), [
    ("development", None, 2), ("production", "sqlite:////tmp/x.db", 1),
    ("production", "postgresql+psycopg://u@h/db", 2),
])
def test_the_api_starts_two_processes_unless_sqlite_in_production_allows_one(env: str, url: str | None,
                                                                             processes: int) -> None:
    settings = Settings(env=env, database_url=url)  # type: ignore[arg-type]
    assert settings.default_api_processes() == processes
    settings.check_api_processes(settings.default_api_processes())


def test_production_accepts_postgres() -> None:
    Settings(env="production", database_url="postgresql+psycopg://u@h/db").check_api_processes(8)


@pytest.mark.parametrize(("server", "url", "resolved"), [
    ("auto", None, "threads"), ("auto", "sqlite:////tmp/x.db", "threads"),
    ("auto", "postgresql+psycopg://u@h/db", "gevent"), ("threads", "postgresql+psycopg://u@h/db", "threads"),
    ("gevent", "postgresql+psycopg://u@h/db", "gevent"),
])
def test_the_api_runs_on_gevent_by_default_on_postgres_only(server: str, url: str | None, resolved: str) -> None:
    assert Settings(api_server=server, database_url=url).resolved_api_server == resolved  # type: ignore[arg-type]


@pytest.mark.parametrize("url", [None, "sqlite:////tmp/x.db"])
def test_gevent_on_sqlite_is_refused(url: str | None) -> None:
    with pytest.raises(ValidationError, match="DISTILQ_API_SERVER=gevent needs PostgreSQL"):
        Settings(api_server="gevent", database_url=url)


def test_retention_keeps_a_job_for_as_long_as_its_idempotency_key_or_forever() -> None:
    with pytest.raises(ValidationError, match="DISTILQ_RETENTION_S must be 0"):
        Settings(retention_s=3600, idempotency_ttl_s=7200)
    assert Settings(retention_s=7200, idempotency_ttl_s=7200).retention_s == 7200
    assert Settings(retention_s=0).retention_s == 0  # keep everything
    assert Settings(idempotency_ttl_s=90 * 86_400).retention_s == 90 * 86_400  # the default follows a longer one
    assert Settings().retention_s == 30 * 86_400


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


def _production_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILQ_")}
    env.update(DISTILQ_ENV="production", DISTILQ_HOME=str(tmp_path), **settings)
    return env


def test_the_cli_refuses_every_command_in_unsafe_production(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "distilq.cli", "beat"], env=_production_env(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "refusing to start: DISTILQ_DATABASE_URL must be set" in result.stderr


@pytest.mark.parametrize(("settings", "args", "message"), [
    ({}, [], "DISTILQ_DATABASE_URL must be set"),
    ({"DISTILQ_DATABASE_URL": "sqlite:////tmp/distilq-unused.db"}, ["--workers", "2"],
     "SQLite cannot serve several API processes"),
])
def test_gunicorn_started_directly_refuses_unsafe_production(tmp_path: Path, settings: dict[str, str],
                                                             args: list[str], message: str) -> None:
    """Without the CLI in front: the settings refuse when the app is built, the config's start hook refuses
    several processes on SQLite."""
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "api.wsgi:app", "--config", "python:api.gunicorn_conf", "--bind",
         f"127.0.0.1:{free_port()}", *args],
        env=_production_env(tmp_path, **settings), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr


def test_every_setting_is_in_the_readmes_configuration_table() -> None:
    """The README's Configuration table is where an operator looks; a setting missing there (the idempotency keys'
    lifetime once was) is one nobody knows to set."""
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `DISTILQ_")]
    missing = [name for name in Settings.model_fields if not any(f"`DISTILQ_{name.upper()}`" in row for row in rows)]
    assert missing == []
