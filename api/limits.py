"""Per-key request rate limit (`DISTILQ_RATE_LIMIT`, Flask-Limiter's notation), counted in Redis with the
`limits` library that Flask-Limiter is built on, so that every API process shares one count."""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from api.errors import ApiError

log = logging.getLogger(__name__)


class KeyRateLimiter:
    def __init__(self, redis_url: str, limit: str) -> None:
        self.items: list[RateLimitItem] = parse_many(limit)
        self.strategy = MovingWindowRateLimiter(storage_from_string(redis_url, socket_timeout=2))

    def check(self, key_id: str) -> None:
        """Counts one request of this key; 429 with Retry-After when a limit is exceeded. Fails open when Redis
        is unreachable: the limit protects capacity, and /readyz already reports Redis down."""
        for item in self.items:
            try:
                allowed = self.strategy.hit(item, "distilq", key_id)
                if allowed:
                    continue
                reset = self.strategy.get_window_stats(item, "distilq", key_id).reset_time
            except Exception as error:
                log.warning("rate limit not checked: %s", error.__class__.__name__)
                return
            retry_after = max(1, math.ceil(reset - time.time()))
            raise ApiError(429, "rate_limited", f"more than {item} for this API key; retry in {retry_after} s",
                           headers={"Retry-After": str(retry_after)})
