"""The API's access line (`api/access_log.py`) through gunicorn's own logger and config: the request's parts as the
record's fields, whatever shape gunicorn gives the status."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config

from api.access_log import AccessLogger


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged() -> Any:
    config = Config()
    config.set("accesslog", "-")
    logger = AccessLogger(config)
    records = Records()
    logger.access_log.addHandler(records)

    def access(status: Any, sent: int | None = 12) -> logging.LogRecord:
        environ = {"REQUEST_METHOD": "POST", "RAW_URI": "/v1/fill-mask?x=1", "REMOTE_ADDR": "10.0.0.7",
                   "HTTP_USER_AGENT": "curl/8", "HTTP_AUTHORIZATION": "Bearer dq_secret"}
        before = len(records.records)
        logger.access(SimpleNamespace(status=status, sent=sent, headers=[]), None, environ,
                      timedelta(milliseconds=12.345))
        [record] = records.records[before:]  # one line a request
        return record

    yield access
    logger.access_log.removeHandler(records)


@pytest.mark.parametrize(("status", "code"), [("202 ACCEPTED", 202), (404, 404), (None, None)])
def test_the_access_line_carries_the_request_s_parts(logged: Any, status: Any, code: int | None) -> None:
    record = logged(status)
    fields = {name: getattr(record, name) for name in
              ("method", "path", "status", "duration_ms", "bytes", "remote_addr", "user_agent")}
    assert fields == {"method": "POST", "path": "/v1/fill-mask?x=1", "status": code, "duration_ms": 12.3, "bytes": 12,
                      "remote_addr": "10.0.0.7", "user_agent": "curl/8"}
    assert record.getMessage() == f"POST /v1/fill-mask?x=1 {code} 12.3 ms"
    assert "dq_secret" not in record.getMessage() and "dq_secret" not in str(vars(record))
