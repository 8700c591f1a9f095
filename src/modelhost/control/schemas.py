"""The native REST API's request and response bodies (``/api/v1``), as pydantic models.

They are the OpenAPI document's schemas too. Field names are snake_case; the SageMaker-shaped API
(another issue) maps onto the same resources.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modelhost.control.gateway_resources import MAX_BURST
from modelhost.control.resources import (
    ApiKey,
    DataCaptureConfig,
    Endpoint,
    EndpointConfig,
    Model,
    ProductionVariant,
)
from modelhost.runtime.deployment import Deployment

_STRICT = ConfigDict(extra="forbid")


class DataCaptureIn(BaseModel):
    model_config = _STRICT
    enabled: bool = False
    sampling_percentage: int = Field(100, ge=0, le=100)
    destination_uri: str | None = None

    def to_resource(self) -> DataCaptureConfig:
        return DataCaptureConfig(self.enabled, self.sampling_percentage, self.destination_uri)

    @classmethod
    def of(cls, capture: DataCaptureConfig) -> DataCaptureIn:
        return cls(
            enabled=capture.enabled,
            sampling_percentage=capture.sampling_percentage,
            destination_uri=capture.destination_uri,
        )


class ModelIn(BaseModel):
    model_config = _STRICT
    name: str = Field(description="1-63 letters, digits or hyphens")
    artifact_uri: str = Field(description="a path on the server, file://, or s3:// (a model.tar.gz, file or folder)")
    artifact_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="checked by each instance when it loads the artifact"
    )
    framework: str | None = Field(None, description="sklearn, spacy, transformers, xgboost; detected when left out")
    environment: dict[str, str] = Field(default_factory=dict, description="e.g. SAGEMAKER_PROGRAM")
    tags: dict[str, str] = Field(default_factory=dict)
    mode: Literal["SingleModel", "MultiModel"] = Field(
        "SingleModel", description="MultiModel: artifact_uri is a prefix; requests name a model under it"
    )

    def to_resource(self) -> Model:
        return Model(
            self.name,
            self.artifact_uri,
            self.artifact_sha256,
            self.framework,
            self.environment,
            tags=self.tags,
            mode=self.mode,
        )


class ModelOut(BaseModel):
    name: str
    artifact_uri: str
    artifact_sha256: str | None
    framework: str | None
    environment: dict[str, str]
    tags: dict[str, str]
    mode: str
    created_at: datetime | None

    @classmethod
    def of(cls, model: Model) -> ModelOut:
        return cls(
            mode=model.mode,
            name=model.name,
            artifact_uri=model.artifact_uri,
            artifact_sha256=model.artifact_sha256,
            framework=model.framework,
            environment=dict(model.environment),
            tags=dict(model.tags),
            created_at=model.created_at,
        )


class VariantIn(BaseModel):
    model_config = _STRICT
    variant_name: str = "AllTraffic"
    model_name: str
    instance_count: int = Field(1, ge=1, le=64)
    weight: float = Field(1.0, ge=0)

    def to_resource(self) -> ProductionVariant:
        return ProductionVariant(self.variant_name, self.model_name, self.instance_count, self.weight)


class EndpointConfigIn(BaseModel):
    model_config = _STRICT
    name: str
    variants: list[VariantIn] = Field(min_length=1, max_length=10)
    data_capture: DataCaptureIn = Field(default_factory=DataCaptureIn)
    tags: dict[str, str] = Field(default_factory=dict)

    def to_resource(self) -> EndpointConfig:
        return EndpointConfig(
            self.name,
            tuple(v.to_resource() for v in self.variants),
            self.data_capture.to_resource(),
            tags=self.tags,
        )


class EndpointConfigOut(BaseModel):
    name: str
    variants: list[VariantIn]
    data_capture: DataCaptureIn
    tags: dict[str, str]
    created_at: datetime | None

    @classmethod
    def of(cls, config: EndpointConfig) -> EndpointConfigOut:
        return cls(
            name=config.name,
            variants=[
                VariantIn(
                    variant_name=v.variant_name,
                    model_name=v.model_name,
                    instance_count=v.initial_instance_count,
                    weight=v.initial_weight,
                )
                for v in config.variants
            ],
            data_capture=DataCaptureIn.of(config.data_capture),
            tags=dict(config.tags),
            created_at=config.created_at,
        )


class EndpointIn(BaseModel):
    model_config = _STRICT
    name: str
    config_name: str


class EndpointUpdate(BaseModel):
    model_config = _STRICT
    config_name: str


class InstanceOut(BaseModel):
    index: int
    target_model: str | None = Field(None, description="for a multi-model endpoint: the model it serves")
    state: str
    port: int | None
    pid: int | None
    restarts: int


class RunningVariantOut(BaseModel):
    name: str
    weight: float
    model_name: str
    instances: list[InstanceOut]


class EndpointOut(BaseModel):
    name: str
    config_name: str
    status: Literal["Creating", "InService", "Updating", "SystemUpdating", "Failed", "Deleting"]
    failure_reason: str | None
    created_at: datetime | None
    updated_at: datetime | None
    invocation_path: str
    require_api_key: bool
    running_config_name: str | None = Field(description="the config the instances serve now (None: none running)")
    variants: list[RunningVariantOut]

    @classmethod
    def of(cls, endpoint: Endpoint, deployment: Deployment | None) -> EndpointOut:
        variants = []
        if deployment is not None:
            for variant in deployment.variants:
                variants.append(
                    RunningVariantOut(
                        name=variant.name,
                        weight=variant.weight,
                        model_name=variant.model_name,
                        instances=[
                            InstanceOut(
                                index=i.spec.index, state=i.state.value, port=i.port, pid=i.pid, restarts=i.restarts
                            )
                            for i in variant.instances
                        ]
                        + [
                            InstanceOut(
                                index=host.spec.index,
                                target_model=target,
                                state=i.state.value,
                                port=i.port,
                                pid=i.pid,
                                restarts=i.restarts,
                            )
                            for host in variant.hosts
                            for target, i in host.loaded.items()
                        ],
                    )
                )
        return cls(
            name=endpoint.name,
            config_name=endpoint.config_name,
            status=endpoint.status.value,
            failure_reason=endpoint.failure_reason,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
            invocation_path=f"/endpoints/{endpoint.name}/invocations",
            require_api_key=endpoint.require_api_key,
            running_config_name=deployment.config.name if deployment is not None else None,
            variants=variants,
        )


class DeployIn(BaseModel):
    """What ``modelhost deploy`` sends: the artifact (uploaded first when local) and the endpoint's name."""

    model_config = _STRICT
    endpoint_name: str
    artifact_uri: str
    artifact_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    framework: str | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    instance_count: int = Field(1, ge=1, le=64)
    data_capture: DataCaptureIn = Field(default_factory=DataCaptureIn)
    require_api_key: bool | None = Field(None, description="set the endpoint's access (default: leave it)")


