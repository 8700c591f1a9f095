"""The platform's HTTP surface with a plain HTTP client, as curl or boto3 would see it.

One `modelhost up` with one endpoint for the module: the invocations path (answers and
SageMaker-shaped errors) and the REST API (validation errors, OpenAPI document, docs page).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.platform.conftest import Platform, platforms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ENDPOINT = "sentiment"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sentiment_model: Path) -> Iterator[Platform]:
    with platforms(tmp_path_factory.mktemp("http")) as start:
        platform = start()
        platform.deploy(sentiment_model, ENDPOINT)
        yield platform


@pytest.fixture(scope="module")
def http(served: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


INVOCATIONS = f"/endpoints/{ENDPOINT}/invocations"
TOO_BIG = b"[" + b'"x",' * (7 * 1024 * 1024 // 4) + b'"x"]'  # ~7 MB of valid JSON; the limit is 6 MB


def error_of(response: httpx.Response) -> dict[str, object]:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = orjson.loads(response.content)
    assert isinstance(body, dict)
    return body


# -- invocations ----------------------------------------------------------------------------------------
def test_invocation_answers_with_the_variant_and_a_request_id(http: httpx.Client) -> None:
    response = http.post(INVOCATIONS, content=b'["great amazing day", "awful broken app"]', headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json() == [1, 0]
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-amzn-invoked-production-variant"] == "AllTraffic"
    assert response.headers["x-amzn-requestid"]
    assert int(response.headers["content-length"]) == len(response.content)

    # an inference id given by the caller is the request's id
    tagged = http.post(INVOCATIONS, content=b'["love it"]', headers={**JSON, "x-amzn-sagemaker-inference-id": "abc-1"})
    assert tagged.status_code == 200
    assert tagged.headers["x-amzn-requestid"] == "abc-1"

    # keep-alive: many requests on one connection, all answered in order
    for i in range(20):
        text = "wonderful happy day" if i % 2 else "terrible awful slow"
        again = http.post(INVOCATIONS, content=orjson.dumps([text]), headers=JSON)
        assert again.status_code == 200
        assert again.json() == [i % 2]


def test_malformed_json_is_a_model_error_with_the_original_status(http: httpx.Client) -> None:
    response = http.post(INVOCATIONS, content=b'["great day"', headers=JSON)
    assert response.status_code == 424, response.text
    assert response.headers["x-amzn-errortype"] == "ModelError"
    body = error_of(response)
    assert body["error"] == "ModelError"
    assert body["OriginalStatusCode"] == 400
    assert isinstance(body["OriginalMessage"], str)
    assert "malformed JSON" in body["OriginalMessage"]
    assert "Received client error (400) from variant AllTraffic" in str(body["Message"])
    assert f"modelhost logs {ENDPOINT}" in str(body["Message"])


def test_unknown_endpoint_is_a_validation_error(http: httpx.Client) -> None:
    response = http.post("/endpoints/no-such-endpoint/invocations", content=b"[]", headers=JSON)
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"] == "ValidationError"
    body = error_of(response)
    assert body["error"] == "ValidationError"
    assert "no-such-endpoint" in str(body["Message"])


def test_get_on_the_invocations_path_is_405(http: httpx.Client) -> None:
    response = http.get(INVOCATIONS)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["x-amzn-errortype"] == "MethodNotAllowed"
    assert "POST" in str(error_of(response)["Message"])


def post_over_the_limit(url: str, content: bytes | Iterator[bytes]) -> httpx.Response:
    """POST a body over the limit on a connection of its own (the front door closes it after the 413)."""
    with httpx.Client(base_url=url, timeout=30) as fresh:
        response = fresh.post(INVOCATIONS, content=content, headers=JSON)
    assert response.status_code == 413, response.text[:300]
    assert response.headers["x-amzn-errortype"] == "ValidationError"
    assert "6 MB" in str(error_of(response)["Message"])
    return response


def test_a_body_over_the_limit_is_413(served: Platform, http: httpx.Client) -> None:
    post_over_the_limit(served.url, TOO_BIG)

    def chunks() -> Iterator[bytes]:  # no content-length: the limit applies as the body arrives
        for start in range(0, len(TOO_BIG), 1 << 20):
            yield TOO_BIG[start : start + (1 << 20)]

    post_over_the_limit(served.url, chunks())
    # the front door still answers afterwards
    assert http.post(INVOCATIONS, content=b'["great day"]', headers=JSON).status_code == 200


def test_a_413_says_the_connection_closes(served: Platform) -> None:
    """The front door closes the connection after refusing a body; the answer must say so
    (``Connection: close``), or an HTTP/1.1 client keeps the dead connection in its pool and its
    next request fails ("Connection reset by peer", "Server disconnected without sending a response")."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        head = f"POST {INVOCATIONS} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        sock.sendall(f"{head}content-length: {len(TOO_BIG)}\r\n\r\n".encode())
        with contextlib.suppress(OSError):  # it may stop reading (and reset) before the body is in
            sock.sendall(TOO_BIG)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
    headers = rest.split(b"\r\n\r\n", 1)[0].lower().split(b"\r\n")
    assert b"connection: close" in headers, answer[:500]


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a connection of its own and read until the server closes it (or 10 s pass)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # it may stop reading (and reset) before all is in
            sock.sendall(data)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


