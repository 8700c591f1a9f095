"""SageMaker's hosting operations, each turned into a call on the platform's Controller.

Requests arrive validated against botocore's input shapes (``service.validate``); answers are
shaped as botocore's output shapes, so boto3 parses them like AWS's. The names and statuses are
already SageMaker's (control/resources.py); what is left here is translation:

    PrimaryContainer {Image, ModelDataUrl, Environment, Mode}  ─►  Model (framework from the image)
    ProductionVariants, DataCaptureConfig                     ─►  EndpointConfig
    DesiredWeightsAndCapacities                                ─►  the endpoint's variant overrides

Fields modelhost runs without (InstanceType, ServerlessConfig, ExecutionRoleArn, VpcConfig, ...)
are kept and echoed back by the Describe calls; features it cannot provide (inference pipelines,
async inference, shadow variants, explainers, model packages) are refused by name.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from modelhost.control.controller import Controller
from modelhost.control.resources import (
    DataCaptureConfig,
    Endpoint,
    EndpointConfig,
    EndpointStatus,
    Model,
    ProductionVariant,
    VariantOverride,
    with_overrides,
)
from modelhost.errors import ResourceNotFound, ValidationFailed
from modelhost.runtime.deployment import Variant
from modelhost.sagemaker.images import framework_for

T = TypeVar("T")
ACCOUNT = "000000000000"  # ARNs need a 12-digit account; modelhost has one
DEFAULT_MAX_RESULTS = 10  # SageMaker's default page size for List* calls

# Container fields that are only recorded; the rest of ContainerDefinition is translated or refused.
_RECORDED_CONTAINER = ("ContainerHostname", "ImageConfig")
_RECORDED_MODEL = ("ExecutionRoleArn", "VpcConfig", "EnableNetworkIsolation")
_RECORDED_VARIANT = (
    "InstanceType",
    "AcceleratorType",
    "ServerlessConfig",
    "VolumeSizeInGB",
    "ModelDataDownloadTimeoutInSeconds",
    "ContainerStartupHealthCheckTimeoutInSeconds",
    "EnableSSMAccess",
    "RoutingConfig",
    "InferenceAmiVersion",
    "ManagedInstanceScaling",
)
_RECORDED_CONFIG = ("KmsKeyId", "ExecutionRoleArn", "VpcConfig", "EnableNetworkIsolation")
_REFUSED_CONFIG = {
    "AsyncInferenceConfig": "asynchronous inference",
    "ShadowProductionVariants": "shadow variants",
    "ExplainerConfig": "SageMaker Clarify explainers",
}
_REFUSED_CONTAINER = {
    "ModelPackageName": "model packages",
    "AdditionalModelDataSources": "additional model data sources",
    "InferenceSpecificationName": "inference specifications",
}

Operation = Callable[["SageMakerOperations", Mapping[str, Any]], Awaitable[dict[str, Any]]]


class Arns:
    """SageMaker's ARNs for modelhost's resources (names lower-cased, as SageMaker does)."""

    def __init__(self, region: str) -> None:
        self.region = region

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:{kind}/{name.lower()}"

    def model(self, name: str) -> str:
        return self._arn("model", name)

    def endpoint_config(self, name: str) -> str:
        return self._arn("endpoint-config", name)

    def endpoint(self, name: str) -> str:
        return self._arn("endpoint", name)


def _time(moment: datetime | None) -> float:
    return (moment or datetime.now(UTC)).timestamp()


def _tags(given: Sequence[Mapping[str, str]] | None) -> dict[str, str]:
    return {tag["Key"]: tag.get("Value", "") for tag in given or ()}


def _artifact_uri(url: str, field: str) -> str:
    """``s3://``, ``file://`` or an absolute local path; nothing the platform would fetch from the web."""
    if url.startswith(("s3://", "file://")):
        return url
    if url.startswith(("http://", "https://")):
        raise ValidationFailed(
            f"{field}: modelhost does not download models over HTTP(S); use s3://, file:// or a path"
        )
    if not Path(url).is_absolute():
        raise ValidationFailed(f"{field}: {url!r} must be an s3:// or file:// URI, or an absolute path on the platform")
    return url


