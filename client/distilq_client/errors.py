"""The one exception the client raises: what the API answered (or that it could not be reached)."""

from __future__ import annotations

from typing import Any


class DistilqError(Exception):
    """An error answer of the API — `status` (0: unreachable), `code` (its error code, e.g. `invalid_request`),
    `message`, and `details` (`[{"loc": [...], "msg": ...}]`, naming the field and the input's index)."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details or []