@pytest.mark.parametrize(
    "head",
    [
        b"x-big: " + b"a" * 70_000 + b"\r\n",  # one long header
        b"".join(b"x-h%d: v\r\n" % index for index in range(8_000)),  # many short ones
        b"x-huge: " + b"a" * 5_000_000 + b"\r\n",  # one the parser is still buffering
    ],
    ids=["long", "many", "huge"],
)
def test_a_head_over_64_kb_is_431_and_the_connection_closes(served: Platform, head: bytes) -> None:
    request = f"POST {INVOCATIONS} HTTP/1.1\r\nhost: x\r\n".encode() + head + b"content-length: 2\r\n\r\n[]"
    answer = raw_exchange(served.port, request)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large", answer[:300]
    head_lines, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in head_lines.lower().split(b"\r\n")
    error = orjson.loads(body)
    assert error["error"] == "RequestHeaderFieldsTooLarge"
    assert "64 KB" in error["Message"]


def test_a_head_just_under_the_limit_and_many_pipelined_requests_are_served(served: Platform) -> None:
    body = b'["great amazing day"]'
    one = f"POST {INVOCATIONS} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n".encode()
    near_limit = one + b"x-big: " + b"a" * 60_000 + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    small = one + b"content-length: %d\r\n\r\n" % len(body) + body
    last = one + b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    answer = raw_exchange(served.port, near_limit + small * 2_000 + last)  # ~250 KB in a few reads
    assert answer.count(b"HTTP/1.1 200 OK") == 2_002, answer[:300]


def test_a_body_under_the_limit_is_served(http: httpx.Client) -> None:
    texts = ["great amazing day"] * 40_000  # ~800 KB
    response = http.post(INVOCATIONS, content=orjson.dumps(texts), headers=JSON)
    assert response.status_code == 200, response.text[:500]
    assert response.json() == [1] * len(texts)


