"""Turns a request body (and query parameters) into validated values, or a 400/422 naming the field and the input's
index."""

from __future__ import annotations

import math
import re
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.routing import BaseConverter

from api.errors import ApiError, Loc, detail, from_validation_error, invalid
from core.json_text import read_json
from webhooks import LookupFailed, UnsafeTarget, check_target

#: Deeper JSON than this is refused: no body of the contract nests beyond a few levels.
MAX_JSON_DEPTH = 32

Body = TypeVar("Body", bound=BaseModel)


def read_json_object() -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       "send the body as JSON, with the header 'Content-Type: application/json'")
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH this raises 413 before reading it all
    try:
        data, storable = read_storable(raw)
    except (ValueError, RecursionError) as error:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise invalid([detail([], "the body must be a JSON object")])
    problems = [] if storable else unstorable(data)
    if problems:
        raise invalid(problems)
    return data


def read_storable(raw: bytes) -> tuple[Any, bool]:
    """`raw` parsed as Python's json parses it (`core.json_text.read_json`; raises what that raises), and whether its
    text alone shows that nothing in it is `unstorable` — False: it may be, walk it. orjson refuses text with a
    non-finite number or a lone surrogate; what it reads may still escape a NUL (`\\u0000`), and can nest no deeper
    than it has brackets. Walking each value was a tenth of a batch line's check; looking at its text is a
    hundredth of that."""
    value, by_orjson = read_json(raw)
    return value, (by_orjson and b"\\u0000" not in raw
                   and raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH)


def _text_problem(text: str) -> str | None:
    """Why a string cannot be stored or sent on: a NUL (PostgreSQL's text cannot hold it), or a lone
    surrogate such as \\ud800 (JSON allows the escape; no UTF-8 encoder, database or client does)."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"contains a lone surrogate (\\u{ord(text[error.start]):04x}), which is not valid Unicode"
    return None


def unstorable(data: Any) -> list[dict[str, Any]]:
    """Depth beyond MAX_JSON_DEPTH; strings that cannot be stored (`_text_problem`); numbers that are not finite
    (`NaN`, `Infinity`, `1e400`: Python's parser takes them, but no JSON it writes back would parse)."""
    problems: list[dict[str, Any]] = []
    stack: list[tuple[Any, Loc]] = [(data, [])]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_JSON_DEPTH:
            return [detail(loc[:MAX_JSON_DEPTH], f"nests deeper than {MAX_JSON_DEPTH} levels")]
        if isinstance(value, dict):
            for key, item in value.items():
                problem = _text_problem(key)
                if problem:
                    problems.append(detail(loc, f"a key {problem}"))
                    key = key.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
                stack.append((item, [*loc, key]))
        elif isinstance(value, list):
            stack.extend((item, [*loc, i]) for i, item in enumerate(value))
        elif isinstance(value, str):
            problem = _text_problem(value)
            if problem:
                problems.append(detail(loc, problem))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(detail(loc, "is not a finite number (NaN, Infinity and numbers beyond 1e308 are refused)"))
    return sorted(problems, key=lambda p: [str(part) for part in p["loc"]])


def parse(schema: type[Body], data: dict[str, Any]) -> Body:
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise from_validation_error(error, []) from None


def query_int(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= len(str(high))) or not low <= int(value) <= high:
        raise invalid([detail(["query", name], f"must be a whole number from {low} to {high}")])
    return int(value)


def query_id(name: str) -> str | None:
    """An id given in the query (a page's `after`): printable ASCII of at most 64 characters, else 422 — a NUL in it
    made PostgreSQL's driver refuse the read (a 500 that fuzzing found)."""
    value = request.args.get(name)
    if value is not None and not may_be_id(value):
        raise invalid([detail(["query", name], "must be an id this API returned")])
    return value


#: What an id this API made may be: printable ASCII without spaces, at most 64 characters. Ids from a path or a
#: query are held to it before they reach the database, as PostgreSQL's driver refuses a NUL in a parameter (a 500).
_ID = re.compile(r"[!-~]{1,64}")


def may_be_id(value: str) -> bool:
    """Whether `value` could be an id this API made."""
    return _ID.fullmatch(value) is not None


class IdConverter(BaseConverter):
    """`<id:name>` in a route: a path segment that may be an id, so any other is the route's 404."""
    regex = r"[!-.0-~]{1,64}"  # _ID without "/"


def query_choice(name: str, choices: tuple[str, ...]) -> str | None:
    value = request.args.get(name)
    if value is not None and value not in choices:
        raise invalid([detail(["query", name], f"must be one of {', '.join(choices)}")])
    return value


def webhook_problems(url: str | None, allow_private: bool) -> list[dict[str, Any]]:
    """What is wrong with a webhook URL (the SSRF guard: `webhooks.check_target`; `allow_private`:
    `DISTILQ_WEBHOOK_ALLOW_PRIVATE`), naming the field `webhook`; a passing DNS failure is a 503, to be retried."""
    if url is None:
        return []
    try:
        check_target(url, allow_private)
    except UnsafeTarget as error:
        return [detail(["webhook"], str(error))]
    except LookupFailed as error:
        raise ApiError(503, "webhook_lookup_failed", f"webhook: {error}; retry shortly",
                       [detail(["webhook"], str(error))], headers={"Retry-After": "5"}) from None
    return []
