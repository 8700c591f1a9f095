"""Bad route and key settings, and bad proxy answers, through HTTP and the CLI against a real `modelhost up`.

One `modelhost up` for the module with one function, ``shaped``, which answers with the proxy
response that ``?answer=`` holds (JSON), so a test says exactly what the handler returns:

    GET  /v3/shaped   open, no schema
    POST /v3/tree     a recursive schema ({"child": <tree>}), applied to every body

The last test restarts it, with routes written straight into its store as an older version could have.
"""

from __future__ import annotations

import json
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from modelhost.control.gateway_resources import RateLimit, Route, TargetKind
from modelhost.control.gateway_store import GatewayStore
from modelhost.control.store import StateStore
from tests.platform.conftest import Platform, platforms
from tests.schema_server import Fetches

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SHAPED = """
import json


def handler(event, context):
    return json.loads((event.get("queryStringParameters") or {}).get("answer", '{"ok": true}'))
"""

TREE = {"type": "object", "properties": {"child": {"$ref": "#"}}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("gateway-inputs")
    code = root / "shaped"
    code.mkdir()
    (code / "app.py").write_text(textwrap.dedent(SHAPED))
    with platforms(root) as start:
        platform = start()
        platform.client.create_function("shaped", code, "app.handler")
        platform.client.create_route("GET", "/v3/shaped", function="shaped")
        platform.client.create_route("POST", "/v3/tree", function="shaped", request_schema=TREE)
        yield platform


@pytest.fixture(scope="module")
def http(gw: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=60) as client:
        yield client


def refused(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["error"] == "ValidationException", answer
    for word in words:
        assert word in answer["message"], answer
    return str(answer["message"])


def raw_get(gw: Platform, target: str) -> tuple[str, dict[str, str], bytes]:
    """GET ``target`` on a socket of its own (asking to close): status line, headers, the bytes after them."""
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
    return status, headers, rest


def shaped(answer: dict[str, Any]) -> str:
    return "/v3/shaped?answer=" + quote(json.dumps(answer), safe="")


# -- 1. schemas never fetch -------------------------------------------------------------------------------
def test_a_schema_ref_outside_the_schema_is_refused_at_creation_and_never_fetched(
    gw: Platform, http: httpx.Client, schema_server: str
) -> None:
    route = {"method": "POST", "path": "/v3/refs", "function": "shaped"}
    for schema, named in [
        ({"$ref": f"{schema_server}/slow.json"}, f"{schema_server}/slow.json"),
        ({"properties": {"a": {"$ref": f"{schema_server}/remote2.json"}}}, "remote2.json"),
        ({"$id": f"{schema_server}/base/", "$ref": "other.json"}, "other.json"),
        ({"$ref": "file:///etc/passwd"}, "file:///etc/passwd"),
        ({"$ref": "#/nonexistent"}, "#/nonexistent"),
    ]:
        refused(http.post("/api/v1/routes", json={**route, "request_schema": schema}), "RequestSchema", named)
    refused(
        http.put(
            "/api/v1/routes",
            json={
                "method": "POST",
                "path": "/v3/tree",
                "function": "shaped",
                "request_schema": {"$ref": f"{schema_server}/update.json"},
            },
        ),
        "update.json",
    )
    assert Fetches.asked == []
    assert all(r["path"] != "/v3/refs" for r in gw.client.list_routes())
    assert http.post("/v3/tree", json={"child": {}}).status_code == 200  # the update left the route as it was


def test_the_cli_says_which_ref_it_refused(gw: Platform, tmp_path: Path) -> None:
    schema = tmp_path / "remote.json"
    schema.write_text(json.dumps({"$ref": "file:///etc/passwd"}))
    cli = gw.cli(
        "route", "create", "POST", "/v3/cli-refs", "--function", "shaped", "--schema", str(schema), check=False
    )
    assert cli.returncode != 0
    assert "file:///etc/passwd" in cli.stderr, cli.stderr
    assert "Traceback" not in cli.stderr


def test_a_body_the_schema_cannot_be_applied_to_gets_a_json_500_not_a_dropped_connection(
    gw: Platform, http: httpx.Client
) -> None:
    deep = '{"child": ' * 1000 + "{}" + "}" * 1000
    response = http.post("/v3/tree", content=deep, headers={"content-type": "application/json"})
    assert response.status_code == 500, response.text
    assert response.json()["error"] == "InternalFailure"
    assert http.post("/v3/tree", json={"child": 5}).status_code == 400  # the route still validates
    assert http.post("/v3/tree", json={"child": {"child": {}}}).status_code == 200
    assert http.get("/api/v1/health").status_code == 200


# -- 5/6. rate limits -------------------------------------------------------------------------------------
BAD_RATES = [
    "inf/s",
    "nan/s",
    "1e309/s",
    "1e23/s",
    "99999999999999999999999/s",
    "5e-324/s",
    "1e-300/s",
    "\uff15/s",
    "1_000/s",
    "2000000/s",
]


@pytest.mark.parametrize("rate", BAD_RATES)
def test_a_route_or_key_rate_out_of_bounds_is_a_400_naming_rate(gw: Platform, http: httpx.Client, rate: str) -> None:
    refused(
        http.post("/api/v1/routes", json={"method": "GET", "path": "/v3/r", "function": "shaped", "rate": rate}), "Rate"
    )
    refused(http.post("/api/v1/api-keys", json={"name": "k-rate", "rate": rate}), "Rate")
    assert all(r["path"] != "/v3/r" for r in gw.client.list_routes())
    assert all(k["name"] != "k-rate" for k in gw.client.list_api_keys())


@pytest.mark.parametrize("burst", [10**30, 1_000_001, 0])
def test_a_burst_out_of_bounds_is_a_400_naming_burst(http: httpx.Client, burst: int) -> None:
    route = {"method": "GET", "path": "/v3/b", "function": "shaped", "rate": "5/s", "burst": burst}
    refused(http.post("/api/v1/routes", json=route), "burst")
    refused(http.post("/api/v1/api-keys", json={"name": "k-burst", "rate": "5/s", "burst": burst}), "burst")


def test_the_cli_refuses_absurd_rates_with_the_apis_message(gw: Platform) -> None:
    route = gw.cli("route", "create", "GET", "/v3/cli-rate", "--function", "shaped", "--rate", "inf/s", check=False)
    assert route.returncode != 0
    assert "Rate" in route.stderr, route.stderr
    assert "Internal Server Error" not in route.stderr
    key = gw.cli("apikey", "create", "k-cli", "--rate", "5/s", "--burst", str(10**30), check=False)
    assert key.returncode != 0
    assert "burst" in key.stderr.lower(), key.stderr


def test_the_slowest_rate_allowed_answers_a_429_with_a_short_retry_after(gw: Platform, http: httpx.Client) -> None:
    gw.client.create_route("GET", "/v3/slowest", function="shaped", rate="0.001/s", burst=1)
    assert http.get("/v3/slowest").status_code == 200
    throttled = http.get("/v3/slowest")
    assert throttled.status_code == 429, throttled.text
    assert 1 <= int(throttled.headers["retry-after"]) <= 1000


# -- 9. proxy answers HTTP cannot carry ---------------------------------------------------------------------
@pytest.mark.parametrize("status", [101, 100, 199])
def test_an_informational_status_is_a_502(gw: Platform, status: int) -> None:
    line, _, body = raw_get(gw, shaped({"statusCode": status, "body": "x"}))
    assert line.split()[1] == "502", line
    answer = json.loads(body)
    assert answer["error"] == "FunctionError"
    assert f"statusCode {status}" in answer["message"]


@pytest.mark.parametrize("status", [204, 304])
def test_a_204_or_304_goes_out_without_the_handlers_body(gw: Platform, status: int) -> None:
    line, headers, rest = raw_get(gw, shaped({"statusCode": status, "body": "should-not-have-body"}))
    assert line.split()[1] == str(status), line
    assert rest == b""
    assert "content-length" not in headers


def test_numbers_and_booleans_in_headers_become_text_and_other_values_a_502(http: httpx.Client) -> None:
    good = http.get(shaped({"statusCode": 200, "headers": {"X-N": 5, "X-B": True}, "body": "{}"}))
    assert good.status_code == 200, good.text
    assert (good.headers["x-n"], good.headers["x-b"]) == ("5", "true")
    for bad in [{"headers": {"X-L": [1, 2]}}, {"multiValueHeaders": {"X-Bad": "notalist"}}]:
        response = http.get(shaped({"statusCode": 200, **bad}))
        assert response.status_code == 502, response.text
        assert response.json()["error"] == "FunctionError"
        assert "X-" in response.json()["message"]


# -- routes an older version stored ----------------------------------------------------------------------
def test_routes_stored_before_these_checks_still_load_and_answer(gw: Platform) -> None:
    """Last in the module: restarts the shared platform with two such routes in its store."""
    assert gw.stop() == 0
    store = StateStore(f"sqlite:///{gw.state_dir / 'state.db'}")
    try:
        routes = GatewayStore(store.engine)
        nowhere = {"$ref": "#/nonexistent"}  # the API refuses it now; an older one took it
        routes.create_route(Route("POST", "/v3/old-schema", TargetKind.FUNCTION, "shaped", request_schema=nowhere))
        tiny = RateLimit(1e-300, 1)  # below the API's 0.001/s
        routes.create_route(Route("GET", "/v3/old-rate", TargetKind.FUNCTION, "shaped", rate_limit=tiny))
    finally:
        store.close()
    gw.start()
    gw.client.wait_active("shaped", 120)  # (and so the platform stops cleanly at the end)
    assert {"/v3/old-schema", "/v3/old-rate", "/v3/shaped"} <= {r["path"] for r in gw.client.list_routes()}
    with httpx.Client(base_url=gw.url, timeout=60) as http:
        old = http.post("/v3/old-schema", json={})
        assert old.status_code == 500, old.text
        assert old.json()["error"] == "InternalFailure"
        assert http.get("/v3/old-rate").status_code == 200  # its one token
        throttled = http.get("/v3/old-rate")
        assert throttled.status_code == 429, throttled.text
        assert throttled.headers["retry-after"] == "86400"
        assert http.post("/v3/tree", json={"child": 5}).status_code == 400  # the other routes as before