def _refuse(given: Mapping[str, Any], refused: Mapping[str, str], where: str) -> None:
    for key, what in refused.items():
        if given.get(key):
            raise ValidationFailed(f"{where}{key}: modelhost does not support {what}")


class SageMakerOperations:
    """One instance per request: it knows the region the client signed for (ARNs carry it)."""

    def __init__(self, controller: Controller, region: str) -> None:
        self._controller = controller
        self.arns = Arns(region)

    # -- models ----------------------------------------------------------------------------------------
    async def create_model(self, request: Mapping[str, Any]) -> dict[str, Any]:
        containers = list(request.get("Containers") or ())
        if request.get("PrimaryContainer") is not None:
            if containers:
                raise ValidationFailed("PrimaryContainer and Containers: give one of them, not both")
            containers = [request["PrimaryContainer"]]
        if len(containers) != 1:
            raise ValidationFailed(
                "Containers: modelhost serves one container per model (inference pipelines are not supported)"
                if containers
                else "PrimaryContainer: a container (its ModelDataUrl) is required"
            )
        container = containers[0]
        _refuse(container, _REFUSED_CONTAINER, "PrimaryContainer.")
        url = container.get("ModelDataUrl")
        field = "PrimaryContainer.ModelDataUrl"
        source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
        if url is None and source:
            url = source.get("S3Uri")
            field = "PrimaryContainer.ModelDataSource.S3DataSource.S3Uri"
        if not url:
            raise ValidationFailed(
                "PrimaryContainer.ModelDataUrl: modelhost needs the model's artifact (it runs no images)"
            )
        image = container.get("Image")
        properties = {key: request[key] for key in _RECORDED_MODEL if key in request}
        properties.update({key: container[key] for key in _RECORDED_CONTAINER if key in container})
        if source:
            properties["ModelDataSource"] = container["ModelDataSource"]
        if request.get("Containers"):
            properties["GivenAs"] = "Containers"  # described back the way it was given
        model = Model(
            name=request["ModelName"],
            artifact_uri=_artifact_uri(url, field),
            framework=framework_for(image),
            environment=dict(container.get("Environment") or {}),
            tags=_tags(request.get("Tags")),
            mode=container.get("Mode") or "SingleModel",
            image=image,
            properties=properties,
        )
        created = await self._controller.create_model(model)
        return {"ModelArn": self.arns.model(created.name)}

    async def describe_model(self, request: Mapping[str, Any]) -> dict[str, Any]:
        model = await self._controller.describe_model(request["ModelName"])
        container: dict[str, Any] = {"Mode": model.mode, "Environment": dict(model.environment)}
        if "ModelDataSource" in model.properties:
            container["ModelDataSource"] = model.properties["ModelDataSource"]
        else:
            container["ModelDataUrl"] = model.artifact_uri
        if model.image:
            container["Image"] = model.image
        container.update({key: model.properties[key] for key in _RECORDED_CONTAINER if key in model.properties})
        answer: dict[str, Any] = {
            "ModelName": model.name,
            **({"Containers": [container]} if model.properties.get("GivenAs") == "Containers" else {}),
            **({} if model.properties.get("GivenAs") == "Containers" else {"PrimaryContainer": container}),
            "CreationTime": _time(model.created_at),
            "ModelArn": self.arns.model(model.name),
        }
        answer.update({key: model.properties[key] for key in _RECORDED_MODEL if key in model.properties})
        return answer

    async def list_models(self, request: Mapping[str, Any]) -> dict[str, Any]:
        models = await self._controller.list_models()
        page, token = _page(request, models, lambda m: m.name, lambda m: m.created_at)
        summaries = [
            {"ModelName": m.name, "ModelArn": self.arns.model(m.name), "CreationTime": _time(m.created_at)}
            for m in page
        ]
        return _with_token({"Models": summaries}, token)

    async def delete_model(self, request: Mapping[str, Any]) -> dict[str, Any]:
        await self._controller.delete_model(request["ModelName"])
        return {}

    # -- endpoint configs ----------------------------------------------------------------------------------
    async def create_endpoint_config(self, request: Mapping[str, Any]) -> dict[str, Any]:
        _refuse(request, _REFUSED_CONFIG, "")
        variants = []
        for given in request["ProductionVariants"]:
            name = given["VariantName"]
            if not given.get("ModelName"):
                raise ValidationFailed(
                    f"ProductionVariants[{name}].ModelName: required (inference components are not supported)"
                )
            serverless = given.get("ServerlessConfig") is not None
            count = given.get("InitialInstanceCount")
            if count is None and not serverless:
                raise ValidationFailed(
                    f"ProductionVariants[{name}].InitialInstanceCount: required unless ServerlessConfig is given"
                )
            variants.append(
                ProductionVariant(
                    name,
                    given["ModelName"],
                    1 if count is None else count,
                    float(given.get("InitialVariantWeight", 1.0)),
                    {key: given[key] for key in _RECORDED_VARIANT if key in given},
                )
            )
        capture = DataCaptureConfig()
        properties: dict[str, Any] = {key: request[key] for key in _RECORDED_CONFIG if key in request}
        if (given_capture := request.get("DataCaptureConfig")) is not None:
            modes = {option["CaptureMode"] for option in given_capture["CaptureOptions"]}
            capture = DataCaptureConfig(
                enabled=given_capture.get("EnableCapture", True),
                sampling_percentage=given_capture["InitialSamplingPercentage"],
                destination_uri=_artifact_uri(given_capture["DestinationS3Uri"], "DataCaptureConfig.DestinationS3Uri"),
                capture_input="Input" in modes,
                capture_output="Output" in modes,
            )
            properties["DataCaptureConfig"] = {
                key: given_capture[key]
                for key in ("CaptureOptions", "KmsKeyId", "CaptureContentTypeHeader")
                if key in given_capture
            }
        config = EndpointConfig(
            request["EndpointConfigName"],
            tuple(variants),
            capture,
            tags=_tags(request.get("Tags")),
            properties=properties,
        )
        created = await self._controller.create_endpoint_config(config)
        return {"EndpointConfigArn": self.arns.endpoint_config(created.name)}

    async def describe_endpoint_config(self, request: Mapping[str, Any]) -> dict[str, Any]:
        config = await self._controller.describe_endpoint_config(request["EndpointConfigName"])
        answer: dict[str, Any] = {
            "EndpointConfigName": config.name,
            "EndpointConfigArn": self.arns.endpoint_config(config.name),
            "ProductionVariants": [
                {
                    "VariantName": v.variant_name,
                    "ModelName": v.model_name,
                    "InitialVariantWeight": v.initial_weight,
                    **(
                        {} if "ServerlessConfig" in v.properties else {"InitialInstanceCount": v.initial_instance_count}
                    ),
                    **dict(v.properties),
                }
                for v in config.variants
            ],
            "CreationTime": _time(config.created_at),
        }
        answer.update({key: config.properties[key] for key in _RECORDED_CONFIG if key in config.properties})
        if "DataCaptureConfig" in config.properties or config.data_capture.enabled:
            capture = config.data_capture
            answer["DataCaptureConfig"] = {
                "EnableCapture": capture.enabled,
                "InitialSamplingPercentage": capture.sampling_percentage,
                "DestinationS3Uri": capture.destination_uri or "",
                "CaptureOptions": [
                    {"CaptureMode": mode}
                    for mode, on in (("Input", capture.capture_input), ("Output", capture.capture_output))
                    if on
                ],
                **dict(config.properties.get("DataCaptureConfig", {})),
            }
        return answer

    async def list_endpoint_configs(self, request: Mapping[str, Any]) -> dict[str, Any]:
        configs = await self._controller.list_endpoint_configs()
        page, token = _page(request, configs, lambda c: c.name, lambda c: c.created_at)
        summaries = [
            {
                "EndpointConfigName": c.name,
                "EndpointConfigArn": self.arns.endpoint_config(c.name),
                "CreationTime": _time(c.created_at),
            }
            for c in page
        ]
        return _with_token({"EndpointConfigs": summaries}, token)

    async def delete_endpoint_config(self, request: Mapping[str, Any]) -> dict[str, Any]:
        await self._controller.delete_endpoint_config(request["EndpointConfigName"])
        return {}

    # -- endpoints -------------------------------------------------------------------------------------------
    async def create_endpoint(self, request: Mapping[str, Any]) -> dict[str, Any]:
        endpoint = await self._controller.create_endpoint(
            request["EndpointName"], request["EndpointConfigName"], _tags(request.get("Tags"))
        )
        return {"EndpointArn": self.arns.endpoint(endpoint.name)}

    async def describe_endpoint(self, request: Mapping[str, Any]) -> dict[str, Any]:
        endpoint = await self._controller.describe_endpoint(request["EndpointName"])
        answer: dict[str, Any] = {
            "EndpointName": endpoint.name,
            "EndpointArn": self.arns.endpoint(endpoint.name),
            "EndpointConfigName": endpoint.config_name,
            "EndpointStatus": endpoint.status.value,
            "CreationTime": _time(endpoint.created_at),
            "LastModifiedTime": _time(endpoint.updated_at),
        }
        if endpoint.failure_reason:
            answer["FailureReason"] = endpoint.failure_reason[:1024]
        variants = await self._variant_summaries(endpoint)
        if variants:
            answer["ProductionVariants"] = variants
        capture = await self._capture_summary(endpoint)
        if capture is not None:
            answer["DataCaptureConfig"] = capture
        return answer

    async def _variant_summaries(self, endpoint: Endpoint) -> list[dict[str, Any]]:
        """What runs (Current*) and what the endpoint should run (Desired*), per variant."""
        deployment = self._controller.runtime.route(endpoint.name)
        if deployment is None and endpoint.status is not EndpointStatus.CREATING:
            return []
        try:
            stored = await self._controller.describe_endpoint_config(endpoint.config_name)
        except ResourceNotFound:
            if deployment is None:
                return []
            stored = deployment.config  # a config deleted under the endpoint: describe what runs
        desired = with_overrides(stored, endpoint.variant_overrides)
        summaries = []
        for variant in desired.variants:
            running = deployment.variant(variant.variant_name) if deployment is not None else None
            running_config = (
                next((v for v in deployment.config.variants if v.variant_name == variant.variant_name), None)
                if deployment is not None
                else None
            )
            summary: dict[str, Any] = {"VariantName": variant.variant_name, "DesiredWeight": variant.initial_weight}
            model = await self._model_or_none(variant.model_name)
            if model is not None and model.image:
                summary["DeployedImages"] = [{"SpecifiedImage": model.image, "ResolvedImage": model.image}]
            if running is not None:
                summary["CurrentWeight"] = running.weight
            elif running_config is not None:
                summary["CurrentWeight"] = running_config.initial_weight
            summary.update(_capacity(variant, running, running_config))
            summaries.append(summary)
        return summaries

    async def _model_or_none(self, name: str) -> Model | None:
        try:
            return await self._controller.describe_model(name)
        except ResourceNotFound:  # deleted meanwhile: nothing to say about its image
            return None

    async def _capture_summary(self, endpoint: Endpoint) -> dict[str, Any] | None:
        deployment = self._controller.runtime.route(endpoint.name)
        config = deployment.config if deployment is not None else None
        if config is None:
            try:
                config = await self._controller.describe_endpoint_config(endpoint.config_name)
            except ResourceNotFound:
                return None
        capture = config.data_capture
        if not capture.enabled and "DataCaptureConfig" not in config.properties:
            return None
        return {
            "EnableCapture": capture.enabled,
            "CaptureStatus": "Started" if capture.enabled else "Stopped",
            "CurrentSamplingPercentage": capture.sampling_percentage,
            "DestinationS3Uri": capture.destination_uri or "",
            "KmsKeyId": config.properties.get("DataCaptureConfig", {}).get("KmsKeyId", ""),
        }

    async def list_endpoints(self, request: Mapping[str, Any]) -> dict[str, Any]:
        endpoints = await self._controller.list_endpoints()
        if status := request.get("StatusEquals"):
            endpoints = [e for e in endpoints if e.status.value == status]
        modified_after, modified_before = request.get("LastModifiedTimeAfter"), request.get("LastModifiedTimeBefore")
        if modified_after is not None:
            endpoints = [e for e in endpoints if _time(e.updated_at) > _seconds(modified_after)]
        if modified_before is not None:
            endpoints = [e for e in endpoints if _time(e.updated_at) < _seconds(modified_before)]
        page, token = _page(
            request, endpoints, lambda e: e.name, lambda e: e.created_at, status=lambda e: e.status.value
        )
        summaries = [
            {
                "EndpointName": e.name,
                "EndpointArn": self.arns.endpoint(e.name),
                "CreationTime": _time(e.created_at),
                "LastModifiedTime": _time(e.updated_at),
                "EndpointStatus": e.status.value,
            }
            for e in page
        ]
        return _with_token({"Endpoints": summaries}, token)

    async def update_endpoint(self, request: Mapping[str, Any]) -> dict[str, Any]:
        retain = bool(request.get("RetainAllVariantProperties"))
        excluded = {item["VariantPropertyType"] for item in request.get("ExcludeRetainedVariantProperties") or ()}
        endpoint = await self._controller.update_endpoint(
            request["EndpointName"],
            request["EndpointConfigName"],
            retain_weights=retain and "DesiredWeight" not in excluded,
            retain_instance_counts=retain and "DesiredInstanceCount" not in excluded,
        )
        return {"EndpointArn": self.arns.endpoint(endpoint.name)}

    async def update_endpoint_weights_and_capacities(self, request: Mapping[str, Any]) -> dict[str, Any]:
        desired: dict[str, VariantOverride] = {}
        for item in request["DesiredWeightsAndCapacities"]:
            name = item["VariantName"]
            if item.get("ServerlessUpdateConfig"):
                raise ValidationFailed(f"DesiredWeightsAndCapacities[{name}].ServerlessUpdateConfig: not supported")
            count = item.get("DesiredInstanceCount")
            if count == 0:
                raise ValidationFailed(
                    f"DesiredWeightsAndCapacities[{name}].DesiredInstanceCount: must be at least 1 "
                    "(scaling a variant to zero is not supported)"
                )
            weight = item.get("DesiredWeight")
            if weight is None and count is None:
                raise ValidationFailed(
                    f"DesiredWeightsAndCapacities[{name}]: give DesiredWeight, DesiredInstanceCount or both"
                )
            if name in desired:
                raise ValidationFailed(f"DesiredWeightsAndCapacities: variant {name} is named twice")
            desired[name] = VariantOverride(None if weight is None else float(weight), count)
        endpoint = await self._controller.update_weights_and_capacities(request["EndpointName"], desired)
        return {"EndpointArn": self.arns.endpoint(endpoint.name)}

    async def delete_endpoint(self, request: Mapping[str, Any]) -> dict[str, Any]:
        await self._controller.delete_endpoint(request["EndpointName"])
        return {}


