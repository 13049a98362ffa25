"""A batch's or an evaluation's file is read and judged once: an evaluation's checked lines wait in a temporary
file (`api/spool.py`) and the jobs are made from there; a batch's are queued chunk by chunk as they pass. The app
runs in-process (Flask's test client) on a real SQLite file; nothing here reaches a worker."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from api import create_app
from api.spool import Spool
from core.settings import Settings
from migrations import run_migrations
from models.db import make_engine, make_session_factory, transaction
from models.tables import Job
from store import files
from store.keys import create_key


def test_a_spool_gives_back_what_was_written_in_order_and_is_gone_after_its_block() -> None:
    items: list[Any] = [{"line": 1, "ids": b"\x00\x01"}, ("two", [2.5, None]), "three" * 10_000]
    with Spool[Any]() as spool:
        for item in items:
            spool.write(item)
        assert list(spool.read_all()) == items
        assert list(spool.read_all()) == items  # read again from the start
    assert spool.file.closed


@pytest.fixture()
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'distilq.db'}"
    run_migrations(url)
    return url


@pytest.fixture()
def client(tmp_path: Path, url: str, tiny_models: dict[str, Path]) -> Iterator[FlaskClient]:
    settings = Settings(home=tmp_path, database_url=url, redis_url="redis://127.0.0.1:1/0",
                        fill_mask_model=str(tiny_models["fill-mask"]), qa_model=str(tiny_models["question-answering"]))
    with transaction(make_session_factory(make_engine(url))) as session:
        key = create_key(session, "unit")
    with create_app(settings).test_client() as client:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        yield client


def _jobs(url: str, column: Any, owner: str) -> int:
    """The lines queued as jobs (a batch's rows hold several each: `store/batch_rows.py`)."""
    with make_session_factory(make_engine(url))() as session:
        return int(session.scalar(select(func.sum(Job.line_count)).where(column == owner)) or 0)


@pytest.mark.parametrize("kind", ["batch", "evaluation"])
def test_the_file_is_read_once_and_every_good_line_becomes_a_job(client: FlaskClient, url: str, kind: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if kind == "batch":
        lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/fill-mask",
                  "body": {"inputs": {"input_string": [f"Line {i} is the [MASK]."]}}} for i in range(1200)]
    else:
        lines = [{"text": f"Line {i} is the [MASK].", "label": "the"} for i in range(1200)]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    file = client.post("/v1/files", data={"purpose": kind, "file": (io.BytesIO(content), "lines.jsonl")}).json
    reads: list[str] = []
    read_lines = files.read_lines

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args[1])
        return read_lines(*args, **kwargs)

    monkeypatch.setattr(files, "read_lines", counted)
    if kind == "batch":
        created = client.post("/v1/batches", json={"input_file_id": file["id"]}).json
        assert created["status"] == "in_progress" and created["request_counts"]["total"] == 1200
        assert _jobs(url, Job.batch_id, created["id"]) == 1200
    else:
        created = client.post("/v1/evaluations", json={"task": "fill-mask", "input_file_id": file["id"],
                                                       "metrics": ["accuracy"]}).json
        assert created["status"] == "queued", created
        assert _jobs(url, Job.evaluation_id, created["id"]) == 1200
    assert reads == [file["id"]]