class ArtifactOut(BaseModel):
    uri: str
    sha256: str
    size: int


class ErrorOut(BaseModel):
    error: str = Field(description="the error's type, e.g. ValidationException, ResourceNotFound")
    message: str


class EndpointAccess(BaseModel):
    model_config = _STRICT
    require_api_key: bool = Field(description="invocations must carry a valid x-api-key header")


class ApiKeyIn(BaseModel):
    model_config = _STRICT
    name: str
    endpoints: list[str] | None = Field(None, description="the endpoints it may invoke (default: every one)")
    rate: str | None = Field(
        None, description="its own limit over every gateway route, e.g. 10/s or 600/m (0.001/s to 1000000/s)"
    )
    burst: int | None = Field(None, ge=1, le=MAX_BURST, description="requests at once (default: a second's worth)")


class ApiKeyOut(BaseModel):
    name: str
    key_prefix: str
    endpoints: list[str] | None
    created_at: datetime | None
    access_key_id: str | None = Field(
        None, description="for SigV4-signed requests (boto3): AWS_ACCESS_KEY_ID, with the key as the secret"
    )
    rate_per_s: float | None = None
    burst: int | None = None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        endpoints = list(key.endpoints) if key.endpoints is not None else None
        return cls(
            name=key.name,
            key_prefix=key.key_prefix,
            endpoints=endpoints,
            created_at=key.created_at,
            access_key_id=key.access_key_id,
            rate_per_s=key.rate_per_s,
            burst=key.burst,
        )


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the key itself: shown this once, stored only as a hash")


class DeployOut(BaseModel):
    endpoint: EndpointOut
    model_name: str = Field(description="the model deploy created")
    config_name: str = Field(description="the config deploy created; the endpoint serves it once InService")