# -- the REST API ---------------------------------------------------------------------------------------
def test_a_malformed_api_body_says_where_the_json_breaks(http: httpx.Client) -> None:
    response = http.post(
        "/api/v1/endpoint-configs", content=b'{"name": "c", "variants": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    body = error_of(response)
    assert body["error"] == "ValidationException"
    assert body["message"].startswith("body: malformed JSON at character ")


def test_api_validation_errors_name_the_field(http: httpx.Client) -> None:
    bad_name = http.post("/api/v1/models", json={"name": "bad_name!", "artifact_uri": "/models/x"})
    assert bad_name.status_code == 400
    body = error_of(bad_name)
    assert body["error"] == "ValidationException"
    assert "ModelName" in str(body["message"])
    assert "bad_name!" in str(body["message"])

    missing = http.post("/api/v1/models", json={"name": "good"})
    assert missing.status_code == 400
    assert "artifact_uri" in str(error_of(missing)["message"])

    unknown_field = http.post("/api/v1/models", json={"name": "good", "artifact_uri": "/m", "colour": "red"})
    assert unknown_field.status_code == 400
    assert "colour" in str(error_of(unknown_field)["message"])

    bad_sha = http.post("/api/v1/models", json={"name": "good", "artifact_uri": "/m", "artifact_sha256": "xyz"})
    assert bad_sha.status_code == 400
    assert "artifact_sha256" in str(error_of(bad_sha)["message"])

    negative_weight = http.post(
        "/api/v1/endpoint-configs",
        json={"name": "c", "variants": [{"model_name": "m", "weight": -1}]},
    )
    assert negative_weight.status_code == 400
    assert "variants.0.weight" in str(error_of(negative_weight)["message"])

    no_variants = http.post("/api/v1/endpoint-configs", json={"name": "c", "variants": []})
    assert no_variants.status_code == 400
    assert "variants" in str(error_of(no_variants)["message"])

    not_json = http.post("/api/v1/models", content=b"{not json", headers=JSON)
    assert not_json.status_code == 400
    assert error_of(not_json)["error"] == "ValidationException"

    bad_endpoint_name = http.post("/api/v1/endpoints", json={"name": "-x-", "config_name": "c"})
    assert bad_endpoint_name.status_code == 400
    assert "EndpointName" in str(error_of(bad_endpoint_name)["message"])

    # nothing was created by the refused calls
    assert [m["name"] for m in http.get("/api/v1/models").json()["models"]] == [f"{ENDPOINT}-v1"]


def test_api_not_found_and_conflicts(http: httpx.Client) -> None:
    missing = http.get("/api/v1/endpoints/no-such-endpoint")
    assert missing.status_code == 404
    assert error_of(missing)["error"] == "ResourceNotFound"

    no_route = http.get("/api/v1/nothing-here")
    assert no_route.status_code == 404
    assert error_of(no_route)["error"] == "NotFound"

    wrong_method = http.patch("/api/v1/models")
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["error"] == "MethodNotAllowed"

    no_config = http.post("/api/v1/endpoints", json={"name": "other", "config_name": "no-such-config"})
    assert no_config.status_code == 404, no_config.text
    assert "no-such-config" in str(error_of(no_config)["message"])

    taken = http.post("/api/v1/models", json={"name": f"{ENDPOINT}-v1", "artifact_uri": "/m"})
    assert taken.status_code == 409
    assert error_of(taken)["error"] == "ResourceExists"


def test_openapi_document(http: httpx.Client) -> None:
    response = http.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = orjson.loads(response.content)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "modelhost"
    for path in ("/api/v1/models", "/api/v1/endpoint-configs", "/api/v1/endpoints/{name}", "/api/v1/deployments"):
        assert path in document["paths"], sorted(document["paths"])
    assert "ModelIn" in document["components"]["schemas"]


def test_docs_page_and_its_assets(http: httpx.Client) -> None:
    page = http.get("/api/v1/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "swagger-ui-bundle.js" in page.text
    assert "/api/v1/openapi.json" in page.text
    bundle = http.get("/api/v1/docs-assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert "javascript" in bundle.headers["content-type"]
    assert len(bundle.content) > 100_000
    css = http.get("/api/v1/docs-assets/swagger-ui.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert http.get("/api/v1/docs-assets/nothing.js").status_code == 404
    assert http.get("/api/v1/docs-assets/..%2Fpyproject.toml").status_code == 404


def test_health(http: httpx.Client) -> None:
    response = http.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_everything_listens_on_loopback_only(served: Platform) -> None:
    listening = served.listening()
    addresses = [address for found in listening.values() for address in found]
    assert f"127.0.0.1:{served.port}" in addresses
    assert len(listening) >= 2, listening  # `up` and the endpoint's instance at least
    assert all(address.startswith("127.0.0.1:") for address in addresses), listening
