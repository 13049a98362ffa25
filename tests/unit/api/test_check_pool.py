"""A batch's file judged in check processes (`api/check_pool.py`) is judged as in the request's thread: the same
jobs queued, the same errors named; a check process that dies, or cannot load a model, fails the check with a 503
and the next batch is checked by a new pool. The app runs in-process (Flask's test client) on a real SQLite file;
nothing here reaches a worker."""

from __future__ import annotations

import gc
import io
import json
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from api import create_app
from api.check_pool import CheckPool, default_processes
from core.settings import Settings
from migrations import run_migrations
from models.db import make_engine, make_session_factory, transaction
from models.tables import Job
from store.keys import create_key

#: A client of an app of its own (a fresh database), its batch files checked by this many check processes.
MakeClient = Callable[..., FlaskClient]

FILL_MASK = {"inputs": {"input_string": ["Paris is the [MASK] of France."]}, "parameters": {"top_k": 3}}
QA = {"inputs": {"question": ["Where is Paris?"], "context": ["Paris is the capital of France."]}}


@pytest.fixture()
def make_client(tmp_path: Path, tiny_models: dict[str, Path]) -> Iterator[MakeClient]:
    pools: list[CheckPool] = []

    def make(check_processes: int, **models: str) -> FlaskClient:
        home = tmp_path / f"app-{len(pools)}"
        home.mkdir()
        url = f"sqlite:///{home / 'distilq.db'}"
        run_migrations(url)
        settings = Settings(home=home, database_url=url, redis_url="redis://127.0.0.1:1/0",
                            fill_mask_model=models.get("fill_mask_model", str(tiny_models["fill-mask"])),
                            qa_model=models.get("qa_model", str(tiny_models["question-answering"])),
                            check_processes=check_processes, batch_row_inputs=16)
        with transaction(make_session_factory(make_engine(url))) as session:
            key = create_key(session, "unit")
        app = create_app(settings)
        pools.append(app.extensions["distilq"].check_pool)
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        return client

    yield make
    for pool in pools:
        pool.close()


def _create(client: FlaskClient, lines: list[str]) -> tuple[int, dict[str, Any]]:
    content = "".join(line + "\n" for line in lines).encode()
    file = client.post("/v1/files", data={"purpose": "batch", "file": (io.BytesIO(content), "lines.jsonl")}).json
    assert file is not None
    created = client.post("/v1/batches", json={"input_file_id": file["id"]})
    return created.status_code, created.json or {}


def _line(custom_id: str, body: dict[str, Any], url: str = "/v1/fill-mask", **extra: Any) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body, **extra})


def _queued(client: FlaskClient) -> list[tuple[Any, ...]]:
    """What the check queued, less what differs between two databases (ids, times)."""
    engine = make_engine(client.application.extensions["distilq"].settings.resolved_database_url)
    with make_session_factory(engine)() as session:
        return [tuple(row) for row in session.execute(
            select(Job.batch_line, Job.line_count, Job.task, Job.model, Job.input, Job.parameters, Job.n_inputs,
                   Job.meta, Job.token_ids, Job.priority, Job.status).order_by(Job.batch_line))]


def test_a_file_is_judged_alike_in_check_processes_and_in_the_request_thread(make_client: MakeClient) -> None:
    good = [_line(f"r{i}", {**FILL_MASK, "metadata": {"i": i}} if i % 3 else QA,
                  "/v1/fill-mask" if i % 3 else "/v1/question-answering") for i in range(1300)]
    inline, pooled = make_client(0), make_client(2)
    for client in (inline, pooled):
        status, batch = _create(client, good)
        assert status == 200 and batch["status"] == "in_progress", batch
        assert batch["request_counts"]["total"] == 1300
    assert len(multiprocessing.active_children()) == 2  # the pooled app's check processes judged its chunks
    # Lines of one task share rows: two fill-mask lines between question-answering ones (`store/batch_rows.py`).
    rows = _queued(inline)
    assert sum(row[1] for row in rows) == 1300 and [row[1] for row in rows[:4]] == [1, 2, 1, 2]
    assert [line["custom_id"] for line in rows[1][4]["lines"]] == ["r1", "r2"] and _queued(pooled) == rows

    bad = list(good)
    bad[2] = "{not json"
    bad[9] = _line("r9", FILL_MASK, extra_field=1)
    bad[599] = _line("r0", FILL_MASK)  # r0 is line 1's
    bad[699] = _line("r699", {"inputs": {"input_string": ["No mask here."]}})  # the model's check
    bad[1249] = _line("r1249", FILL_MASK, url="/v1/translate")
    errors = []
    for client in (inline, pooled):
        status, batch = _create(client, bad)
        assert status == 200 and batch["status"] == "failed", batch
        errors.append(batch["errors"]["data"])
    assert [error["line"] for error in errors[0]] == [3, 10, 600, 700, 1250]
    assert errors[1] == errors[0]
    assert "used by an earlier line" in errors[0][2]["message"] and "no mask token" in errors[0][3]["message"]
    assert _queued(pooled) == rows  # the first batch's alone: nothing of the failed one is left


