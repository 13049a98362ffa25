"""JSON text as distilq writes it where it is written per job — its database columns, a held job's announcement,
a webhook event's body, an evaluation's scored line: compact, by orjson (a tenth of the time Python's json takes),
and by Python's json for what orjson refuses."""

from __future__ import annotations

import json
from typing import Any

import orjson


def json_text(value: Any) -> str:
    """`value` as compact JSON text. orjson writes a job's JSON (its inputs; a line's top-5 output) in a tenth of the
    time Python's json takes — which was ~40 % of a batch line's insert and of its write-back. An integer beyond 64
    bits (a client's metadata may hold one), which orjson refuses, is written by Python's json."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_value(text: str | bytes) -> Any:
    """JSON text parsed; Python's json reads what orjson refuses (`NaN`, which an earlier version's json.dumps could
    write to a column)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
