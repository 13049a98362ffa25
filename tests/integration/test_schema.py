"""The migrations build the schema the models declare, on each backend: the same tables, columns and indexes
(Alembic's own comparison), and the same partial indexes' conditions, which that comparison does not look at. And
the planner finds a file's rows through the partial indexes that hold only those rows (`models.tables.OF_BATCH`,
`OF_EVALUATION`): a query that names its batch or evaluation implies the condition; and a key's interactive jobs
and its Idempotency-Keys through theirs (`INTERACTIVE`, the rows holding a key). Their migrations go down and up
again; a batch's counts of what its files hold, and an ended evaluation's of its examples, are filled in by
theirs; a batch's rows of one line each go to the format of 0016 (a row a line) and back as they were."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, Table, create_engine, inspect, select, update
from sqlalchemy.orm import Session, sessionmaker

import webhooks
from contract.requests import FillMaskRequest
from migrations import alembic_config, run_migrations
from models.db import Base, make_engine, make_session_factory
from models.tables import EVENT_COMPLETED, ApiKey, Batch, Evaluation, Job, WebhookEvent
from store import batch_output, batch_rows, batches, evaluations, files, jobs, keys
from store.batch_rows import BatchLine
from store.job_text import public_columns
from store.jobs import Outcome
from tests.batch_rows import line_rows, ran
from tests.doubles import ManualClock
from tests.integration.backends import BACKENDS, create_postgres_database, drop_postgres_database
from tests.unit.conftest import begun_batch

_JOBS = cast(Table, Job.__table__)


@pytest.fixture(scope="module")
def engine(backend: tuple[str, str]) -> Iterator[Engine]:
    engine = create_engine(backend[0])  # migrated by `backend`
    yield engine
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def own_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """(URL, engine) of an empty database of the test's own, unmigrated: SQLite's, and PostgreSQL's where it runs."""
    postgres = request.param == "postgres"
    admin, url = create_postgres_database() if postgres else ("", f"sqlite:///{tmp_path / 'own.db'}")
    engine = make_engine(url)
    yield url, engine
    engine.dispose()
    if admin:
        drop_postgres_database(admin, url)


def _migrated(own_database: tuple[str, Engine]) -> tuple[str, sessionmaker[Session], ApiKey]:
    """The database migrated to head: (its URL, its sessions, a key of it)."""
    url, engine = own_database
    run_migrations(url)
    sessions = make_session_factory(engine)
    with sessions() as session:
        key = keys.create_key(session, "k")
        session.commit()
        return url, sessions, session.scalars(select(ApiKey).where(ApiKey.key_hash == keys.hash_key(key))).one()


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
    # a poll's count of the lines ended beyond what the batch's files hold (`store.batches.request_counts`)
    ("SELECT status, count(*) FROM jobs WHERE batch_id = 'b' AND batch_line > 5 "
     "AND status IN ('succeeded', 'failed', 'canceled') GROUP BY status", "ix_jobs_batch_status"),
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


def test_the_partial_indexes_migration_goes_down_and_up_again(own_database: tuple[str, Engine]) -> None:
    """0012 on a database of its own: down to 0011 the file indexes hold every row again, up to head they are
    partial again."""
    url, engine = own_database

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


def test_the_interactive_indexes_migration_goes_down_and_up_again(own_database: tuple[str, Engine]) -> None:
    """0013 on a database of its own, holding a job with a webhook event (a row that refers to it, which SQLite's
    rebuild of the jobs table must keep): down to 0012 the key's index and the Idempotency-Keys' hold every row again
    (the latter a unique constraint: two rows of one key and one Idempotency-Key still cannot be), up to head they
    are partial again, and the rows as they were."""
    url, engine = own_database

    def key_indexes() -> dict[str, str]:
        option = f"{engine.dialect.name}_where"
        found = {str(index["name"]): _condition(index.get("dialect_options", {}).get(option))
                 for index in inspect(engine).get_indexes("jobs")
                 if not index.get("duplicates_constraint")}  # PostgreSQL's index of a unique constraint
        return {name: condition for name, condition in found.items() if name.startswith("ix_jobs_api_key_status")
                or name == "uq_jobs_api_key_idempotency_key"}

    def unique_constraints() -> list[str]:
        return [str(c["name"]) for c in inspect(engine).get_unique_constraints("jobs")]

    url, sessions, api_key = _migrated(own_database)
    api_key_id = api_key.id
    assert key_indexes() == {"ix_jobs_api_key_status_interactive": "priority=0",
                             "uq_jobs_api_key_idempotency_key": "idempotency_keyisnotnull"}
    body = {"inputs": {"input_string": ["A [MASK]."]}}
    job, _ = jobs.submit(sessions.kw["bind"], task="fill-mask", model="m", api_key_id=api_key_id,
                         body=FillMaskRequest.model_validate({**body, "webhook": "https://example.com/h"}),
                         raw_body=body, idempotency_key="i", idempotency_ttl_s=60, max_in_flight=10,
                         now=ManualClock()(), token_ids=None, held_by=None)
    with sessions() as session:
        session.execute(update(Job).values(webhook_events_filter=["completed"]))
        assert webhooks.record_event(session, job["id"], EVENT_COMPLETED, ManualClock()())
        session.commit()

    def rows() -> list[tuple[object, ...]]:
        with sessions() as session:
            return [tuple(row) for row in session.execute(
                select(Job.id, Job.idempotency_key, WebhookEvent.id)
                .join(WebhookEvent, WebhookEvent.job_id == Job.id))]

    kept = rows()
    assert len(kept) == 1
    command.downgrade(alembic_config(url), "0012")
    assert key_indexes() == {"ix_jobs_api_key_status_priority": ""}
    assert unique_constraints() == ["uq_jobs_api_key_idempotency_key"]
    assert rows() == kept
    run_migrations(url)
    assert key_indexes() == {"ix_jobs_api_key_status_interactive": "priority=0",
                             "uq_jobs_api_key_idempotency_key": "idempotency_keyisnotnull"}
    assert unique_constraints() == []
    assert rows() == kept


