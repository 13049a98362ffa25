"""A batch file's line judged field by field (`api/batch_lines.py`): whatever JSON a field holds, the line is a bad
line naming that field — never an exception out of the check (a `url` that was a list once made the check raise
TypeError, and `POST /v1/batches` answered 500: found by a fuzzer of batch files)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.batch_lines import LineChunk, judge
from api.model_inputs import ServedModel, load_served_model
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


#: Any JSON value: what a line, or any field of one, may hold.
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                max_size=4), max_leaves=12)


@pytest.fixture(scope="module")
def served_models(tiny_models: dict[str, Path]) -> dict[str, ServedModel]:
    """The tiny checkpoint's tokenizers, as the API holds them: a line that passes its own checks meets the model's."""
    return {task: load_served_model(str(path)) for task, path in tiny_models.items()}


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.one_of(
    JSON.map(lambda value: json.dumps(value).encode()),  # a line of any JSON
    st.fixed_dictionaries({}, optional={key: st.just(value) | JSON for key, value in GOOD.items()}).map(
        lambda fields: json.dumps(fields).encode()),  # the line's own fields, each a good one or any JSON
    st.binary(max_size=40),  # bytes, JSON or not
), min_size=1, max_size=8))
def test_any_line_gets_a_verdict_and_a_bad_one_an_error_naming_its_line(
        lines: list[bytes], served_models: dict[str, ServedModel]) -> None:
    chunk = LineChunk(list(enumerate(lines, 1)), None, "b", "k", datetime.now(UTC),
                      {"fill-mask": 1, "question-answering": 1})
    verdicts = judge(chunk, Settings(), served_models.__getitem__)
    assert [verdict.number for verdict in verdicts] == list(range(1, len(lines) + 1))
    for verdict, raw in zip(verdicts, lines, strict=True):
        assert (verdict.error is None) != (verdict.line is None)
        assert verdict.error is None or verdict.error["line"] == verdict.number
        if raw == json.dumps(GOOD).encode():
            assert verdict.line is not None, verdict.error
