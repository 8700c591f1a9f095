"""The control plane's resources, named and shaped like SageMaker's hosting API.

    Model           an artifact (URI + SHA-256), its framework and environment
    EndpointConfig  production variants (model, instance count, initial weight) + data capture
    Endpoint        a config put in service; its status moves through ``EndpointStatus``

Values are immutable; the store hands out new ones as state changes. Validation errors name the
field, as SageMaker's ``ValidationException`` does.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelhost.errors import InvalidTransition, ValidationFailed

FRAMEWORKS = ("sklearn", "spacy", "transformers", "xgboost", "custom")  # what MODELHOST_FRAMEWORK accepts
MODEL_MODES = ("SingleModel", "MultiModel")  # SageMaker's ContainerDefinition.Mode
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # SageMaker's EntityName


def check_name(value: str, field_name: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        shown = (
            repr(value)
            if not isinstance(value, str) or len(value) <= 80
            else f"{value[:60]!r}... ({len(value)} characters)"
        )
        raise ValidationFailed(
            f"{field_name}: {shown} must be 1-63 letters, digits or hyphens, starting and ending with a letter or digit"
        )
    return value


def check_tags(tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str) or not 1 <= len(key) <= 128 or len(value) > 256:
            raise ValidationFailed(f"Tags: {key!r} must map a 1-128 character key to a value of at most 256")


# The tag `deploy` puts on the model and config it creates, naming the endpoint they were made for.
DEPLOYED_FOR_TAG = "modelhost:endpoint"


class EndpointStatus(enum.StrEnum):
    CREATING = "Creating"
    IN_SERVICE = "InService"
    UPDATING = "Updating"
    FAILED = "Failed"
    DELETING = "Deleting"
    SYSTEM_UPDATING = "SystemUpdating"  # the platform restarted and is bringing the instances back


_S = EndpointStatus
# Which status may follow which: a failed update returns to InService on the old config; after a
# restart of the platform an endpoint that was serving is SystemUpdating until it serves again.
_NEXT: Mapping[EndpointStatus, frozenset[EndpointStatus]] = {
    _S.CREATING: frozenset({_S.IN_SERVICE, _S.FAILED, _S.DELETING}),
    _S.IN_SERVICE: frozenset({_S.UPDATING, _S.DELETING, _S.FAILED, _S.SYSTEM_UPDATING}),
    _S.UPDATING: frozenset({_S.IN_SERVICE, _S.FAILED, _S.SYSTEM_UPDATING}),
    _S.SYSTEM_UPDATING: frozenset({_S.IN_SERVICE, _S.FAILED, _S.DELETING}),
    _S.FAILED: frozenset({_S.UPDATING, _S.DELETING, _S.CREATING}),
    _S.DELETING: frozenset(),
}


def check_transition(name: str, current: EndpointStatus, wanted: EndpointStatus) -> None:
    """Refuse a status change the lifecycle does not allow, saying which."""
    if wanted not in _NEXT[current]:
        raise InvalidTransition(f"endpoint {name!r} is {current.value}; it cannot become {wanted.value}")


MAX_WEIGHT = 1e9  # weights are proportions; beyond this their sums lose the small ones
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SCHEMES = ("s3://", "file://")


def check_artifact_uri(uri: str) -> None:
    """A path, ``file://`` or ``s3://``, refused now rather than when an instance fails to start."""
    if _CONTROL.search(uri):
        raise ValidationFailed("ModelDataUrl: control characters are not allowed")
    if "://" in uri and not uri.startswith(_SCHEMES):
        scheme = uri.split("://", 1)[0]
        raise ValidationFailed(f"ModelDataUrl: scheme {scheme!r} is not supported; use a path, file:// or s3://")


def check_environment(environment: Mapping[str, str]) -> None:
    """Names a process environment can hold (no '=', no NUL), as SageMaker's Environment pattern."""
    for key, value in environment.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationFailed(f"Environment: {key!r} must map a string to a string")
        if not _ENV_NAME.fullmatch(key):
            raise ValidationFailed(f"Environment: {key[:80]!r} is not a variable name (letters, digits, '_')")
        if "\x00" in value:
            raise ValidationFailed(f"Environment: the value of {key} holds a NUL character")


@dataclass(frozen=True)
class Model:
    name: str
    artifact_uri: str
    artifact_sha256: str | None = None
    framework: str | None = None  # None: detected from the artifact when it loads
    environment: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    mode: str = "SingleModel"  # or "MultiModel": artifact_uri is a prefix of many models
    image: str | None = None  # SageMaker's container image URI, as given (recorded; see sagemaker/images.py)
    properties: Mapping[str, Any] = field(default_factory=dict)  # other SageMaker fields, kept to echo back

    def __post_init__(self) -> None:
        check_name(self.name, "ModelName")
        if self.mode not in MODEL_MODES:
            raise ValidationFailed(f"Mode: {self.mode!r} is not one of {', '.join(MODEL_MODES)}")
        check_tags(self.tags)
        if not isinstance(self.artifact_uri, str) or not self.artifact_uri.strip():
            raise ValidationFailed("ModelDataUrl: an artifact URI or path is required")
        check_artifact_uri(self.artifact_uri)
        if self.framework is not None and self.framework not in FRAMEWORKS:
            raise ValidationFailed(f"Framework: {self.framework!r} is not one of {', '.join(FRAMEWORKS)}")
        check_environment(self.environment)