OPERATIONS: dict[str, Operation] = {
    "CreateModel": SageMakerOperations.create_model,
    "DescribeModel": SageMakerOperations.describe_model,
    "ListModels": SageMakerOperations.list_models,
    "DeleteModel": SageMakerOperations.delete_model,
    "CreateEndpointConfig": SageMakerOperations.create_endpoint_config,
    "DescribeEndpointConfig": SageMakerOperations.describe_endpoint_config,
    "ListEndpointConfigs": SageMakerOperations.list_endpoint_configs,
    "DeleteEndpointConfig": SageMakerOperations.delete_endpoint_config,
    "CreateEndpoint": SageMakerOperations.create_endpoint,
    "DescribeEndpoint": SageMakerOperations.describe_endpoint,
    "ListEndpoints": SageMakerOperations.list_endpoints,
    "UpdateEndpoint": SageMakerOperations.update_endpoint,
    "UpdateEndpointWeightsAndCapacities": SageMakerOperations.update_endpoint_weights_and_capacities,
    "DeleteEndpoint": SageMakerOperations.delete_endpoint,
}


# -- List* calls: filters, order, pages ---------------------------------------------------------------------
def _seconds(value: Any) -> float:
    """A timestamp as the JSON protocol sends it (epoch seconds), or an ISO 8601 string."""
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValidationFailed(f"timestamp {value!r}: give epoch seconds or ISO 8601") from None


