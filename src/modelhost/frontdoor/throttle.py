"""Token buckets for the gateway's rate limits: ``rate`` tokens a second, up to ``burst`` saved up.

One bucket per (route, API key) or per route, and one per API key with a limit of its own; a
request takes a token from each bucket that applies or is refused with the time until the next one
(the 429's ``Retry-After``). A refused request takes nothing, from any bucket: a key's token is not
spent on a call its route then throttles. Buckets are refilled lazily when asked, so an idle route
costs nothing; buckets untouched for a while are dropped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Demand:
    """A token wanted from bucket ``bucket``, which holds up to ``burst`` and refills ``rate`` a second."""

    bucket: Hashable
    rate: float
    burst: int


@dataclass(frozen=True)
class Refusal:
    """The demand that could not be met, and the seconds until it could."""

    demand: Demand
    wait_s: float


@dataclass
class _Bucket:
    tokens: float
    updated: float


class Buckets:
    def __init__(self, clock: Callable[[], float] = time.monotonic, idle_s: float = 600.0) -> None:
        self._clock = clock
        self._buckets: dict[Hashable, _Bucket] = {}
        self._idle_s = idle_s
        self._swept = clock()

    def take(self, key: Hashable, rate: float, burst: int) -> float:
        """0.0 when a token was taken; else the seconds until one will be there."""
        refused = self.take_all([Demand(key, rate, burst)])
        return 0.0 if refused is None else refused.wait_s

    def take_all(self, demands: Sequence[Demand]) -> Refusal | None:
        """A token from every bucket of ``demands``, or (the first that has none refusing) from none."""
        now = self._clock()
        buckets = [self._refilled(demand, now) for demand in demands]
        if now - self._swept > self._idle_s:
            self._sweep(now)
        for demand, bucket in zip(demands, buckets, strict=True):
            if bucket.tokens < 1.0:
                return Refusal(demand, (1.0 - bucket.tokens) / demand.rate)
        for bucket in buckets:
            bucket.tokens -= 1.0
        return None

    def _refilled(self, demand: Demand, now: float) -> _Bucket:
        bucket = self._buckets.get(demand.bucket)
        if bucket is None:
            bucket = self._buckets[demand.bucket] = _Bucket(float(demand.burst), now)
        else:
            bucket.tokens = min(float(demand.burst), bucket.tokens + (now - bucket.updated) * demand.rate)
            bucket.updated = now
        return bucket

    def _sweep(self, now: float) -> None:
        self._swept = now
        stale = [key for key, bucket in self._buckets.items() if now - bucket.updated > self._idle_s]
        for key in stale:
            del self._buckets[key]


MAX_RETRY_AFTER_S = 86400  # a day: beyond it a client is told no more (routes' rates stop well short of it)


def retry_after(seconds: float) -> int:
    """Whole seconds for the Retry-After header, 1 to MAX_RETRY_AFTER_S, whatever ``seconds`` is (inf, NaN).

    Called while a 429 is being made: raising here would drop the connection, not refuse the call.
    """
    if not math.isfinite(seconds) or seconds >= MAX_RETRY_AFTER_S:
        return 1 if math.isnan(seconds) or seconds < 0 else MAX_RETRY_AFTER_S
    return max(1, math.ceil(seconds))
