"""boto3's ``sagemaker`` and ``sagemaker-runtime`` clients against a real `modelhost up`.

The SageMaker tutorials' calls, unchanged but for ``endpoint_url`` (or the AWS_ENDPOINT_URL_*
variables): create_model with an ECR image URI, create_endpoint_config, create_endpoint and the
waiters, invoke_endpoint, update_endpoint, UpdateEndpointWeightsAndCapacities, the deletes. Every
answer boto3 parses is checked against botocore's output shape; errors must carry the codes
SageMaker uses, since that is what callers catch.

One `modelhost up` without a token for the module (any credentials are accepted) with one running
endpoint, ``live``; a second one with a token for the signature checks (SigV4 with access key id
``modelhost`` and the token as the secret; API keys' access key ids for invocations).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

boto3 = pytest.importorskip("boto3")

from botocore import UNSIGNED  # noqa: E402 (boto3 may be missing: skipped above)
from botocore.client import BaseClient  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, WaiterError  # noqa: E402
from botocore.validate import ParamValidator  # noqa: E402

from modelhost.artifacts.pack import pack  # noqa: E402
from tests.platform.conftest import Platform, platforms, poll  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REGION = "us-east-1"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1"
ROLE = "arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-ExecutionRole-20240101T000000"
TEXTS = ["great amazing day", "awful broken app"]
CSV = "great amazing day\nawful broken app\n"
NUMBERS = [1, 0]  # the sentiment model's answer
WORDS = ["positive", "negative"]  # the words model's answer
WAIT = {"Delay": 1, "MaxAttempts": 90}
AMZ_JSON = "application/x-amz-json-1.1"


# -- clients and checks ---------------------------------------------------------------------------------
def aws(
    service: str,
    url: str,
    key_id: str = "AKIDEXAMPLE",
    secret: str = "unused-on-loopback",
    session_token: str | None = None,
    **config: Any,
) -> Any:
    """A boto3 client of ``service`` pointed at ``url`` (no retries: an error is seen as it is)."""
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=session_token,
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


def wait(client: BaseClient, waiter: str, endpoint: str, platform: Platform) -> None:
    """boto3's waiter, polling every second; on failure, what DescribeEndpoint and the logs say."""
    try:
        client.get_waiter(waiter).wait(EndpointName=endpoint, WaiterConfig=WAIT)
    except WaiterError as exc:
        raise AssertionError(f"{endpoint}: {exc}\n{exc.last_response}\n{platform.diagnostics(endpoint)}") from None


def check_output(client: BaseClient, method: str, response: dict[str, Any]) -> dict[str, Any]:
    """``response`` (as boto3 parsed it) validates against the operation's output shape; returned."""
    operation = client.meta.service_model.operation_model(client.meta.method_to_api_mapping[method])
    parsed = {key: value for key, value in response.items() if key != "ResponseMetadata"}
    if operation.output_shape is None:
        assert parsed == {}, (operation.name, parsed)
        return response
    report = ParamValidator().validate(parsed, operation.output_shape)
    assert not report.has_errors(), f"{operation.name}: {report.generate_report()}\n{parsed}"
    return response


def call(client: BaseClient, method: str, **params: Any) -> dict[str, Any]:
    """``client.method(**params)``, its answer checked against botocore's output shape."""
    return check_output(client, method, getattr(client, method)(**params))


def refused(call_: Any, code: str, status: int = 400) -> dict[str, Any]:
    """The error response of ``call_()``, which must fail with ``code`` and HTTP ``status``."""
    with pytest.raises(ClientError) as failed:
        call_()
    response: dict[str, Any] = failed.value.response
    assert response["Error"]["Code"] == code, response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status, response
    return response


def status_or_error(client: BaseClient, endpoint: str) -> str:
    """DescribeEndpoint's EndpointStatus (the answer checked), or the code of its error."""
    try:
        return str(call(client, "describe_endpoint", EndpointName=endpoint)["EndpointStatus"])
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])


def raw(url: str, target: str | None, body: bytes = b"{}", **headers: str) -> httpx.Response:
    """``POST /`` as an AWS JSON 1.1 client sends it, without boto3 (and unsigned unless told)."""
    sent = {"content-type": AMZ_JSON, **headers}
    if target is not None:
        sent["x-amz-target"] = target
    return httpx.post(f"{url}/", content=body, headers=sent, timeout=30)


def assert_aws_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(AMZ_JSON)
    assert response.headers["x-amzn-requestid"]
    body: dict[str, Any] = response.json()
    assert body["__type"] == code, body
    assert body["Message"]  # the key botocore fills ClientError.response["Message"] from
    return body


def container(data_url: str | Path, image: str = IMAGE, **fields: Any) -> dict[str, Any]:
    return {"Image": image, "ModelDataUrl": str(data_url), **fields}


def variant(model: str, name: str = "AllTraffic", **fields: Any) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": model,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
        "InitialVariantWeight": 1.0,
        **fields,
    }


def arn(kind: str, name: str, region: str = REGION) -> str:
    return f"arn:aws:sagemaker:{region}:000000000000:{kind}/{name}"


def invoke(runtime: BaseClient, endpoint: str, body: str | bytes, content_type: str, **params: Any) -> dict[str, Any]:
    """invoke_endpoint, checked against its output shape; ``Body`` read into bytes."""
    response = call(runtime, "invoke_endpoint", EndpointName=endpoint, ContentType=content_type, Body=body, **params)
    response["Body"] = response["Body"].read()
    return response


