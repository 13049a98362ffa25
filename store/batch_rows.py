"""A batch's lines in job rows: consecutive lines of one task share a row, up to `row_inputs` inputs.

A row is what the store pays for — its insert, its claim and its write-back cost about as much for one line as for
sixteen (`python -m bench.store_lines --row-inputs N`: with the output file, 170 CPU-µs a one-input line at a row a
line, 68 at 16, on SQLite; on PostgreSQL the server's CPU a 10,000-line batch halved: BENCHMARKS.md, session 35). On
a GPU those costs, not the device, were a batch's bound (the H200 claimed and wrote a 500-line pass in 68 ms against
12.6 on the device: session 30).
So the check packs a batch's passing lines into rows (`rows`), and the row is the unit that is queued, claimed,
leased, reclaimed, cancelled and written back, as any job's; the lines inside it are the worker's inputs
(`line_parts`) and the output file's lines (`public_lines`).

A row's lines are consecutive in the file (a blank line, a line of the other task or of another model ends a row):
the row of the lines `batch_line` … `batch_line + line_count - 1` is ended when those lines are, so the output file's
prefix logic (`store/batch_output.py`) reads rows as it read lines. Its columns:

- `input`: `{"lines": [{"custom_id", "input", "parameters", "metadata"}, …]}`, each line's body as its job's would be;
- `token_ids`: each line's ids from the check (`contract.tokens`), framed (`_frame`), or None when no line has any;
- `output` once it ran: per line `{"output": …}` or `{"error": {"code", "message"}}` (one line's bad input fails that
  line alone); `failed_lines` counts the errors. A row failed or cancelled whole has the row's `error` on every line.

A line's job object (its output line's `response.body`, and `GET /v1/jobs/{id}`) is the row's, with the line's own
body, output, status and id: `{row id}-{index}` (`line_id`).
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from core.json_text import json_value
from models.tables import BATCH_PRIORITY, FAILED, QUEUED, SUCCEEDED


@dataclass(frozen=True)
class BatchLine:
    """A line of a batch's file that passed the check, as it is queued: its body as a job stores one
    (`contract.requests.stored_inputs`), and its token ids from the check, if it made them."""

    number: int
    custom_id: str
    task: str
    model: str
    inputs: dict[str, Any]
    parameters: dict[str, Any]
    n_inputs: int
    metadata: dict[str, Any] | None
    token_ids: bytes | None = None


#: A row's lines have no webhook events of their own (one shared value: `store.jobs.add_file_lines` converts it once).
_NO_EVENTS: list[str] = []


#: The most inputs a row holds where the workers' passes size it (`row_inputs`): at 16 one-input lines a row the
#: store's insert, claim, write-back and output file cost 68 CPU-µs a line against 170 at one (BENCHMARKS.md,
#: session 35); the output file's lines, which rows do not share, are most of what is left.
MOST_ROW_INPUTS = 16


def row_inputs(task: str, workers: Iterable[Mapping[str, Any]], setting: int | None, lines_pass_ms: int) -> int:
    """How many inputs a row of `task`'s lines holds: `setting` (`DISTILQ_BATCH_ROW_INPUTS`) where set; else as
    many as add `lines_pass_ms` to a pass on the slowest of the workers serving the task — a pass of lines beside
    interactive jobs takes whole rows, and no more of them than that (`worker.batcher.Batcher._line_budget`): on a
    CPU serving the base-sized model, a row a line — between 1 and MOST_ROW_INPUTS (1 while none serves it).
    `workers`: their presence (`core.presence.ready_workers`: `device`, `seconds_per_input` of each task, None
    until passes of different sizes were timed); a worker yet to tell is taken by its device: MOST_ROW_INPUTS on
    CUDA (its passes of hundreds of inputs take milliseconds), else 1."""
    if setting is not None:
        return setting

    def allows(worker: Mapping[str, Any]) -> int:
        cost = (worker.get("seconds_per_input") or {}).get(task)
        if cost:
            return min(MOST_ROW_INPUTS, inputs_within(lines_pass_ms, cost))
        return MOST_ROW_INPUTS if worker.get("device") == "cuda" else 1

    return min((allows(worker) for worker in workers if task in worker.get("tasks", ())), default=1)


def inputs_within(lines_pass_ms: int, seconds_per_input: float) -> int:
    """How many of a batch's inputs add at most `lines_pass_ms` to a pass at `seconds_per_input` each, at least
    one: the worker's budget of lines in a pass beside interactive jobs, and (so) the most a row may hold."""
    return max(1, int(lines_pass_ms / 1000 / max(seconds_per_input, 1e-9)))


def rows(lines: Iterable[BatchLine], *, batch_id: str, api_key_id: str, now: datetime,
         row_inputs: Mapping[str, int]) -> Iterator[dict[str, Any]]:
    """The job rows (column: value, for `store.jobs.add_file_lines`) of `lines`, in the file's order: consecutive
    lines of one task and model share a row up to `row_inputs[task]` inputs (a line with more has a row of its
    own)."""
    group: list[BatchLine] = []
    inputs = 0
    for line in lines:
        if group and (inputs + line.n_inputs > row_inputs[group[0].task] or line.number != group[-1].number + 1
                      or line.task != group[0].task or line.model != group[0].model):
            yield _row(group, batch_id, api_key_id, now, inputs)
            group, inputs = [], 0
        group.append(line)
        inputs += line.n_inputs
    if group:
        yield _row(group, batch_id, api_key_id, now, inputs)


