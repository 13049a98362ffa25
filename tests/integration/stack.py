"""Real distilq processes for the integration suites: each part is started with the `distilq` command, logs
to a file, and is driven over HTTP, Redis and SQL like in production."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis
import requests
from sqlalchemy.orm import Session, sessionmaker

from distilq.keys import create_key
from models.db import make_engine, make_session_factory, transaction

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout_s: float = 60, what: str = "condition") -> T:
    """Polls `check` until it returns something truthy, up to a deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (requests.RequestException, redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    def __init__(self, root: Path, database_url: str, redis_url: str, models: dict[str, Path],
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "DISTILQ_HOME": str(root / "home"),
            "DISTILQ_DATABASE_URL": database_url,
            "DISTILQ_REDIS_URL": redis_url,
            "DISTILQ_FILL_MASK_MODEL": str(models["fill-mask"]),
            "DISTILQ_QA_MODEL": str(models["question-answering"]),
            "DISTILQ_MAX_BATCH_WAIT_MS": "20",
            "HF_HUB_OFFLINE": "1",
            **(env or {}),
        }
        self.database_url = database_url
        self.redis_url = redis_url
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sessions: sessionmaker[Session] = make_session_factory(make_engine(database_url))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "distilq.cli", *args], env=self.env, check=True,
                              capture_output=True, text=True, timeout=120)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 (kept open for the child's life)
        process = subprocess.Popen([sys.executable, "-m", "distilq.cli", *args], env={**self.env, **(env or {})},
                                   stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def start_api(self) -> None:
        self.start("api", "api", "--port", str(self.port))
        wait_for(lambda: requests.get(f"{self.url}/healthz", timeout=2).ok, 60, "the API")

    def start_worker(self, name: str = "worker", *args: str, env: dict[str, str] | None = None) -> None:
        """An inference worker, ready once its models are loaded; metrics off unless a port is given."""
        if "--metrics-port" not in args:
            args = (*args, "--metrics-port", "0")
        self.start(name, "worker", *args, env=env)
        wait_for(lambda: "worker ready" in self.log(name), 120, f"{name} to load its models")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
        return process.wait(timeout_s)

    def stop_all(self) -> None:
        for name in list(self.processes):
            try:
                self.stop(name, timeout_s=30)
            except subprocess.TimeoutExpired:
                self.stop(name, signal.SIGKILL)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

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
