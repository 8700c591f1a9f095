"""What a route may be made of: bounded rate limits (pure checks, no platform)."""

from __future__ import annotations

import pytest

from modelhost.control.gateway_resources import MAX_BURST, RateLimit
from modelhost.errors import ValidationFailed


@pytest.mark.parametrize(
    ("text", "per_second", "burst"),
    [
        ("50/s", 50.0, 50),
        ("600/m", 10.0, 10),
        ("2.5", 2.5, 2),
        (" 1/MIN ", 1 / 60, 1),
        ("0.06/m", 0.001, 1),
        ("1000000/s", 1e6, 1_000_000),
        ("0.001/s", 0.001, 1),
    ],
)
def test_rates_in_ascii_digits_within_bounds_are_taken(text: str, per_second: float, burst: int) -> None:
    limit = RateLimit.parse(text)
    assert limit.rate == pytest.approx(per_second)
    assert limit.burst == burst


@pytest.mark.parametrize(
    "text",
    [
        "inf/s",
        "nan/s",
        "1e309/s",
        "1e23/s",
        "99999999999999999999999/s",
        "5e-324/s",
        "1e-300/s",
        "0.0001/s",
        "1000001/s",
        "0/s",
        "-1/s",
        "\uff15/s",
        "1_000/s",
        "1e3/s",
        ".5/s",
        "5/h",
        "5/",
        "fast",
        "",
    ],
)
def test_other_rates_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(ValidationFailed, match=r"^Rate: "):
        RateLimit.parse(text)


@pytest.mark.parametrize("burst", [0, -1, MAX_BURST + 1, 10**30, True])
def test_a_burst_out_of_bounds_is_refused_naming_the_field(burst: int) -> None:
    with pytest.raises(ValidationFailed, match=r"^Burst: "):
        RateLimit.parse("5/s", burst)


@pytest.mark.parametrize("rate", [float("inf"), float("nan"), 1e-300, 2e6])
def test_a_rate_limit_made_directly_is_bounded_too(rate: float) -> None:
    with pytest.raises(ValidationFailed, match=r"^Rate: "):
        RateLimit(rate, 1)
