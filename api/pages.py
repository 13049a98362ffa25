"""A page of a key's files, batches or evaluations, in the OpenAI list shape: `limit` (1–100, default 20) of them,
newest first, after the one `after` names; `has_more` and `last_id` lead to the next page (the official SDK's
iterators follow them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, jsonify

from api.validation import query_id, query_int

Item = TypeVar("Item")


def page(read: Callable[[int, str | None], list[Item]], public: Callable[[Item], dict[str, Any]]) -> Response:
    """The page `read(limit + 1, after)` begins (one more than is shown, to tell whether there are more)."""
    limit = query_int("limit", 20, 1, 100)
    found = read(limit + 1, query_id("after"))
    data = [public(item) for item in found[:limit]]
    return jsonify({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None, "has_more": len(found) > limit})
