"""Functions (handler(event, context)) and gateway routes, through the CLI and plain HTTP against a real `up`.

One `modelhost up` for the module (the last test restarts it), with the sentiment model deployed as
endpoint ``sentiment`` and a few functions made once for all tests:

    probe   does what ``?mode=`` says: echoes its event and context, answers plain values or proxy
            responses (good and malformed), raises, prints, reads its artifact (timeout 10 s)
    slow    sleeps past its 2 s timeout when asked (timeout_s 2)
    hog     allocates 1 GiB when asked, beyond its 128 MB cap (memory_mb 128)
    caller  calls ``sentiment`` through modelhost.runtime.invoke_endpoint and through boto3

They are made with POST /api/v1/functions. Tests that need a function of their own (the CLI lifecycle, a
handler that cannot load, an update) make one; the token test starts a platform of its own.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import socket
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.platform.conftest import Platform, StartPlatform, platforms, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

WIDE = {"COLUMNS": "200"}  # rich's tables in a pipe: no wrapping of the cells
TEXTS = ["great amazing day", "awful broken app"]
BINARY = bytes(range(256)) * 4
ARTIFACT_TEXT = "hello from an artifact\n"

PROBE = """
import base64
import contextlib
import json
import os

BINARY = bytes(range(256)) * 4


def handler(event, context):
    query = event.get("queryStringParameters") or {}
    mode = query.get("mode", "event")
    if mode == "event":
        return {
            "event": event,
            "context": {
                "aws_request_id": context.aws_request_id,
                "remaining_ms": context.get_remaining_time_in_millis(),
                "function_name": context.function_name,
                "memory_limit_in_mb": context.memory_limit_in_mb,
            },
        }
    if mode == "plain":
        return [1, "two", {"three": 3.5}, None, True]
    if mode == "created":
        return {"statusCode": 201, "headers": {"Content-Type": "text/plain", "X-Probe": "yes"}, "body": "made it"}
    if mode == "multi":
        return {
            "statusCode": 200,
            "headers": {"x-single": "one"},
            "multiValueHeaders": {"x-multi": ["a", "b"]},
            "body": json.dumps({"ok": True}),
        }
    if mode == "binary":
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/octet-stream"},
            "body": base64.b64encode(BINARY).decode(),
            "isBase64Encoded": True,
        }
    if mode == "badstatus":
        return {"statusCode": 1000, "body": "nope"}
    if mode == "badbody":
        return {"statusCode": 200, "body": {"not": "a string"}}
    if mode == "set":
        return {1, 2, 3}
    if mode == "raise":
        raise ValueError("the probe was told to fail: " + query.get("msg", ""))
    if mode == "print":
        print("probe printed " + query["msg"])
        return {"printed": query["msg"]}
    if mode == "artifact":
        folder = os.environ["MODELHOST_FUNCTION_ARTIFACTS_DIR"]
        with open(os.path.join(folder, "greeting.txt")) as file:
            return {"folder": folder, "text": file.read()}
    if mode == "env":
        return {"GREETING": os.environ.get("GREETING")}
    return {"statusCode": 400, "body": json.dumps({"unknown mode": mode})}
"""

SLOW = """
import time


def handler(event, context):
    if (event.get("queryStringParameters") or {}).get("mode") == "sleep":
        time.sleep(60)
    return {"slow": "fine", "remaining_ms": context.get_remaining_time_in_millis()}
"""

HOG = """
def handler(event, context):
    if (event.get("queryStringParameters") or {}).get("mode") == "hog":
        block = bytearray(1024**3)
        return {"allocated": len(block)}
    return {"hog": "fine"}
"""

CALLER = """
import json

import boto3

from modelhost.runtime import invoke_endpoint


def handler(event, context):
    texts = json.loads(event["body"])
    through_runtime = invoke_endpoint("sentiment", texts)
    client = boto3.client("sagemaker-runtime")
    answer = client.invoke_endpoint(
        EndpointName="sentiment", Body=json.dumps(texts), ContentType="application/json"
    )
    return {"runtime": through_runtime, "boto3": json.loads(answer["Body"].read())}
"""


def write_handler(folder: Path, source: str, module: str = "app") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    return folder


# -- the platform ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def code_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("function-code")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sentiment_model: Path, code_dir: Path) -> Iterator[Platform]:
    with platforms(tmp_path_factory.mktemp("functions")) as start:
        platform = start()
        client = platform.client
        artifact = code_dir / "greeting.txt"
        artifact.write_text(ARTIFACT_TEXT)
        create_function(
            platform,
            "probe",
            write_handler(code_dir / "probe", PROBE),
            timeout_s=10,
            environment={"GREETING": "hi"},
            artifacts={"greeting.txt": str(artifact)},
        )
        create_function(platform, "slow", write_handler(code_dir / "slow", SLOW), timeout_s=2)
        create_function(platform, "hog", write_handler(code_dir / "hog", HOG), memory_mb=128)
        create_function(platform, "caller", write_handler(code_dir / "caller", CALLER))
        platform.deploy(sentiment_model, "sentiment")
        for name in ("probe", "slow", "hog", "caller"):
            wait_active(platform, name)
        for method, path, target in [
            ("ANY", "/v1/items/{id}", "probe"),
            ("GET", "/v1/probe", "probe"),
            ("GET", "/v1/slow", "slow"),
            ("GET", "/v1/hog", "hog"),
            ("POST", "/v1/caller", "caller"),
        ]:
            client.create_route(method, path, function=target)
        client.create_route("POST", "/v1/sentiment", endpoint="sentiment")
        yield platform


def create_function(platform: Platform, name: str, folder: Path, **settings: Any) -> None:
    """Upload the code and POST /api/v1/functions, without waiting (the fixture starts several at once)."""
    stored = platform.client.upload_artifact(folder, f"function-{name}")
    body = {"name": name, "handler": "app.handler", "code_uri": stored["uri"], "code_sha256": stored["sha256"]}
    response = httpx.post(f"{platform.url}/api/v1/functions", json={**body, **settings}, timeout=60)
    assert response.status_code == 201, response.text


def wait_active(platform: Platform, name: str, timeout_s: float = 120.0) -> dict[str, Any]:
    try:
        return platform.client.wait_active(name, timeout_s)
    except Exception as exc:
        raise AssertionError(f"{name}: {exc}\n{platform.diagnostics(name)}") from exc


@pytest.fixture(scope="module")
def http(gw: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=60) as client:
        yield client


def probe(http: httpx.Client, mode: str, **params: str) -> httpx.Response:
    return http.get("/v1/probe", params={"mode": mode, **params})


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]
    return body


def function_pids(platform: Platform, name: str) -> set[int]:
    """The processes of function ``name``'s instance: their working folder is in its run folder."""
    run = f"{platform.state_dir / 'functions' / 'run' / name}/"
    found = set()
    for pid in platform.descendants():
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/cwd").startswith(run):
                found.add(pid)
    return found


