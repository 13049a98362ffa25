"""Log lines: JSON by default (`DISTILQ_LOG_FORMAT=text` for a terminal), from every logger of every process —
gunicorn's own included (its `logconfig_dict` is `logging_config()`). Extras such as job_id, batch_id and
durations become fields. Inputs and keys are never logged at INFO."""

from __future__ import annotations

import logging.config
import os
from typing import Any

#: Fields of every JSON line, renamed from the standard record attributes.
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}


def logging_config() -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary: the root logger and gunicorn's error and access loggers write to
    stderr, JSON lines unless DISTILQ_LOG_FORMAT is `text`."""
    if os.environ.get("DISTILQ_LOG_FORMAT", "json") == "text":
        formatter: dict[str, Any] = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    else:
        # python-json-logger's orjson formatter: a line in ~60 % of its json one's time (the API writes one a
        # request, the worker one a job).
        formatter = {"()": "pythonjsonlogger.orjson.OrjsonFormatter", "fmt": JSON_FIELDS, "rename_fields": RENAMED}
    handler = {"class": "logging.StreamHandler", "formatter": "distilq", "stream": "ext://sys.stderr"}
    gunicorn = {"level": "INFO", "handlers": ["distilq"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"distilq": formatter},
        "handlers": {"distilq": handler},
        "root": {"level": "INFO", "handlers": ["distilq"]},
        "loggers": {"gunicorn.error": gunicorn, "gunicorn.access": gunicorn},
    }


def configure_logging() -> None:
    logging.config.dictConfig(logging_config())
