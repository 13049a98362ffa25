"""gunicorn settings `distilq api` loads (`--config python:api.gunicorn_conf`); also right for starting
`gunicorn api.wsgi:app` directly with this config: JSON log lines, the contract's error shape for the errors
gunicorn answers itself (414, 431, malformed requests), the access line as fields (`api/access_log.py`), and the
production checks before any process forks."""

from __future__ import annotations

import socket
from typing import Any

from gunicorn import util
from prometheus_client import multiprocess

from api.access_log import AccessLogger
from api.errors import error_body
from core.heap import freeze_heap
from core.logs import logging_config
from core.settings import get_settings

# Lines written from a thread of their own spare request threads queueing on the handler's lock; greenlets do not
# contend for it, and a thread started before gevent's worker patches the standard library (gunicorn logs in the
# child before it patches) ends in a KeyError there: on gevent each line is written where it is logged.
logconfig_dict = logging_config(background=get_settings().resolved_api_server == "threads")
logger_class = AccessLogger


def _write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error`, answering in the API's error shape rather than an HTML page."""
    body = error_body(status_int, mesg or reason)
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin1") + body)


# gunicorn's workers call `util.write_error` for requests they refuse before the app sees them; this config module
# is loaded in the master before any worker forks.
util.write_error = _write_json_error


def on_starting(server: Any) -> None:
    """Refuse, before any process forks, what the settings forbid for this many API processes."""
    get_settings().check_api_processes(server.cfg.workers)


def post_worker_init(worker: Any) -> None:
    """Each API process starts its check processes (`api/check_pool.py`) as it starts, in the background, rather
    than at its first batch's check; then its heap is frozen (`core.heap`)."""
    worker.wsgi.extensions["distilq"].check_pool.start()
    freeze_heap()


def child_exit(_server: Any, worker: Any) -> None:
    """A dead worker's metric files are merged no more."""
    multiprocess.mark_process_dead(worker.pid)
