"""API keys for invocations: endpoints that require one, keys made and revoked through the CLI and HTTP.

One `modelhost up` for the module with two endpoints of the sentiment model: ``guarded`` (deployed
with --require-api-key) and ``open`` (no key needed). A missing key is a 401, an unknown, revoked
or out-of-scope key a 403; only a key's hash is stored. The last test restarts `up`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from modelhost.client import ClientError
from tests.platform.conftest import Platform, platforms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TEXTS = ["great amazing day", "awful broken app"]
BODY = orjson.dumps(TEXTS)
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sentiment_model: Path) -> Iterator[Platform]:
    with platforms(tmp_path_factory.mktemp("apikeys")) as start:
        platform = start()
        platform.cli("deploy", str(sentiment_model), "--name", "guarded", "--require-api-key")
        platform.cli("deploy", str(sentiment_model), "--name", "open")
        yield platform


@pytest.fixture(scope="module")
def http(served: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def invoke(http: httpx.Client, endpoint: str, key: str | None = None, header: str = "x-api-key") -> httpx.Response:
    headers = dict(JSON)
    if key is not None:
        headers[header] = key
    return http.post(f"/endpoints/{endpoint}/invocations", content=BODY, headers=headers)


def assert_refused(response: httpx.Response, status: int, code: str, endpoint: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-amzn-errortype"] == code
    body = response.json()
    assert body["error"] == code
    assert endpoint in body["Message"]
    assert body["request_id"] == response.headers["x-amzn-requestid"]


def assert_served(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == [1, 0]


def create_key(platform: Platform, name: str, *endpoints: str) -> str:
    """``modelhost apikey create NAME [--endpoint E]...``: the key, printed once on stdout."""
    args = [arg for endpoint in endpoints for arg in ("--endpoint", endpoint)]
    result = platform.cli("apikey", "create", name, *args)
    key = result.stdout.strip()
    assert key.startswith("mhk_"), result.stdout
    assert len(key) >= 40
    assert "\n" not in key
    assert key not in result.stderr
    assert "cannot be shown again" in result.stderr
    return key


def state_files(platform: Platform) -> list[Path]:
    """The SQLite database and its journals."""
    return sorted(platform.state_dir.glob("state.db*"))


# -- tests ------------------------------------------------------------------------------------------------
def test_a_guarded_endpoint_needs_a_valid_key(served: Platform, http: httpx.Client) -> None:
    assert served.client.describe_endpoint("guarded")["require_api_key"] is True
    assert served.client.describe_endpoint("open")["require_api_key"] is False
    key = create_key(served, "mobile-app")

    # no key: 401, shaped as SageMaker's errors
    missing = invoke(http, "guarded")
    assert_refused(missing, 401, "MissingAuthenticationToken", "guarded")
    assert_refused(invoke(http, "guarded", ""), 401, "MissingAuthenticationToken", "guarded")

    # a wrong key: 403
    assert_refused(invoke(http, "guarded", "mhk_" + "x" * 43), 403, "Forbidden", "guarded")
    assert_refused(invoke(http, "guarded", key[:-1]), 403, "Forbidden", "guarded")
    assert_refused(invoke(http, "guarded", key + "x"), 403, "Forbidden", "guarded")
    # the key in another header is no key
    assert_refused(invoke(http, "guarded", key, header="authorization"), 401, "MissingAuthenticationToken", "guarded")

    # the right key: served, whatever the header's case
    assert_served(invoke(http, "guarded", key))
    assert_served(invoke(http, "guarded", key, header="X-API-Key"))
    answer = served.client.invoke("guarded", TEXTS, api_key=key)
    assert answer.json() == [1, 0]
    with pytest.raises(ClientError) as refused:
        served.client.invoke("guarded", TEXTS)
    assert (refused.value.status, refused.value.code) == (401, "MissingAuthenticationToken")

    # the CLI: --api-key, or $MODELHOST_API_KEY
    printed = served.cli("invoke", "guarded", "--data", json.dumps(TEXTS), "--api-key", key)
    assert json.loads(printed.stdout) == [1, 0]
    printed = served.cli("invoke", "guarded", "--data", json.dumps(TEXTS), env={"MODELHOST_API_KEY": key})
    assert json.loads(printed.stdout) == [1, 0]
    refused_cli = served.cli("invoke", "guarded", "--data", json.dumps(TEXTS), check=False)
    assert refused_cli.returncode == 1
    assert "requires an API key" in refused_cli.stderr
    assert key not in served.log()


def test_an_endpoint_that_needs_no_key_ignores_the_header(served: Platform, http: httpx.Client) -> None:
    assert_served(invoke(http, "open"))
    assert_served(invoke(http, "open", "mhk_not-a-key"))
    assert_served(invoke(http, "open", ""))


def test_a_scoped_key_serves_only_its_endpoints(served: Platform, http: httpx.Client) -> None:
    scoped = create_key(served, "scoped-to-open", "open")
    both = create_key(served, "scoped-to-both", "open", "guarded")
    listed = {k["name"]: k for k in served.client.list_api_keys()}
    assert listed["scoped-to-open"]["endpoints"] == ["open"]
    assert sorted(listed["scoped-to-both"]["endpoints"]) == ["guarded", "open"]

    assert_refused(invoke(http, "guarded", scoped), 403, "Forbidden", "guarded")
    assert_served(invoke(http, "guarded", both))

    # once open requires keys too, its scoped key serves it
    served.cli("access", "open", "--require-api-key")
    try:
        assert_refused(invoke(http, "open"), 401, "MissingAuthenticationToken", "open")
        assert_served(invoke(http, "open", scoped))
        assert_served(invoke(http, "open", both))
    finally:
        served.cli("access", "open", "--no-api-key")
    assert_served(invoke(http, "open"))


def test_a_revoked_key_is_refused(served: Platform, http: httpx.Client) -> None:
    key = create_key(served, "short-lived")
    assert_served(invoke(http, "guarded", key))
    result = served.cli("apikey", "revoke", "short-lived")
    assert "revoked short-lived" in result.stderr
    assert_refused(invoke(http, "guarded", key), 403, "Forbidden", "guarded")
    assert "short-lived" not in {k["name"] for k in served.client.list_api_keys()}

    again = served.cli("apikey", "revoke", "short-lived", check=False)
    assert again.returncode == 1
    assert "does not exist" in again.stderr
    gone = http.delete("/api/v1/api-keys/short-lived")
    assert gone.status_code == 404, gone.text


def test_access_can_be_switched_off_and_on(served: Platform, http: httpx.Client) -> None:
    result = served.cli("access", "guarded", "--no-api-key")
    assert "do not need" in result.stderr
    assert served.client.describe_endpoint("guarded")["require_api_key"] is False
    assert_served(invoke(http, "guarded"))
    assert_served(invoke(http, "guarded", "mhk_whatever"))

    served.cli("access", "guarded", "--require-api-key")
    assert served.client.describe_endpoint("guarded")["require_api_key"] is True
    assert_refused(invoke(http, "guarded"), 401, "MissingAuthenticationToken", "guarded")

    missing = served.cli("access", "no-such-endpoint", "--require-api-key", check=False)
    assert missing.returncode == 1


def test_an_update_keeps_the_endpoints_access(served: Platform, http: httpx.Client, sentiment_model: Path) -> None:
    served.cli("deploy", str(sentiment_model), "--name", "guarded")  # no --require-api-key: left as it is
    described = served.wait_in_service("guarded")
    assert described["config_name"] != "guarded-v1"
    assert described["require_api_key"] is True
    assert_refused(invoke(http, "guarded"), 401, "MissingAuthenticationToken", "guarded")


def test_a_duplicate_key_name_is_a_409(served: Platform, http: httpx.Client) -> None:
    create_key(served, "twice")
    duplicate = http.post("/api/v1/api-keys", json={"name": "twice"})
    assert duplicate.status_code == 409, duplicate.text
    assert duplicate.json()["error"] == "ResourceExists"
    again = served.cli("apikey", "create", "twice", check=False)
    assert again.returncode == 1
    assert again.stdout == ""  # no key printed
    assert "already exists" in again.stderr
    assert [k["name"] for k in served.client.list_api_keys()].count("twice") == 1

    bad = http.post("/api/v1/api-keys", json={"name": "not a name!"})
    assert bad.status_code == 400, bad.text


def test_only_a_hash_of_the_key_is_kept(served: Platform, http: httpx.Client) -> None:
    created = http.post("/api/v1/api-keys", json={"name": "over-http", "endpoints": ["guarded"]})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("mhk_")
    assert created.json()["key_prefix"] == key[:8]
    assert_served(invoke(http, "guarded", key))

    # listed by HTTP and the CLI: names and prefixes, never the key
    listed = http.get("/api/v1/api-keys")
    assert listed.status_code == 200
    assert key not in listed.text
    assert hashlib.sha256(key.encode()).hexdigest() not in listed.text
    for entry in listed.json()["api_keys"]:
        assert set(entry) == {"name", "key_prefix", "endpoints", "created_at", "access_key_id", "rate_per_s", "burst"}
    assert "over-http" in {k["name"] for k in listed.json()["api_keys"]}
    shown = served.cli("apikey", "ls")
    assert "over-http" in shown.stdout
    assert key[:8] in shown.stdout
    assert key not in shown.stdout
    assert key[8:16] not in shown.stdout

    # the database holds the SHA-256, not the key
    files = state_files(served)
    assert files, sorted(served.state_dir.iterdir())
    stored = b"".join(path.read_bytes() for path in files)
    assert key.encode() not in stored
    assert hashlib.sha256(key.encode()).hexdigest().encode() in stored
    for path in served.state_dir.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    assert key not in served.log()


def test_keys_survive_a_restart(served: Platform, http: httpx.Client) -> None:
    kept = create_key(served, "kept")
    dropped = create_key(served, "dropped")
    scoped = create_key(served, "kept-scoped", "open")
    served.cli("apikey", "revoke", "dropped")
    names = {k["name"] for k in served.client.list_api_keys()}

    served.restart()
    served.wait_in_service("guarded")
    served.wait_in_service("open")
    assert {k["name"] for k in served.client.list_api_keys()} == names
    assert served.client.describe_endpoint("guarded")["require_api_key"] is True

    with httpx.Client(base_url=served.url, timeout=30) as fresh:
        assert_refused(invoke(fresh, "guarded"), 401, "MissingAuthenticationToken", "guarded")
        assert_served(invoke(fresh, "guarded", kept))
        assert_refused(invoke(fresh, "guarded", dropped), 403, "Forbidden", "guarded")
        assert_refused(invoke(fresh, "guarded", scoped), 403, "Forbidden", "guarded")
        assert_served(invoke(fresh, "open"))
