"""A batch file's line judged field by field (`api/batch_lines.py`): whatever JSON a field holds, the line is a bad
line naming that field — never an exception out of the check (a `url` that was a list once made the check raise
TypeError, and `POST /v1/batches` answered 500: found by a fuzzer of batch files)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from api.batch_lines import LineChunk, judge
from core.settings import Settings

GOOD = {"custom_id": "r1", "method": "POST", "url": "/v1/fill-mask",
        "body": {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}}
#: A value of every JSON type, and of the types a field holds, that no field takes.
VALUES: list[Any] = [None, True, 0, 1.5, "", "x", [], ["/v1/fill-mask"], [["POST"]], {}, {"url": "/v1/fill-mask"}]


def _verdicts(lines: list[dict[str, Any]]) -> list[Any]:
    chunk = LineChunk([(number, json.dumps(line).encode()) for number, line in enumerate(lines, 1)], None, "b",
                      "k", datetime.now(UTC), {"fill-mask": 1, "question-answering": 1})

    def served(task: str) -> Any:
        raise AssertionError("no line passed its own checks: no model is asked for")

    return judge(chunk, Settings(), served)


@pytest.mark.parametrize("field", ["custom_id", "method", "url", "body"])
def test_a_field_of_any_json_type_makes_a_bad_line_naming_it(field: str) -> None:
    wrong = [value for value in VALUES if not (field == "custom_id" and isinstance(value, str) and value)]
    verdicts = _verdicts([{**GOOD, field: value} for value in wrong])
    assert len(verdicts) == len(wrong)
    for verdict, value in zip(verdicts, wrong, strict=True):
        assert verdict.line is None and verdict.error is not None, value
        assert verdict.error["param"].split(".")[0] == field, (value, verdict.error)
