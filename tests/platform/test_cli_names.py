"""Names from the command line stay names: a ``/`` or a dot segment never reaches another resource.

Before, ``modelhost rm ../api-keys/k1`` sent ``DELETE /api/v1/endpoints/../api-keys/k1``, which the
HTTP client normalised into revoking API key k1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelhost.client import Client, ClientError
from tests.platform.conftest import Platform, platforms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sentiment_model: Path) -> Iterator[Platform]:
    with platforms(tmp_path_factory.mktemp("cli-names")) as start:
        platform = start()
        platform.deploy(sentiment_model, "en")
        platform.cli("apikey", "create", "k1")
        yield platform


@pytest.mark.parametrize(
    "args",
    [
        ("rm", "../api-keys/k1"),
        ("rm", "en/../../api-keys/k1"),
        ("describe", "en/logs"),
        ("logs", "../endpoints/en"),
        ("function", "rm", "fn1/../../endpoints/en"),
        ("apikey", "revoke", "../endpoints/en"),
        ("invoke", "../en", "--data", "[]"),
    ],
)
def test_a_name_with_a_slash_is_refused_and_touches_nothing(served: Platform, args: tuple[str, ...]) -> None:
    platform = served
    result = platform.cli(*args, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is not a name" in result.stderr
    assert "Traceback" not in result.stderr
    assert platform.client.describe_endpoint("en")["status"] == "InService"
    assert [key["name"] for key in platform.client.list_api_keys()] == ["k1"]


@pytest.mark.parametrize("name", [".", ".."])
def test_a_dot_name_is_sent_as_a_name(served: Platform, name: str) -> None:
    with pytest.raises(ClientError) as missing:
        served.client.describe_endpoint(name)
    assert missing.value.status in (400, 404)
    assert "does not exist" in missing.value.message or "name" in missing.value.message


def test_a_source_that_does_not_exist_is_a_clear_error(served: Platform, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    for args in (("deploy", missing, "--name", "x"), ("function", "create", "f", missing, "--handler", "a.b")):
        result = served.cli(*args, check=False)
        assert result.returncode == 1
        assert "no such file or folder" in " ".join(result.stderr.split())  # rich wraps long lines
        assert "Traceback" not in result.stderr


def test_the_sdk_refuses_an_empty_name() -> None:
    with pytest.raises(ClientError) as refused:
        Client("http://127.0.0.1:9").describe_endpoint("")  # refused before any connection is tried
    assert (refused.value.status, refused.value.code) == (400, "ValidationError")


def test_an_endpoint_name_that_differs_only_in_case_is_refused(served: Platform, sentiment_model: Path) -> None:
    """SageMaker's rule: endpoint names are unique whatever their case (the case is kept)."""
    models_before = {model["name"] for model in served.client.list_models()}
    result = served.cli("deploy", str(sentiment_model), "--name", "EN", check=False)
    assert result.returncode == 1
    assert "only in case" in " ".join(result.stderr.split())
    assert [endpoint["name"] for endpoint in served.client.list_endpoints()] == ["en"]
    assert {model["name"] for model in served.client.list_models()} == models_before  # nothing half-made
