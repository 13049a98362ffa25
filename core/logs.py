"""Log lines: JSON by default (`DISTILQ_LOG_FORMAT=text` for a terminal), from every logger of every process —
gunicorn's own included (its `logconfig_dict` is `logging_config()`). Extras such as job_id, batch_id and
durations become fields. Inputs and keys are never logged at INFO."""

from __future__ import annotations

import logging.config
import logging.handlers
import os
import queue
import sys
import threading
from typing import Any

#: Fields of every JSON line, renamed from the standard record attributes.
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}


def logging_config(background: bool = False) -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary: the root logger and gunicorn's error and access loggers write to
    stderr, JSON lines unless DISTILQ_LOG_FORMAT is `text`; with `background`, from a thread of their own
    (`BackgroundStreamHandler`: an API process's request threads)."""
    if os.environ.get("DISTILQ_LOG_FORMAT", "json") == "text":
        formatter: dict[str, Any] = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    else:
        # python-json-logger's orjson formatter: a line in ~60 % of its json one's time (the API writes one a
        # request, the worker one a job).
        formatter = {"()": "pythonjsonlogger.orjson.OrjsonFormatter", "fmt": JSON_FIELDS, "rename_fields": RENAMED}
    handler = ({"()": BackgroundStreamHandler, "formatter": "distilq"} if background else
               {"class": "logging.StreamHandler", "formatter": "distilq", "stream": "ext://sys.stderr"})
    gunicorn = {"level": "INFO", "handlers": ["distilq"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"distilq": formatter},
        "handlers": {"distilq": handler},
        "root": {"level": "INFO", "handlers": ["distilq"]},
        "loggers": {"gunicorn.error": gunicorn, "gunicorn.access": gunicorn},
    }


def configure_logging(background: bool = False) -> None:
    logging.config.dictConfig(logging_config(background))


class BackgroundStreamHandler(logging.handlers.QueueHandler):
    """Writes each record to stderr from one thread of its own: a logging thread hands the record over and goes on.

    An API process's dozens of request threads each writing their access line through one StreamHandler queued for
    its lock and for the interpreter's at every line: 0.21 CPU-ms a request under load (a `/healthz` took 0.47 ms
    without the line, 0.68 with it; the line alone, in one thread, 18 µs). The records go through an in-process
    queue, whole (formatted where they are written, their fields and exceptions as a StreamHandler's), to a
    `QueueListener` thread started at the first record in each process (gunicorn forks its workers from a
    configured master, and threads do not survive a fork); `close` — at exit, `logging.shutdown` — writes what is
    left first. What a process killed outright had not yet written is lost, a few milliseconds of lines at most."""

    def __init__(self) -> None:
        super().__init__(queue.SimpleQueue())
        self.target = logging.StreamHandler(sys.stderr)
        self._listener: logging.handlers.QueueListener | None = None
        self._pid: int | None = None
        self._starting = threading.Lock()

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self.target.setFormatter(fmt)  # the writer formats: dictConfig's formatter is its

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # the queue is in-process: the record itself crosses, formatted once, by the writer

    def emit(self, record: logging.LogRecord) -> None:
        if self._pid != os.getpid():
            self._start()
        super().emit(record)

    def _start(self) -> None:
        with self._starting:
            if self._pid == os.getpid():
                return
            # A forked child's queue may hold its parent's records, which the parent writes: a queue of its own.
            self.queue = queue.SimpleQueue()
            self._listener = logging.handlers.QueueListener(self.queue, self.target)
            self._listener.start()
            self._pid = os.getpid()

    def close(self) -> None:
        with self._starting:
            if self._listener is not None and self._pid == os.getpid():
                self._listener.stop()  # writes every record queued before it
            self._listener, self._pid = None, None
        self.target.close()
        super().close()
