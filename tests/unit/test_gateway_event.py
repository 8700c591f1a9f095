"""The API Gateway proxy event a function gets, and the Lambda context beside it (pure logic).

What a REST API (payload format 1.0) passes: the path still percent-encoded, path parameters
decoded, headers under the names the client sent, the caller in ``requestContext.identity``.
"""

from __future__ import annotations

import re

import pytest

from modelhost.control.gateway_resources import Route, TargetKind
from modelhost.control.resources import ApiKey
from modelhost.frontdoor.gateway import CompiledRoutes, RouteMatch
from modelhost.frontdoor.lambda_proxy import RouteRequest, event_headers, proxy_event
from modelhost.functions.bridge import LambdaContext

ITEMS = Route("ANY", "/v1/items/{id}", TargetKind.FUNCTION, "fn")
PAIR = Route("GET", "/v1/pairs/{left}/{right}", TargetKind.FUNCTION, "fn")


def matched(path: str, method: str = "GET") -> RouteMatch:
    found = CompiledRoutes([ITEMS, PAIR]).match(method, path)
    assert found is not None, path
    return found


@pytest.mark.parametrize(
    ("raw", "parameter"),
    [
        ("/v1/items/a%20b", "a b"),
        ("/v1/items/caf%C3%A9", "café"),
        ("/v1/items/a%2Fb", "a/b"),
        ("/v1/items/100%25", "100%"),
        ("/v1/items/a+b", "a+b"),  # + is a space only in a query string
        ("/v1/items/plain", "plain"),
        ("/v1/items/caf\xc3\xa9", "café"),  # unencoded UTF-8 bytes, as the protocol hands them (latin-1 text)
    ],
)
def test_path_parameters_are_percent_decoded(raw: str, parameter: str) -> None:
    assert matched(raw).parameters == {"id": parameter}


def test_each_parameter_is_decoded_on_its_own() -> None:
    assert matched("/v1/pairs/a%2F/b%20c").parameters == {"left": "a/", "right": "b c"}


def test_the_events_path_stays_as_sent_and_its_parameters_decoded() -> None:
    url = b"/v1/items/a%20b?q=x%20y"
    event = proxy_event(RouteRequest(matched(url.decode().partition("?")[0]), "GET", url, [], b"", "r-1"))
    assert event["path"] == "/v1/items/a%20b"
    assert event["requestContext"]["path"] == "/v1/items/a%20b"
    assert event["pathParameters"] == {"id": "a b"}
    assert event["queryStringParameters"] == {"q": "x y"}


def test_headers_keep_the_names_the_client_sent() -> None:
    headers = [(b"content-type", b"text/plain"), (b"x-trace-id", b"t1"), (b"x-twice", b"1"), (b"x-twice", b"2")]
    names = [b"Content-Type", b"X-Trace-ID", b"X-Twice", b"x-TWICE"]
    single, multi = event_headers(headers, names)
    assert single == {"Content-Type": "text/plain", "X-Trace-ID": "t1", "X-Twice": "2"}
    assert multi == {"Content-Type": ["text/plain"], "X-Trace-ID": ["t1"], "X-Twice": ["1", "2"]}


def test_without_the_sent_names_headers_are_lowercase() -> None:
    single, multi = event_headers([(b"x-a", b"1")])
    assert single == {"x-a": "1"}
    assert multi == {"x-a": ["1"]}


def test_the_gateway_reads_a_header_whatever_its_case() -> None:
    """The gateway's own lookups (content type here) see lowercase names, the event the sent ones."""
    event = proxy_event(
        RouteRequest(
            matched("/v1/items/1", "POST"),
            method="POST",
            url=b"/v1/items/1",
            headers=[(b"content-type", b"application/octet-stream")],
            body=b"\xff\xfe",
            request_id="r-2",
            key=None,
            names=[b"CONTENT-TYPE"],
        )
    )
    assert event["headers"] == {"CONTENT-TYPE": "application/octet-stream"}
    assert event["isBase64Encoded"] is True


def test_the_identity_names_the_caller() -> None:
    key = ApiKey("mobile-app", "0" * 64, "mhk_abcd")
    event = proxy_event(
        RouteRequest(
            matched("/v1/items/1"),
            method="GET",
            url=b"/v1/items/1",
            headers=[(b"user-agent", b"curl/8.5"), (b"host", b"api.example:8080")],
            body=b"",
            request_id="r-3",
            key=key,
            names=[b"User-Agent", b"Host"],
            source_ip="203.0.113.9",
        )
    )
    context = event["requestContext"]
    identity = context["identity"]
    assert identity["sourceIp"] == "203.0.113.9"
    assert identity["userAgent"] == "curl/8.5"
    assert identity["apiKeyId"] == "mobile-app"
    assert identity["apiKey"] == "mhk_abcd…"
    assert identity["cognitoIdentityId"] is None
    assert identity["user"] is None
    assert context["domainName"] == "api.example:8080"
    assert context["requestId"] == "r-3"
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", context["requestTime"])
    assert isinstance(context["requestTimeEpoch"], int)


def test_without_a_key_the_identity_has_no_key() -> None:
    request = RouteRequest(matched("/v1/items/1"), "GET", b"/v1/items/1", [], b"", "r-4", source_ip="::1")
    event = proxy_event(request)
    identity = event["requestContext"]["identity"]
    assert (identity["apiKey"], identity["apiKeyId"], identity["userAgent"]) == (None, None, None)
    assert identity["sourceIp"] == "::1"


def test_the_lambda_context_has_lambdas_attributes() -> None:
    context = LambdaContext("req-1", "scorer", 256, 3.0)
    assert context.aws_request_id == "req-1"
    assert context.function_name == "scorer"
    assert context.function_version == "$LATEST"
    assert context.invoked_function_arn.endswith(":function:scorer")
    assert context.memory_limit_in_mb == 256
    assert context.log_group_name == "/modelhost/functions/scorer"
    assert context.log_stream_name
    assert context.client_context is None
    assert context.identity.cognito_identity_id is None
    assert context.identity.cognito_identity_pool_id is None
    assert 0 < context.get_remaining_time_in_millis() <= 3000