def test_the_written_counts_migration_counts_what_the_files_hold(own_database: tuple[str, Engine]) -> None:
    """0015 on a database of its own: a batch whose files hold some of its lines, taken down to 0014 (no counts)
    and up again, gets the counts beat had kept of them."""
    url, sessions, api_key = _migrated(own_database)
    clock = ManualClock()
    batch_id = begun_batch(sessions, api_key, clock)
    rows = line_rows(batch_id, api_key.id, range(1, 7), clock())
    assert batches.add_checked_lines(sessions, batch_id, rows, 6, clock())
    claims = jobs.claim_more(sessions, "fill-mask", 4, clock, 60).claims
    jobs.finish(sessions, [ran(claim, error={"code": "x", "message": "y"}) if i == 1
                           else ran(claim, output=[[]]) for i, claim in enumerate(claims)], clock(), 4, 1.0)
    assert batch_output.write_ready(sessions, batch_id, clock(), fewest=1) == 4
    with sessions() as session:
        kept = session.execute(select(Batch.written_completed, Batch.written_failed)
                               .where(Batch.id == batch_id)).one()
    assert tuple(kept) == (3, 1)
    command.downgrade(alembic_config(url), "0014")
    run_migrations(url)
    with sessions() as session:
        assert tuple(session.execute(select(Batch.written_completed, Batch.written_failed)
                                     .where(Batch.id == batch_id)).one()) == (3, 1)


def test_the_final_counts_migration_stores_an_ended_evaluations_counts(own_database: tuple[str, Engine]) -> None:
    """0016: an evaluation that ended before it, taken down to 0015 (no stored counts) and up again, gets its
    examples' counts; one still running gets none (its answers count them)."""
    url, sessions, api_key = _migrated(own_database)
    api_key_id, clock = api_key.id, ManualClock()
    with sessions() as session:
        file = files.write_file(session, api_key_id=api_key_id, purpose="evaluation", filename="e.jsonl", parts=[],
                                max_bytes=None, now=clock())
        ids = []
        for count in (3, 2):
            evaluation_id = evaluations.new_evaluation_id()
            rows = iter([jobs.evaluation_example(evaluation_id=evaluation_id, line=i + 1, task="fill-mask",
                                                 model="stub", api_key_id=api_key_id,
                                                 inputs={"input_string": ["A [MASK]."]}, parameters={"top_k": 1},
                                                 n_inputs=1, gold={"label": "a", "label_id": 5}, now=clock())
                         for i in range(count)])
            evaluations.create_evaluation(session, examples=rows, id=evaluation_id, api_key_id=api_key_id,
                                          task="fill-mask", model="stub", input_file_id=file.id, metric_names=[],
                                          config={}, created_at=clock())
            ids.append(evaluation_id)
            clock.advance(1)
    claims = jobs.claim_more(sessions, "fill-mask", 3, clock, 60).claims  # the first evaluation's, oldest first
    jobs.finish(sessions, [Outcome(claim, output=[[{"token": 5, "token_str": "a", "score": 1.0}]])
                           for claim in claims], clock(), 3, 1.0)
    evaluations.finalize(sessions, ids[0], clock)

    def stored() -> list[object]:
        with sessions() as session:
            return [session.get_one(Evaluation, evaluation_id).final_counts for evaluation_id in ids]

    assert stored() == [{"succeeded": 3}, None]
    command.downgrade(alembic_config(url), "0015")
    run_migrations(url)
    assert stored() == [{"succeeded": 3}, None]


def test_the_batch_rows_migration_takes_rows_of_one_line_down_and_up_as_they_were(
        own_database: tuple[str, Engine]) -> None:
    """0017: a batch's rows of one line (one queued with token ids, one succeeded, one whose line failed), down to
    0016 are rows a line as that revision wrote them — custom_id, the line's body and output, its token ids
    unframed, the failed line a failed job — and up again read as the same lines; rows of many lines stop the
    way down."""
    url, sessions, api_key = _migrated(own_database)
    clock = ManualClock()
    batch_id = begun_batch(sessions, api_key, clock)
    lines = [BatchLine(n, f"r{n}", "fill-mask", "stub", {"input_string": [f"Line {n} has a [MASK]."]}, {"top_k": 1},
                       1, {"n": n}, b"ids" if n == 3 else None) for n in (1, 2, 3)]
    assert batches.add_checked_lines(sessions, batch_id, batch_rows.rows(lines, batch_id=batch_id,
                                                                         api_key_id=api_key.id, now=clock(),
                                                                         row_inputs={"fill-mask": 1}), 3, clock())
    claims = jobs.claim_more(sessions, "fill-mask", 2, clock, 60).claims
    jobs.finish(sessions, [ran(claims[0], output=[["one"]]), ran(claims[1], error={"code": "x", "message": "y"})],
                clock(), 2, 1.0)

    def public() -> list[tuple[object, ...]]:
        """Each line as its job object and output line show it, and its token ids."""
        with sessions.kw["bind"].connect() as connection:
            rows = connection.execute(select(*public_columns("batch_line", "line_count"), Job.token_ids)
                                      .where(Job.batch_id == batch_id).order_by(Job.batch_line)).mappings().all()
        found = []
        for row in map(dict, rows):
            shown = list(batch_rows.public_lines(row))  # parses the row's JSON
            for line, (_, _, ids) in zip(shown, batch_rows.line_parts(row["input"], row["token_ids"]), strict=True):
                found.append((line.job["id"], line.custom_id, line.status, line.job["input"], line.job["meta"],
                              line.job["output"], line.error, ids))
        return found

    before = public()
    assert [line[2] for line in before] == ["succeeded", "failed", "queued"]
    command.downgrade(alembic_config(url), "0016")
    with own_database[1].connect() as connection:
        old = [tuple(row) for row in connection.exec_driver_sql(
            "SELECT custom_id, status, input, output, error, metadata, token_ids FROM jobs ORDER BY batch_line")]
    def parsed(value: object) -> object:  # SQLite's JSON is its text; psycopg parses PostgreSQL's
        return json.loads(value) if isinstance(value, str) else value

    assert [(custom_id, status, *map(parsed, values), ids and bytes(ids))
            for custom_id, status, *values, ids in old] == [
        ("r1", "succeeded", {"input_string": ["Line 1 has a [MASK]."]}, [["one"]], None, {"n": 1}, None),
        ("r2", "failed", {"input_string": ["Line 2 has a [MASK]."]}, None, {"code": "x", "message": "y"}, {"n": 2},
         None),
        ("r3", "queued", {"input_string": ["Line 3 has a [MASK]."]}, None, None, {"n": 3}, b"ids")]
    run_migrations(url)
    after = public()
    assert [line[1:] for line in after] == [line[1:] for line in before]
    assert [line[0] for line in after] == [line[0] for line in before]  # each row's line 0: the same id
    many = begun_batch(sessions, api_key, clock)
    assert batches.add_checked_lines(sessions, many, line_rows(many, api_key.id, [1, 2], clock(), row_inputs=2), 2,
                                     clock())
    with pytest.raises(RuntimeError, match="1 job rows hold more than one batch line"):
        command.downgrade(alembic_config(url), "0016")


def test_the_files_deleted_at_migration_goes_down_with_a_deleted_file_shown_empty(
        own_database: tuple[str, Engine]) -> None:
    """0018: a file deleted under it, whose row a batch names, taken down to 0017 (no mark) shows as an empty file
    — its bytes are gone; the batch keeps its input's id — and up again, as any file."""
    url, sessions, api_key = _migrated(own_database)
    clock = ManualClock()
    with sessions() as session:
        input_id = files.write_file(session, api_key_id=api_key.id, purpose="batch", filename="in.jsonl",
                                    parts=[b'{"custom_id": "a"}\n'], max_bytes=None, now=clock()).id
        batch_id = batches.new_batch_id()
        batches.begin_batch(session, batch_id=batch_id, api_key_id=api_key.id, input_file_id=input_id, endpoint=None,
                            completion_window="24h", webhook=None, metadata=None, now=clock())
        assert files.delete_file(session, api_key.id, input_id, clock())
        session.commit()
    command.downgrade(alembic_config(url), "0017")
    with own_database[1].connect() as connection:
        assert connection.exec_driver_sql(f"SELECT bytes FROM files WHERE id = '{input_id}'").scalar() == 0
    run_migrations(url)
    with sessions() as session:
        assert files.own_file(session, api_key.id, input_id) is not None  # the mark went with the column
        assert session.scalars(select(Batch.input_file_id).where(Batch.id == batch_id)).one() == input_id
