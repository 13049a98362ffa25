"""The one error shape, `{"error": {"code", "message", "details": [{"loc", "msg"}]}}`, for every 4xx and 5xx."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

Loc = list[str | int]


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Sequence[dict[str, Any]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)
        self.headers = headers or {}


def detail(loc: Loc, msg: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg}


def invalid(details: Sequence[dict[str, Any]], message: str | None = None) -> ApiError:
    first = details[0]
    where = ".".join(str(part) for part in first["loc"])
    return ApiError(422, "invalid_request", message or f"{where}: {first['msg']}", details)


def from_validation_error(error: ValidationError, prefix: Loc) -> ApiError:
    details = []
    for item in error.errors(include_url=False):
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown field"
        elif item["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        details.append(detail([*prefix, *item["loc"]], msg))
    return invalid(details)


def error_response(error: ApiError) -> Response:
    response = jsonify({"error": {"code": error.code, "message": error.message, "details": error.details}})
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


#: The `code` of an HTTP error the app or gunicorn raises itself.
HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 414: "uri_too_long", 415: "unsupported_media_type",
    417: "expectation_failed", 429: "rate_limited", 431: "request_header_fields_too_large",
    500: "internal_error", 501: "not_implemented",
}
#: A body over the limit is read and dropped up to this many bytes before the 413 goes out: a client still sending
#: then reads the answer instead of a reset connection. Beyond it, the connection is closed unread.
DRAIN_MAX_BYTES = 16_000_000


def error_body(status: int, message: str) -> bytes:
    """The error shape for an HTTP error answered outside Flask (gunicorn's own), as ASCII JSON."""
    error = {"code": HTTP_CODES.get(status, "http_error"), "message": message, "details": []}
    return json.dumps({"error": error}).encode("ascii")


def drain_body() -> None:
    """Reads and drops what is left of the request body, up to DRAIN_MAX_BYTES (see there)."""
    stream = request.environ.get("wsgi.input")
    left = DRAIN_MAX_BYTES
    while stream is not None and left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            return
        left -= len(chunk)


def _database_unavailable() -> Response:
    return error_response(ApiError(503, "database_unavailable", "the database is unreachable or has no connection "
                                   "to spare; retry later", headers={"Retry-After": "5"}))


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = HTTP_CODES.get(status, "http_error")
        message = error.description or error.name
        if status == 413:
            message = f"request body larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
            drain_body()
        response = error_response(ApiError(status, code, message))
        if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(DBAPIError)
    def _database_error(error: DBAPIError) -> Response:
        # Connection-level failures mean the database is down, unreachable or out of connections (PostgreSQL's
        # max_connections, which the API processes' pools must fit: README): the client may retry. The driver's
        # first line says which, for the operator (psycopg gives no SQLSTATE for a refused connection).
        said = str(error.orig).strip()
        log.warning("database error: %s: %s", error.__class__.__name__, said.splitlines()[0] if said else "")
        if error.connection_invalidated or error.__class__.__name__ == "OperationalError":
            return _database_unavailable()
        log.exception("database error")
        return error_response(ApiError(500, "internal_error", "internal error"))

    @app.errorhandler(PoolTimeout)
    def _no_pooled_connection(error: PoolTimeout) -> Response:
        # Every connection of the process's pool busy for `pool_timeout`: a process on gevent serves up to 1,000
        # requests over its 20 connections (models/db.py), so a burst can queue past it.
        log.warning("database error: %s", error)
        return _database_unavailable()

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(ApiError(500, "internal_error", "internal error"))