def invoke_json(runtime: BaseClient, endpoint: str, texts: list[str] = TEXTS) -> tuple[Any, str]:
    """The model's answer to ``texts`` (as JSON), and the variant that gave it."""
    response = invoke(runtime, endpoint, json.dumps(texts), "application/json")
    assert response["ContentType"].startswith("application/json")
    return json.loads(response["Body"]), response["InvokedProductionVariant"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any AWS or modelhost setting (nor a config file boto3 would read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODELHOST_", "BOTO"))}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true")
    env.update(extra)
    return env


# -- the module's platform, clients and endpoint ---------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platforms(tmp_path_factory.mktemp("sagemaker")) as start:
        yield start()


@pytest.fixture(scope="module")
def sm(served: Platform) -> Any:
    return aws("sagemaker", served.url)


@pytest.fixture(scope="module")
def runtime(served: Platform) -> Any:
    return aws("sagemaker-runtime", served.url)


@pytest.fixture(scope="module")
def words_archive(models_dir: Path, sentiment_model_v2: Path) -> Path:
    """The words model as SageMaker keeps models: a model.tar.gz."""
    archive = models_dir / "words-model.tar.gz"
    if not archive.exists():
        pack(sentiment_model_v2, archive)
    return archive


@pytest.fixture(scope="module")
def live(served: Platform, sm: Any, sentiment_model: Path) -> str:
    """An endpoint of the sentiment model, running for the whole module (model live-model, config live-config)."""
    call(sm, "create_model", ModelName="live-model", PrimaryContainer=container(sentiment_model), ExecutionRoleArn=ROLE)
    call(sm, "create_endpoint_config", EndpointConfigName="live-config", ProductionVariants=[variant("live-model")])
    call(sm, "create_endpoint", EndpointName="live", EndpointConfigName="live-config")
    wait(sm, "endpoint_in_service", "live", served)
    return "live"


# -- 1. the tutorial's flow -------------------------------------------------------------------------------------
def test_the_tutorial_flow_from_create_model_to_delete(
    served: Platform, sm: Any, runtime: Any, sentiment_model: Path, words_archive: Path
) -> None:
    # two models: an unpacked folder by absolute path, and a model.tar.gz as a file:// URI
    environment = {"TEAM": "tutorial", "GREETING": "hello world"}
    created = call(
        sm,
        "create_model",
        ModelName="tutorial-numbers",
        PrimaryContainer=container(sentiment_model, Environment=environment),
        ExecutionRoleArn=ROLE,
        Tags=[{"Key": "project", "Value": "tutorial"}],
    )
    assert created["ModelArn"] == arn("model", "tutorial-numbers")
    words_url = f"file://{words_archive}"
    call(sm, "create_model", ModelName="tutorial-words", PrimaryContainer=container(words_url), ExecutionRoleArn=ROLE)

    described = call(sm, "describe_model", ModelName="tutorial-numbers")
    assert described["ModelName"] == "tutorial-numbers"
    assert described["ModelArn"] == created["ModelArn"]
    assert described["ExecutionRoleArn"] == ROLE
    primary = described["PrimaryContainer"]
    assert primary["Image"] == IMAGE
    assert primary["ModelDataUrl"] == str(sentiment_model)
    assert primary["Environment"] == environment
    assert described["CreationTime"].tzinfo is not None
    assert call(sm, "describe_model", ModelName="tutorial-words")["PrimaryContainer"]["ModelDataUrl"] == words_url

    # an endpoint config, then the endpoint
    config = call(
        sm,
        "create_endpoint_config",
        EndpointConfigName="tutorial-config-1",
        ProductionVariants=[variant("tutorial-numbers")],
    )
    assert config["EndpointConfigArn"] == arn("endpoint-config", "tutorial-config-1")
    described_config = call(sm, "describe_endpoint_config", EndpointConfigName="tutorial-config-1")
    [described_variant] = described_config["ProductionVariants"]
    assert described_variant["ModelName"] == "tutorial-numbers"
    assert described_variant["InstanceType"] == "ml.m5.large"
    assert described_variant["InitialInstanceCount"] == 1
    assert described_variant["InitialVariantWeight"] == 1.0

    endpoint = call(sm, "create_endpoint", EndpointName="tutorial", EndpointConfigName="tutorial-config-1")
    assert endpoint["EndpointArn"] == arn("endpoint", "tutorial")
    creating = call(sm, "describe_endpoint", EndpointName="tutorial")
    assert creating["EndpointStatus"] in {"Creating", "InService"}
    wait(sm, "endpoint_in_service", "tutorial", served)
    in_service = call(sm, "describe_endpoint", EndpointName="tutorial")
    assert in_service["EndpointStatus"] == "InService"
    assert in_service["EndpointConfigName"] == "tutorial-config-1"
    [summary] = in_service["ProductionVariants"]
    assert summary["VariantName"] == "AllTraffic"
    assert summary["CurrentInstanceCount"] == summary["DesiredInstanceCount"] == 1
    assert summary["DeployedImages"][0]["SpecifiedImage"] == IMAGE
    listed = call(sm, "list_endpoints", NameContains="tutorial", StatusEquals="InService")
    assert [e["EndpointName"] for e in listed["Endpoints"]] == ["tutorial"]
    assert "tutorial" in {e["name"] for e in served.client.list_endpoints()}  # the native API sees it too

    # invocations: CSV rows (one prediction per line back), JSON, CSV in and JSON out
    answer = invoke(runtime, "tutorial", CSV, "text/csv")
    assert answer["ContentType"].startswith("text/csv")
    assert answer["Body"] == b"1\n0\n"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert invoke_json(runtime, "tutorial") == (NUMBERS, "AllTraffic")
    as_json = invoke(runtime, "tutorial", CSV, "text/csv", Accept="application/json")
    assert json.loads(as_json["Body"]) == NUMBERS
    old_pids = served.instance_pids("tutorial")

    # update_endpoint to a second config, of the second model
    call(
        sm,
        "create_endpoint_config",
        EndpointConfigName="tutorial-config-2",
        ProductionVariants=[variant("tutorial-words")],
    )
    call(sm, "update_endpoint", EndpointName="tutorial", EndpointConfigName="tutorial-config-2")
    updating = call(sm, "describe_endpoint", EndpointName="tutorial")
    assert updating["EndpointStatus"] in {"Updating", "InService"}
    assert invoke_json(runtime, "tutorial")[0] in (NUMBERS, WORDS)  # served all along
    wait(sm, "endpoint_in_service", "tutorial", served)
    updated = call(sm, "describe_endpoint", EndpointName="tutorial")
    assert updated["EndpointStatus"] == "InService"
    assert updated["EndpointConfigName"] == "tutorial-config-2"
    assert invoke_json(runtime, "tutorial") == (WORDS, "AllTraffic")
    assert invoke(runtime, "tutorial", "great amazing day\n", "text/csv")["Body"] == b"positive\n"
    pids = served.instance_pids("tutorial")
    assert not set(pids) & set(old_pids)

    # delete everything; the List calls no longer show it
    call(sm, "delete_endpoint", EndpointName="tutorial")
    wait(sm, "endpoint_deleted", "tutorial", served)
    refused(lambda: sm.describe_endpoint(EndpointName="tutorial"), "ValidationException")
    poll(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 10, "the instances to stop")
    for name in ("tutorial-config-1", "tutorial-config-2"):
        call(sm, "delete_endpoint_config", EndpointConfigName=name)
    for name in ("tutorial-numbers", "tutorial-words"):
        call(sm, "delete_model", ModelName=name)
    assert call(sm, "list_endpoints", NameContains="tutorial")["Endpoints"] == []
    assert call(sm, "list_endpoint_configs", NameContains="tutorial")["EndpointConfigs"] == []
    assert call(sm, "list_models", NameContains="tutorial")["Models"] == []
    refused(lambda: sm.describe_model(ModelName="tutorial-words"), "ValidationException")
    refused(lambda: sm.describe_endpoint_config(EndpointConfigName="tutorial-config-2"), "ValidationException")


# -- 2. output shapes -----------------------------------------------------------------------------------------
def test_every_answer_validates_against_botocores_output_shapes(
    served: Platform, sm: Any, runtime: Any, live: str, words_archive: Path, tmp_path: Path
) -> None:
    """``call`` checks each answer; here the fields that are optional, or there only in some states:
    recorded properties, data capture, two variants, a serverless variant, Creating/Updating/Deleting."""
    call(
        sm,
        "create_model",
        ModelName="shapes-model",
        PrimaryContainer=container(words_archive, image="modelhost/sklearn:latest", Environment={"A": "1"}),
        ExecutionRoleArn=ROLE,
        EnableNetworkIsolation=False,
    )
    described = call(sm, "describe_model", ModelName="shapes-model")
    assert described["EnableNetworkIsolation"] is False
    assert served.client.describe_model("shapes-model")["framework"] == "sklearn"  # named by the image
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": (tmp_path / "capture").as_uri(),
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }
    call(
        sm,
        "create_endpoint_config",
        EndpointConfigName="shapes-config",
        ProductionVariants=[variant("shapes-model", VolumeSizeInGB=10), variant("live-model", name="second")],
        DataCaptureConfig=capture,
        KmsKeyId="arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    )
    described_config = call(sm, "describe_endpoint_config", EndpointConfigName="shapes-config")
    assert [v["VariantName"] for v in described_config["ProductionVariants"]] == ["AllTraffic", "second"]
    assert described_config["ProductionVariants"][0]["VolumeSizeInGB"] == 10
    assert described_config["KmsKeyId"].startswith("arn:aws:kms:")
    assert described_config["DataCaptureConfig"] == {**capture, "InitialSamplingPercentage": 100}
    serverless = {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    call(
        sm,
        "create_endpoint_config",
        EndpointConfigName="shapes-serverless",
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "shapes-model", "ServerlessConfig": serverless}],
    )
    [serverless_variant] = call(sm, "describe_endpoint_config", EndpointConfigName="shapes-serverless")[
        "ProductionVariants"
    ]
    assert serverless_variant["ServerlessConfig"] == serverless
    assert "InitialInstanceCount" not in serverless_variant

    call(sm, "create_endpoint", EndpointName="shapes", EndpointConfigName="shapes-config")
    assert status_or_error(sm, "shapes") in {"Creating", "InService"}
    wait(sm, "endpoint_in_service", "shapes", served)
    described_endpoint = call(sm, "describe_endpoint", EndpointName="shapes")
    assert {v["VariantName"] for v in described_endpoint["ProductionVariants"]} == {"AllTraffic", "second"}
    assert described_endpoint["DataCaptureConfig"]["EnableCapture"] is True
    assert described_endpoint["DataCaptureConfig"]["CaptureStatus"] == "Started"
    for method in ("list_models", "list_endpoint_configs", "list_endpoints"):
        call(sm, method)
        call(sm, method, SortBy="Name", SortOrder="Ascending", MaxResults=1)
    call(sm, "list_endpoints", SortBy="Status", StatusEquals="InService")
    for page in sm.get_paginator("list_endpoint_configs").paginate(PaginationConfig={"PageSize": 1}):
        check_output(sm, "list_endpoint_configs", page)
    invoke(runtime, "shapes", json.dumps(TEXTS), "application/json")

    call(sm, "update_endpoint", EndpointName="shapes", EndpointConfigName="shapes-serverless")
    assert status_or_error(sm, "shapes") in {"Updating", "InService"}
    wait(sm, "endpoint_in_service", "shapes", served)
    [summary] = call(sm, "describe_endpoint", EndpointName="shapes")["ProductionVariants"]
    assert summary["CurrentServerlessConfig"] == summary["DesiredServerlessConfig"] == serverless
    assert not {"DesiredInstanceCount", "CurrentInstanceCount"} & summary.keys(), summary  # as SageMaker reports one
    assert invoke_json(runtime, "shapes") == (WORDS, "AllTraffic")

    call(sm, "delete_endpoint", EndpointName="shapes")
    assert status_or_error(sm, "shapes") in {"Deleting", "ValidationException"}  # or already gone
    wait(sm, "endpoint_deleted", "shapes", served)
    for name in ("shapes-config", "shapes-serverless"):
        call(sm, "delete_endpoint_config", EndpointConfigName=name)
    call(sm, "delete_model", ModelName="shapes-model")