def function_logs(platform: Platform, name: str) -> str:
    return platform.cli("function", "logs", name).stdout


def api_key(platform: Platform, name: str) -> str:
    key = platform.cli("apikey", "create", name).stdout.strip()
    assert key.startswith("mhk_"), key
    return key


# -- 1. the lifecycle through the CLI ------------------------------------------------------------------
LIFE_V1 = """
def handler(event, context):
    print("life v1 served " + event["path"])
    return {"version": 1}
"""

LIFE_V2 = """
def handler(event, context):
    print("life v2 served " + event["path"])
    return {"version": 2}
"""


def test_function_and_route_lifecycle_through_the_cli(gw: Platform, http: httpx.Client, code_dir: Path) -> None:
    v1 = write_handler(code_dir / "life-v1", LIFE_V1)
    v2 = write_handler(code_dir / "life-v2", LIFE_V2, module="main")

    created = gw.cli("function", "create", "life", str(v1), "--handler", "app.handler", "--memory", "256")
    assert "function life is Active" in created.stderr, created.stderr
    assert gw.client.describe_function("life")["state"] == "Active"
    v1_pids = function_pids(gw, "life")
    assert v1_pids

    listed = gw.cli("function", "ls", env=WIDE).stdout
    row = next((line for line in listed.splitlines() if " life " in f" {line} "), None)
    assert row is not None, listed
    assert "Active" in row
    assert "app.handler" in row
    assert "30 s" in row
    assert "256 MB" in row

    route = gw.cli("route", "create", "get", "/v1/life", "--function", "life")
    assert "route GET /v1/life -> function life" in route.stderr, route.stderr
    routes = gw.cli("route", "ls", env=WIDE).stdout
    row = next((line for line in routes.splitlines() if "/v1/life" in line), None)
    assert row is not None, routes
    assert "GET" in row
    assert "function life" in row

    answer = http.get("/v1/life")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"version": 1}
    assert answer.headers["content-type"].startswith("application/json")

    # new code (another module even): once `update` returns, the route answers with it
    updated = gw.cli("function", "update", "life", str(v2), "--handler", "main.handler")
    assert "function life is Active (handler main.handler)" in updated.stderr, updated.stderr
    answer = http.get("/v1/life/")  # a trailing slash is the same route
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"version": 2}
    v2_pids = poll(lambda: (pids := function_pids(gw, "life")) and not pids & v1_pids and pids, 30, "v1 stopped")
    assert v2_pids

    logs = poll(lambda: (text := function_logs(gw, "life")) and "life v2 served /v1/life" in text and text, 15, "logs")
    assert "life v2 served" in logs

    # refused while a route calls it, with a clear reason
    refused = gw.cli("function", "rm", "life", check=False)
    assert refused.returncode != 0
    assert "GET /v1/life" in refused.stderr, refused.stderr
    assert "delete them first" in refused.stderr
    assert gw.client.describe_function("life")["state"] == "Active"
    assert http.get("/v1/life").json() == {"version": 2}
    in_use = http.delete("/api/v1/functions/life")
    assert_error(in_use, 409, "ResourceInUse")

    removed = gw.cli("route", "rm", "GET", "/v1/life")
    assert "route GET /v1/life deleted" in removed.stderr
    assert "/v1/life" not in gw.cli("route", "ls", env=WIDE).stdout
    gone = http.get("/v1/life")
    assert gone.status_code == 404, gone.text

    deleted = gw.cli("function", "rm", "life")
    assert "function life deleted" in deleted.stderr
    poll(lambda: not function_pids(gw, "life"), 30, "life's processes gone")
    assert not (gw.state_dir / "functions" / "run" / "life").exists()
    assert " life " not in gw.cli("function", "ls", env=WIDE).stdout
    assert http.get("/api/v1/functions/life").status_code == 404
    again = gw.cli("function", "rm", "life", check=False)
    assert again.returncode != 0
    assert "does not exist" in again.stderr


