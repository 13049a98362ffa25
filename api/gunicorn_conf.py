"""gunicorn settings `distilq api` loads: a dead worker's metric files are merged no more."""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess


def child_exit(_server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)
