"""Workers announce themselves in Redis once their models are loaded and warmed: a key per worker that expires
unless refreshed, so a dead worker disappears on its own. `distilq up` waits for one before printing its URL."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "distilq:worker:"
#: A worker's key lives this long without a refresh, in seconds.
PRESENCE_TTL_S = 30
REFRESH_S = 10


def worker_key(name: str) -> str:
    return KEY_PREFIX + name


def announce(client: redis.Redis, tasks: list[str], stop: threading.Event) -> threading.Thread:
    """Writes this worker's key now and keeps it fresh until `stop` is set; returns the refreshing thread."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    payload = json.dumps({"tasks": tasks, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})

    def refresh() -> None:
        while True:
            try:
                client.set(worker_key(name), payload, ex=PRESENCE_TTL_S)
            except redis.RedisError as error:
                log.warning("could not refresh worker presence: %s", error)
            if stop.wait(REFRESH_S):
                break
        try:
            client.delete(worker_key(name))
        except redis.RedisError:
            pass

    client.set(worker_key(name), payload, ex=PRESENCE_TTL_S)
    thread = threading.Thread(target=refresh, name="worker-presence", daemon=True)
    thread.start()
    return thread


def ready_workers(client: redis.Redis) -> list[dict[str, object]]:
    workers = []
    for key in client.scan_iter(match=KEY_PREFIX + "*", count=100):
        raw = client.get(key)
        if raw:
            workers.append(json.loads(raw))
    return workers
