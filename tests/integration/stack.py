"""The stack the process-level suites drive: `distilq.stack.LocalStack` (the launcher `distilq up` and the
benchmark use) with what a test needs besides — a key, an HTTP client, a database session, waiting on a job.
Each part logs to a file of its own, read by the tests that assert on logs."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests
from sqlalchemy.orm import Session, sessionmaker

from distilq.stack import LocalStack, free_port, wait_until
from models.db import make_engine, make_session_factory, transaction
from store.keys import create_key

T = TypeVar("T")

__all__ = ["Stack", "free_port", "processes_with", "wait_for"]


def wait_for(check: Callable[[], T | None], timeout_s: float = 60, what: str = "condition") -> T:
    """Polls `check` until it returns something truthy; fails the test at the deadline."""
    try:
        return wait_until(check, timeout_s, what)
    except TimeoutError as error:
        raise AssertionError(str(error)) from None


def processes_with(marker: str, argument: str | None = None) -> list[int]:
    """Pids whose environment holds `marker` (everything `distilq up` starts carries its DISTILQ_HOME), and whose
    command line holds `argument` when given."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if argument is not None and argument.encode() not in (entry / "cmdline").read_bytes().split(b"\0"):
                continue
        except OSError:
            continue
        pids.append(int(entry.name))
    return pids


class Stack(LocalStack):
    def __init__(self, root: Path, database_url: str, redis_url: str, models: dict[str, Path],
                 env: dict[str, str] | None = None) -> None:
        (root / "home").mkdir(exist_ok=True)
        super().__init__(root / "home", {
            "DISTILQ_DATABASE_URL": database_url,
            "DISTILQ_REDIS_URL": redis_url,
            "DISTILQ_FILL_MASK_MODEL": str(models["fill-mask"]),
            "DISTILQ_QA_MODEL": str(models["question-answering"]),
            "DISTILQ_MAX_BATCH_WAIT_MS": "20",
            "HF_HUB_OFFLINE": "1",
            **(env or {}),
        }, log_dir=root)
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sessions: sessionmaker[Session] = make_session_factory(make_engine(database_url))

    def start_api(self, host: str = "127.0.0.1", port: int | None = None, *args: str) -> str:
        return super().start_api(host, port or self.port, *args)

    def start_worker(self, name: str = "worker", *args: str, env: dict[str, str] | None = None) -> None:
        """An inference worker, ready once its models are loaded; metrics off unless a port is given."""
        if "--metrics-port" not in args:
            args = (*args, "--metrics-port", "0")
        self.start(name, "worker", *args, env=env)
        wait_for(lambda: "worker ready" in self.log(name), 120, f"{name} to load its models")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        return super().stop(name, sig, timeout_s)

    def new_key(self, name: str = "test") -> str:
        with transaction(self.sessions) as session:
            return create_key(session, name)

    def client(self, key: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        return session

    def wait_job(self, http: requests.Session, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            job = http.get(f"{self.url}/v1/jobs/{job_id}", timeout=5).json()
            return job if job["status"] in ("succeeded", "failed", "canceled") else None

        return wait_for(finished, timeout_s, f"job {job_id} to finish")