def _page(
    request: Mapping[str, Any],
    items: list[T],
    name: Callable[[T], str],
    created: Callable[[T], datetime | None],
    *,
    status: Callable[[T], str] | None = None,
) -> tuple[list[T], str | None]:
    """Filter (NameContains, CreationTime*), order (SortBy, SortOrder) and cut one page of ``items``."""
    if contains := request.get("NameContains"):
        items = [item for item in items if contains.lower() in name(item).lower()]
    if (after := request.get("CreationTimeAfter")) is not None:
        items = [item for item in items if _time(created(item)) > _seconds(after)]
    if (before := request.get("CreationTimeBefore")) is not None:
        items = [item for item in items if _time(created(item)) < _seconds(before)]
    sort_by = request.get("SortBy", "CreationTime")
    descending = request.get("SortOrder", "Descending") == "Descending"
    if sort_by == "Name":
        items.sort(key=name, reverse=descending)
    elif sort_by == "Status" and status is not None:
        items.sort(key=lambda item: (status(item), name(item)), reverse=descending)
    else:
        items.sort(key=lambda item: (_time(created(item)), name(item)), reverse=descending)
    start = _offset(request.get("NextToken"))
    size = request.get("MaxResults", DEFAULT_MAX_RESULTS)
    page = items[start : start + size]
    more = start + size < len(items)
    return page, _token(start + size) if more else None


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"offset": offset})).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = orjson.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise ValidationFailed("NextToken: not a token this API gave out") from None
    if type(offset) is not int or offset < 0:
        raise ValidationFailed("NextToken: not a token this API gave out")
    return offset


def _with_token(answer: dict[str, Any], token: str | None) -> dict[str, Any]:
    if token is not None:
        answer["NextToken"] = token
    return answer


def _capacity(
    desired: ProductionVariant, running: Variant | None, running_config: ProductionVariant | None
) -> dict[str, Any]:
    """A variant summary's instance counts, or for a serverless variant its serverless configs instead:
    SageMaker reports no instance counts for one (DesiredInstanceCount: 1 would be an invention)."""
    capacity: dict[str, Any] = {}
    if "ServerlessConfig" in desired.properties:
        capacity["DesiredServerlessConfig"] = desired.properties["ServerlessConfig"]
    else:
        capacity["DesiredInstanceCount"] = desired.initial_instance_count
    if running_config is not None and "ServerlessConfig" in running_config.properties:
        capacity["CurrentServerlessConfig"] = running_config.properties["ServerlessConfig"]
    elif running is not None:
        capacity["CurrentInstanceCount"] = len(running.hosts) if running.multi_model else len(running.instances)
    return capacity