def _row(lines: list[BatchLine], batch_id: str, api_key_id: str, now: datetime, n_inputs: int) -> dict[str, Any]:
    first = lines[0]
    return {
        "id": str(uuid.uuid4()), "api_key_id": api_key_id, "task": first.task, "model": first.model,
        "status": QUEUED, "input": {"lines": [{"custom_id": line.custom_id, "input": line.inputs,
                                               "parameters": line.parameters, "metadata": line.metadata}
                                              for line in lines]},
        "parameters": {}, "n_inputs": n_inputs, "created_at": now, "attempts": 0, "priority": BATCH_PRIORITY,
        "webhook_events_filter": _NO_EVENTS, "metadata": None, "batch_id": batch_id, "batch_line": first.number,
        "line_count": len(lines), "token_ids": _frame([line.token_ids for line in lines]),
    }


#: A line's token ids in a row's `token_ids`: their length (unsigned 32 bits, little-endian), then the bytes;
#: `_ABSENT` as the length where the check made none.
_LENGTH = struct.Struct("<I")
_ABSENT = 0xFFFFFFFF


def _frame(parts: list[bytes | None]) -> bytes | None:
    if all(part is None for part in parts):
        return None
    return b"".join(_LENGTH.pack(_ABSENT) if part is None else _LENGTH.pack(len(part)) + part for part in parts)


def _unframe(framed: bytes | None, count: int) -> list[bytes | None]:
    if framed is None:
        return [None] * count
    parts: list[bytes | None] = []
    at = 0
    for _ in range(count):
        (length,) = _LENGTH.unpack_from(framed, at)
        at += _LENGTH.size
        if length == _ABSENT:
            parts.append(None)
        else:
            parts.append(framed[at:at + length])
            at += length
    return parts


def line_parts(row_input: dict[str, Any], token_ids: bytes | None) -> list[tuple[dict[str, Any], dict[str, Any],
                                                                                 bytes | None]]:
    """A row's lines as the engine takes jobs: (input, parameters, token ids) each, in their order."""
    lines = row_input["lines"]
    return [(line["input"], line["parameters"], ids)
            for line, ids in zip(lines, _unframe(token_ids, len(lines)), strict=True)]


def row_output(results: list[tuple[list[Any] | None, dict[str, str] | None]]) -> tuple[list[dict[str, Any]], int]:
    """A row's `output` from its lines' (output, error) — each one or the other — and how many lines failed."""
    output = [{"output": result} if error is None else {"error": error} for result, error in results]
    return output, sum(1 for _, error in results if error is not None)


#: A line's id: its row's, a hyphen, its index in the row.
_LINE_ID = re.compile(r"(?P<row>[0-9a-f-]{36})-(?P<index>[0-9]{1,4})")


def line_id(row_id: str, index: int) -> str:
    return f"{row_id}-{index}"


def parse_line_id(value: str) -> tuple[str, int] | None:
    """(row id, index) of a line's id; None when `value` is not one."""
    match = _LINE_ID.fullmatch(value)
    return None if match is None else (match["row"], int(match["index"]))


@dataclass(frozen=True)
class PublicLine:
    """A line of a row as the output files and `GET /v1/jobs/{id}` show it."""

    number: int
    custom_id: str
    status: str
    #: The line's job attributes (`contract.job_json.job_to_public` reads them).
    job: dict[str, Any]
    #: The line's error, or None.
    error: dict[str, Any] | None


#: The JSON columns a row's lines are made of: those a client's body wrote, read as Python's json reads them
#: (`core.json_text.json_value`: a line's metadata may hold an integer beyond 64 bits); those distilq wrote — the
#: engine's outputs, errors, webhook event names — by orjson alone, which reads them alike: walking a fill-mask row's
#: outputs for such an integer was a third of its output file's CPU.
_CLIENTS_JSON = ("input",)
_OWN_JSON = ("output", "error", "webhook_events_filter")


def public_lines(row: dict[str, Any]) -> Iterator[PublicLine]:
    """The lines of a row in their order; `row`: its job attributes as `store.job_text.public_columns` reads them
    (its JSON columns as their stored text) and its `batch_line`. Changes `row`."""
    row.update({name: None if row[name] is None else json_value(row[name]) for name in _CLIENTS_JSON})
    row.update({name: None if row[name] is None else orjson.loads(row[name]) for name in _OWN_JSON})
    outputs: list[dict[str, Any]] = row["output"] or []
    for index, line in enumerate(row["input"]["lines"]):
        result = outputs[index] if index < len(outputs) else {}
        error = result.get("error", row["error"])
        status = row["status"]
        if status == SUCCEEDED and "error" in result:
            status = FAILED
        job = {**row, "id": line_id(row["id"], index), "status": status, "input": line["input"],
               "parameters": line["parameters"], "meta": line["metadata"], "output": result.get("output"),
               "error": error}
        yield PublicLine(row["batch_line"] + index, line["custom_id"], status, job, error)