# -- 3. errors ---------------------------------------------------------------------------------------------------
def test_what_does_not_exist_is_a_validation_exception(sm: Any) -> None:
    for call_, name in (
        (lambda: sm.describe_model(ModelName="no-such-model"), "no-such-model"),
        (lambda: sm.describe_endpoint(EndpointName="no-such-endpoint"), "no-such-endpoint"),
        (lambda: sm.describe_endpoint_config(EndpointConfigName="no-such-config"), "no-such-config"),
        (lambda: sm.delete_model(ModelName="no-such-model"), "no-such-model"),
        (lambda: sm.delete_endpoint(EndpointName="no-such-endpoint"), "no-such-endpoint"),
        (lambda: sm.delete_endpoint_config(EndpointConfigName="no-such-config"), "no-such-config"),
    ):
        response = refused(call_, "ValidationException")
        assert name in response["Error"]["Message"], response
        assert "does not exist" in response["Error"]["Message"]
    refused(lambda: sm.update_endpoint(EndpointName="no-such-endpoint", EndpointConfigName="x"), "ValidationException")
    # what refers to something missing
    refused(
        lambda: sm.create_endpoint_config(
            EndpointConfigName="orphan-config", ProductionVariants=[variant("no-such-model")]
        ),
        "ValidationException",
    )
    refused(
        lambda: sm.create_endpoint(EndpointName="orphan", EndpointConfigName="no-such-config"), "ValidationException"
    )
    refused(lambda: sm.describe_endpoint(EndpointName="orphan"), "ValidationException")


def test_creating_what_exists_is_a_validation_exception(sm: Any, live: str, sentiment_model: Path) -> None:
    refused(
        lambda: sm.create_model(
            ModelName="live-model", PrimaryContainer=container(sentiment_model), ExecutionRoleArn=ROLE
        ),
        "ValidationException",
    )
    refused(
        lambda: sm.create_endpoint_config(EndpointConfigName="live-config", ProductionVariants=[variant("live-model")]),
        "ValidationException",
    )
    refused(lambda: sm.create_endpoint(EndpointName=live, EndpointConfigName="live-config"), "ValidationException")
    assert call(sm, "describe_endpoint", EndpointName=live)["EndpointStatus"] == "InService"


