"""The gateway's API beyond routes and functions, against a real `modelhost up`.

- a function reaches an endpoint that requires an API key, with no key in its code: through
  modelhost.runtime.invoke_endpoint (the platform's credential in MODELHOST_ACCESS_KEY_ID /
  MODELHOST_SECRET_ACCESS_KEY) and boto3 (AWS_* set by the platform), and when the function has
  AWS credentials of its own;
- ``modelhost apikey usage [NAME]`` and ``apikey ls`` (rate and burst);
- replacing a route (PUT /api/v1/routes, ``modelhost route update``), and what the OpenAPI
  document then says.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from tests.platform.conftest import Platform, platforms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

WIDE = {"COLUMNS": "200"}  # rich's tables in a pipe: no wrapping of the cells
TEXTS = ["great amazing day", "awful broken app"]

# Calls the protected endpoint three ways and reports each outcome (an error as its class and text).
CALLER = """
import json
import os

import boto3

from modelhost.runtime import InvocationFailed, invoke_endpoint


def outcome(call):
    try:
        return call()
    except InvocationFailed as exc:
        return f"InvocationFailed {exc.status} {exc.code}"
    except Exception as exc:
        return f"{type(exc).__name__} {exc}"


def boto3_answer(client):
    answer = client.invoke_endpoint(EndpointName="guarded", Body=json.dumps(TEXTS), ContentType="application/json")
    return json.loads(answer["Body"].read())


TEXTS = ["great amazing day", "awful broken app"]


def handler(event, context):
    platform_credential = boto3.client(
        "sagemaker-runtime",
        aws_access_key_id=os.environ["MODELHOST_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["MODELHOST_SECRET_ACCESS_KEY"],
    )
    return {
        "runtime": outcome(lambda: invoke_endpoint("guarded", TEXTS)),
        "boto3": outcome(lambda: boto3_answer(boto3.client("sagemaker-runtime"))),
        "boto3_platform_credential": outcome(lambda: boto3_answer(platform_credential)),
    }
"""

# With a token: the function's credential invokes endpoints, and nothing else.
MANAGER = """
import boto3

from modelhost.runtime import invoke_endpoint


def handler(event, context):
    try:
        boto3.client("sagemaker").list_endpoints()
        control = "allowed"
    except Exception as exc:
        control = exc.response["Error"]["Code"] if hasattr(exc, "response") else repr(exc)
    return {"control": control, "runtime": invoke_endpoint("guarded", ["great amazing day"])}
"""

ECHO = """
def handler(event, context):
    return {"version": "%s", "path": event["path"]}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sentiment_model: Path) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("gateway-extras")
    code = root / "caller"
    code.mkdir()
    (code / "app.py").write_text(textwrap.dedent(CALLER))
    with platforms(root) as start:
        platform = start()
        client = platform.client
        platform.deploy(sentiment_model, "guarded", require_api_key=True)
        client.create_function("caller", code, "app.handler")
        client.create_function(  # as a function that talks to AWS too would be set up
            "aws-caller",
            code,
            "app.handler",
            environment={"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-for-modelhost"},
        )
        client.create_route("POST", "/v1/caller", function="caller")
        client.create_route("POST", "/v1/aws-caller", function="aws-caller")
        yield platform


@pytest.fixture(scope="module")
def http(gw: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=60) as client:
        yield client


def cells(table: str) -> list[list[str]]:
    """The body and footer rows of a rich table, as their cells' text."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")] for line in table.splitlines() if "│" in line]


def echo_code(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(textwrap.dedent(ECHO % version))
    return folder


# -- a function invoking a protected endpoint --------------------------------------------------------------
def test_the_endpoint_refuses_a_caller_without_a_key(http: httpx.Client) -> None:
    assert http.post("/endpoints/guarded/invocations", json=TEXTS).status_code == 401


def test_a_function_invokes_a_protected_endpoint_with_no_key_in_its_code(http: httpx.Client) -> None:
    answer = http.post("/v1/caller", json={})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"runtime": [1, 0], "boto3": [1, 0], "boto3_platform_credential": [1, 0]}


def test_a_function_with_aws_credentials_of_its_own_still_reaches_the_endpoint(http: httpx.Client) -> None:
    """Its boto3 signs with its AWS credentials, which modelhost does not know (403); invoke_endpoint and a
    boto3 client made with the platform's credential still work."""
    answer = http.post("/v1/aws-caller", json={})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["runtime"] == [1, 0]
    assert result["boto3_platform_credential"] == [1, 0]
    assert result["boto3"].startswith("ClientError"), result
    assert "UnrecognizedClient" in result["boto3"], result


def test_a_functions_credential_may_invoke_but_not_manage_a_platform_with_a_token(
    tmp_path: Path, sentiment_model: Path
) -> None:
    code = tmp_path / "manager"
    code.mkdir()
    (code / "app.py").write_text(textwrap.dedent(MANAGER))
    token = "t-" + "x" * 30
    with platforms(tmp_path / "with-token") as start:
        platform = start(token=token)
        platform.deploy(sentiment_model, "guarded", require_api_key=True)
        platform.client.create_function("manager", code, "app.handler")
        platform.client.create_route("POST", "/v1/manager", function="manager")
        with httpx.Client(base_url=platform.url, timeout=60) as http:
            answer = http.post("/v1/manager", json={})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"control": "UnrecognizedClientException", "runtime": [1]}


