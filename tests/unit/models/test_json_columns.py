"""`models.db`'s JSON columns: written by orjson and read back as Python's json would, including what orjson refuses
(an integer beyond 64 bits) and what an earlier version's json.dumps stored (`NaN`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from sqlalchemy import JSON, Column, Integer, MetaData, Table, insert, select

from core.json_text import json_text, json_value
from models.db import make_engine


def _table() -> Table:
    return Table("docs", MetaData(), Column("id", Integer, primary_key=True), Column("data", JSON))


def test_a_json_column_round_trips_what_python_s_json_would(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'json.db'}")
    docs = _table()
    docs.metadata.create_all(engine)
    values = [
        {"inputs": {"input_string": ["Paris is the [MASK] of France.", "é\u2028\U0001f600"]}, "top_k": 5},
        [[{"score": 0.1234567890123, "token": 5, "token_str": "capital", "sequence": "x"}]],
        # Beyond orjson's 64 bits: written by Python's json, read by it too (orjson would read them as floats, and
        # 2**70's float equals it: the odd one and the types tell).
        {"big": 2**70, "odd": 123456789012345678901234567890, "negative": -(2**65) - 3},
        {1: "a key that is not a string", "nested": {"deep": [1.5e-07, 1e300, None, True]}},
    ]
    with engine.begin() as connection:
        connection.execute(insert(docs), [{"id": i, "data": value} for i, value in enumerate(values)])
    with engine.connect() as connection:
        read = [row.data for row in connection.execute(select(docs).order_by(docs.c.id))]
        stored = [text for (text,) in connection.exec_driver_sql("SELECT data FROM docs ORDER BY id")]
    assert read == [json.loads(json.dumps(value)) for value in values]
    assert [json.loads(text) for text in stored] == read  # any JSON reader reads what is stored
    assert read[2] == {"big": 2**70, "odd": 123456789012345678901234567890, "negative": -(2**65) - 3}
    assert {type(number) for number in read[2].values()} == {int}


def test_text_an_earlier_version_stored_with_nan_is_read() -> None:
    stored = json.dumps({"score": float("nan"), "scores": [1.0, float("inf")]})  # what json.dumps wrote
    value = json_value(stored)
    assert math.isnan(value["score"]) and value["scores"] == [1.0, math.inf]


def test_written_text_is_compact_json() -> None:
    assert json_text({"a": [1, 2.5, "é"]}) == '{"a":[1,2.5,"é"]}'
    assert json_value(json_text({"a": None})) == {"a": None}


def test_integers_beyond_64_bits_are_found_in_text_and_bytes_alike() -> None:
    """`json_value` walks a value for them only where its text has a run of 19 digits (`core.json_text`)."""
    for text in ('{"a": [1, {"b": 18446744073709551616}]}', '[-9223372036854775809]', '[1e3, 99999999999999999999]'):
        for given in (text, text.encode()):
            value = json_value(given)
            assert value == json.loads(text)
            assert json.dumps(value) == json.dumps(json.loads(text))  # integers, not floats
    assert json_value(b'{"id": "1234567890123456789", "n": 123456789012345678}') == {
        "id": "1234567890123456789", "n": 123456789012345678}
