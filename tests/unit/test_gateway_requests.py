"""The gateway's decisions before a function runs, on a real Gateway with nothing deployed.

The front door, the function runtime (``LocalRuntime``: no function is running) and the key table
(``AccessTable``) are the platform's own classes; a call that gets past every check reaches the
function lookup and is answered 503 "not running", so that answer shows a request was let through.
The clock is driven by hand, so buckets refill only when a test says so.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from modelhost.control.access import AccessTable, key_sha256
from modelhost.control.gateway_resources import Cors, RateLimit, Route, TargetKind
from modelhost.control.resources import ApiKey
from modelhost.frontdoor.gateway import Gateway, RouteMatch, cors_headers, is_preflight
from modelhost.frontdoor.proxy import FrontDoor, FrontDoorError
from modelhost.runtime.local import LocalRuntime

ORIGIN = b"https://app.example"
APP_CORS = Cors(allow_origins=("https://app.example",))
NOT_RUNNING = 503  # got past the key, the limits and the schema: the function lookup answered


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Answer:
    def __init__(self, data: bytes) -> None:
        head, _, self.body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    @property
    def error(self) -> str:
        return str(orjson.loads(self.body)["error"])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gateway(tmp_path: Path, clock: Clock) -> Gateway:
    runtime = LocalRuntime(tmp_path)
    keys = AccessTable()
    keys.replace_keys(
        [
            ApiKey("slow-key", key_sha256(b"k-slow"), "k-slow", rate_per_s=0.01, burst=3),
            ApiKey("plain-key", key_sha256(b"k-plain"), "k-plain"),
            ApiKey("other-key", key_sha256(b"k-other"), "k-other"),
        ]
    )
    gateway = Gateway(FrontDoor(runtime, lambda name: None), runtime, lambda name: None, keys, clock=clock)
    gateway.replace_routes(
        [
            Route("ANY", "/v1/things/{id}", TargetKind.FUNCTION, "fn", api_key_required=True, cors=APP_CORS),
            Route("OPTIONS", "/v1/options", TargetKind.FUNCTION, "fn", cors=APP_CORS),
            Route("GET", "/v1/open", TargetKind.FUNCTION, "fn", rate_limit=RateLimit(0.01, 2)),
            Route("GET", "/v1/tight", TargetKind.FUNCTION, "fn", rate_limit=RateLimit(0.01, 1)),
            Route("GET", "/v1/free", TargetKind.FUNCTION, "fn"),
            Route("POST", "/v1/posts", TargetKind.FUNCTION, "fn", cors=APP_CORS, max_body_bytes=10),
        ]
    )
    return gateway


def call(gateway: Gateway, method: str, url: str, headers: list[tuple[bytes, bytes]] | None = None) -> Answer:
    found = gateway.match(method, url.partition("?")[0])
    assert found is not None, f"{method} {url} matches no route"
    answers: list[bytes] = []
    gateway.handle(found, method, url.encode(), headers or [], b"", answers.append)
    assert len(answers) == 1
    return Answer(answers[0])


def key(value: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"x-api-key", value)]


PREFLIGHT = [(b"origin", ORIGIN), (b"access-control-request-method", b"PUT")]


# -- CORS preflights ------------------------------------------------------------------------------------
def test_a_preflight_on_an_any_route_is_answered_without_a_key_or_the_function(gateway: Gateway) -> None:
    answer = call(gateway, "OPTIONS", "/v1/things/7", PREFLIGHT)
    assert answer.status == 204
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    assert "PUT" in answer.headers["access-control-allow-methods"]
    assert "x-api-key" in answer.headers["access-control-allow-headers"]


def test_an_options_request_that_is_no_preflight_goes_to_the_any_route(gateway: Gateway) -> None:
    assert call(gateway, "OPTIONS", "/v1/things/7", [(b"origin", ORIGIN)]).error == "MissingAuthenticationToken"
    assert call(gateway, "OPTIONS", "/v1/things/7", key(b"k-plain")).status == NOT_RUNNING


def test_a_route_for_options_itself_gets_its_preflights(gateway: Gateway) -> None:
    assert call(gateway, "OPTIONS", "/v1/options", PREFLIGHT).status == NOT_RUNNING


def test_a_preflight_from_another_origin_is_refused(gateway: Gateway) -> None:
    answer = call(gateway, "OPTIONS", "/v1/things/7", [(b"origin", b"https://evil.example"), PREFLIGHT[1]])
    assert answer.status == 403
    assert "access-control-allow-origin" not in answer.headers


def test_is_preflight_needs_the_method_header_and_cors() -> None:
    cors_route = Route("ANY", "/v1/x", TargetKind.FUNCTION, "fn", cors=APP_CORS)
    plain_route = Route("ANY", "/v1/x", TargetKind.FUNCTION, "fn")
    assert is_preflight("OPTIONS", cors_route, PREFLIGHT)
    assert not is_preflight("OPTIONS", plain_route, PREFLIGHT)
    assert not is_preflight("OPTIONS", cors_route, PREFLIGHT[:1])
    assert not is_preflight("GET", cors_route, PREFLIGHT)


# -- rate limits ----------------------------------------------------------------------------------------
def test_presenting_a_key_does_not_get_a_route_limit_of_its_own(gateway: Gateway) -> None:
    assert call(gateway, "GET", "/v1/open").status == NOT_RUNNING
    assert call(gateway, "GET", "/v1/open", key(b"k-plain")).status == NOT_RUNNING
    for caller in ([], key(b"k-plain"), key(b"k-other")):
        refused = call(gateway, "GET", "/v1/open", caller)
        assert refused.status == 429, caller
        assert "GET /v1/open" in orjson.loads(refused.body)["message"]


def test_a_request_the_route_throttles_spends_none_of_the_keys_tokens(gateway: Gateway, clock: Clock) -> None:
    assert call(gateway, "GET", "/v1/tight", key(b"k-slow")).status == NOT_RUNNING  # key: 2 left
    for _ in range(5):
        assert call(gateway, "GET", "/v1/tight", key(b"k-slow")).status == 429  # the route's bucket is empty
    assert call(gateway, "GET", "/v1/free", key(b"k-slow")).status == NOT_RUNNING
    assert call(gateway, "GET", "/v1/free", key(b"k-slow")).status == NOT_RUNNING
    refused = call(gateway, "GET", "/v1/free", key(b"k-slow"))
    assert refused.status == 429
    assert "API key slow-key" in orjson.loads(refused.body)["message"]
    assert int(refused.headers["retry-after"]) >= 1


def test_a_request_the_key_throttles_spends_none_of_the_routes_tokens(gateway: Gateway) -> None:
    for _ in range(3):
        assert call(gateway, "GET", "/v1/free", key(b"k-slow")).status == NOT_RUNNING
    assert call(gateway, "GET", "/v1/tight", key(b"k-slow")).status == 429  # the key's limit
    assert call(gateway, "GET", "/v1/tight").status == NOT_RUNNING  # the route's token is still there


def test_a_keys_own_limit_counts_over_every_route(gateway: Gateway, clock: Clock) -> None:
    assert call(gateway, "GET", "/v1/free", key(b"k-slow")).status == NOT_RUNNING
    assert call(gateway, "GET", "/v1/open", key(b"k-slow")).status == NOT_RUNNING
    assert call(gateway, "GET", "/v1/things/1", key(b"k-slow")).status == NOT_RUNNING
    assert call(gateway, "GET", "/v1/free", key(b"k-slow")).status == 429
    assert call(gateway, "GET", "/v1/free", key(b"k-other")).status == NOT_RUNNING
    clock.now += 100.0  # 0.01 a second: one token back
    assert call(gateway, "GET", "/v1/free", key(b"k-slow")).status == NOT_RUNNING


# -- CORS on refusals -----------------------------------------------------------------------------------
def test_a_405_carries_the_paths_cors_headers(gateway: Gateway) -> None:
    answer = Answer(gateway.method_not_allowed("GET", "/v1/posts", [(b"origin", ORIGIN)]))
    assert answer.status == 405
    assert answer.headers["allow"] == "POST, OPTIONS"
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    other = Answer(gateway.method_not_allowed("GET", "/v1/posts", [(b"origin", b"https://evil.example")]))
    assert "access-control-allow-origin" not in other.headers


def test_a_refusal_by_the_protocol_gets_the_routes_cors_headers(gateway: Gateway) -> None:
    found = gateway.match("POST", "/v1/posts")
    assert isinstance(found, RouteMatch)
    error = gateway.refusal(found, [(b"origin", ORIGIN)], FrontDoorError(413, "ValidationError", "too large"))
    assert (b"access-control-allow-origin", ORIGIN) in (error.headers or [])
    plain = gateway.refusal(found, [], FrontDoorError(413, "ValidationError", "too large"))
    assert plain.headers is None


def test_cors_headers_name_the_origin_unless_any_origin_will_do() -> None:
    assert dict(cors_headers(APP_CORS, ORIGIN))[b"access-control-allow-origin"] == ORIGIN
    assert dict(cors_headers(Cors(), ORIGIN))[b"access-control-allow-origin"] == b"*"
    credentials = Cors(allow_origins=("https://app.example",), allow_credentials=True)
    assert dict(cors_headers(credentials, ORIGIN))[b"access-control-allow-credentials"] == b"true"
    assert cors_headers(APP_CORS, b"https://evil.example") == []
    assert cors_headers(APP_CORS, None) == []
    assert cors_headers(None, ORIGIN) == []


# -- request schemas and limits that could not be answered before -------------------------------------------
def post(gateway: Gateway, url: str, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> Answer:
    found = gateway.match("POST", url)
    assert found is not None, f"POST {url} matches no route"
    answers: list[bytes] = []
    gateway.handle(found, "POST", url.encode(), headers or [], body, answers.append)
    assert len(answers) == 1, "every request gets exactly one answer"
    return Answer(answers[0])


def test_a_body_the_schema_cannot_be_applied_to_gets_a_500_answer(gateway: Gateway) -> None:
    tree = {"type": "object", "properties": {"child": {"$ref": "#"}}}
    gateway.replace_routes([Route("POST", "/v1/tree", TargetKind.FUNCTION, "fn", request_schema=tree)])
    shallow = post(gateway, "/v1/tree", b'{"child": {"child": {}}}')
    assert shallow.status == NOT_RUNNING
    deep = b'{"child": ' * 1000 + b"{}" + b"}" * 1000  # past Python's recursion limit in the validator
    answer = post(gateway, "/v1/tree", deep)
    assert answer.status == 500
    assert answer.error == "InternalFailure"
    assert post(gateway, "/v1/tree", b'{"child": 5}').status == 400  # and the route still validates


def test_a_keys_tiny_stored_rate_gets_a_429_with_a_capped_retry_after(tmp_path: Path, clock: Clock) -> None:
    runtime = LocalRuntime(tmp_path)
    keys = AccessTable()
    keys.replace_keys([ApiKey("tiny-key", key_sha256(b"k-tiny"), "k-tiny", rate_per_s=5e-324, burst=1)])
    gateway = Gateway(FrontDoor(runtime, lambda name: None), runtime, lambda name: None, keys, clock=clock)
    gateway.replace_routes([Route("GET", "/v1/free", TargetKind.FUNCTION, "fn")])
    assert call(gateway, "GET", "/v1/free", key(b"k-tiny")).status == NOT_RUNNING
    refused = call(gateway, "GET", "/v1/free", key(b"k-tiny"))
    assert refused.status == 429
    assert refused.headers["retry-after"] == "86400"


def test_a_stored_route_whose_schema_cannot_be_applied_answers_500_and_the_others_still_work(gateway: Gateway) -> None:
    nowhere = {"$ref": "#/nonexistent"}  # refused by the API now; a route stored before that still loads
    gateway.replace_routes(
        [
            Route("POST", "/v1/nowhere", TargetKind.FUNCTION, "fn", request_schema=nowhere),
            Route("POST", "/v1/fine", TargetKind.FUNCTION, "fn", request_schema={"type": "object"}),
        ]
    )
    answer = post(gateway, "/v1/nowhere", b"{}")
    assert answer.status == 500
    assert answer.error == "InternalFailure"
    assert post(gateway, "/v1/fine", b"{}").status == NOT_RUNNING
    assert post(gateway, "/v1/fine", b"[]").status == 400