def test_the_cli_sets_a_functions_timeout(gw: Platform, code_dir: Path) -> None:
    """`function create --timeout 7` (and update --timeout 8) sets the function's timeout."""
    folder = write_handler(code_dir / "timed", "def handler(event, context):\n    return 1\n")
    gw.cli("function", "create", "timed", str(folder), "--handler", "app.handler", "--timeout", "7")
    try:
        assert gw.client.describe_function("timed")["timeout_s"] == 7
        gw.cli("function", "update", "timed", str(folder), "--handler", "app.handler", "--timeout", "8")
        assert gw.client.describe_function("timed")["timeout_s"] == 8
    finally:
        gw.cli("function", "rm", "timed")


def test_the_cli_refuses_a_zero_timeout(gw: Platform, code_dir: Path) -> None:
    """`function create --timeout 0` is refused, naming Timeout, and creates nothing."""
    try:
        result = gw.cli(
            "function", "create", "zero", str(code_dir / "probe"), "--handler", "app.handler", "--timeout", "0",
            check=False,
        )  # fmt: skip
        assert result.returncode != 0
        assert "Timeout" in result.stderr, result.stderr
        assert "zero" not in {f["name"] for f in gw.client.list_functions()}
    finally:
        if "zero" in {f["name"] for f in gw.client.list_functions()}:
            gw.client.delete_function("zero")


def test_the_sdk_sets_a_functions_timeout(gw: Platform, code_dir: Path) -> None:
    """The SDK's create_function(timeout_s=7) sets the function's timeout (the wait is wait_s)."""
    folder = write_handler(code_dir / "timed-sdk", "def handler(event, context):\n    return 1\n")
    gw.client.create_function("timed-sdk", folder, "app.handler", timeout_s=7)
    try:
        assert gw.client.describe_function("timed-sdk")["timeout_s"] == 7
    finally:
        gw.client.delete_function("timed-sdk")


def test_an_update_serves_without_a_gap(gw: Platform, code_dir: Path) -> None:
    v1 = write_handler(code_dir / "gapless-v1", LIFE_V1)
    v2 = write_handler(code_dir / "gapless-v2", LIFE_V2)
    gw.cli("function", "create", "gapless", str(v1), "--handler", "app.handler")
    gw.cli("route", "create", "GET", "/v1/gapless", "--function", "gapless")
    seen: list[tuple[int, Any]] = []
    stop = threading.Event()

    def call_forever() -> None:
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            deadline = time.monotonic() + 90
            while not stop.is_set() and time.monotonic() < deadline:
                response = client.get("/v1/gapless")
                seen.append((response.status_code, response.json()))
                time.sleep(0.02)

    caller = threading.Thread(target=call_forever)
    caller.start()
    try:
        poll(lambda: len(seen) >= 3, 30, "calls before the update")
        gw.cli("function", "update", "gapless", str(v2), "--handler", "app.handler")
        count = len(seen)
        poll(lambda: len(seen) >= count + 3, 30, "calls after the update")
    finally:
        stop.set()
        caller.join(60)
    assert all(status == 200 for status, _ in seen), [s for s in seen if s[0] != 200][:5]
    versions = [answer["version"] for _, answer in seen]
    assert versions == sorted(versions), versions
    assert versions[0] == 1
    assert versions[-1] == 2
    gw.cli("route", "rm", "GET", "/v1/gapless")
    gw.cli("function", "rm", "gapless")


def test_a_failed_update_leaves_the_old_code_serving(gw: Platform, http: httpx.Client, code_dir: Path) -> None:
    good = write_handler(code_dir / "sturdy", LIFE_V1)
    bad = write_handler(code_dir / "sturdy-bad", "import module_that_is_not_there_xyz\n")
    gw.cli("function", "create", "sturdy", str(good), "--handler", "app.handler")
    gw.cli("route", "create", "GET", "/v1/sturdy", "--function", "sturdy")
    try:
        failed = gw.cli("function", "update", "sturdy", str(bad), "--handler", "app.handler", check=False)
        assert failed.returncode != 0
        assert "module_that_is_not_there_xyz" in failed.stderr, failed.stderr
        described = gw.client.describe_function("sturdy")
        assert described["state"] == "Active", described  # on the old code, as a failed endpoint update
        assert "rolled back" in described["failure_reason"], described
        response = http.get("/v1/sturdy")
        print("after a failed update:", response.status_code, response.text)
        assert response.status_code == 200, response.text
        assert response.json() == {"version": 1}
    finally:
        gw.cli("route", "rm", "GET", "/v1/sturdy")
        gw.cli("function", "rm", "sturdy")


