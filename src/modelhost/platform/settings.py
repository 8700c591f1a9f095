"""Typed settings of ``modelhost up``: options, or ``MODELHOST_*`` environment variables."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelhost.platform.defaults import DEFAULT_PORT


def default_state_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "modelhost"


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, case_sensitive=True)

    host: str = Field("127.0.0.1", validation_alias=AliasChoices("MODELHOST_UP_HOST"))
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, validation_alias=AliasChoices("MODELHOST_UP_PORT"))
    state_dir: Path = Field(default_factory=default_state_dir, validation_alias=AliasChoices("MODELHOST_STATE_DIR"))
    database: str | None = Field(None, validation_alias=AliasChoices("MODELHOST_DATABASE_URL"))  # None: SQLite
    artifacts: str | None = Field(None, validation_alias=AliasChoices("MODELHOST_ARTIFACTS"))  # None: on disk
    token: str | None = Field(None, min_length=16, validation_alias=AliasChoices("MODELHOST_TOKEN"))
    s3_endpoint_url: str | None = Field(
        None, validation_alias=AliasChoices("MODELHOST_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
    )
    load_timeout_s: float = Field(300.0, gt=0, validation_alias=AliasChoices("MODELHOST_LOAD_TIMEOUT"))
    request_timeout_s: float = Field(60.0, gt=0, validation_alias=AliasChoices("MODELHOST_TIMEOUT"))
    max_payload_mb: float = Field(6.0, gt=0, validation_alias=AliasChoices("MODELHOST_MAX_PAYLOAD_MB"))
    max_instances: int = Field(32, ge=1, validation_alias=AliasChoices("MODELHOST_MAX_INSTANCES"))
    # What one function's artifacts (--artifact) may take in all, checked before and while they are copied.
    max_function_artifacts_gb: float = Field(
        5.0, gt=0, validation_alias=AliasChoices("MODELHOST_MAX_FUNCTION_ARTIFACTS_GB")
    )
    log_level: str = Field("info", validation_alias=AliasChoices("MODELHOST_LOG_LEVEL"))
    # Keep-alive connections of plain endpoints move to the worker that served them (frontdoor/handoff.py).
    connection_handoff: bool = Field(True, validation_alias=AliasChoices("MODELHOST_CONNECTION_HANDOFF"))

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.state_dir / 'state.db'}"

    @property
    def artifacts_location(self) -> str:
        return self.artifacts or str(self.state_dir / "artifacts")

    @property
    def loopback_only(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"
