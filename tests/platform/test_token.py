"""`modelhost up --token`: the management API needs it; the invocations path does not."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx
import pytest

from modelhost.client import Client, ClientError
from tests.platform.conftest import StartPlatform

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_the_api_needs_the_token_and_invocations_do_not(start_platform: StartPlatform, sentiment_model: Path) -> None:
    token = secrets.token_hex(16)  # 32 characters
    platform = start_platform(host="127.0.0.1", token=token)
    assert platform.command()[-4:] == ["--host", "127.0.0.1", "--token", token]

    # without the token, or with a wrong one: 401 with a JSON error
    for headers in ({}, {"authorization": f"Bearer {secrets.token_hex(16)}"}, {"authorization": token}):
        response = httpx.get(f"{platform.url}/api/v1/endpoints", headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["www-authenticate"] == "Bearer"
        body = response.json()
        assert body["error"] == "Unauthorized"
        assert "Authorization: Bearer" in body["message"]
    assert httpx.post(f"{platform.url}/api/v1/models", json={"name": "m", "artifact_uri": "/m"}).status_code == 401
    assert httpx.put(f"{platform.url}/api/v1/artifacts/m", content=b"x").status_code == 401
    assert httpx.get(f"{platform.url}/api/v1/health").status_code == 200  # health is open

    # the SDK without the token is refused; with it, it works
    with Client(platform.url, token="") as anonymous, pytest.raises(ClientError) as refused:
        anonymous.list_endpoints()
    assert refused.value.status == 401
    assert platform.client.list_endpoints() == []

    # the CLI: refused without MODELHOST_TOKEN, works with it (platform.cli sets it)
    without = platform.cli("ls", check=False, env={"MODELHOST_TOKEN": ""})
    assert without.returncode == 1
    assert "token" in without.stderr
    platform.cli("deploy", str(sentiment_model), "--name", "sentiment")
    described = json.loads(platform.cli("describe", "sentiment").stdout)
    assert described["status"] == "InService"

    # invocations need no token
    response = httpx.post(f"{platform.url}/endpoints/sentiment/invocations", json=["great amazing day"])
    assert response.status_code == 200
    assert response.json() == [1]

    platform.cli("rm", "sentiment")
    assert platform.client.list_endpoints() == []