# -- 2. the proxy event ----------------------------------------------------------------------------------
def test_the_handler_gets_an_api_gateway_proxy_event(http: httpx.Client) -> None:
    response = http.post(
        "/v1/items/42",
        params=[("mode", "event"), ("tag", "a"), ("tag", "b"), ("empty", "")],
        json={"hello": "world"},
        headers={"x-custom": "custom value"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    event, context = answer["event"], answer["context"]
    assert event["httpMethod"] == "POST"
    assert event["path"] == "/v1/items/42"
    assert event["resource"] == "/v1/items/{id}"
    assert event["pathParameters"] == {"id": "42"}
    assert event["queryStringParameters"] == {"mode": "event", "tag": "b", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {"mode": ["event"], "tag": ["a", "b"], "empty": [""]}
    assert event["headers"]["x-custom"] == "custom value"
    sent_as = {name.lower(): name for name in event["headers"]}  # the names keep the case httpx sent them in
    assert event["headers"][sent_as["content-type"]] == "application/json"
    assert event["multiValueHeaders"]["x-custom"] == ["custom value"]
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == {"hello": "world"}
    assert event["requestContext"]["httpMethod"] == "POST"
    assert event["requestContext"]["resourcePath"] == "/v1/items/{id}"
    assert event["requestContext"]["path"] == "/v1/items/42"
    request_id = event["requestContext"]["requestId"]
    assert request_id
    assert context["aws_request_id"] == request_id
    assert response.headers["x-amzn-requestid"] == request_id
    assert context["function_name"] == "probe"
    assert context["memory_limit_in_mb"] == 512
    assert 0 < context["remaining_ms"] <= 10_000

    # another call, another id
    again = http.get("/v1/items/43", params={"mode": "event"}).json()
    assert again["event"]["requestContext"]["requestId"] != request_id
    assert again["event"]["httpMethod"] == "GET"
    assert again["event"]["pathParameters"] == {"id": "43"}
    assert again["event"]["body"] is None
    assert again["event"]["multiValueQueryStringParameters"] == {"mode": ["event"]}


def test_a_binary_body_comes_base64_encoded(http: httpx.Client) -> None:
    response = http.put(
        "/v1/items/bin", params={"mode": "event"}, content=BINARY, headers={"content-type": "application/octet-stream"}
    )
    assert response.status_code == 200, response.text
    event = response.json()["event"]
    assert event["httpMethod"] == "PUT"
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == BINARY

    text = http.post(
        "/v1/items/txt", params={"mode": "event"}, content="plain words é", headers={"content-type": "text/plain"}
    )
    assert text.json()["event"]["isBase64Encoded"] is False
    assert text.json()["event"]["body"] == "plain words é"


def test_the_query_string_and_path_are_decoded(http: httpx.Client) -> None:
    response = http.get("/v1/items/x", params={"mode": "event", "q": "a b&c=d"})
    assert response.status_code == 200, response.text
    assert response.json()["event"]["queryStringParameters"]["q"] == "a b&c=d"
    no_query = http.get("/v1/items/x", params={"mode": "event"}).json()["event"]
    assert no_query["queryStringParameters"] == {"mode": "event"}


# -- 3. what a handler returns ------------------------------------------------------------------------
def test_a_plain_value_is_the_json_body(http: httpx.Client) -> None:
    response = probe(http, "plain")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == [1, "two", {"three": 3.5}, None, True]
    assert response.headers["x-amzn-requestid"]


def test_a_proxy_response_is_honoured(http: httpx.Client) -> None:
    created = probe(http, "created")
    assert created.status_code == 201, created.text
    assert created.text == "made it"
    assert created.headers["content-type"] == "text/plain"
    assert created.headers["x-probe"] == "yes"

    multi = probe(http, "multi")
    assert multi.status_code == 200, multi.text
    assert multi.headers.get_list("x-multi") == ["a", "b"]
    assert multi.headers["x-single"] == "one"
    assert multi.json() == {"ok": True}
    assert multi.headers["content-type"].startswith("application/json")

    binary = probe(http, "binary")
    assert binary.status_code == 200, binary.text
    assert binary.headers["content-type"] == "application/octet-stream"
    assert binary.content == BINARY


def test_a_malformed_proxy_response_is_a_502(http: httpx.Client) -> None:
    body = assert_error(probe(http, "badstatus"), 502, "FunctionError")
    assert "statusCode" in body["message"]
    assert "1000" in body["message"]
    body = assert_error(probe(http, "badbody"), 502, "FunctionError")
    assert "body" in body["message"]
    body = assert_error(probe(http, "set"), 502, "FunctionError")
    assert "not JSON" in body["message"], body
    assert probe(http, "plain").status_code == 200


def test_a_head_request_keeps_the_connection_usable(gw: Platform) -> None:
    """HEAD is answered with the head only: the connection stays usable for the next request."""
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        head = http.head("/v1/items/1", params={"mode": "plain"})
        assert head.status_code == 200, head.text
        assert head.content == b""
        after = http.get("/v1/items/1", params={"mode": "plain"})  # the same kept-alive connection
        assert after.status_code == 200, after.text
        assert after.json() == [1, "two", {"three": 3.5}, None, True]


@pytest.mark.parametrize("path", ["/api/v1/health", "/endpoints/sentiment/invocations"])
def test_head_on_the_platforms_own_paths_keeps_the_connection_usable(gw: Platform, path: str) -> None:
    """The API (relayed) and the invocation path (a 405 there) answer HEAD without a body too."""
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        head = http.head(path)
        assert head.status_code in (200, 405), head.text
        assert head.content == b""
        after = http.get("/api/v1/health")  # the same kept-alive connection
        assert after.status_code == 200, after.text
        assert after.json()["status"] == "ok"


def test_repeated_request_headers_are_all_in_multi_value_headers(http: httpx.Client) -> None:
    response = http.get("/v1/items/h", params={"mode": "event"}, headers=[("x-twice", "one"), ("x-twice", "two")])
    event = response.json()["event"]
    assert event["multiValueHeaders"]["x-twice"] == ["one", "two"]
    assert event["headers"]["x-twice"] in ("two", "one,two", "one, two")


# -- 4. a handler that raises -----------------------------------------------------------------------------
def test_a_handler_that_raises_is_a_502_with_its_error(gw: Platform, http: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    response = probe(http, "raise", msg=marker)
    body = assert_error(response, 502, "FunctionError")
    assert "ValueError" in body["message"], body
    assert f"the probe was told to fail: {marker}" in body["message"], body
    assert body["request_id"] == response.headers["x-amzn-requestid"]

    logs = poll(lambda: (text := function_logs(gw, "probe")) and marker in text and text, 15, "the traceback")
    assert "Traceback" in logs
    assert f"ValueError: the probe was told to fail: {marker}" in logs

    # it keeps serving
    assert probe(http, "plain").status_code == 200
    assert gw.client.describe_function("probe")["state"] == "Active"


def test_what_a_handler_prints_is_in_its_logs(gw: Platform, http: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    response = probe(http, "print", msg=marker)
    assert response.status_code == 200, response.text
    assert response.json() == {"printed": marker}
    poll(lambda: f"probe printed {marker}" in function_logs(gw, "probe"), 15, "the printed line in the logs")


# -- 5. timeouts --------------------------------------------------------------------------------------------
def test_a_handler_past_its_timeout_is_a_504_then_serves_again(gw: Platform, http: httpx.Client) -> None:
    assert http.get("/v1/slow").json()["slow"] == "fine"
    started = time.monotonic()
    response = http.get("/v1/slow", params={"mode": "sleep"})
    took = time.monotonic() - started
    body = assert_error(response, 504, "FunctionTimeout")
    assert "slow" in body["message"]
    assert 1.5 <= took <= 2 + 6, took

    # the next call is served: the stuck worker was recycled (a 503 from it is retried by the gateway)
    after = http.get("/v1/slow")
    assert after.status_code == 200, after.text
    assert after.json()["slow"] == "fine"
    assert 0 < after.json()["remaining_ms"] <= 2000
    for _ in range(3):
        assert http.get("/v1/slow").status_code == 200
    assert gw.client.describe_function("slow")["state"] == "Active"


# -- 6. memory ------------------------------------------------------------------------------------------------
def test_a_handler_beyond_its_memory_gets_a_memory_error(gw: Platform, http: httpx.Client) -> None:
    assert http.get("/v1/hog").json() == {"hog": "fine"}
    response = http.get("/v1/hog", params={"mode": "hog"})
    body = assert_error(response, 502, "FunctionError")
    assert "MemoryError" in body["message"], body
    after = http.get("/v1/hog")
    assert after.status_code == 200, after.text
    assert after.json() == {"hog": "fine"}


# -- 7. a route to an endpoint ----------------------------------------------------------------------------
def test_a_route_to_an_endpoint_invokes_the_model(http: httpx.Client) -> None:
    response = http.post("/v1/sentiment", content=orjson.dumps(TEXTS), headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json() == [1, 0]
    one = http.post("/v1/sentiment", json=["love this wonderful app"])
    assert one.json() == [1]


# -- 8. a function calling an endpoint -------------------------------------------------------------------
def test_a_function_calls_an_endpoint_through_the_runtime_and_boto3(http: httpx.Client) -> None:
    response = http.post("/v1/caller", json=TEXTS)
    assert response.status_code == 200, response.text
    assert response.json() == {"runtime": [1, 0], "boto3": [1, 0]}


SIGNER = """
import json

import boto3


def handler(event, context):
    client = boto3.client("sagemaker-runtime")
    answer = client.invoke_endpoint(EndpointName="sentiment", Body=event["body"], ContentType="application/json")
    return {"boto3": json.loads(answer["Body"].read())}
"""


def test_with_a_token_a_functions_boto3_signs_with_the_admin_credentials(
    start_platform: StartPlatform, sentiment_model: Path, tmp_path: Path
) -> None:
    """On `up --token`, a function's boto3 (configured only by the platform's environment) may invoke an
    endpoint that requires an API key; the routes need no admin token, the API does."""
    token = secrets.token_hex(16)
    platform = start_platform(token=token)
    platform.cli("deploy", str(sentiment_model), "--name", "sentiment", "--require-api-key")
    platform.cli("function", "create", "signer", str(write_handler(tmp_path / "signer", SIGNER)), "--handler",
                 "app.handler")  # fmt: skip
    platform.cli("route", "create", "POST", "/v1/signer", "--function", "signer")
    response = httpx.post(f"{platform.url}/v1/signer", json=TEXTS, timeout=60)
    assert response.status_code == 200, f"{response.text}\n{platform.diagnostics()}"
    assert response.json() == {"boto3": [1, 0]}
    assert httpx.get(f"{platform.url}/api/v1/functions").status_code == 401
    unsigned = httpx.post(f"{platform.url}/endpoints/sentiment/invocations", json=TEXTS)
    assert unsigned.status_code == 401, unsigned.text


# -- 9. artifacts and environment ---------------------------------------------------------------------------
def test_the_handler_reads_its_artifact_and_environment(gw: Platform, http: httpx.Client) -> None:
    response = probe(http, "artifact")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["text"] == ARTIFACT_TEXT
    assert Path(answer["folder"]).is_absolute()
    assert probe(http, "env").json() == {"GREETING": "hi"}
    described = gw.client.describe_function("probe")
    assert set(described["artifacts"]) == {"greeting.txt"}
    assert described["environment"]["GREETING"] == "hi"


def test_an_artifact_given_through_the_cli(gw: Platform, http: httpx.Client, code_dir: Path) -> None:
    data = code_dir / "numbers.bin"
    data.write_bytes(b"\x01\x02\x03")
    source = """
    import os


    def handler(event, context):
        path = os.path.join(os.environ["MODELHOST_FUNCTION_ARTIFACTS_DIR"], "numbers")
        with open(path, "rb") as file:
            return list(file.read())
    """
    folder = write_handler(code_dir / "reader", source)
    gw.cli("function", "create", "reader", str(folder), "--handler", "app.handler", "--artifact", f"numbers={data}")
    gw.cli("route", "create", "GET", "/v1/reader", "--function", "reader")
    try:
        response = http.get("/v1/reader")
        assert response.status_code == 200, response.text
        assert response.json() == [1, 2, 3]
    finally:
        gw.cli("route", "rm", "GET", "/v1/reader")
        gw.cli("function", "rm", "reader")


# -- 10. API keys and usage ------------------------------------------------------------------------------------
def test_a_route_that_requires_an_api_key(gw: Platform, http: httpx.Client) -> None:
    gw.cli("route", "create", "GET", "/v1/guarded", "--function", "probe", "--api-key-required")
    first, second = api_key(gw, "route-key-1"), api_key(gw, "route-key-2")
    params = {"mode": "plain"}

    missing = http.get("/v1/guarded", params=params)
    body = assert_error(missing, 401, "MissingAuthenticationToken")
    assert "x-api-key" in body["message"]
    assert_error(http.get("/v1/guarded", params=params, headers={"x-api-key": "mhk_" + "x" * 43}), 403, "Forbidden")
    assert_error(http.get("/v1/guarded", params=params, headers={"x-api-key": first[:-1]}), 403, "Forbidden")

    for _ in range(3):
        served = http.get("/v1/guarded", params=params, headers={"x-api-key": first})
        assert served.status_code == 200, served.text
        assert served.json() == [1, "two", {"three": 3.5}, None, True]
    assert http.get("/v1/guarded", params=params, headers={"X-Api-Key": second}).status_code == 200

    # the event says which key called
    event = http.get("/v1/guarded", params={"mode": "event"}, headers={"x-api-key": second}).json()["event"]
    assert event["requestContext"]["identity"]["apiKeyId"] == "route-key-2"
    assert second not in json.dumps(event["requestContext"]["identity"])

    usage = http.get("/api/v1/usage")
    assert usage.status_code == 200, usage.text
    counts = {(u["api_key"], u["route"]): u["calls"] for u in usage.json()["usage"]}
    assert counts[("route-key-1", "GET /v1/guarded")] == 3
    assert counts[("route-key-2", "GET /v1/guarded")] == 2
    assert gw.client.usage() == usage.json()["usage"]

    gw.cli("apikey", "revoke", "route-key-1")
    assert_error(http.get("/v1/guarded", params=params, headers={"x-api-key": first}), 403, "Forbidden")
    assert http.get("/v1/guarded", params=params, headers={"x-api-key": second}).status_code == 200
    counts = {(u["api_key"], u["route"]): u["calls"] for u in gw.client.usage()}
    assert counts[("route-key-1", "GET /v1/guarded")] == 3  # refused calls are not counted
    assert counts[("route-key-2", "GET /v1/guarded")] == 3

    # a route that needs no key ignores a wrong one
    assert probe(http, "plain").status_code == 200
    assert http.get("/v1/probe", params=params, headers={"x-api-key": "mhk_nonsense"}).status_code == 200


# -- 11. rate limits -------------------------------------------------------------------------------------------
def burst(http: httpx.Client, path: str, n: int, headers: dict[str, str] | None = None) -> list[httpx.Response]:
    deadline = time.monotonic() + 30
    responses = []
    for _ in range(n):
        assert time.monotonic() < deadline, "the burst took too long"
        responses.append(http.get(path, params={"mode": "plain"}, headers=headers or {}))
    return responses


def assert_throttled(responses: list[httpx.Response], tokens: int = 5) -> None:
    """The first ``tokens`` served, then (30 requests in well under a second) mostly 429s, nothing else."""
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[:tokens] == [200] * tokens, statuses
    refused = [r for r in responses if r.status_code == 429]
    assert len(refused) >= 10, statuses
    for response in refused:
        retry_after = response.headers["retry-after"]
        assert retry_after.isdigit(), retry_after
        assert int(retry_after) >= 1
        body = assert_error(response, 429, "TooManyRequestsException")
        assert "Rate exceeded" in body["message"]


def test_a_rate_limited_route_answers_429_then_recovers(gw: Platform, http: httpx.Client) -> None:
    gw.cli("route", "create", "GET", "/v1/limited", "--function", "probe", "--rate", "5/s", "--burst", "5")
    listed = next(r for r in gw.client.list_routes() if r["path"] == "/v1/limited")
    assert (listed["rate_per_s"], listed["burst"]) == (5.0, 5)
    assert "5/s, burst 5" in gw.cli("route", "ls", env=WIDE).stdout

    assert_throttled(burst(http, "/v1/limited", 30))
    time.sleep(1.1)
    after = http.get("/v1/limited", params={"mode": "plain"})
    assert after.status_code == 200, after.text


def test_each_api_key_has_its_own_bucket(gw: Platform, http: httpx.Client) -> None:
    gw.cli("route", "create", "GET", "/v1/per-key", "--function", "probe", "--rate", "5/s", "--burst", "5",
           "--api-key-required")  # fmt: skip
    first, second = api_key(gw, "bucket-1"), api_key(gw, "bucket-2")
    assert_throttled(burst(http, "/v1/per-key", 30, {"x-api-key": first}))
    other = http.get("/v1/per-key", params={"mode": "plain"}, headers={"x-api-key": second})
    assert other.status_code == 200, other.text
    second_burst = burst(http, "/v1/per-key", 30, {"x-api-key": second})
    assert_throttled(second_burst, tokens=4)  # one went to `other`
    counts = {(u["api_key"], u["route"]): u["calls"] for u in gw.client.usage()}
    served = 1 + sum(r.status_code == 200 for r in second_burst)
    assert counts[("bucket-2", "GET /v1/per-key")] == served  # a throttled call is not counted


# -- 12. body limits ---------------------------------------------------------------------------------------------
def test_a_body_over_the_routes_limit_is_a_413(gw: Platform, http: httpx.Client) -> None:
    gw.cli("route", "create", "POST", "/v1/small", "--function", "probe", "--max-body-mb", "0.001")
    limit = next(r for r in gw.client.list_routes() if r["path"] == "/v1/small")["max_body_bytes"]
    assert 1000 <= limit <= 1100

    fits = http.post("/v1/small", params={"mode": "plain"}, content=b"x" * 500)
    assert fits.status_code == 200, fits.text

    too_large = http.post("/v1/small", params={"mode": "plain"}, content=b"x" * 10_240)
    body = assert_error(too_large, 413, "ValidationError")
    assert "larger than the limit" in body["message"]

    chunked = http.post("/v1/small", params={"mode": "plain"}, content=iter([b"x" * 2048] * 5))
    assert_error(chunked, 413, "ValidationError")

    # said up front: refused before any body is sent
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/small?mode=plain HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 50000000\r\n\r\n"
        )
        received = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            head, sep, rest = received.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= length:
                    break
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), received[:500]
    assert json.loads(rest)["error"] == "ValidationError"

    # still served afterwards
    assert http.post("/v1/small", params={"mode": "plain"}, content=b"{}").status_code == 200


# -- 13. validation -----------------------------------------------------------------------------------------------
def test_routes_are_validated(gw: Platform, http: httpx.Client) -> None:
    def refused(body: dict[str, Any], *words: str) -> None:
        response = http.post("/api/v1/routes", json=body)
        answer = assert_error(response, 400, "ValidationException")
        for word in words:
            assert word in answer["message"], answer

    refused({"method": "GET", "path": "/api/v1/mine", "function": "probe"}, "Path")
    refused({"method": "GET", "path": "/api", "function": "probe"}, "Path")
    refused({"method": "POST", "path": "/endpoints/sentiment/invocations", "function": "probe"}, "Path")
    refused({"method": "GET", "path": "/", "function": "probe"}, "Path")
    refused({"method": "GET", "path": "no-slash", "function": "probe"}, "Path")
    refused({"method": "GET", "path": "/v1/{a}/{a}", "function": "probe"}, "Path")
    refused({"method": "GET", "path": "/v1/unknown", "function": "no-such-function"}, "no-such-function")
    refused({"method": "GET", "path": "/v1/unknown", "endpoint": "no-such-endpoint"}, "no-such-endpoint")
    refused({"method": "GET", "path": "/v1/both", "function": "probe", "endpoint": "sentiment"}, "exactly one")
    refused({"method": "GET", "path": "/v1/neither"}, "exactly one")
    refused({"method": "FETCH", "path": "/v1/m", "function": "probe"}, "Method")
    refused({"method": "GET", "path": "/v1/r", "function": "probe", "rate": "fast"}, "Rate")
    refused({"method": "GET", "path": "/v1/r", "function": "probe", "rate": "0/s"}, "Rate")
    refused({"method": "GET", "path": "/v1/r", "function": "probe", "burst": 3}, "rate")
    refused({"method": "GET", "path": "/v1/r", "function": "probe", "max_body_bytes": 0}, "MaxBodyBytes")

    # through the CLI
    cli = gw.cli("route", "create", "GET", "/api/v1/mine", "--function", "probe", check=False)
    assert cli.returncode != 0
    assert "Path" in cli.stderr, cli.stderr
    both = gw.cli("route", "create", "GET", "/v1/both", "--function", "probe", "--endpoint", "sentiment", check=False)
    assert both.returncode != 0
    assert "exactly one" in both.stderr, both.stderr
    unknown = gw.cli("route", "create", "GET", "/v1/unknown", "--function", "no-such-function", check=False)
    assert unknown.returncode != 0
    assert "no-such-function" in unknown.stderr

    # ambiguous templates
    gw.client.create_route("GET", "/v1/amb/{x}", function="probe")
    refused({"method": "GET", "path": "/v1/amb/{y}", "function": "probe"}, "Path", "/v1/amb/{x}")
    refused({"method": "ANY", "path": "/v1/amb/{z}", "function": "probe"}, "Path")
    duplicate = http.post("/api/v1/routes", json={"method": "GET", "path": "/v1/amb/{x}", "function": "probe"})
    assert duplicate.status_code == 409, duplicate.text
    answer = http.get("/v1/amb/7", params={"mode": "event"})
    assert answer.json()["event"]["pathParameters"] == {"x": "7"}

    assert not [r for r in gw.client.list_routes() if r["path"] in ("/api/v1/mine", "/v1/both", "/v1/unknown")]


def test_functions_are_validated(gw: Platform, http: httpx.Client, code_dir: Path) -> None:
    def refused(body: dict[str, Any], word: str) -> None:
        fields = {"name": "bad", "code_uri": str(code_dir / "probe"), "handler": "app.handler", **body}
        answer = assert_error(http.post("/api/v1/functions", json=fields), 400, "ValidationException")
        assert word in answer["message"], answer

    refused({"handler": "app"}, "Handler")
    refused({"handler": "app.lambda-handler"}, "Handler")
    refused({"handler": "app.handler()"}, "Handler")
    refused({"timeout_s": 0}, "Timeout")
    refused({"timeout_s": 901}, "Timeout")
    refused({"memory_mb": 64}, "MemorySize")
    refused({"name": "Not A Name!"}, "Name")
    refused({"artifacts": {"../escape": "/etc/hostname"}}, "Artifacts")

    cli = gw.cli("function", "create", "bad", str(code_dir / "probe"), "--handler", "nodots", check=False)
    assert cli.returncode != 0
    assert "Handler" in cli.stderr, cli.stderr
    assert "bad" not in {f["name"] for f in gw.client.list_functions()}

    duplicate = http.post(
        "/api/v1/functions", json={"name": "probe", "code_uri": str(code_dir / "probe"), "handler": "app.handler"}
    )
    assert duplicate.status_code == 409, duplicate.text


def test_a_path_without_a_route_is_the_apis_404(http: httpx.Client) -> None:
    response = http.get("/v1/no-route-here")
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()
    # a template does not match more segments than it has
    assert http.get("/v1/items/1/2").status_code == 404


def test_an_exact_route_wins_over_a_template(gw: Platform, http: httpx.Client) -> None:
    gw.client.create_route("GET", "/v1/items/special", function="probe")
    exact = http.get("/v1/items/special", params={"mode": "event"}).json()["event"]
    assert exact["resource"] == "/v1/items/special"
    assert exact["pathParameters"] is None
    other = http.get("/v1/items/ordinary", params={"mode": "event"}).json()["event"]
    assert other["resource"] == "/v1/items/{id}"
    gw.client.delete_route("GET", "/v1/items/special")
    again = http.get("/v1/items/special", params={"mode": "event"}).json()["event"]
    assert again["resource"] == "/v1/items/{id}"


def test_a_known_path_with_another_method_is_a_405(http: httpx.Client) -> None:
    """A path that routes take with other methods is a 405 with Allow, not relayed to the API's 404."""
    response = http.get("/v1/sentiment")  # POST-only route
    assert response.status_code == 405, response.text


# -- 15. a handler that cannot load ---------------------------------------------------------------------------
def test_a_handler_that_cannot_load_fails_the_function(gw: Platform, http: httpx.Client, code_dir: Path) -> None:
    folder = write_handler(
        code_dir / "broken", "import module_that_is_not_there_xyz\n\ndef handler(e, c):\n    return 1\n"
    )
    started = time.monotonic()
    result = gw.cli("function", "create", "broken", str(folder), "--handler", "app.handler", check=False)
    assert result.returncode != 0, result.stderr
    assert "module_that_is_not_there_xyz" in result.stderr, result.stderr
    assert time.monotonic() - started < 90
    described = gw.client.describe_function("broken")
    assert described["state"] == "Failed"
    assert "module_that_is_not_there_xyz" in (described["failure_reason"] or "")
    assert "Failed" in next(line for line in gw.cli("function", "ls", env=WIDE).stdout.splitlines() if "broken" in line)

    # a route may name it; calling it says it failed
    gw.client.create_route("GET", "/v1/broken", function="broken")
    body = assert_error(http.get("/v1/broken"), 502, "FunctionFailed")
    assert "broken" in body["message"]
    gw.client.delete_route("GET", "/v1/broken")

    # a handler the module does not define
    missing = write_handler(code_dir / "no-handler", "def other(e, c):\n    return 1\n")
    result = gw.cli("function", "update", "broken", str(missing), "--handler", "app.handler", check=False)
    assert result.returncode != 0
    assert "handler" in result.stderr
    assert gw.client.describe_function("broken")["state"] == "Failed"

    gw.cli("function", "rm", "broken")


# -- 14. a restart ------------------------------------------------------------------------------------------------
def test_functions_and_routes_come_back_after_a_restart(gw: Platform, http: httpx.Client) -> None:
    """Last in the module: restarts the shared platform."""
    gw.client.create_route("GET", "/v1/kept", function="probe", api_key_required=True, rate="5/s", burst=5)
    key = api_key(gw, "kept-key")
    assert http.get("/v1/kept", params={"mode": "plain"}, headers={"x-api-key": key}).status_code == 200
    before = {r["path"] for r in gw.client.list_routes()}
    gw.restart()
    # the first look after the restart: a function is not Active before it serves again
    state = gw.client.describe_function("probe")["state"]
    first = probe(http, "plain")
    assert state != "Active" or first.status_code == 200, f"Active while its route answered {first.status_code}"
    for name in ("probe", "slow", "hog", "caller"):
        wait_active(gw, name)
    gw.wait_in_service("sentiment")
    assert {r["path"] for r in gw.client.list_routes()} == before

    answer = probe(http, "plain")
    assert answer.status_code == 200, answer.text
    assert answer.json() == [1, "two", {"three": 3.5}, None, True]
    assert probe(http, "artifact").json()["text"] == ARTIFACT_TEXT
    assert http.post("/v1/sentiment", json=TEXTS).json() == [1, 0]
    assert http.post("/v1/caller", json=TEXTS).json() == {"runtime": [1, 0], "boto3": [1, 0]}
    assert http.get("/v1/items/9", params={"mode": "event"}).json()["event"]["pathParameters"] == {"id": "9"}
    # a route's key requirement and rate limit survive too
    assert_error(http.get("/v1/kept", params={"mode": "plain"}), 401, "MissingAuthenticationToken")
    assert_throttled(burst(http, "/v1/kept", 30, {"x-api-key": key}))


def test_apikey_create_takes_the_name_as_an_option_too(gw: Platform) -> None:
    """The issue's spelling, `modelhost apikey create --name mobile-app`, prints the key once."""
    created = gw.cli("apikey", "create", "--name", "mobile-app")
    key = created.stdout.strip()
    assert key.startswith("mhk_")
    assert "mobile-app" in {k["name"] for k in gw.client.list_api_keys()}
    both = gw.cli("apikey", "create", "one", "--name", "two", check=False)
    assert both.returncode != 0
    assert "give the key's name once" in both.stderr
    gw.client.revoke_api_key("mobile-app")
