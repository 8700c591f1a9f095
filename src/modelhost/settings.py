"""Typed settings of the model server, built once at the composition root.

Environment variables follow SageMaker's container contract where one exists, and use the
``MODELHOST_`` prefix otherwise; the CLI maps its options onto the same fields.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(*names: str) -> AliasChoices:
    """Environment variable names of a field, first found wins. Keyword arguments use the field
    name (populate_by_name); matching is case-sensitive, so a stray PORT or HOST in the
    environment is not mistaken for the ``port`` or ``host`` field."""
    return AliasChoices(*names)


class BatchingSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, case_sensitive=True)

    enabled: bool = Field(True, validation_alias=_env("MODELHOST_BATCHING"))
    max_batch_size: int = Field(32, ge=1, le=4096, validation_alias=_env("MODELHOST_MAX_BATCH_SIZE"))
    max_delay_ms: float = Field(2.0, ge=0, le=10_000, validation_alias=_env("MODELHOST_MAX_BATCH_DELAY_MS"))


class ServerSettings(BaseSettings):
    """Everything `modelhost serve` and the container `serve` entrypoint can be told."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, case_sensitive=True)

    model_uri: str = Field("/opt/ml/model", validation_alias=_env("SM_MODEL_DIR", "MODELHOST_MODEL"))
    host: str = Field("127.0.0.1", validation_alias=_env("MODELHOST_HOST"))
    port: int = Field(8080, ge=0, le=65535, validation_alias=_env("SAGEMAKER_BIND_TO_PORT", "MODELHOST_PORT"))
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=256,
        validation_alias=_env("SAGEMAKER_MODEL_SERVER_WORKERS", "MODELHOST_WORKERS"),
    )
    timeout_s: float = Field(60.0, gt=0, validation_alias=_env("SAGEMAKER_MODEL_SERVER_TIMEOUT", "MODELHOST_TIMEOUT"))
    pin_workers: bool = Field(True, validation_alias=_env("MODELHOST_PIN_WORKERS"))
    read_timeout_s: float = Field(30.0, gt=0, validation_alias=_env("MODELHOST_READ_TIMEOUT"))
    keep_alive_s: float = Field(60.0, gt=0, validation_alias=_env("MODELHOST_KEEP_ALIVE"))
    max_payload_mb: float = Field(6.0, gt=0, validation_alias=_env("MODELHOST_MAX_PAYLOAD_MB"))
    program: str | None = Field(None, validation_alias=_env("SAGEMAKER_PROGRAM"))
    framework: str | None = Field(None, validation_alias=_env("MODELHOST_FRAMEWORK"))  # over modelhost.yaml
    default_accept: str | None = Field(None, validation_alias=_env("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"))
    cache_dir: Path = Field(Path.home() / ".cache" / "modelhost", validation_alias=_env("MODELHOST_CACHE_DIR"))
    # What an archived artifact may unpack to (a tar or zip bomb is refused past it).
    max_unpacked_gb: float = Field(50.0, gt=0, validation_alias=_env("MODELHOST_MAX_UNPACKED_GB"))
    s3_endpoint_url: str | None = Field(None, validation_alias=_env("MODELHOST_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"))
    log_level: str = Field("info", validation_alias=_env("MODELHOST_LOG_LEVEL"))
    # Set by the platform's runtime, which runs this server as one instance of an endpoint:
    port_file: Path | None = Field(None, validation_alias=_env("MODELHOST_PORT_FILE"))  # gets the addresses
    unix_sockets: bool = Field(False, validation_alias=_env("MODELHOST_UNIX_SOCKETS"))  # one per slot, too
    parent_pid: int | None = Field(None, validation_alias=_env("MODELHOST_PARENT_PID"))  # stop when it goes
    expected_sha256: str | None = Field(None, validation_alias=_env("MODELHOST_EXPECTED_SHA256"))  # as recorded
    # Connection hand-off (modelhost.server.handoff): the endpoint and variant this instance serves
    # handed client connections for, and how long such a connection may sit idle.
    handoff_endpoint: str | None = Field(None, validation_alias=_env("MODELHOST_HANDOFF_ENDPOINT"))
    handoff_variant: str | None = Field(None, validation_alias=_env("MODELHOST_HANDOFF_VARIANT"))
    handoff_keep_alive_s: float = Field(60.0, gt=0, validation_alias=_env("MODELHOST_HANDOFF_KEEP_ALIVE"))
    batching: BatchingSettings = Field(default_factory=lambda: BatchingSettings())  # noqa: PLW0108 (for mypy)

    @property
    def handoff(self) -> bool:
        return bool(self.unix_sockets and self.handoff_endpoint and self.handoff_variant)

    @property
    def max_payload_bytes(self) -> int:
        return int(self.max_payload_mb * 1024 * 1024)
