"""Per-API-key rate limits: a token bucket per key, in this process.

Each server process keeps its own buckets, so with N processes behind a balancer a key gets
up to N times the rate; the limit is there to stop one runaway client from starving the
others, not to meter usage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    def __init__(self, rate_per_second: float, burst: int, clock=time.monotonic):
        self.rate = rate_per_second
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key_id: str) -> float:
        """0 when the request may go ahead, else the seconds to wait before the next one."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(float(self.burst), now)
        # max(0, ...): a clock that steps back (an injected one; time.monotonic never does) neither
        # drains the bucket nor blocks it until it catches up: the bucket goes on from the new time
        bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate
