"""The gateway's edges through HTTP against a real `modelhost up`: preflights, limits, the event's details.

One `modelhost up` for the module with one function, ``edge``, which answers with its event, a
count of the calls its worker has served, its pid and what its Lambda context holds. The rate
limits here refill one token a minute, so nothing comes back while a test runs.

    ANY  /v2/things/{id}  key required, CORS for https://app.example (its preflights need no key)
    GET  /v2/echo/{id}    open
    GET  /v2/keyed        key required (a key's own limit)
    GET  /v2/open         1/m, burst 2, no key required (a key presented shares the route's bucket)
    GET  /v2/tight        1/m, burst 1
    GET  /v2/free         no limit
    POST /v2/small        1000 bytes at most, CORS for https://app.example
"""

from __future__ import annotations

import json
import socket
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.platform.conftest import Platform, platforms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

APP = "https://app.example"
PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "x-api-key"}

EDGE = """
import os

SERVED = {"calls": 0}
STATE = object()  # made once, when the module is imported: the same object while the worker lives


def handler(event, context):
    SERVED["calls"] += 1
    identity = getattr(context, "identity", None)  # (read softly: the test says what is missing)
    return {
        "event": event,
        "calls": SERVED["calls"],
        "pid": os.getpid(),
        "state_id": id(STATE),
        "context": {
            "client_context": getattr(context, "client_context", "missing"),
            "identity": [identity.cognito_identity_id, identity.cognito_identity_pool_id] if identity else "missing",
            "function_name": context.function_name,
            "log_group_name": context.log_group_name,
            "invoked_function_arn": context.invoked_function_arn,
        },
    }
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("gateway-edges")
    code = root / "edge"
    code.mkdir()
    (code / "app.py").write_text(textwrap.dedent(EDGE))
    with platforms(root) as start:
        platform = start()
        client = platform.client
        client.create_function("edge", code, "app.handler")
        app_cors = {"allow_origins": [APP]}
        client.create_route("ANY", "/v2/things/{id}", function="edge", api_key_required=True, cors=app_cors)
        client.create_route("GET", "/v2/echo/{id}", function="edge")
        client.create_route("GET", "/v2/keyed", function="edge", api_key_required=True)
        client.create_route("GET", "/v2/open", function="edge", rate="1/m", burst=2)
        client.create_route("GET", "/v2/tight", function="edge", rate="1/m", burst=1)
        client.create_route("GET", "/v2/free", function="edge")
        client.create_route("POST", "/v2/small", function="edge", max_body_bytes=1000, cors=app_cors)
        yield platform


@pytest.fixture(scope="module")
def http(gw: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=60) as client:
        yield client


def api_key(gw: Platform, name: str, **limit: Any) -> str:
    key = str(gw.client.create_api_key(name, **limit)["key"])
    assert key.startswith("mhk_"), key
    return key


def served(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def calls_so_far(http: httpx.Client) -> int:
    return int(served(http.get("/v2/echo/count"))["calls"])


def assert_429(response: httpx.Response, says: str) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "TooManyRequestsException"
    assert says in response.json()["message"], response.json()
    assert response.headers["retry-after"].isdigit()
    assert int(response.headers["retry-after"]) >= 1


def raw_request(gw: Platform, request: bytes) -> tuple[bytes, bytes]:
    """``request`` (which asks to close) on a socket of its own; the answer's head and body."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body


# -- a warm function -----------------------------------------------------------------------------------
def test_a_function_stays_warm_between_calls(http: httpx.Client) -> None:
    first = served(http.get("/v2/echo/1"))
    second = served(http.get("/v2/echo/2"))
    assert second["calls"] == first["calls"] + 1  # module state kept: imported once, not per call
    assert second["pid"] == first["pid"]
    assert second["state_id"] == first["state_id"]


# -- CORS --------------------------------------------------------------------------------------------------
def test_a_preflight_on_an_any_route_needs_no_key_and_calls_no_function(http: httpx.Client) -> None:
    before = calls_so_far(http)
    preflight = http.options("/v2/things/7", headers=PREFLIGHT)
    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["access-control-allow-origin"] == APP
    assert "PUT" in preflight.headers["access-control-allow-methods"]
    assert "x-api-key" in preflight.headers["access-control-allow-headers"]
    assert int(preflight.headers["access-control-max-age"]) > 0
    assert calls_so_far(http) == before + 1  # only calls_so_far's own call reached the function


def test_the_any_routes_real_calls_still_need_a_key_and_carry_cors(gw: Platform, http: httpx.Client) -> None:
    refused = http.put("/v2/things/7", headers={"Origin": APP})
    assert refused.status_code == 401, refused.text
    assert refused.headers["access-control-allow-origin"] == APP  # the browser can read why
    key = api_key(gw, "things-key")
    answer = http.put("/v2/things/7", headers={"Origin": APP, "x-api-key": key})
    assert served(answer)["event"]["httpMethod"] == "PUT"
    assert answer.headers["access-control-allow-origin"] == APP
    # an OPTIONS that is not a preflight is the route's like any other method
    options = http.options("/v2/things/7", headers={"x-api-key": key})
    assert served(options)["event"]["httpMethod"] == "OPTIONS"


def test_a_413_carries_cors_headers(gw: Platform, http: httpx.Client) -> None:
    up_front = http.post("/v2/small", content=b"x" * 10_000, headers={"Origin": APP})
    assert up_front.status_code == 413, up_front.text
    assert up_front.headers["access-control-allow-origin"] == APP
    streamed = http.post("/v2/small", content=iter([b"x" * 600] * 4), headers={"Origin": APP})  # chunked
    assert streamed.status_code == 413, streamed.text
    assert streamed.headers["access-control-allow-origin"] == APP
    no_origin = http.post("/v2/small", content=b"x" * 10_000)
    assert no_origin.status_code == 413
    assert "access-control-allow-origin" not in no_origin.headers
    assert served(http.post("/v2/small", content=b"fits", headers={"Origin": APP}))["event"]["body"] == "fits"


def test_a_405_carries_cors_headers(http: httpx.Client) -> None:
    answer = http.get("/v2/small", headers={"Origin": APP})
    assert answer.status_code == 405, answer.text
    assert "POST" in answer.headers["allow"]
    assert answer.headers["access-control-allow-origin"] == APP
    other = http.get("/v2/small", headers={"Origin": "https://evil.example"})
    assert other.status_code == 405
    assert "access-control-allow-origin" not in other.headers


# -- the event -----------------------------------------------------------------------------------------------
def test_path_parameters_are_decoded_and_the_path_is_not(http: httpx.Client) -> None:
    event = served(http.get("/v2/echo/a%20b"))["event"]
    assert event["pathParameters"] == {"id": "a b"}
    assert event["path"] == "/v2/echo/a%20b"
    assert event["resource"] == "/v2/echo/{id}"
    assert served(http.get("/v2/echo/caf%C3%A9%2F1"))["event"]["pathParameters"] == {"id": "café/1"}


def test_headers_reach_the_function_as_the_client_sent_them(gw: Platform) -> None:
    head, body = raw_request(
        gw,
        b"GET /v2/echo/h HTTP/1.1\r\nHost: edge.test\r\nX-Trace-ID: t-1\r\nX-Twice: one\r\nx-twice: two\r\n"
        b"ACCEPT: application/json\r\nConnection: close\r\n\r\n",
    )
    assert head.startswith(b"HTTP/1.1 200"), head
    event = json.loads(body)["event"]
    assert event["headers"]["X-Trace-ID"] == "t-1"
    assert event["headers"]["ACCEPT"] == "application/json"
    assert event["headers"]["Host"] == "edge.test"
    assert "x-trace-id" not in event["headers"]
    assert event["multiValueHeaders"]["X-Twice"] == ["one", "two"]
    assert event["multiValueHeaders"]["X-Trace-ID"] == ["t-1"]


def test_the_gateway_reads_headers_whatever_their_case(gw: Platform) -> None:
    key = api_key(gw, "case-key")
    head, body = raw_request(
        gw,
        b"GET /v2/keyed HTTP/1.1\r\nHost: edge.test\r\nX-API-KEY: " + key.encode() + b"\r\nConnection: close\r\n\r\n",
    )
    assert head.startswith(b"HTTP/1.1 200"), head + body


def test_the_event_and_context_name_the_caller(gw: Platform, http: httpx.Client) -> None:
    answer = served(http.get("/v2/echo/who"))
    identity = answer["event"]["requestContext"]["identity"]
    assert identity["sourceIp"] == "127.0.0.1"
    assert identity["userAgent"] == http.headers["user-agent"]
    assert identity["apiKey"] is None
    assert identity["apiKeyId"] is None
    assert answer["context"]["client_context"] is None
    assert answer["context"]["identity"] == [None, None]
    assert answer["context"]["function_name"] == "edge"
    assert answer["context"]["log_group_name"]
    assert answer["context"]["invoked_function_arn"].endswith(":function:edge")

    key = api_key(gw, "caller-key")
    keyed = served(http.get("/v2/keyed", headers={"x-api-key": key}))["event"]["requestContext"]["identity"]
    assert keyed["apiKeyId"] == "caller-key"
    assert keyed["apiKey"].endswith("…")
    assert key not in keyed["apiKey"]
    assert keyed["sourceIp"] == "127.0.0.1"


# -- rate limits -------------------------------------------------------------------------------------------
def test_a_keys_own_limit_is_a_429_with_retry_after_while_another_key_passes(gw: Platform, http: httpx.Client) -> None:
    limited, other = api_key(gw, "limited-key", rate="1/m", burst=3), api_key(gw, "unlimited-key")
    started = time.monotonic()
    for _ in range(3):
        served(http.get("/v2/keyed", headers={"x-api-key": limited}))
    assert_429(http.get("/v2/keyed", headers={"x-api-key": limited}), "API key limited-key")
    served(http.get("/v2/keyed", headers={"x-api-key": other}))
    # the key's limit is over every route, not this one only
    assert_429(http.get("/v2/free", headers={"x-api-key": limited}), "API key limited-key")
    assert time.monotonic() - started < 50, "too slow for a 1/m bucket to stay empty"


def test_presenting_a_key_does_not_escape_a_routes_limit(gw: Platform, http: httpx.Client) -> None:
    first, second = api_key(gw, "open-key-1"), api_key(gw, "open-key-2")
    served(http.get("/v2/open"))
    served(http.get("/v2/open", headers={"x-api-key": first}))
    assert_429(http.get("/v2/open", headers={"x-api-key": second}), "GET /v2/open")  # a fresh key: no fresh bucket
    assert_429(http.get("/v2/open", headers={"x-api-key": first}), "GET /v2/open")
    assert_429(http.get("/v2/open"), "GET /v2/open")


def test_a_request_its_route_throttles_spends_none_of_the_keys_tokens(gw: Platform, http: httpx.Client) -> None:
    key = {"x-api-key": api_key(gw, "ordering-key", rate="1/m", burst=2)}
    served(http.get("/v2/tight", headers=key))  # the key has one token left, the route none
    for _ in range(3):
        assert_429(http.get("/v2/tight", headers=key), "GET /v2/tight")
    served(http.get("/v2/free", headers=key))  # the refusals above took none of the key's tokens
    assert_429(http.get("/v2/free", headers=key), "API key ordering-key")


def test_a_request_its_key_throttles_spends_none_of_the_routes_tokens(gw: Platform, http: httpx.Client) -> None:
    key = {"x-api-key": api_key(gw, "spent-key", rate="1/m", burst=1)}
    served(http.get("/v2/free", headers=key))  # the key's one token
    gw.client.create_route("GET", "/v2/fresh", function="edge", rate="1/m", burst=1)
    assert_429(http.get("/v2/fresh", headers=key), "API key spent-key")
    served(http.get("/v2/fresh"))  # the route's one token is still there
