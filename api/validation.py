"""Turns a request body into a validated schema, or a 400/422 naming the field and the input's index."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from api.errors import ApiError, Loc, detail, from_validation_error, invalid

#: Deeper JSON than this is refused: no body of the contract nests beyond a few levels.
MAX_JSON_DEPTH = 32

Body = TypeVar("Body", bound=BaseModel)


def read_json_object() -> dict[str, Any]:
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH this raises 413 before reading it all
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise invalid([detail([], "the body must be a JSON object")])
    problems = _unstorable(data)
    if problems:
        raise invalid(problems)
    return data


def _unstorable(data: Any) -> list[dict[str, Any]]:
    """Depth beyond MAX_JSON_DEPTH, and NUL characters (PostgreSQL text and JSONB cannot hold them)."""
    problems: list[dict[str, Any]] = []
    stack: list[tuple[Any, Loc]] = [(data, [])]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_JSON_DEPTH:
            return [detail(loc[:MAX_JSON_DEPTH], f"nests deeper than {MAX_JSON_DEPTH} levels")]
        if isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    problems.append(detail(loc, "a key contains a NUL character"))
                stack.append((item, [*loc, key]))
        elif isinstance(value, list):
            stack.extend((item, [*loc, i]) for i, item in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            problems.append(detail(loc, "contains a NUL character"))
    return sorted(problems, key=lambda p: [str(part) for part in p["loc"]])


def parse(schema: type[Body], data: dict[str, Any]) -> Body:
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise from_validation_error(error, []) from None