def test_requests_breaking_the_service_model_name_the_field(served: Platform, sm: Any, sentiment_model: Path) -> None:
    bad = refused(
        lambda: sm.create_model(
            ModelName="bad_name", PrimaryContainer=container(sentiment_model), ExecutionRoleArn=ROLE
        ),
        "ValidationException",
    )
    message = bad["Error"]["Message"]
    assert "'modelName'" in message, message
    assert "'bad_name'" in message
    assert message.startswith("1 validation error detected")
    bad_config = refused(
        lambda: sm.create_endpoint_config(EndpointConfigName="bad.config", ProductionVariants=[variant("x")]),
        "ValidationException",
    )
    assert "'endpointConfigName'" in bad_config["Error"]["Message"]
    # the same, sent without boto3 (which checks types before sending)
    wrong_type = raw(served.url, "SageMaker.ListModels", json.dumps({"MaxResults": "ten"}).encode())
    assert "'maxResults'" in assert_aws_error(wrong_type, 400, "ValidationException")["Message"]
    missing = raw(served.url, "SageMaker.DescribeModel", b"{}")
    assert "'modelName'" in assert_aws_error(missing, 400, "ValidationException")["Message"]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"Containers": "two"}, "Containers"),
        ({"PrimaryContainer": {"ModelDataUrl": "https://example.com/model.tar.gz"}}, "ModelDataUrl"),
        ({"PrimaryContainer": {"ModelDataUrl": "models/model.tar.gz"}}, "ModelDataUrl"),
        ({"PrimaryContainer": {"Image": "modelhost/pytorch:2.1", "ModelDataUrl": "/models/m"}}, "modelhost/sklearn"),
        ({"PrimaryContainer": {"Image": IMAGE}}, "ModelDataUrl"),
    ],
    ids=["two-containers", "https-url", "relative-path", "unknown-runtime", "no-model-data"],
)
def test_what_modelhost_cannot_serve_is_refused_by_name(
    sm: Any, sentiment_model: Path, fields: dict[str, Any], named: str
) -> None:
    if fields.get("Containers") == "two":
        fields = {"Containers": [container(sentiment_model), container(sentiment_model)]}
    response = refused(
        lambda: sm.create_model(ModelName="refused-model", ExecutionRoleArn=ROLE, **fields), "ValidationException"
    )
    assert named in response["Error"]["Message"], response
    refused(lambda: sm.describe_model(ModelName="refused-model"), "ValidationException")


def test_unknown_operations_and_bodies_that_are_not_json(served: Platform) -> None:
    not_implemented = assert_aws_error(raw(served.url, "SageMaker.CreateTrainingJob"), 400, "UnknownOperationException")
    assert "CreateTrainingJob" in not_implemented["Message"]
    assert "CreateEndpoint" in not_implemented["Message"]  # what it does implement
    unknown = assert_aws_error(raw(served.url, "SageMaker.NoSuchThing"), 400, "UnknownOperationException")
    assert "NoSuchThing" in unknown["Message"]
    assert_aws_error(raw(served.url, None), 400, "UnknownOperationException")
    assert_aws_error(raw(served.url, "DynamoDB_20120810.ListTables"), 400, "UnknownOperationException")

    for body in (b'{"ModelName": ', b"not json at all", b"\xff\xfe"):
        assert_aws_error(raw(served.url, "SageMaker.ListModels", body), 400, "SerializationException")
    for body in (b"[]", b'"ListModels"', b"42"):
        assert_aws_error(raw(served.url, "SageMaker.ListModels", body), 400, "SerializationException")
    # a well-formed call, raw (unsigned: the ARNs' region is "local")
    created = raw(
        served.url,
        "SageMaker.CreateModel",
        json.dumps({"ModelName": "raw-model", "PrimaryContainer": {"ModelDataUrl": "/models/raw"}}).encode(),
    )
    assert created.status_code == 200, created.text
    assert created.json() == {"ModelArn": arn("model", "raw-model", region="local")}
    assert raw(served.url, "SageMaker.DeleteModel", b'{"ModelName": "raw-model"}').json() == {}
    listed = raw(served.url, "SageMaker.ListModels", b"{}")
    assert listed.status_code == 200, listed.text
    assert listed.headers["content-type"].startswith(AMZ_JSON)
    assert isinstance(listed.json()["Models"], list)


def test_more_instances_than_the_platform_may_run(sm: Any, live: str) -> None:
    call(
        sm,
        "create_endpoint_config",
        EndpointConfigName="too-big-config",
        ProductionVariants=[variant("live-model", InitialInstanceCount=40)],
    )
    with pytest.raises(sm.exceptions.ResourceLimitExceeded):
        sm.create_endpoint(EndpointName="too-big", EndpointConfigName="too-big-config")
    refused(lambda: sm.describe_endpoint(EndpointName="too-big"), "ValidationException")
    with pytest.raises(sm.exceptions.ResourceLimitExceeded):
        sm.update_endpoint(EndpointName=live, EndpointConfigName="too-big-config")
    assert call(sm, "describe_endpoint", EndpointName=live)["EndpointConfigName"] == "live-config"
    call(sm, "delete_endpoint_config", EndpointConfigName="too-big-config")


def test_a_model_that_cannot_load_fails_the_waiter(
    served: Platform, sm: Any, runtime: Any, live: str, broken_model: Path
) -> None:
    call(sm, "create_model", ModelName="broken-model", PrimaryContainer=container(broken_model), ExecutionRoleArn=ROLE)
    call(sm, "create_endpoint_config", EndpointConfigName="broken-config", ProductionVariants=[variant("broken-model")])
    call(sm, "create_endpoint", EndpointName="broken", EndpointConfigName="broken-config")
    with pytest.raises(WaiterError) as failed:
        sm.get_waiter("endpoint_in_service").wait(EndpointName="broken", WaiterConfig=WAIT)
    assert "Failed" in str(failed.value)
    described = call(sm, "describe_endpoint", EndpointName="broken")
    assert described["EndpointStatus"] == "Failed"
    assert "could not unpickle model.joblib" in described["FailureReason"]
    assert len(described["FailureReason"]) <= 1024
    with pytest.raises(ClientError) as not_serving:
        runtime.invoke_endpoint(EndpointName="broken", ContentType="application/json", Body=b"[]")
    assert not_serving.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 400

    # an update to it is rolled back: the endpoint is InService on its old config, with the reason
    call(sm, "update_endpoint", EndpointName=live, EndpointConfigName="broken-config")
    wait(sm, "endpoint_in_service", live, served)
    rolled_back = call(sm, "describe_endpoint", EndpointName=live)
    assert rolled_back["EndpointConfigName"] == "live-config"
    assert "could not unpickle model.joblib" in rolled_back["FailureReason"]
    assert invoke_json(runtime, live) == (NUMBERS, "AllTraffic")

    call(sm, "delete_endpoint", EndpointName="broken")
    wait(sm, "endpoint_deleted", "broken", served)
    call(sm, "delete_endpoint_config", EndpointConfigName="broken-config")
    call(sm, "delete_model", ModelName="broken-model")


