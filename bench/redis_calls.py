"""A held request's Redis calls from the API, made with each of redis-py's reply parsers — its own Python one and
hiredis's C one — alternating in one process, so that the machine's phases fall on both alike: the rate limit
(`api.limits`, one Lua call) and the wake-up's SET NX (`core.wakeups`, its flag already set, as under load); its wait
slot is counted in the API process (`api.waiting`), at no call. CPU µs a request, least and median of the rounds.

    python -m bench.redis_calls [--url redis://127.0.0.1:6379/15] [--rounds 16] [--requests 300]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

import redis
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis._parsers import _HiredisParser, _RESP2Parser

from api.limits import KeyRateLimiter
from core import wakeups
from core.queue import make_celery

PARSERS: dict[str, Any] = {"python": _RESP2Parser, "hiredis": _HiredisParser}
#: A limit no bench reaches: every call is counted and allowed.
LIMIT = "100000000/minute"
TASK = "fill-mask"


class _Calls:
    """The API's Redis calls for one held request, on clients whose connections use one parser."""

    def __init__(self, url: str, parser: Any) -> None:
        client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(url, parser_class=parser))
        self.limiter = KeyRateLimiter(url, LIMIT)
        # The limiter's own client, with this parser (`KeyRateLimiter` builds its storage from the URL alone).
        self.limiter.strategy = MovingWindowRateLimiter(storage_from_string(url, parser_class=parser))
        self.client = client
        self.celery = make_celery(url)

    def request(self, key_id: str) -> None:
        self.limiter.check(key_id)
        # The flag is set: only the SET NX runs (no message is published), as while a wake-up is pending.
        assert not wakeups.request(self.celery, self.client, TASK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--requests", type=int, default=300, help="requests a round")
    args = parser.parse_args()
    key_id = f"bench-{uuid.uuid4()}"
    sides = {name: _Calls(args.url, parser_class) for name, parser_class in PARSERS.items()}
    flag = wakeups.flag_name(TASK)
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    try:
        redis.Redis.from_url(args.url).set(flag, 1)
        for _ in range(args.rounds):
            for name, calls in sides.items():
                calls.request(key_id)  # its connections made before the clock starts
                started = time.process_time()
                for _ in range(args.requests):
                    calls.request(key_id)
                seconds[name].append((time.process_time() - started) / args.requests)
    finally:
        redis.Redis.from_url(args.url).delete(flag)
    for name, values in seconds.items():
        print(f"{name}: CPU µs a request's Redis calls, least / median of {args.rounds} rounds of {args.requests}: "
              f"{min(values) * 1e6:.0f} / {statistics.median(values) * 1e6:.0f}")


if __name__ == "__main__":
    main()
