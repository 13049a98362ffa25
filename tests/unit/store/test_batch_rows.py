"""`store.batch_rows`: which of a batch's lines share a row, how many inputs a row holds (the setting, or what the
workers' passes cost), and each line's token ids out of its row as the check put them in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from store import batch_rows
from store.batch_rows import MOST_ROW_INPUTS, BatchLine


def _line(number: int, task: str = "fill-mask", inputs: int = 1, ids: bytes | None = None) -> BatchLine:
    return BatchLine(number, f"r{number}", task, "m", {"input_string": ["a [MASK]"] * inputs}, {}, inputs, None, ids)


def _rows(lines: list[BatchLine], most: int = 4) -> list[list[int]]:
    rows = batch_rows.rows(lines, batch_id="b", api_key_id="k", now=datetime.now(UTC),
                           row_inputs={"fill-mask": most, "question-answering": most})
    return [[row["batch_line"] + k for k in range(row["line_count"])] for row in rows]


def test_consecutive_lines_of_one_task_share_a_row_up_to_its_inputs() -> None:
    assert _rows([_line(n) for n in range(1, 11)]) == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    # A blank line (4), a line of the other task (6), a line that would take the row past 4 inputs (8: 3 inputs
    # after 7's 2), and a line of more than 4 inputs alone (10).
    lines = [_line(1), _line(2), _line(3), _line(5), _line(6, "question-answering"), _line(7, inputs=2),
             _line(8, inputs=3), _line(9), _line(10, inputs=6), _line(11)]
    assert _rows(lines) == [[1, 2, 3], [5], [6], [7], [8, 9], [10], [11]]


def test_a_rows_lines_come_out_as_they_went_in_token_ids_included() -> None:
    lines = [_line(1, ids=b"\x00\x01"), _line(2), _line(3, ids=b""), _line(4, ids=bytes(range(256)))]
    [row] = batch_rows.rows(lines, batch_id="b", api_key_id="k", now=datetime.now(UTC), row_inputs={"fill-mask": 4})
    assert row["n_inputs"] == 4 and row["line_count"] == 4 and row["batch_line"] == 1
    assert batch_rows.line_parts(row["input"], row["token_ids"]) == [
        (line.inputs, line.parameters, line.token_ids) for line in lines]
    [bare] = batch_rows.rows([_line(1)], batch_id="b", api_key_id="k", now=datetime.now(UTC),
                             row_inputs={"fill-mask": 4})
    assert bare["token_ids"] is None  # no line has ids: nothing stored


def _worker(tasks: list[str], device: str = "cpu", **costs: float | None) -> dict[str, Any]:
    return {"tasks": tasks, "device": device, "seconds_per_input": {task.replace("_", "-"): cost
                                                                    for task, cost in costs.items()}}


@pytest.mark.parametrize(("workers", "setting", "expected"), [
    ([], 7, 7),  # the setting, whatever the workers say
    ([_worker(["fill-mask"], fill_mask=0.1)], 7, 7),
    ([], None, 1),  # no worker: as if none had timed a pass
    ([_worker(["fill-mask"], fill_mask=None)], None, 1),  # a CPU worker yet to time a pass
    ([_worker(["fill-mask"], "cuda", fill_mask=None)], None, MOST_ROW_INPUTS),  # a GPU's passes are short
    ([_worker(["fill-mask"], fill_mask=0.0005)], None, 10),  # 5 ms of passes at 0.5 ms an input
    ([_worker(["fill-mask"], fill_mask=0.00001)], None, MOST_ROW_INPUTS),  # a GPU's: at most MOST_ROW_INPUTS
    ([_worker(["fill-mask"], fill_mask=0.016)], None, 1),  # the base-sized model on a CPU: a row a line
    # The slowest of the workers serving the task; another task's worker says nothing of it.
    ([_worker(["fill-mask"], "cuda", fill_mask=0.00001), _worker(["fill-mask"], fill_mask=0.001)], None, 5),
    ([_worker(["question-answering"], question_answering=0.1), _worker(["fill-mask"], "cuda")], None,
     MOST_ROW_INPUTS),
    # A worker yet to tell counts by its device beside one that has: a CPU's, one line a row; a GPU's, no bound.
    ([_worker(["fill-mask"], "cuda", fill_mask=0.0005), _worker(["fill-mask"], fill_mask=None)], None, 1),
    ([_worker(["fill-mask"], fill_mask=0.0005), _worker(["fill-mask"], "cuda", fill_mask=None)], None, 10),
])
def test_a_rows_inputs_are_the_setting_or_what_adds_lines_pass_ms_to_the_slowest_workers_pass(
        workers: list[dict[str, Any]], setting: int | None, expected: int) -> None:
    assert batch_rows.row_inputs("fill-mask", workers, setting, lines_pass_ms=5) == expected


def test_a_line_id_names_its_row_and_index() -> None:
    row_id = "0b8f3a52-6a4f-4d0e-9b1a-2f8e6c4d1a3b"
    assert batch_rows.parse_line_id(batch_rows.line_id(row_id, 12)) == (row_id, 12)
    assert batch_rows.parse_line_id(row_id) is None and batch_rows.parse_line_id(f"{row_id}-x") is None
