"""A route's contract, against a real `modelhost up`: request schemas, CORS, the OpenAPI document.

The document is checked with openapi-spec-validator and fuzzed with schemathesis (no 5xx from the
gateway itself: the function behind the routes never fails, so a 5xx would be the gateway's).
Also: a Lambda-style .zip deployment package as a function's code.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.platform.conftest import Platform, platforms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ECHO = """
import base64
import json

def handler(event, context):
    body = event.get("body")
    if body is not None and event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("latin-1")
    try:
        body = json.loads(body) if body else None
    except ValueError:
        pass  # not JSON: echoed as text
    return {"method": event["httpMethod"], "params": event["pathParameters"], "body": body}
"""
CUSTOMER_SCHEMA = {
    "type": "object",
    "required": ["State", "Account Length"],
    "properties": {
        "State": {"type": "string", "minLength": 2, "maxLength": 2},
        "Account Length": {"type": "integer", "minimum": 0},
        "Plans": {"type": "array", "items": {"enum": ["intl", "vmail"]}},
    },
    "additionalProperties": False,
}
EXAMPLE = {"State": "SC", "Account Length": 15, "Plans": ["intl"]}


def zip_package(path: Path, source: str) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("app.py", source)
    return path


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("gateway-openapi")
    with platforms(root) as start:
        platform = start()
        client = platform.client
        client.create_function("echo", zip_package(root / "echo.zip", ECHO), "app.handler")
        client.create_route(
            "POST",
            "/v1/customers",
            function="echo",
            request_schema=CUSTOMER_SCHEMA,
            example=EXAMPLE,
            summary="Score a customer",
            cors={"allow_origins": ["https://app.example"]},
        )
        client.create_route("GET", "/v1/customers/{id}", function="echo", cors={"allow_origins": ["*"]})
        client.create_route("ANY", "/v1/keyed/{name}", function="echo", api_key_required=True)
        yield platform


@pytest.fixture(scope="module")
def http(gw: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        yield client


def test_a_zip_package_is_a_functions_code(http: httpx.Client) -> None:
    answer = http.get("/v1/customers/7")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"method": "GET", "params": {"id": "7"}, "body": None}


def test_a_body_that_satisfies_the_schema_reaches_the_function(http: httpx.Client) -> None:
    answer = http.post("/v1/customers", json=EXAMPLE)
    assert answer.status_code == 200, answer.text
    assert answer.json()["body"] == EXAMPLE


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"State": "SCX", "Account Length": 15}, "State", "is too long"),
        ({"State": "SC", "Account Length": "15"}, "Account Length", "is not of type 'integer'"),
        ({"State": "SC", "Account Length": -1}, "Account Length", "less than the minimum"),
        ({"State": "SC", "Account Length": 1, "Plans": ["golf"]}, "Plans.0", "is not one of"),
        ({"State": "SC"}, None, "'Account Length' is a required property"),
        ({"State": "SC", "Account Length": 1, "Extra": 1}, None, "Additional properties are not allowed"),
        ([1, 2], None, "is not of type 'object'"),
    ],
)
def test_a_body_that_breaks_the_schema_is_a_400_naming_the_field(
    http: httpx.Client, body: object, field: str | None, says: str
) -> None:
    answer = http.post("/v1/customers", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["error"] == "ValidationError"
    assert says in error["message"], error
    assert error["field"] == field
    if field:
        assert error["message"].startswith(f"body.{field}: ")


def test_a_body_that_is_not_json_is_a_400(http: httpx.Client) -> None:
    answer = http.post("/v1/customers", content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["message"].startswith("body: malformed JSON")


def test_a_schema_route_takes_json_only(http: httpx.Client) -> None:
    answer = http.post("/v1/customers", content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"] == "UnsupportedMediaType"
    typed = http.post("/v1/customers", json=EXAMPLE, headers={"content-type": "application/json; charset=utf-8"})
    assert typed.status_code == 200, typed.text


def test_a_route_with_a_broken_schema_or_an_example_that_breaks_it_is_refused(gw: Platform) -> None:
    broken = httpx.post(
        f"{gw.url}/api/v1/routes",
        json={"method": "POST", "path": "/v1/broken", "function": "echo", "request_schema": {"type": "thing"}},
    )
    assert broken.status_code == 400
    assert "RequestSchema: not valid JSON Schema" in broken.json()["message"]
    wrong_example = httpx.post(
        f"{gw.url}/api/v1/routes",
        json={
            "method": "POST",
            "path": "/v1/broken",
            "function": "echo",
            "request_schema": CUSTOMER_SCHEMA,
            "example": {"State": "SC"},
        },
    )
    assert wrong_example.status_code == 400
    assert "Example: does not satisfy the request schema" in wrong_example.json()["message"]


def test_a_cors_preflight_from_an_allowed_origin_is_answered_by_the_gateway(http: httpx.Client) -> None:
    preflight = http.options(
        "/v1/customers",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "x-api-key" in preflight.headers["access-control-allow-headers"]
    assert preflight.headers["access-control-max-age"] == "600"
    actual = http.post("/v1/customers", json=EXAMPLE, headers={"Origin": "https://app.example"})
    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == "https://app.example"
    assert actual.headers["vary"] == "Origin"


def test_an_origin_not_allowed_gets_no_cors_headers(http: httpx.Client) -> None:
    preflight = http.options(
        "/v1/customers", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    actual = http.post("/v1/customers", json=EXAMPLE, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in actual.headers


def test_a_wildcard_origin_and_errors_carry_cors_headers_too(http: httpx.Client) -> None:
    answer = http.get("/v1/customers/1", headers={"Origin": "https://anywhere.example"})
    assert answer.headers["access-control-allow-origin"] == "*"
    refused = http.post("/v1/customers", json={"State": "X"}, headers={"Origin": "https://app.example"})
    assert refused.status_code == 400  # a browser can read the error too
    assert refused.headers["access-control-allow-origin"] == "https://app.example"


def test_the_openapi_document_is_valid_and_describes_the_routes(http: httpx.Client) -> None:
    from openapi_spec_validator import validate

    response = http.get("/api/v1/gateway/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    post = document["paths"]["/v1/customers"]["post"]
    assert post["summary"] == "Score a customer"
    assert post["requestBody"]["content"]["application/json"]["schema"] == CUSTOMER_SCHEMA
    assert post["requestBody"]["content"]["application/json"]["example"] == EXAMPLE
    assert {"400", "413", "415", "429"} <= set(post["responses"])  # 415: the schema route takes JSON only
    assert "security" not in post
    ids = [operation["operationId"] for item in document["paths"].values() for operation in item.values()]
    assert len(ids) == len(set(ids)), ids
    item = document["paths"]["/v1/customers/{id}"]["get"]
    assert item["parameters"] == [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    keyed = document["paths"]["/v1/keyed/{name}"]
    assert set(keyed) == {"get", "post", "put", "patch", "delete"}  # ANY
    assert keyed["post"]["security"] == [{"apiKey": []}]
    assert {"401", "403"} <= set(keyed["post"]["responses"])
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
    }


def test_the_docs_page_loads_its_assets_without_a_cdn(http: httpx.Client) -> None:
    page = http.get("/api/v1/gateway/docs")
    assert page.status_code == 200
    assert "/api/v1/gateway/openapi.json" in page.text
    assert "cdn" not in page.text.lower()
    assert http.get("/api/v1/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_the_document_is_public_when_the_management_api_needs_a_token(tmp_path: Path) -> None:
    with platforms(tmp_path) as start:
        guarded = start(token="t" * 24)
        assert httpx.get(f"{guarded.url}/api/v1/routes").status_code == 401
        assert httpx.get(f"{guarded.url}/api/v1/gateway/openapi.json").status_code == 200


def test_schemathesis_finds_no_server_error_in_the_gateway(gw: Platform, tmp_path: Path) -> None:
    key = gw.client.create_api_key("fuzzer")["key"]
    done = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{gw.url}/api/v1/gateway/openapi.json",
            "--url", gw.url, "--checks", "not_a_server_error", "--max-examples", "30",
            "--header", f"x-api-key: {key}", "--seed", "7",
        ],
        capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    generated = [line for line in output.splitlines() if "generated" in line]
    assert generated, output[-2000:]
    print(generated[-1])


def tiny_wheel(folder: Path) -> Path:
    """A pure-Python wheel built by hand (installing it needs no network and no build backend)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "tinypkg-1.0-py3-none-any.whl"
    files = {
        "tinypkg/__init__.py": 'def hello():\n    return "hello from tinypkg"\n',
        "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "tinypkg-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as bundle:
        for name, text in files.items():
            bundle.writestr(name, text)
        bundle.writestr("tinypkg-1.0.dist-info/RECORD", record)
    return wheel


def test_requirements_txt_is_installed_before_the_handler_loads(gw: Platform, tmp_path: Path) -> None:
    code = tmp_path / "with-requirements"
    tiny_wheel(code / "vendor")
    (code / "requirements.txt").write_text("./vendor/tinypkg-1.0-py3-none-any.whl\n")
    (code / "app.py").write_text("import tinypkg\n\ndef handler(event, context):\n    return tinypkg.hello()\n")
    gw.client.create_function("needs-pkg", code, "app.handler")
    gw.client.create_route("GET", "/v1/needs-pkg", function="needs-pkg")
    try:
        answer = httpx.get(f"{gw.url}/v1/needs-pkg", timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json() == "hello from tinypkg"
        assert list((gw.state_dir / "functions" / "packages").iterdir())  # kept for the next start
    finally:
        gw.client.delete_route("GET", "/v1/needs-pkg")
        gw.client.delete_function("needs-pkg")


def test_a_requirement_pip_cannot_install_fails_the_function_with_pips_error(gw: Platform, tmp_path: Path) -> None:
    code = tmp_path / "broken-requirements"
    code.mkdir()
    (code / "requirements.txt").write_text("./vendor/not-there-1.0-py3-none-any.whl\n")
    (code / "app.py").write_text("def handler(event, context):\n    return 1\n")
    from modelhost.client import ClientError

    with pytest.raises(ClientError, match="pip could not install requirements.txt") as raised:
        gw.client.create_function("bad-pkg", code, "app.handler")
    assert "not-there" in raised.value.message
    assert gw.client.describe_function("bad-pkg")["state"] == "Failed"
    gw.client.delete_function("bad-pkg")
