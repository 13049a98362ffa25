"""Log lines: JSON by default (`DISTILQ_LOG_FORMAT=text` for a terminal). Extras such as job_id, batch_id and
durations become fields. Inputs and keys are never logged at INFO."""

from __future__ import annotations

import logging
import os


def configure_logging() -> None:
    handler = logging.StreamHandler()
    if os.environ.get("DISTILQ_LOG_FORMAT", "json") == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
