"""The stack the process-level suites drive: `distilq.stack.LocalStack` (the launcher `distilq up` and the
benchmark use) with what a test needs besides — a key, an HTTP client, a database session, waiting on a job.
Each part logs to a file of its own, read by the tests that assert on logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis
import requests
from sqlalchemy.orm import Session, sessionmaker

from core.queue import read_announcements
from distilq.stack import API_PORT_TRIES, LocalStack, free_port, wait_until
from models.db import make_engine, make_session_factory, transaction
from store.keys import create_key

T = TypeVar("T")

__all__ = ["Stack", "Up", "announcement_of", "distilq_up", "free_port", "processes_with", "wait_for"]


def wait_for(check: Callable[[], T | None], timeout_s: float = 60, what: str = "condition") -> T:
    """Polls `check` until it returns something truthy; fails the test at the deadline."""
    try:
        return wait_until(check, timeout_s, what)
    except TimeoutError as error:
        raise AssertionError(str(error)) from None


def announcement_of(observer: redis.client.PubSub, job_ids: set[str], within_s: float = 1.0) -> dict[str, Any] | None:
    """The next message `observer` hears that announces one of `job_ids`, or None when none comes within
    `within_s` (however many others do: the caller's `wait_for` deadline holds). Other messages are passed over:
    Redis's pub/sub ignores the database number, so an observer of a server that other stacks use (another
    pytest-xdist process's, on the machine's Redis) hears their announcements too."""
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        message = observer.get_message(timeout=left)
        if message is None:
            return None
        if message["type"] in ("message", "pmessage") and {
                job_id for job_id, _ in read_announcements(message["data"])} & job_ids:
            return message
    return None


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


@dataclass
class Up:
    """A running `distilq up`, as a user starts it: its own home, the tiny models, a free port."""

    process: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    home: Path
    output: Path

    @property
    def marker(self) -> str:
        """In the environment of every process it started."""
        return f"DISTILQ_HOME={self.home}"

    def new_key(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "distilq.cli", "keys", "create", "--name", "me"], env=self.env,
                              capture_output=True, text=True, check=True)

    def stop(self) -> None:
        """SIGTERM; asserts that it exits 0 and leaves no process behind."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(90) == 0
        wait_for(lambda: not processes_with(self.marker), 30, "every child of distilq up to exit")


@contextmanager
def distilq_up(tmp_path: Path, models: dict[str, Path]) -> Iterator[Up]:
    """`distilq up` in `tmp_path`, once it has printed its URL; killed on the way out if still running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILQ_")}
    env.update(DISTILQ_HOME=str(tmp_path / "home"), DISTILQ_FILL_MASK_MODEL=str(models["fill-mask"]),
               DISTILQ_QA_MODEL=str(models["question-answering"]), HF_HUB_OFFLINE="1")
    port = free_port()
    output = tmp_path / "up.log"
    with open(output, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "distilq.cli", "up", "--port", str(port)], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    up = Up(process, f"http://127.0.0.1:{port}", env, tmp_path / "home", output)
    try:
        wait_for(lambda: f"distilq is up on {up.url}" in output.read_text(), 120, "distilq up to print its URL")
        yield up
    finally:
        if process.poll() is None:
            process.kill()


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
        self.sessions: sessionmaker[Session] = make_session_factory(make_engine(database_url))

    @property
    def url(self) -> str:
        """The API's, once started (`start_api`; a restart keeps it)."""
        assert self.api_port is not None, "the stack's API was never started"
        return f"http://127.0.0.1:{self.api_port}"

    def start_worker(self, name: str = "worker", *args: str, env: dict[str, str] | None = None) -> None:
        """An inference worker, ready once its models are loaded; metrics off unless a port is given."""
        if "--metrics-port" not in args:
            args = (*args, "--metrics-port", "0")
        self.start(name, "worker", *args, env=env)
        wait_for(lambda: "worker ready" in self.log(name), 120, f"{name} to load its models")

    def start_worker_serving_metrics(self, name: str = "worker", *args: str) -> int:
        """An inference worker serving its metrics on a port drawn for it, which it returns. A port drawn free may be
        taken by another process (another test's) before the worker binds it, once its models are loaded: the worker
        then runs without metrics and says so, and is stopped and started again on another port (as the API's port
        is drawn again, `distilq.stack.API_PORT_TRIES`)."""
        for attempt in range(API_PORT_TRIES):
            port, named = free_port(), name if attempt == 0 else f"{name}-{attempt}"
            self.start_worker(named, *args, "--metrics-port", str(port))
            if f"metrics port {port} unavailable" not in self.log(named):
                return port
            self.stop(named)
        raise RuntimeError(f"{name} found its metrics port taken {API_PORT_TRIES} times")

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

    def wait_batch(self, http: requests.Session, batch_id: str, timeout_s: float = 180) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            batch = http.get(f"{self.url}/v1/batches/{batch_id}", timeout=5).json()
            return batch if batch["status"] in ("completed", "failed", "cancelled") else None

        return wait_for(ended, timeout_s, f"batch {batch_id} to end")