def test_a_model_or_config_in_use_cannot_be_deleted(sm: Any, runtime: Any, live: str) -> None:
    with pytest.raises(sm.exceptions.ResourceInUse):
        sm.delete_model(ModelName="live-model")
    refused(lambda: sm.delete_model(ModelName="live-model"), "ResourceInUse")
    refused(lambda: sm.delete_endpoint_config(EndpointConfigName="live-config"), "ResourceInUse")
    assert call(sm, "describe_endpoint", EndpointName=live)["EndpointStatus"] == "InService"
    call(sm, "describe_model", ModelName="live-model")
    call(sm, "describe_endpoint_config", EndpointConfigName="live-config")
    assert invoke_json(runtime, live) == (NUMBERS, "AllTraffic")


def test_invocation_errors_as_the_runtime_shapes_them(runtime: Any, live: str) -> None:
    with pytest.raises(runtime.exceptions.ValidationError) as unknown:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", ContentType="application/json", Body=b"[]")
    assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "no-such-endpoint" in unknown.value.response["Error"]["Message"]
    refused(
        lambda: runtime.invoke_endpoint(
            EndpointName=live, ContentType="application/json", Body=b"[]", TargetVariant="no-such-variant"
        ),
        "ValidationError",
    )

    with pytest.raises(runtime.exceptions.ModelError) as model_error:
        runtime.invoke_endpoint(EndpointName=live, ContentType="application/json", Body=b'["great day"')
    response = model_error.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 400
    assert "JSON" in response["OriginalMessage"]
    assert "AllTraffic" in response["Error"]["Message"]


HANDLER = """
import json
import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def predict_fn(texts, model):
    return [int(label) for label in model.predict(texts)]


def output_fn(predictions, accept):
    return json.dumps({"predictions": predictions, "greeting": os.environ.get("GREETING")}), "application/json"
"""


def test_the_containers_environment_reaches_the_model_server(
    served: Platform, sm: Any, runtime: Any, sentiment_model: Path, tmp_path: Path
) -> None:
    """PrimaryContainer.Environment: SAGEMAKER_PROGRAM picks the handler script, the rest is its environment."""
    folder = tmp_path / "with-handler"
    folder.mkdir()
    (folder / "model.joblib").write_bytes((sentiment_model / "model.joblib").read_bytes())
    (folder / "handler.py").write_text(HANDLER)
    environment = {"SAGEMAKER_PROGRAM": "handler.py", "GREETING": "hello from the environment"}
    call(
        sm,
        "create_model",
        ModelName="env-model",
        PrimaryContainer=container(folder, Environment=environment),
        ExecutionRoleArn=ROLE,
    )
    call(sm, "create_endpoint_config", EndpointConfigName="env-config", ProductionVariants=[variant("env-model")])
    call(sm, "create_endpoint", EndpointName="env", EndpointConfigName="env-config")
    wait(sm, "endpoint_in_service", "env", served)
    answer, _ = invoke_json(runtime, "env")
    assert answer == {"predictions": NUMBERS, "greeting": "hello from the environment"}

    call(sm, "delete_endpoint", EndpointName="env")
    wait(sm, "endpoint_deleted", "env", served)
    call(sm, "delete_endpoint_config", EndpointConfigName="env-config")
    call(sm, "delete_model", ModelName="env-model")


def test_what_modelhost_deploy_made_is_seen_by_boto3_and_back(
    served: Platform, sm: Any, runtime: Any, live: str, sentiment_model: Path
) -> None:
    served.deploy(sentiment_model, "native")
    described = call(sm, "describe_endpoint", EndpointName="native")
    assert described["EndpointStatus"] == "InService"
    config_name = described["EndpointConfigName"]
    [config_variant] = call(sm, "describe_endpoint_config", EndpointConfigName=config_name)["ProductionVariants"]
    model = call(sm, "describe_model", ModelName=config_variant["ModelName"])
    assert model["PrimaryContainer"]["ModelDataUrl"]
    assert "native" in {e["EndpointName"] for e in call(sm, "list_endpoints")["Endpoints"]}
    assert invoke_json(runtime, "native") == (NUMBERS, "AllTraffic")
    # and the CLI lists what boto3 made
    assert "live" in served.cli("ls").stdout

    call(sm, "delete_endpoint", EndpointName="native")
    wait(sm, "endpoint_deleted", "native", served)
    assert "native" not in {e["name"] for e in served.client.list_endpoints()}
    call(sm, "delete_endpoint_config", EndpointConfigName=config_name)
    call(sm, "delete_model", ModelName=config_variant["ModelName"])


def test_capture_options_output_only_does_not_capture_the_input(
    served: Platform, sm: Any, runtime: Any, live: str, tmp_path: Path
) -> None:
    """CaptureOptions [{"CaptureMode": "Output"}] keeps the request (endpointInput) out of the records,
    as SageMaker does: a caller asking for Output only wants its customers' inputs not stored."""
    destination = tmp_path / "capture"
    call(
        sm,
        "create_endpoint_config",
        EndpointConfigName="output-only-config",
        ProductionVariants=[variant("live-model")],
        DataCaptureConfig={
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": destination.as_uri(),
            "CaptureOptions": [{"CaptureMode": "Output"}],
        },
    )
    described = call(sm, "describe_endpoint_config", EndpointConfigName="output-only-config")
    assert described["DataCaptureConfig"]["CaptureOptions"] == [{"CaptureMode": "Output"}]
    call(sm, "create_endpoint", EndpointName="output-only", EndpointConfigName="output-only-config")
    wait(sm, "endpoint_in_service", "output-only", served)
    secret = "private words of a customer, great"
    for _ in range(3):
        assert invoke_json(runtime, "output-only", [secret]) == ([1], "AllTraffic")

    def ours(spool: Path) -> bool:  # a spool folder is named by base64 of [destination, endpoint, variant]
        with contextlib.suppress(ValueError):
            return bool(json.loads(base64.urlsafe_b64decode(spool.name))[1] == "output-only")
        return False

    def records() -> list[dict[str, Any]]:
        spools = [p for p in (served.state_dir / "capture-spool").glob("*") if ours(p)]
        files = [*(f for spool in spools for f in spool.rglob("*.jsonl")), *destination.rglob("*.jsonl")]
        return [json.loads(line) for path in files for line in path.read_bytes().splitlines()]

    captured = poll(lambda: len(records()) >= 3 and records(), 10, "the capture records to be spooled")
    try:
        for record in captured:
            assert json.loads(record["captureData"]["endpointOutput"]["data"]) == [1]
            assert "endpointInput" not in record["captureData"], record
            assert secret not in json.dumps(record)
    finally:
        call(sm, "delete_endpoint", EndpointName="output-only")
        wait(sm, "endpoint_deleted", "output-only", served)
        call(sm, "delete_endpoint_config", EndpointConfigName="output-only-config")


