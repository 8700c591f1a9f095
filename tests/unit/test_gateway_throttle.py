"""The gateway's token buckets on a hand-driven clock: refills, Retry-After, and all-or-nothing takes."""

from __future__ import annotations

import pytest

from modelhost.frontdoor.throttle import Buckets, Demand, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_serves_its_burst_then_says_when_the_next_token_comes() -> None:
    clock = Clock()
    buckets = Buckets(clock)
    assert [buckets.take("route", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("route", 2.0, 3) == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("route", 2.0, 3) == 0.0
    clock.now += 100.0  # refills to the burst, no further
    assert [buckets.take("route", 2.0, 3) for _ in range(4)][-1] > 0.0


def test_a_refused_demand_takes_from_no_bucket() -> None:
    clock = Clock()
    buckets = Buckets(clock)
    key, route = Demand("key", 0.01, 5), Demand("route", 0.01, 1)
    assert buckets.take_all([key, route]) is None
    refused = buckets.take_all([key, route])
    assert refused is not None
    assert refused.demand == route
    assert refused.wait_s == pytest.approx(100.0)
    # the key's bucket still holds the four tokens the refused calls did not spend
    assert [buckets.take_all([key]) for _ in range(4)] == [None] * 4
    assert buckets.take_all([key]) is not None


def test_the_first_empty_bucket_is_the_one_named() -> None:
    buckets = Buckets(Clock())
    key, route = Demand("key", 1.0, 1), Demand("route", 1.0, 1)
    assert buckets.take_all([key, route]) is None
    refused = buckets.take_all([key, route])
    assert refused is not None
    assert refused.demand == key


def test_idle_buckets_are_dropped_and_come_back_full() -> None:
    clock = Clock()
    buckets = Buckets(clock, idle_s=10.0)
    assert buckets.take("a", 0.001, 1) == 0.0
    assert buckets.take("a", 0.001, 1) > 0.0
    clock.now += 11.0
    assert buckets.take("b", 1.0, 1) == 0.0  # the sweep runs on a take
    assert buckets.take("a", 0.001, 1) == 0.0


@pytest.mark.parametrize(("seconds", "header"), [(0.01, 1), (1.0, 1), (1.2, 2), (59.5, 60)])
def test_retry_after_is_whole_seconds_and_at_least_one(seconds: float, header: int) -> None:
    assert retry_after(seconds) == header


@pytest.mark.parametrize(
    ("seconds", "header"),
    [
        (86399.5, 86400),
        (86401.0, 86400),
        (1e300, 86400),
        (float("inf"), 86400),
        (float("nan"), 1),
        (-5.0, 1),
        (float("-inf"), 1),
    ],
)
def test_retry_after_is_capped_at_a_day_and_never_raises(seconds: float, header: int) -> None:
    assert retry_after(seconds) == header