@dataclass(frozen=True)
class ProductionVariant:
    variant_name: str
    model_name: str
    initial_instance_count: int = 1
    initial_weight: float = 1.0
    properties: Mapping[str, Any] = field(default_factory=dict)  # e.g. InstanceType, kept to echo back

    def __post_init__(self) -> None:
        check_name(self.variant_name, "ProductionVariants.VariantName")
        check_name(self.model_name, f"ProductionVariants[{self.variant_name}].ModelName")
        if not isinstance(self.initial_instance_count, int) or not 1 <= self.initial_instance_count <= 64:
            raise ValidationFailed(
                f"ProductionVariants[{self.variant_name}].InitialInstanceCount: must be 1-64, "
                f"got {self.initial_instance_count!r}"
            )
        weight = self.initial_weight
        if not isinstance(weight, (int, float)) or not 0 <= weight <= MAX_WEIGHT:  # NaN fails too
            raise ValidationFailed(
                f"ProductionVariants[{self.variant_name}].InitialVariantWeight: must be 0 to {MAX_WEIGHT:g}, "
                f"got {weight!r}"
            )


@dataclass(frozen=True)
class DataCaptureConfig:
    enabled: bool = False
    sampling_percentage: int = 100
    destination_uri: str | None = None  # None: the platform's artifact store
    capture_input: bool = True  # SageMaker's CaptureOptions: Input, Output, or both
    capture_output: bool = True

    def __post_init__(self) -> None:
        if not (self.capture_input or self.capture_output):
            raise ValidationFailed("DataCaptureConfig.CaptureOptions: capture the Input, the Output or both")
        if not isinstance(self.sampling_percentage, int) or not 0 <= self.sampling_percentage <= 100:
            raise ValidationFailed(
                f"DataCaptureConfig.InitialSamplingPercentage: must be 0-100, got {self.sampling_percentage!r}"
            )


@dataclass(frozen=True)
class EndpointConfig:
    name: str
    variants: Sequence[ProductionVariant]
    data_capture: DataCaptureConfig = field(default_factory=DataCaptureConfig)
    created_at: datetime | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)  # other SageMaker fields, kept to echo back

    def __post_init__(self) -> None:
        check_name(self.name, "EndpointConfigName")
        check_tags(self.tags)
        if not self.variants:
            raise ValidationFailed("ProductionVariants: at least one variant is required")
        names = [v.variant_name for v in self.variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValidationFailed(f"ProductionVariants: duplicate VariantName {', '.join(duplicates)}")
        if sum(v.initial_weight for v in self.variants) <= 0:
            raise ValidationFailed("ProductionVariants: the variant weights must not all be 0")


@dataclass(frozen=True)
class Endpoint:
    name: str
    config_name: str
    status: EndpointStatus = EndpointStatus.CREATING
    failure_reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    require_api_key: bool = False  # invocations must carry a valid x-api-key
    # Per variant, what UpdateEndpointWeightsAndCapacities set over the config's values.
    variant_overrides: Mapping[str, VariantOverride] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name(self.name, "EndpointName")
        check_name(self.config_name, "EndpointConfigName")
        check_tags(self.tags)


@dataclass(frozen=True)
class VariantOverride:
    """A variant's weight and instance count as set on the endpoint, over its config's (None: the config's)."""

    weight: float | None = None
    instance_count: int | None = None


def with_overrides(config: EndpointConfig, overrides: Mapping[str, VariantOverride]) -> EndpointConfig:
    """The config an endpoint actually runs: its variants with the endpoint's overrides applied."""
    if not overrides:
        return config
    variants = []
    for variant in config.variants:
        override = overrides.get(variant.variant_name)
        if override is not None:
            variant = ProductionVariant(  # noqa: PLW2901 - the variant as overridden
                variant.variant_name,
                variant.model_name,
                override.instance_count if override.instance_count is not None else variant.initial_instance_count,
                override.weight if override.weight is not None else variant.initial_weight,
                variant.properties,
            )
        variants.append(variant)
    return EndpointConfig(
        config.name, tuple(variants), config.data_capture, config.created_at, config.tags, config.properties
    )


@dataclass(frozen=True)
class ApiKey:
    """A key for invocations. Only its SHA-256 is stored; the key itself is shown once, at creation."""

    name: str
    key_sha256: str
    key_prefix: str  # the first characters, to recognise a key in a list
    endpoints: tuple[str, ...] | None = None  # None: every endpoint that requires a key
    created_at: datetime | None = None
    access_key_id: str | None = None  # for SigV4-signed requests (boto3); None for keys made before it existed
    rate_per_s: float | None = None  # the key's own limit over every gateway route (a token bucket)
    burst: int | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "ApiKeyName")
        if (self.rate_per_s is None) != (self.burst is None):
            raise ValidationFailed("Rate, Burst: give both or neither")
        if self.rate_per_s is not None and (not isinstance(self.rate_per_s, (int, float)) or self.rate_per_s <= 0):
            raise ValidationFailed(f"Rate: must be > 0 requests a second, got {self.rate_per_s!r}")
        if self.burst is not None and (not isinstance(self.burst, int) or self.burst < 1):
            raise ValidationFailed(f"Burst: must be >= 1, got {self.burst!r}")
        for endpoint in self.endpoints or ():
            check_name(endpoint, "Endpoints")