# -- 4. pagination ------------------------------------------------------------------------------------------------
def test_list_models_pages_filters_and_sorts(sm: Any, sentiment_model: Path) -> None:
    names = [f"page-model-{letter}" for letter in "cadeb"]
    for name in names:
        call(sm, "create_model", ModelName=name, PrimaryContainer=container(sentiment_model), ExecutionRoleArn=ROLE)

    # MaxResults=2: three pages, every model once, newest first (the default order)
    seen: list[str] = []
    pages = 0
    token = None
    while True:
        params = {"NameContains": "page-model", "MaxResults": 2}
        if token is not None:
            params["NextToken"] = token
        page = call(sm, "list_models", **params)
        pages += 1
        assert len(page["Models"]) <= 2
        seen += [m["ModelName"] for m in page["Models"]]
        token = page.get("NextToken")
        if token is None:
            break
    assert pages == 3
    assert seen == names[::-1]

    # boto3's paginator
    paginated = list(
        sm.get_paginator("list_models").paginate(NameContains="page-model", PaginationConfig={"PageSize": 2})
    )
    assert [len(p["Models"]) for p in paginated] == [2, 2, 1]
    for page in paginated:
        check_output(sm, "list_models", page)
    assert [m["ModelName"] for p in paginated for m in p["Models"]] == names[::-1]
    built = sm.get_paginator("list_models").paginate(NameContains="page-model", PaginationConfig={"PageSize": 2})
    assert sorted(m["ModelName"] for m in built.build_full_result()["Models"]) == sorted(names)
    capped = sm.get_paginator("list_models").paginate(
        NameContains="page-model", PaginationConfig={"PageSize": 2, "MaxItems": 3}
    )
    assert len(capped.build_full_result()["Models"]) == 3

    # NameContains, SortBy, SortOrder
    by_name = call(sm, "list_models", NameContains="page-model", SortBy="Name", SortOrder="Ascending")
    assert [m["ModelName"] for m in by_name["Models"]] == sorted(names)
    assert "NextToken" not in by_name
    descending = call(sm, "list_models", NameContains="page-model", SortBy="Name", SortOrder="Descending")
    assert [m["ModelName"] for m in descending["Models"]] == sorted(names, reverse=True)
    only = call(sm, "list_models", NameContains="model-d")
    assert [m["ModelName"] for m in only["Models"]] == ["page-model-d"]
    assert call(sm, "list_models", NameContains="nothing-like-this")["Models"] == []
    oldest_first = call(sm, "list_models", NameContains="page-model", SortBy="CreationTime", SortOrder="Ascending")
    assert [m["ModelName"] for m in oldest_first["Models"]] == names
    times = [m["CreationTime"] for m in oldest_first["Models"]]
    assert times == sorted(times)

    # a token this API did not give out
    for bad in ("garbage!", "bm90IGpzb24=", "eyJvZmZzZXQiOiAtMX0="):  # not base64, not JSON, offset -1
        response = refused(lambda bad=bad: sm.list_models(NextToken=bad), "ValidationException")
        assert "NextToken" in response["Error"]["Message"]

    for name in names:
        call(sm, "delete_model", ModelName=name)
    assert call(sm, "list_models", NameContains="page-model")["Models"] == []


# -- 5. UpdateEndpointWeightsAndCapacities --------------------------------------------------------------------------
def test_weights_and_capacities(served: Platform, sm: Any, runtime: Any, live: str, words_archive: Path) -> None:
    # variant a: the live model (numbers); b: the words model, as an absolute path to its model.tar.gz
    call(
        sm, "create_model", ModelName="weights-words", PrimaryContainer=container(words_archive), ExecutionRoleArn=ROLE
    )
    call(
        sm,
        "create_endpoint_config",
        EndpointConfigName="weights-config",
        ProductionVariants=[variant("live-model", name="a"), variant("weights-words", name="b")],
    )
    call(sm, "create_endpoint", EndpointName="weighted", EndpointConfigName="weights-config")
    wait(sm, "endpoint_in_service", "weighted", served)
    answers = {variant_: answer for answer, variant_ in (invoke_json(runtime, "weighted") for _ in range(40))}
    assert answers == {"a": NUMBERS, "b": WORDS}  # 1:1, both serve (the chance that 40 draws miss one: 2e-12)

    # weights 1 and 0: every request to a
    call(
        sm,
        "update_endpoint_weights_and_capacities",
        EndpointName="weighted",
        DesiredWeightsAndCapacities=[
            {"VariantName": "a", "DesiredWeight": 1},
            {"VariantName": "b", "DesiredWeight": 0},
        ],
    )
    wait(sm, "endpoint_in_service", "weighted", served)
    for _ in range(30):
        assert invoke_json(runtime, "weighted") == (NUMBERS, "a")
    assert invoke_json(runtime, "weighted")[0] == NUMBERS
    targeted = invoke(runtime, "weighted", json.dumps(TEXTS), "application/json", TargetVariant="b")
    assert (json.loads(targeted["Body"]), targeted["InvokedProductionVariant"]) == (WORDS, "b")  # still running
    described = call(sm, "describe_endpoint", EndpointName="weighted")
    weights = {v["VariantName"]: (v["DesiredWeight"], v["CurrentWeight"]) for v in described["ProductionVariants"]}
    assert weights == {"a": (1.0, 1.0), "b": (0.0, 0.0)}
    assert described["EndpointConfigName"] == "weights-config"
    # the config itself is unchanged
    stored = call(sm, "describe_endpoint_config", EndpointConfigName="weights-config")
    assert [v["InitialVariantWeight"] for v in stored["ProductionVariants"]] == [1.0, 1.0]

    # two instances of a
    call(
        sm,
        "update_endpoint_weights_and_capacities",
        EndpointName="weighted",
        DesiredWeightsAndCapacities=[{"VariantName": "a", "DesiredInstanceCount": 2}],
    )
    wait(sm, "endpoint_in_service", "weighted", served)
    described = call(sm, "describe_endpoint", EndpointName="weighted")
    counts = {
        v["VariantName"]: (v["DesiredInstanceCount"], v["CurrentInstanceCount"])
        for v in described["ProductionVariants"]
    }
    assert counts == {"a": (2, 2), "b": (1, 1)}
    weights = {v["VariantName"]: (v["DesiredWeight"], v["CurrentWeight"]) for v in described["ProductionVariants"]}
    assert weights == {"a": (1.0, 1.0), "b": (0.0, 0.0)}  # kept through the resize
    instances = {v["name"]: len(v["instances"]) for v in served.client.describe_endpoint("weighted")["variants"]}
    assert instances == {"a": 2, "b": 1}
    for _ in range(10):
        assert invoke_json(runtime, "weighted") == (NUMBERS, "a")

    # refused: an unknown variant, zero instances, all weights zero; the endpoint is left as it was
    def change(*items: dict[str, Any]) -> Any:
        return lambda: sm.update_endpoint_weights_and_capacities(
            EndpointName="weighted", DesiredWeightsAndCapacities=list(items)
        )

    unknown = refused(change({"VariantName": "c", "DesiredWeight": 1}), "ValidationException")
    assert "c" in unknown["Error"]["Message"]
    zero = refused(change({"VariantName": "a", "DesiredInstanceCount": 0}), "ValidationException")
    assert "DesiredInstanceCount" in zero["Error"]["Message"]
    refused(change({"VariantName": "a", "DesiredWeight": 0}), "ValidationException")
    refused(change({"VariantName": "a"}), "ValidationException")
    refused(
        change({"VariantName": "a", "DesiredWeight": 1}, {"VariantName": "a", "DesiredWeight": 2}),
        "ValidationException",
    )
    with pytest.raises(sm.exceptions.ResourceLimitExceeded):  # over MODELHOST_MAX_INSTANCES (32)
        change({"VariantName": "a", "DesiredInstanceCount": 40})()
    refused(
        lambda: sm.update_endpoint_weights_and_capacities(
            EndpointName="no-such-endpoint", DesiredWeightsAndCapacities=[{"VariantName": "a", "DesiredWeight": 1}]
        ),
        "ValidationException",
    )
    after = call(sm, "describe_endpoint", EndpointName="weighted")
    assert after["EndpointStatus"] == "InService"
    assert {v["VariantName"]: v["CurrentInstanceCount"] for v in after["ProductionVariants"]} == {"a": 2, "b": 1}
    assert invoke_json(runtime, "weighted") == (NUMBERS, "a")

    call(sm, "delete_endpoint", EndpointName="weighted")
    wait(sm, "endpoint_deleted", "weighted", served)
    call(sm, "delete_endpoint_config", EndpointConfigName="weights-config")
    call(sm, "delete_model", ModelName="weights-words")


