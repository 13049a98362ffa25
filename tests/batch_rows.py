"""A batch as its check finds it, and its lines' rows as the check queues them, made in the store directly: for
tests of what the check and the worker write."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.tasks import TASK_FILL_MASK
from models.tables import ApiKey
from store import batch_rows, batches, files, keys
from store.batch_rows import BatchLine
from store.jobs import Claim, Outcome


def validating_batch(sessions: sessionmaker[Session], now: datetime) -> tuple[str, str]:
    """A new key, an empty batch file of it and a batch of that file, `validating`: (the key's id, the batch's)."""
    with sessions() as session:
        key = keys.create_key(session, "lines")
        session.commit()
        api_key_id = session.scalars(select(ApiKey.id).where(ApiKey.key_hash == keys.hash_key(key))).one()
        file = files.write_file(session, api_key_id=api_key_id, purpose="batch", filename="l.jsonl", parts=[],
                                max_bytes=None, now=now)
        batch_id = batches.new_batch_id()
        batches.begin_batch(session, batch_id=batch_id, api_key_id=api_key_id, input_file_id=file.id, endpoint=None,
                            completion_window="24h", webhook=None, metadata=None, now=now)
    return api_key_id, batch_id


def line_rows(batch_id: str, api_key_id: str, numbers: Iterable[int], now: datetime, *, row_inputs: int = 1,
              task: str = TASK_FILL_MASK, parameters: dict[str, Any] | None = None,
              metadata: dict[str, Any] | None = None, custom_id: str = "r{n}",
              text: str = "Line {n} has a [MASK].") -> list[dict[str, Any]]:
    """The job rows of a batch's one-input lines `numbers` (file line numbers: a gap is a blank line), as the check
    makes them (`store.batch_rows.rows`; `row_inputs` 1: a row a line)."""
    lines = [BatchLine(n, custom_id.format(n=n), task, "stub", {"input_string": [text.format(n=n)]},
                       {"top_k": 1} if parameters is None else parameters, 1, metadata) for n in numbers]
    return list(batch_rows.rows(lines, batch_id=batch_id, api_key_id=api_key_id, now=now,
                                row_inputs={task: row_inputs}))


def ran(claim: Claim, output: list[Any] | None = None, error: dict[str, str] | None = None) -> Outcome:
    """The claim's outcome as the worker writes it back: a job's with `output` or `error`; a row of a batch's lines'
    with that for each of its lines."""
    if claim.batch_id is None:
        return Outcome(claim, output=output, error=error)
    lines, failed = batch_rows.row_output([(output, error)] * len(claim.input["lines"]))
    return Outcome(claim, output=lines, failed_lines=failed)
