"""JSON text as distilq writes it where it is written per job — its database columns, a held job's announcement,
a webhook event's body, an evaluation's scored line: compact, by orjson (a tenth of the time Python's json takes),
and by Python's json for what orjson refuses; and JSON text read — those columns, a request's body, a file's line —
by orjson where it reads as Python's json does, by Python's json otherwise."""

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
    """JSON text parsed as Python's json parses it — by orjson, in a fifth to a half of the time, where orjson reads
    it alike. Python's json reads the rest: what orjson refuses (`NaN`, which an earlier version's json.dumps could
    write to a column; a lone surrogate's escape; UTF-16 or -32 text) and integers beyond 64 bits (which orjson
    makes floats: 123456789012345678901 would come back as 1.2345678901234568e+20); and raises what it raises
    (ValueError, RecursionError) for text that is not JSON, so that what a client is told of its body or its file's
    line is Python's json's verdict."""
    return read_json(text)[0]


def read_json(text: str | bytes) -> tuple[Any, bool]:
    """`text` parsed as `json_value` parses it, and whether orjson took the text (its value then read by orjson, or by
    Python's json for an integer beyond 64 bits): it then held no `NaN`, no number beyond a double's range, no lone
    surrogate and nothing but UTF-8 — orjson refuses each, where Python's json takes them (what
    `api.validation.read_storable` then need not look for)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text), False
    if _has_19_digits(text) and _holds_huge_float(value):
        return json.loads(text), True
    return value, True


def _has_19_digits(text: str | bytes) -> bool:
    """Whether `text` holds a run of 19 digits: an integer beyond 64 bits is at least that long, and text without one
    needs no walk of its value (the walk was a sixth of a batch line's check, and 15 µs of a 16-line row's input
    read by a claim; this, 2–4 µs of it: every digit made a 9, then one search — a regular expression over a str
    took longer than the walk)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    return b"9" * 19 in data.translate(_DIGITS_AS_NINES)


_DIGITS_AS_NINES = bytes.maketrans(b"012345678", b"999999999")
#: What an integer orjson cannot hold (below -2**63, above 2**64 - 1) becomes as a float is at least this large.
_HUGE = float(2**63)


def _holds_huge_float(value: Any) -> bool:
    """Whether a float as large as 2**63 is anywhere in `value`: what orjson makes of an integer beyond 64 bits (or
    a float that large, which Python's json then reads alike)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float and not -_HUGE < item < _HUGE:
            return True
    return False
