"""The migrations build the schema the models declare, on each backend: the same tables, columns and indexes
(Alembic's own comparison), and the same partial indexes' conditions, which that comparison does not look at. And
the planner finds a file's rows through the partial indexes that hold only those rows (`models.tables.OF_BATCH`,
`OF_EVALUATION`): a query that names its batch or evaluation implies the condition; and a key's interactive jobs
and its Idempotency-Keys through theirs (`INTERACTIVE`, the rows holding a key). Their migrations go down and up
again."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, Table, create_engine, inspect

from migrations import alembic_config, run_migrations
from models.db import Base
from models.tables import Job
from tests.integration.backends import BACKENDS, create_postgres_database, drop_postgres_database

_JOBS = cast(Table, Job.__table__)


@pytest.fixture(scope="module")
def engine(backend: tuple[str, str]) -> Iterator[Engine]:
    engine = create_engine(backend[0])  # migrated by `backend`
    yield engine
    engine.dispose()


def _condition(text: object) -> str:
    """A partial index's condition without the brackets and spacing that each backend writes it back with ("" for
    an index of every row)."""
    return "" if text is None else re.sub(r"[()\s]", "", str(text)).lower()


def test_the_migrations_build_the_models_schema(engine: Engine) -> None:
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_partial_indexes_hold_the_models_conditions(engine: Engine) -> None:
    option = f"{engine.dialect.name}_where"
    reflected = {index["name"]: index.get("dialect_options", {}).get(option)
                 for index in inspect(engine).get_indexes("jobs")}
    declared = {index.name: index.dialect_options[engine.dialect.name]["where"] for index in _JOBS.indexes}
    partial = {name for name, condition in declared.items() if condition is not None}
    assert {"ix_jobs_batch_status", "ix_jobs_batch_line", "ix_jobs_evaluation_line",
            "ix_jobs_evaluation_status"} <= partial
    for name, condition in declared.items():
        assert _condition(reflected.get(name)) == _condition(condition), name


@pytest.mark.parametrize(("query", "index"), [
    ("SELECT status, count(*) FROM jobs WHERE batch_id = 'b' GROUP BY status", "ix_jobs_batch_status"),
    ("SELECT batch_line FROM jobs WHERE batch_id = 'b' AND batch_line > 5 ORDER BY batch_line LIMIT 100",
     "ix_jobs_batch_line"),
    ("SELECT status, count(*) FROM jobs WHERE evaluation_id = 'e' GROUP BY status", "ix_jobs_evaluation_status"),
    ("SELECT id FROM jobs WHERE evaluation_id = 'e' AND batch_line > 5 ORDER BY batch_line LIMIT 100",
     "ix_jobs_evaluation_line"),
    # as `store.jobs.submit` counts a key's jobs in flight, and looks its Idempotency-Key up
    ("SELECT count(*) FROM jobs WHERE api_key_id = 'k' AND (status = 'queued' OR status = 'running') "
     "AND priority = 0", "ix_jobs_api_key_status_interactive"),
    ("SELECT id FROM jobs WHERE api_key_id = 'k' AND idempotency_key = 'i'", "uq_jobs_api_key_idempotency_key"),
])
def test_a_files_rows_are_found_through_its_partial_index(engine: Engine, query: str, index: str) -> None:
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as connection:
        if postgres:  # an empty table: the planner would rather read it whole than any index
            connection.exec_driver_sql("SET enable_seqscan = off")
        plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql(
            ("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + query))
    assert index in plan, plan


@pytest.mark.parametrize("kind", BACKENDS)
def test_the_partial_indexes_migration_goes_down_and_up_again(kind: str, tmp_path: Path) -> None:
    """0012 on a database of its own: down to 0011 the file indexes hold every row again, up to head they are
    partial again."""
    admin, url = create_postgres_database() if kind == "postgres" else ("", f"sqlite:///{tmp_path / 'down.db'}")
    engine = create_engine(url)
    try:
        def file_indexes() -> dict[str, str]:
            option = f"{engine.dialect.name}_where"
            found = {str(index["name"]): index.get("dialect_options", {}).get(option)
                     for index in inspect(engine).get_indexes("jobs")}
            return {name: _condition(condition) for name, condition in found.items()
                    if "batch" in name or "evaluation" in name}

        run_migrations(url)
        partial = file_indexes()
        assert len(partial) == 4 and all(partial.values()), partial
        command.downgrade(alembic_config(url), "0011")
        assert file_indexes() == dict.fromkeys(partial, "")
        run_migrations(url)
        assert file_indexes() == partial
    finally:
        engine.dispose()
        if admin:
            drop_postgres_database(admin, url)


@pytest.mark.parametrize("kind", BACKENDS)
def test_the_interactive_indexes_migration_goes_down_and_up_again(kind: str, tmp_path: Path) -> None:
    """0013 on a database of its own: down to 0012 the key's index and the Idempotency-Keys' hold every row again
    (the latter a unique constraint: two rows of one key and one Idempotency-Key still cannot be), up to head they
    are partial again."""
    admin, url = create_postgres_database() if kind == "postgres" else ("", f"sqlite:///{tmp_path / 'down.db'}")
    engine = create_engine(url)
    try:
        def key_indexes() -> dict[str, str]:
            option = f"{engine.dialect.name}_where"
            found = {str(index["name"]): _condition(index.get("dialect_options", {}).get(option))
                     for index in inspect(engine).get_indexes("jobs")
                     if not index.get("duplicates_constraint")}  # PostgreSQL's index of a unique constraint
            return {name: condition for name, condition in found.items() if name.startswith("ix_jobs_api_key_status")
                    or name == "uq_jobs_api_key_idempotency_key"}

        def unique_constraints() -> list[str]:
            return [str(c["name"]) for c in inspect(engine).get_unique_constraints("jobs")]

        run_migrations(url)
        assert key_indexes() == {"ix_jobs_api_key_status_interactive": "priority=0",
                                 "uq_jobs_api_key_idempotency_key": "idempotency_keyisnotnull"}
        command.downgrade(alembic_config(url), "0012")
        assert key_indexes() == {"ix_jobs_api_key_status_priority": ""}
        assert unique_constraints() == ["uq_jobs_api_key_idempotency_key"]
        run_migrations(url)
        assert key_indexes() == {"ix_jobs_api_key_status_interactive": "priority=0",
                                 "uq_jobs_api_key_idempotency_key": "idempotency_keyisnotnull"}
        assert unique_constraints() == []
    finally:
        engine.dispose()
        if admin:
            drop_postgres_database(admin, url)