# -- apikey usage and ls --------------------------------------------------------------------------------------
def test_apikey_ls_shows_each_keys_rate_and_burst(gw: Platform) -> None:
    gw.cli("apikey", "create", "limited-key", "--rate", "10/s", "--burst", "20")
    gw.cli("apikey", "create", "free-key")
    lines = gw.cli("apikey", "ls", env=WIDE).stdout.splitlines()
    limited = next(line for line in lines if "limited-key" in line)
    free = next(line for line in lines if "free-key" in line)
    assert "10/s, burst 20" in limited, lines
    assert "burst" not in free, lines


def test_apikey_usage_counts_each_keys_calls_per_route(gw: Platform, http: httpx.Client, tmp_path: Path) -> None:
    gw.client.create_function("echo", echo_code(tmp_path / "echo", "1"), "app.handler")
    gw.client.create_route("GET", "/v1/counted", function="echo", api_key_required=True)
    gw.client.create_route("GET", "/v1/also-counted", function="echo", api_key_required=True)
    first = gw.cli("apikey", "create", "usage-one").stdout.strip()
    second = gw.cli("apikey", "create", "usage-two").stdout.strip()
    calls = [(first, "/v1/counted")] * 3 + [(first, "/v1/also-counted")] * 2 + [(second, "/v1/counted")] * 4
    for key, path in calls:
        assert http.get(path, headers={"x-api-key": key}).status_code == 200
    assert http.get("/v1/counted", headers={"x-api-key": "mhk_wrong"}).status_code == 403  # not counted

    everyone = cells(gw.cli("apikey", "usage", env=WIDE).stdout)
    one = cells(gw.cli("apikey", "usage", "usage-one", env=WIDE).stdout)
    day = gw.client.usage("usage-one")[0]["day"]
    assert one == [
        ["usage-one", "GET /v1/also-counted", day, "2"],
        ["usage-one", "GET /v1/counted", day, "3"],
        ["total", "", "", "5"],
    ]
    assert ["usage-two", "GET /v1/counted", day, "4"] in everyone
    assert everyone[-1][0] == "total"
    assert gw.client.usage("usage-two") == [
        {"api_key": "usage-two", "route": "GET /v1/counted", "day": day, "calls": 4}
    ]

    nothing = gw.cli("apikey", "usage", "free-key", env=WIDE)
    assert nothing.stdout == ""
    assert "no calls with key free-key yet" in nothing.stderr


# -- replacing a route ----------------------------------------------------------------------------------------
def test_a_route_is_replaced_in_place(gw: Platform, http: httpx.Client, tmp_path: Path) -> None:
    gw.client.create_function("v-one", echo_code(tmp_path / "one", "1"), "app.handler")
    gw.client.create_function("v-two", echo_code(tmp_path / "two", "2"), "app.handler")
    gw.cli("route", "create", "POST", "/v1/versioned", "--function", "v-one")
    assert http.post("/v1/versioned").json()["version"] == "1"
    created_at = next(r for r in gw.client.list_routes() if r["path"] == "/v1/versioned")["created_at"]

    schema = tmp_path / "answer.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"version": {"type": "string"}}}))
    gw.cli(
        "route", "update", "POST", "/v1/versioned", "--function", "v-two", "--api-key-required", "--rate", "5/s",
        "--response-schema", str(schema), "--response-example", '{"version": "2"}', "--summary", "Which version",
    )  # fmt: skip
    assert http.post("/v1/versioned").status_code == 401
    key = gw.client.create_api_key("versioned-key")["key"]
    assert http.post("/v1/versioned", headers={"x-api-key": key}).json()["version"] == "2"
    route = next(r for r in gw.client.list_routes() if r["path"] == "/v1/versioned")
    assert (route["target"], route["rate_per_s"], route["created_at"]) == ("v-two", 5.0, created_at)

    document = http.get("/api/v1/gateway/openapi.json").json()
    validate(document)
    post = document["paths"]["/v1/versioned"]["post"]
    assert post["summary"] == "Which version"
    assert post["responses"]["200"]["content"]["application/json"]["example"] == {"version": "2"}
    assert post["security"] == [{"apiKey": []}]
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), ids

    missing = gw.cli("route", "update", "POST", "/v1/not-there", "--function", "v-two", check=False)
    assert missing.returncode != 0
    assert "does not exist" in missing.stderr
    refused = httpx.put(f"{gw.url}/api/v1/routes", json={"method": "POST", "path": "/v1/versioned", "function": "nope"})
    assert refused.status_code == 400, refused.text
    assert http.post("/v1/versioned", headers={"x-api-key": key}).json()["version"] == "2"
