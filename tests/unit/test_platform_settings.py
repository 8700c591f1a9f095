"""PlatformSettings: defaults, MODELHOST_* environment variables, and what counts as loopback-only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelhost.platform.defaults import DEFAULT_PORT
from modelhost.platform.settings import PlatformSettings, default_state_dir


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No MODELHOST_* or S3 endpoint setting from the machine running the tests; XDG data in tmp_path."""
    for name in list(os.environ):
        if name.startswith("MODELHOST_") or name == "AWS_ENDPOINT_URL_S3":
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def test_defaults(clean_env: Path) -> None:
    settings = PlatformSettings()

    assert settings.host == "127.0.0.1"
    assert settings.port == DEFAULT_PORT == 7070
    assert settings.state_dir == clean_env / "modelhost"
    assert settings.database is None
    assert settings.database_url == f"sqlite:///{clean_env / 'modelhost' / 'state.db'}"
    assert settings.artifacts is None
    assert settings.artifacts_location == str(clean_env / "modelhost" / "artifacts")
    assert settings.token is None
    assert settings.s3_endpoint_url is None
    assert settings.loopback_only


def test_the_default_state_dir_follows_xdg_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_state_dir() == tmp_path / "xdg" / "modelhost"

    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / ".local" / "share" / "modelhost"
    assert PlatformSettings().state_dir == tmp_path / "home" / ".local" / "share" / "modelhost"

    monkeypatch.setenv("XDG_DATA_HOME", "")  # set but empty: as if unset
    assert default_state_dir() == tmp_path / "home" / ".local" / "share" / "modelhost"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELHOST_UP_HOST", "0.0.0.0")
    monkeypatch.setenv("MODELHOST_UP_PORT", "8081")
    monkeypatch.setenv("MODELHOST_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MODELHOST_DATABASE_URL", "postgresql+psycopg://modelhost@db/modelhost")
    monkeypatch.setenv("MODELHOST_ARTIFACTS", "s3://bucket/artifacts")
    monkeypatch.setenv("MODELHOST_TOKEN", "0123456789abcdef")
    monkeypatch.setenv("MODELHOST_S3_ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.setenv("MODELHOST_TIMEOUT", "12.5")

    settings = PlatformSettings()

    assert settings.host == "0.0.0.0"
    assert settings.port == 8081
    assert settings.state_dir == tmp_path / "state"
    assert settings.database_url == "postgresql+psycopg://modelhost@db/modelhost"
    assert settings.artifacts_location == "s3://bucket/artifacts"
    assert settings.token == "0123456789abcdef"
    assert settings.s3_endpoint_url == "http://127.0.0.1:8333"
    assert settings.request_timeout_s == 12.5
    assert not settings.loopback_only


def test_the_state_dir_moves_the_default_database_and_artifacts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELHOST_STATE_DIR", str(tmp_path / "state"))

    settings = PlatformSettings()

    assert settings.database_url == f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    assert settings.artifacts_location == str(tmp_path / "state" / "artifacts")


def test_the_s3_endpoint_falls_back_to_aws_endpoint_url_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://aws-style:9000")
    assert PlatformSettings().s3_endpoint_url == "http://aws-style:9000"

    monkeypatch.setenv("MODELHOST_S3_ENDPOINT_URL", "http://modelhost-style:9000")
    assert PlatformSettings().s3_endpoint_url == "http://modelhost-style:9000"


def test_options_by_field_name_win_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CLI passes its options by field name (populate_by_name); an option given beats the variable."""
    monkeypatch.setenv("MODELHOST_UP_PORT", "8081")
    monkeypatch.setenv("MODELHOST_UP_HOST", "0.0.0.0")
    monkeypatch.setenv("MODELHOST_STATE_DIR", str(tmp_path / "from-env"))

    settings = PlatformSettings(host="::1", port=0, token="x" * 32)

    assert (settings.host, settings.port, settings.token) == ("::1", 0, "x" * 32)
    assert settings.state_dir == tmp_path / "from-env"  # not given as an option: the variable's
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]  # frozen


def test_environment_names_are_case_sensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("modelhost_up_port", "9999")

    assert PlatformSettings().port == DEFAULT_PORT


@pytest.mark.parametrize("token", ["", "short", "0123456789abcde"])
def test_a_token_shorter_than_16_characters_is_refused(monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    monkeypatch.setenv("MODELHOST_TOKEN", token)

    with pytest.raises(ValidationError, match="at least 16 characters"):
        PlatformSettings()
    with pytest.raises(ValidationError, match="at least 16 characters"):
        PlatformSettings(token=token)


def test_a_token_of_16_characters_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELHOST_TOKEN", "0123456789abcdef")

    assert PlatformSettings().token == "0123456789abcdef"


@pytest.mark.parametrize("port", ["-1", "65536", "http", "70.5"])
def test_an_invalid_port_is_refused(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("MODELHOST_UP_PORT", port)

    with pytest.raises(ValidationError, match="MODELHOST_UP_PORT"):
        PlatformSettings()


@pytest.mark.parametrize("name", ["MODELHOST_LOAD_TIMEOUT", "MODELHOST_TIMEOUT", "MODELHOST_MAX_PAYLOAD_MB"])
def test_limits_must_be_positive(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "0")

    with pytest.raises(ValidationError, match="greater than 0"):
        PlatformSettings()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("10.0.0.5", False),
        ("fe80::1", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_only(host: str, loopback: bool) -> None:
    assert PlatformSettings(host=host).loopback_only is loopback
