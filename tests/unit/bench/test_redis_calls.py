"""`python -m bench.redis_calls`: a held request's Redis calls made with each reply parser, and each one's CPU a
request reported; the calls leave what the API's would (the rate limit's count, the wake-up flag as it was)."""

from __future__ import annotations

import re
import sys

import pytest
import redis

from bench import redis_calls
from core import wakeups
from distilq.stack import EmbeddedRedis


def test_the_redis_bench_runs_each_parser_and_reports_each(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str],
                                                           redis_server: EmbeddedRedis) -> None:
    url = redis_server.url.replace("/0", "/14")
    client = redis.Redis.from_url(url)
    client.flushdb()
    monkeypatch.setattr(sys, "argv", ["redis_calls", "--url", url, "--rounds", "2", "--requests", "5"])
    redis_calls.main()  # raises unless every request was allowed and found the wake-up pending
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["python", "hiredis"]
    for line in lines:
        assert re.search(r"least / median of 2 rounds of 5: \d+ / \d+$", line), line
    assert client.get(wakeups.flag_name("fill-mask")) is None  # the bench's flag is gone
    assert client.keys("LIMITS:LIMITER/distilq/*")  # the rate limit was counted in Redis