# -- 6 and 7. configured by the environment only -------------------------------------------------------------------
ENV_SCRIPT = """
import json, boto3
sm = boto3.client("sagemaker")
runtime = boto3.client("sagemaker-runtime")
described = sm.describe_endpoint(EndpointName="live")
body = json.dumps(["great amazing day"])
answer = runtime.invoke_endpoint(EndpointName="live", ContentType="application/json", Body=body)
print(json.dumps({
    "url": sm.meta.endpoint_url, "runtime_url": runtime.meta.endpoint_url,
    "arn": described["EndpointArn"], "status": described["EndpointStatus"],
    "answer": json.loads(answer["Body"].read()), "variant": answer["InvokedProductionVariant"],
}))
"""


def test_boto3_finds_the_platform_through_the_environment(served: Platform, live: str, tmp_path: Path) -> None:
    env = clean_env(
        AWS_ENDPOINT_URL_SAGEMAKER=served.url,
        AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=served.url,
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="unused-on-loopback",
        AWS_DEFAULT_REGION="eu-west-3",
    )
    result = subprocess.run(
        [sys.executable, "-c", ENV_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen == {
        "url": served.url,
        "runtime_url": served.url,
        "arn": arn("endpoint", "live", region="eu-west-3"),  # the region the client signed for
        "status": "InService",
        "answer": [1],
        "variant": "AllTraffic",
    }


LAMBDA = """
import os, io, boto3, json

# grab environment variables
ENDPOINT_NAME = os.environ['ENDPOINT_NAME']
runtime = boto3.client('runtime.sagemaker')


def lambda_handler(event, context):
    payload = event['data']
    response = runtime.invoke_endpoint(EndpointName=ENDPOINT_NAME,
                                       ContentType='text/csv',
                                       Body=payload)
    result = json.loads(response['Body'].read().decode())
    predicted_label = 'positive' if result > 0.5 else 'negative'
    return predicted_label
"""

RUN_LAMBDA = """
import json, sys
from lambda_function import lambda_handler
print(json.dumps([lambda_handler({"data": text}, None) for text in json.loads(sys.argv[1])]))
"""


def test_a_lambda_handler_runs_unchanged(served: Platform, live: str, tmp_path: Path) -> None:
    """The seeds' Lambda: a text/csv payload of one row; the sklearn model answers one number per row
    (``1\\n``), which its ``json.loads`` reads as it read SageMaker's answer."""
    (tmp_path / "lambda_function.py").write_text(LAMBDA)
    env = clean_env(
        ENDPOINT_NAME=live,
        AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=served.url,
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="unused-on-loopback",
        AWS_DEFAULT_REGION=REGION,
    )
    texts = ["great amazing day", "awful broken app", "love this wonderful coffee", "worst slow service"]
    result = subprocess.run(
        [sys.executable, "-c", RUN_LAMBDA, json.dumps(texts)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["positive", "negative", "positive", "negative"]


# -- 8. credentials: a platform with a token ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def token() -> str:
    return secrets.token_hex(16)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, token: str, sentiment_model: Path) -> Iterator[Platform]:
    """A platform with a token, running endpoint ``guarded`` (made with the admin credentials)."""
    with platforms(tmp_path_factory.mktemp("sagemaker-token")) as start:
        platform = start(token=token)
        admin = aws("sagemaker", platform.url, "modelhost", token)
        call(
            admin,
            "create_model",
            ModelName="guarded",
            PrimaryContainer=container(sentiment_model),
            ExecutionRoleArn=ROLE,
        )
        call(admin, "create_endpoint_config", EndpointConfigName="guarded", ProductionVariants=[variant("guarded")])
        call(admin, "create_endpoint", EndpointName="guarded", EndpointConfigName="guarded")
        wait(admin, "endpoint_in_service", "guarded", platform)
        yield platform


def test_the_control_api_checks_signatures_when_there_is_a_token(guarded: Platform, token: str) -> None:
    admin = aws("sagemaker", guarded.url, "modelhost", token)
    assert call(admin, "describe_endpoint", EndpointName="guarded")["EndpointStatus"] == "InService"
    with_session = aws("sagemaker", guarded.url, "modelhost", token, session_token="IQoJb3JpZ2luX2VjEXAMPLE")
    call(with_session, "list_endpoints")
    assert [m["ModelName"] for m in call(admin, "list_models")["Models"]] == ["guarded"]

    wrong_secret = aws("sagemaker", guarded.url, "modelhost", secrets.token_hex(16))
    response = refused(wrong_secret.list_models, "InvalidSignatureException", 403)
    assert token not in json.dumps(response, default=str)
    unknown_id = aws("sagemaker", guarded.url, "AKIDEXAMPLE", token)
    refused(unknown_id.list_models, "UnrecognizedClientException", 403)
    unsigned = aws("sagemaker", guarded.url, signature_version=UNSIGNED)
    refused(unsigned.list_models, "MissingAuthenticationTokenException", 403)

    # without boto3: unsigned is refused, the token as a bearer is let in
    assert_aws_error(raw(guarded.url, "SageMaker.ListModels"), 403, "MissingAuthenticationTokenException")
    assert_aws_error(
        raw(guarded.url, "SageMaker.ListModels", authorization=f"Bearer {secrets.token_hex(16)}"),
        403,
        "MissingAuthenticationTokenException",
    )
    # refused before anything else is looked at
    assert_aws_error(raw(guarded.url, "SageMaker.NoSuchThing"), 403, "MissingAuthenticationTokenException")
    assert_aws_error(raw(guarded.url, "SageMaker.ListModels", b"{not json"), 403, "MissingAuthenticationTokenException")
    # a SigV4 header without its parts: 400, not 403 (as AWS answers)
    incomplete = raw(guarded.url, "SageMaker.ListModels", authorization="AWS4-HMAC-SHA256 Credential=modelhost")
    assert_aws_error(incomplete, 400, "IncompleteSignatureException")
    bearer = raw(guarded.url, "SageMaker.ListModels", authorization=f"Bearer {token}")
    assert bearer.status_code == 200, bearer.text
    assert [m["ModelName"] for m in bearer.json()["Models"]] == ["guarded"]
    assert token not in after_start(guarded)


def after_start(platform: Platform) -> str:
    """up's log without the command lines the tests wrote into it (they show the token)."""
    return "\n".join(line for line in platform.log().splitlines() if not line.startswith("=== "))


def apikey_create(platform: Platform, name: str, *endpoints: str) -> tuple[str, str]:
    """``modelhost apikey create``: the key (stdout) and its access key id (the hint on stderr)."""
    result = platform.cli("apikey", "create", name, *[arg for e in endpoints for arg in ("--endpoint", e)])
    key = result.stdout.strip()
    assert key.startswith("mhk_"), result.stdout
    hint = re.search(r"AWS_ACCESS_KEY_ID=(\S+) and the key as AWS_SECRET_ACCESS_KEY", result.stderr)
    assert hint is not None, result.stderr
    access_key_id = hint.group(1)
    assert re.fullmatch(r"MHK[A-Z2-7]{17}", access_key_id), access_key_id
    assert key not in result.stderr
    return key, access_key_id


def test_invocations_signed_with_an_api_keys_credentials(guarded: Platform, token: str) -> None:
    url = guarded.url
    anyone = aws("sagemaker-runtime", url)
    assert invoke_json(anyone, "guarded") == (NUMBERS, "AllTraffic")  # no key required yet: any credentials

    guarded.cli("access", "guarded", "--require-api-key")
    refused(
        lambda: anyone.invoke_endpoint(EndpointName="guarded", ContentType="application/json", Body=b"[]"),
        "UnrecognizedClientException",
        403,
    )
    unsigned = aws("sagemaker-runtime", url, signature_version=UNSIGNED)
    refused(
        lambda: unsigned.invoke_endpoint(EndpointName="guarded", ContentType="application/json", Body=b"[]"),
        "MissingAuthenticationToken",
        401,
    )
    incomplete = httpx.post(
        f"{url}/endpoints/guarded/invocations",
        json=TEXTS,
        headers={"authorization": "AWS4-HMAC-SHA256 Credential=MHK/20240101/us-east-1/sagemaker/aws4_request"},
        timeout=30,
    )
    assert (incomplete.status_code, incomplete.headers["x-amzn-errortype"]) == (400, "IncompleteSignatureException")

    # a key for this endpoint: its access key id and the key sign boto3's requests
    key, access_key_id = apikey_create(guarded, "boto-key", "guarded")
    listed = {k["name"]: k for k in guarded.client.list_api_keys()}
    assert listed["boto-key"]["access_key_id"] == access_key_id
    assert access_key_id in guarded.cli("apikey", "ls", env={"COLUMNS": "200"}).stdout
    signed = aws("sagemaker-runtime", url, access_key_id, key)
    assert invoke_json(signed, "guarded") == (NUMBERS, "AllTraffic")
    # as in a Lambda function, whose environment always has AWS_SESSION_TOKEN (signed as X-Amz-Security-Token)
    with_session = aws("sagemaker-runtime", url, access_key_id, key, session_token="IQoJb3JpZ2luX2VjEXAMPLE")
    assert invoke_json(with_session, "guarded") == (NUMBERS, "AllTraffic")
    assert invoke(signed, "guarded", CSV, "text/csv")["Body"] == b"1\n0\n"
    # the key as x-api-key still works
    plain = httpx.post(f"{url}/endpoints/guarded/invocations", json=TEXTS, headers={"x-api-key": key}, timeout=30)
    assert plain.status_code == 200, plain.text

    def invoke_with(client: Any) -> Any:
        return lambda: client.invoke_endpoint(EndpointName="guarded", ContentType="application/json", Body=b"[]")

    # a wrong secret for the id
    wrong = aws("sagemaker-runtime", url, access_key_id, key[:-1] + ("A" if key[-1] != "A" else "B"))
    refused(invoke_with(wrong), "InvalidSignatureException", 403)
    # a key's credentials do not manage the platform
    refused(lambda: aws("sagemaker", url, access_key_id, key).list_models(), "UnrecognizedClientException", 403)

    # a key scoped to another endpoint (made through the SDK: its answer has the access key id too)
    elsewhere = guarded.client.create_api_key("elsewhere-key", ["another-endpoint"])
    assert re.fullmatch(r"MHK[A-Z2-7]{17}", elsewhere["access_key_id"]), elsewhere
    scoped = aws("sagemaker-runtime", url, elsewhere["access_key_id"], elsewhere["key"])
    refused(invoke_with(scoped), "Forbidden", 403)

    # the admin credentials may invoke; with a wrong token they may not
    admin = aws("sagemaker-runtime", url, "modelhost", token)
    assert invoke_json(admin, "guarded") == (NUMBERS, "AllTraffic")
    refused(invoke_with(aws("sagemaker-runtime", url, "modelhost", token[::-1])), "InvalidSignatureException", 403)

    # revoked: refused
    guarded.cli("apikey", "revoke", "boto-key")
    revoked = refused(invoke_with(signed), "UnrecognizedClientException", 403)
    assert key not in json.dumps(revoked, default=str)

    # once the endpoint requires no key, any credentials again
    guarded.client.set_endpoint_access("guarded", require_api_key=False)
    assert invoke_json(signed, "guarded") == (NUMBERS, "AllTraffic")
    assert invoke_json(anyone, "guarded") == (NUMBERS, "AllTraffic")
    assert key not in after_start(guarded)


def test_apikey_ls_shows_whole_access_key_ids_in_80_columns(guarded: Platform) -> None:
    """`modelhost apikey ls` on an 80-column terminal (or piped: rich then assumes 80) shows whole access
    key ids and names: a cut id cannot be used as AWS_ACCESS_KEY_ID, nor a cut name with `apikey revoke`."""
    name = "mobile-app-production"
    _, access_key_id = apikey_create(guarded, name, "guarded", "another-endpoint")
    try:
        shown = guarded.cli("apikey", "ls", env={"COLUMNS": "80"}).stdout
        assert access_key_id in shown, shown
        assert name in shown, shown
    finally:
        guarded.cli("apikey", "revoke", name)
