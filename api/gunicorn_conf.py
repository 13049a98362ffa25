"""gunicorn settings `distilq api` loads (`--config python:api.gunicorn_conf`); also right for starting
`gunicorn api.wsgi:app` directly with this config."""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess

from core.settings import get_settings


def on_starting(server: Any) -> None:
    """Refuse, before any process forks, what the settings forbid for this many API processes."""
    get_settings().check_api_processes(server.cfg.workers)


def child_exit(_server: Any, worker: Any) -> None:
    """A dead worker's metric files are merged no more."""
    multiprocess.mark_process_dead(worker.pid)
