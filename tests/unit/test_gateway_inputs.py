"""What the API takes for a route: schemas that never fetch, bounded rate limits (pure checks, no platform)."""

from __future__ import annotations

from typing import Any

import pytest

from modelhost.control.gateway_api import RouteIn
from modelhost.control.gateway_resources import MAX_BURST, RateLimit, Route, TargetKind, compile_schema
from modelhost.errors import ValidationFailed
from tests.schema_server import Fetches


def route(schema: dict[str, Any], example: Any = None) -> Route:
    """A route as the API makes it (create and update alike)."""
    return RouteIn(method="POST", path="/v1/x", function="fn", request_schema=schema, example=example).to_resource()


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "{base}/remote.json"},
        {"type": "object", "properties": {"a": {"$ref": "{base}/nested.json"}}},
        {"$id": "{base}/base/", "$ref": "other.json"},
        {"$defs": {"a": {"items": {"$ref": "{base}/deep.json"}}}, "$ref": "#/$defs/a"},
    ],
)
def test_a_ref_to_a_url_is_refused_at_creation_and_never_fetched(schema_server: str, schema: dict[str, Any]) -> None:
    filled = _filled(schema, schema_server)
    with pytest.raises(ValidationFailed, match=r"RequestSchema: \$ref .* does not resolve inside the schema"):
        route(filled)
    assert Fetches.asked == []


def test_a_compiled_schema_does_not_fetch_what_a_default_validator_would(schema_server: str) -> None:
    from jsonschema import Draft202012Validator

    schema = {"$ref": f"{schema_server}/remote.json"}
    list(Draft202012Validator(schema).iter_errors("x"))  # jsonschema's own default fetches (the bug's cause)
    assert Fetches.asked == ["/remote.json"]
    with pytest.raises(ValidationFailed):
        compile_schema(schema)
    assert Fetches.asked == ["/remote.json"]


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"$ref": "file:///etc/passwd"}, "file:///etc/passwd"),
        ({"$ref": "#/nonexistent"}, "#/nonexistent"),
        ({"$ref": "#nowhere"}, "#nowhere"),
        ({"$ref": "urn:example:other"}, "urn:example:other"),
        ({"properties": {"a": {"$dynamicRef": "#meta"}}}, "#meta"),
    ],
)
def test_a_ref_that_does_not_resolve_inside_the_schema_is_named(schema: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        route(schema)
    assert repr(named) in raised.value.message


@pytest.mark.parametrize(
    "schema",
    [
        {"$defs": {"name": {"type": "string"}}, "properties": {"n": {"$ref": "#/$defs/name"}}},
        {"$defs": {"x": {"$anchor": "word", "type": "string"}}, "properties": {"n": {"$ref": "#word"}}},
        {
            "$id": "https://schemas.example/root",
            "$defs": {"o": {"$id": "other", "type": "string"}},
            "properties": {"n": {"$ref": "other"}},
        },
        {"properties": {"n": {"type": "string"}, "m": {"$ref": "#/properties/n"}}},
        {"properties": {"$ref": {"type": "string"}}},  # a property named $ref is no ref
        {"const": {"$ref": "http://example.invalid/x"}},  # nor is a value inside const
        {"type": "object", "properties": {"tree": {"$ref": "#"}}},  # recursion through data is fine
    ],
)
def test_refs_inside_the_schema_are_kept_and_applied(schema: dict[str, Any]) -> None:
    validator = compile_schema(schema)
    list(validator.iter_errors({"n": 5, "tree": {"n": "x"}}))  # applied, and nothing raised


def test_a_ref_inside_the_schema_still_refuses_a_bad_body() -> None:
    validator = compile_schema({"$defs": {"name": {"type": "string"}}, "properties": {"n": {"$ref": "#/$defs/name"}}})
    assert [e.message for e in validator.iter_errors({"n": 5})] == ["5 is not of type 'string'"]
    assert list(validator.iter_errors({"n": "five"})) == []


def test_a_ref_loop_without_end_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="loop"):
        route({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}})


def test_patterns_must_compile_and_be_short() -> None:
    with pytest.raises(ValidationFailed, match="is not a 'regex'|does not compile"):
        route({"properties": {"a": {"type": "string", "pattern": "(unclosed"}}})
    with pytest.raises(ValidationFailed, match="is not a 'regex'|does not compile"):
        route({"patternProperties": {"(unclosed": {}}})
    with pytest.raises(ValidationFailed, match="characters"):
        route({"properties": {"a": {"type": "string", "pattern": "a" * 1001}}})
    with pytest.raises(ValidationFailed, match="characters"):
        route({"patternProperties": {"b" * 1001: {}}})
    route({"properties": {"a": {"type": "string", "pattern": "^[a-z]{1,10}$"}}})


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


@pytest.mark.parametrize("rate", [float("inf"), float("nan"), 0.0, -1.0])
def test_a_rate_limit_made_directly_must_still_be_a_usable_bucket(rate: float) -> None:
    with pytest.raises(ValidationFailed, match=r"^Rate: "):
        RateLimit(rate, 1)


def test_a_route_stored_before_the_bounds_still_loads() -> None:
    assert RateLimit(5e-324, 1).rate == 5e-324  # read back from the store: the throttle copes (Retry-After capped)
    stored = Route("POST", "/v1/x", TargetKind.FUNCTION, "fn", request_schema={"$ref": "http://127.0.0.1:1/x"})
    assert stored.request_schema is not None


def test_the_api_checks_the_response_schema_too(schema_server: str) -> None:
    body = RouteIn(method="GET", path="/v1/x", function="fn", response_schema={"$ref": f"{schema_server}/r.json"})
    with pytest.raises(ValidationFailed, match=r"^ResponseSchema: \$ref"):
        body.to_resource()
    assert Fetches.asked == []


def _filled(schema: Any, base: str) -> Any:
    """``schema`` with ``{base}`` in its strings replaced by the server's address."""
    if isinstance(schema, dict):
        return {k: _filled(v, base) for k, v in schema.items()}
    if isinstance(schema, str):
        return schema.replace("{base}", base)
    return schema
