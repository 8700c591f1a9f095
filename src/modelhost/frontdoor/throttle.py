"""Token buckets for the gateway's rate limits: ``rate`` tokens a second, up to ``burst`` saved up.

One bucket per (route, API key) or per route; a request takes a token or is refused with the time
until the next one (the 429's ``Retry-After``). Buckets are refilled lazily when asked, so an
idle route costs nothing; buckets untouched for a while are dropped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class Buckets:
    def __init__(self, clock: Callable[[], float] = time.monotonic, idle_s: float = 600.0) -> None:
        self._clock = clock
        self._buckets: dict[object, _Bucket] = {}
        self._idle_s = idle_s
        self._swept = clock()

    def take(self, key: object, rate: float, burst: int) -> float:
        """0.0 when a token was taken; else the seconds until one will be there."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(burst), now)
        else:
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if now - self._swept > self._idle_s:
            self._sweep(now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def _sweep(self, now: float) -> None:
        self._swept = now
        stale = [key for key, bucket in self._buckets.items() if now - bucket.updated > self._idle_s]
        for key in stale:
            del self._buckets[key]


def retry_after(seconds: float) -> int:
    """Whole seconds for the Retry-After header, at least 1."""
    return max(1, math.ceil(seconds))