def test_a_check_process_that_dies_fails_the_check_and_a_new_pool_checks_the_next(make_client: MakeClient) -> None:
    client = make_client(1)
    lines = [_line(f"r{i}", FILL_MASK) for i in range(600)]
    assert _create(client, lines)[1]["status"] == "in_progress"
    (checker,) = multiprocessing.active_children()
    assert checker.pid is not None
    os.kill(checker.pid, signal.SIGKILL)
    checker.join(10)

    status, failed = _create(client, lines)
    assert status == 503 and failed["error"]["code"] == "check_interrupted", failed
    batches = client.get("/v1/batches").json
    assert batches is not None and batches["data"][0]["status"] == "failed"
    assert batches["data"][0]["errors"]["data"][0]["code"] == "check_failed"
    status, batch = _create(client, lines)
    assert status == 200 and batch["status"] == "in_progress" and batch["request_counts"]["total"] == 600
    assert [child.pid for child in multiprocessing.active_children()] != [checker.pid]


@pytest.mark.parametrize("check_processes", [0, 1])
def test_a_model_a_check_cannot_load_is_a_503_wherever_it_is_judged(make_client: MakeClient, tmp_path: Path,
                                                                    check_processes: int) -> None:
    empty = tmp_path / "no-model"
    empty.mkdir()
    client = make_client(check_processes, qa_model=str(empty))
    status, answer = _create(client, [_line("a", FILL_MASK), _line("b", QA, "/v1/question-answering")])
    assert status == 503 and answer["error"]["code"] == "model_unavailable", answer
    assert "question-answering model's tokenizer could not be loaded" in answer["error"]["message"]
    assert "has no tokenizer.json" in answer["error"]["message"]


def test_check_processes_by_default_are_half_the_cores_and_none_below_four(monkeypatch: pytest.MonkeyPatch) -> None:
    for cores, expected in ((1, 0), (2, 0), (3, 0), (4, 2), (16, 8), (64, 8)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert default_processes() == expected


def test_a_check_process_takes_its_loaded_objects_out_of_full_collections(tiny_models: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    pool = CheckPool(Settings(home=tmp_path, fill_mask_model=str(tiny_models["fill-mask"]),
                              qa_model=str(tiny_models["question-answering"]), check_processes=1))
    try:
        # What it imported to judge lines (pydantic's, the tokenizers', SQLAlchemy's through the store).
        assert pool._started().submit(gc.get_freeze_count).result(timeout=60) > 10_000
    finally:
        pool.close()


@pytest.mark.parametrize("check_processes", [0, 1])
def test_a_chunk_is_queued_where_it_is_judged_and_only_while_all_of_it_passes_and_the_batch_validates(
    tmp_path: Path, tiny_models: dict[str, Path], backend: tuple[str, str], check_processes: int,
) -> None:
    """Its job rows never cross back to the API process (none in its verdicts); a chunk with a bad line, a custom_id
    twice, or `queue` off queues nothing; nor does one judged once the batch has failed. On each database (a check
    process on PostgreSQL connects for the insert alone)."""
    from datetime import UTC, datetime

    from api.batch_lines import LineChunk
    from api.model_inputs import load_served_model
    from store import batches
    from tests.batch_rows import validating_batch

    url = backend[0]
    sessions = make_session_factory(make_engine(url))
    now = datetime.now(UTC)
    key_id, batch_id = validating_batch(sessions, now)
    settings = Settings(home=tmp_path, database_url=url, fill_mask_model=str(tiny_models["fill-mask"]),
                        qa_model=str(tiny_models["question-answering"]), check_processes=check_processes)
    pool = CheckPool(settings)
    models = {task: load_served_model(settings.model_id(task)) for task in ("fill-mask", "question-answering")}

    def judged(lines: list[str], first: int, **options: Any) -> Any:
        chunk = LineChunk([(first + i, line.encode()) for i, line in enumerate(lines)], None, batch_id, key_id,
                          now, {"fill-mask": 1, "question-answering": 1}, **options)
        return pool.result(pool.submit(chunk, models.__getitem__, sessions))

    def stored() -> list[int]:
        with sessions() as session:
            return list(session.scalars(select(Job.batch_line).where(Job.batch_id == batch_id)
                                        .order_by(Job.batch_line)))

    try:
        good = judged([_line("a", FILL_MASK), _line("b", QA, "/v1/question-answering")], 1)
        assert good.queued and good.tasks == {"fill-mask", "question-answering"}
        assert [verdict.line for verdict in good.verdicts] == [None, None] and stored() == [1, 2]
        for lines, options in (([_line("c", FILL_MASK), "{not json"], {}),
                               ([_line("d", FILL_MASK), _line("d", FILL_MASK)], {}),
                               ([_line("e", FILL_MASK)], {"queue": False})):
            refused = judged(lines, 3, **options)
            assert not refused.queued and stored() == [1, 2], (lines, options)
        assert batches.fail_check(sessions, batch_id, [{"code": "bad", "line": 4, "param": None, "message": "m"}],
                                  now)
        assert stored() == []
        late = judged([_line("f", FILL_MASK)], 5)
        assert late.queued and stored() == []  # the batch failed: nothing queued
    finally:
        pool.close()
