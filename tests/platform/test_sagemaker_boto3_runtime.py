"""boto3's ``sagemaker-runtime`` beyond the tutorial: what a model answers besides its body, multi-model
endpoints, InferenceId in captured records, models kept in S3, and the operations modelhost lacks.

One `modelhost up` without a token for the module (any credentials are accepted); a second one, for
the S3 test, pointed at a real S3-compatible server (SeaweedFS, tests/s3server.py). The helpers and
the answers' shape checks are those of test_sagemaker_boto3.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")

from botocore.exceptions import ClientError  # noqa: E402 (boto3 may be missing: skipped above)

from modelhost.artifacts.pack import pack  # noqa: E402
from tests.platform.conftest import Platform, platforms, poll  # noqa: E402
from tests.platform.test_sagemaker_boto3 import (  # noqa: E402
    NUMBERS,
    ROLE,
    TEXTS,
    WORDS,
    aws,
    call,
    container,
    invoke,
    invoke_json,
    refused,
    variant,
    wait,
)
from tests.s3server import SeaweedS3  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ATTRIBUTES_HANDLER = """
import json
import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def predict_fn(texts, model):
    return [int(label) for label in model.predict(texts)]


def output_fn(predictions, accept, context):
    context.response_custom_attributes = f"labels={len(predictions)}; asked={context.custom_attributes}"
    return json.dumps(predictions), "application/json"
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platforms(tmp_path_factory.mktemp("sagemaker-runtime")) as start:
        yield start()


@pytest.fixture(scope="module")
def sm(served: Platform) -> Any:
    return aws("sagemaker", served.url)


@pytest.fixture(scope="module")
def runtime(served: Platform) -> Any:
    return aws("sagemaker-runtime", served.url)


def deploy(sm: Any, platform: Platform, name: str, primary: dict[str, Any], **config: Any) -> None:
    """Model, endpoint config and endpoint ``name`` (one variant, AllTraffic), InService."""
    call(sm, "create_model", ModelName=name, PrimaryContainer=primary, ExecutionRoleArn=ROLE)
    call(sm, "create_endpoint_config", EndpointConfigName=name, ProductionVariants=[variant(name)], **config)
    call(sm, "create_endpoint", EndpointName=name, EndpointConfigName=name)
    wait(sm, "endpoint_in_service", name, platform)


def undeploy(sm: Any, platform: Platform, name: str) -> None:
    call(sm, "delete_endpoint", EndpointName=name)
    wait(sm, "endpoint_deleted", name, platform)
    call(sm, "delete_endpoint_config", EndpointConfigName=name)
    call(sm, "delete_model", ModelName=name)


def answered_by_a_worker(request_id: str) -> bool:
    """Whether a request id is one a worker gave, serving a connection handed to it (``<pid>-h<n>``),
    rather than the front door (``fd<pid>-<n>``): how the tests see that both paths were taken."""
    return "-h" in request_id


# -- what a model answers besides its body -------------------------------------------------------------
def test_a_models_custom_attributes_reach_boto3(
    served: Platform, sm: Any, runtime: Any, sentiment_model: Path, tmp_path: Path
) -> None:
    """output_fn sets ``context.response_custom_attributes``: boto3's ``CustomAttributes``, whether the
    front door relayed the answer or the worker that took the connection over wrote it itself."""
    folder = tmp_path / "attributes-model"
    folder.mkdir()
    (folder / "model.joblib").write_bytes((sentiment_model / "model.joblib").read_bytes())
    (folder / "inference.py").write_text(ATTRIBUTES_HANDLER)
    deploy(sm, served, "attributes", container(folder))
    try:
        request_ids = []
        for trace in range(6):  # one client, one kept-alive connection: handed to the worker after the first
            answer = invoke(runtime, "attributes", json.dumps(TEXTS), "application/json", CustomAttributes=f"t={trace}")
            assert json.loads(answer["Body"]) == NUMBERS
            assert answer["CustomAttributes"] == f"labels=2; asked=t={trace}"
            request_ids.append(answer["ResponseMetadata"]["RequestId"])
        paths = {answered_by_a_worker(request_id) for request_id in request_ids}
        assert paths == {False, True}, request_ids  # both the front door and a worker answered
        silent = invoke(runtime, "attributes", json.dumps(TEXTS[:1]), "application/json")
        assert silent["CustomAttributes"] == "labels=1; asked=None"
    finally:
        undeploy(sm, served, "attributes")


def test_a_model_without_custom_attributes_sends_none(
    runtime: Any, sm: Any, served: Platform, sentiment_model: Path
) -> None:
    deploy(sm, served, "plain", container(sentiment_model))
    try:
        for _ in range(3):
            answer = invoke(runtime, "plain", json.dumps(TEXTS), "application/json", CustomAttributes="t=1")
            assert "CustomAttributes" not in answer, answer
    finally:
        undeploy(sm, served, "plain")


# -- multi-model endpoints -----------------------------------------------------------------------------
def test_target_model_on_a_multi_model_endpoint(
    served: Platform, sm: Any, runtime: Any, sentiment_model: Path, sentiment_model_v2: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "mme-prefix"
    (prefix / "sub").mkdir(parents=True)
    pack(sentiment_model, prefix / "numbers.tar.gz")
    pack(sentiment_model_v2, prefix / "sub" / "words.tar.gz")
    deploy(sm, served, "many", container(prefix.as_uri() + "/", Mode="MultiModel"))
    try:
        assert call(sm, "describe_model", ModelName="many")["PrimaryContainer"]["Mode"] == "MultiModel"
        numbers = invoke(runtime, "many", json.dumps(TEXTS), "application/json", TargetModel="numbers.tar.gz")
        assert (json.loads(numbers["Body"]), numbers["InvokedProductionVariant"]) == (NUMBERS, "AllTraffic")
        words = invoke(runtime, "many", json.dumps(TEXTS), "application/json", TargetModel="sub/words.tar.gz")
        assert json.loads(words["Body"]) == WORDS
        again = invoke(runtime, "many", "great amazing day\n", "text/csv", TargetModel="numbers.tar.gz")
        assert again["Body"] == b"1\n"
        [summary] = call(sm, "describe_endpoint", EndpointName="many")["ProductionVariants"]
        assert summary["CurrentInstanceCount"] == summary["DesiredInstanceCount"] == 1

        unnamed = refused(
            lambda: runtime.invoke_endpoint(EndpointName="many", ContentType="application/json", Body=b"[]"),
            "ValidationError",
        )
        assert "X-Amzn-SageMaker-Target-Model" in unnamed["Message"], unnamed
        missing = refused(
            lambda: runtime.invoke_endpoint(
                EndpointName="many", ContentType="application/json", Body=b"[]", TargetModel="nope.tar.gz"
            ),
            "ValidationError",
        )
        assert "nope.tar.gz" in missing["Error"]["Message"], missing
        refused(
            lambda: runtime.invoke_endpoint(
                EndpointName="many", ContentType="application/json", Body=b"[]", TargetModel="../numbers.tar.gz"
            ),
            "ValidationError",
        )
    finally:
        undeploy(sm, served, "many")


# -- data capture ---------------------------------------------------------------------------------------
def captured_records(platform: Platform, destination: Path, endpoint: str) -> list[dict[str, Any]]:
    """The endpoint's capture records, spooled (a folder named by base64 of [destination, endpoint,
    variant]) or already shipped to ``destination``."""

    def ours(spool: Path) -> bool:
        with contextlib.suppress(ValueError):
            return bool(json.loads(base64.urlsafe_b64decode(spool.name))[1] == endpoint)
        return False

    spools = [p for p in (platform.state_dir / "capture-spool").glob("*") if ours(p)]
    files = [*(f for spool in spools for f in spool.rglob("*.jsonl")), *destination.rglob("*.jsonl")]
    return [json.loads(line) for path in files for line in path.read_bytes().splitlines()]


def test_inference_id_is_kept_in_the_capture_records(
    served: Platform, sm: Any, runtime: Any, sentiment_model: Path, tmp_path: Path
) -> None:
    destination = tmp_path / "capture"
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": destination.as_uri(),
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    deploy(sm, served, "captured", container(sentiment_model), DataCaptureConfig=capture)
    try:
        inference_id = f"order-{uuid.uuid4().hex[:12]}"
        tagged = invoke(
            runtime, "captured", json.dumps(["great amazing day"]), "application/json", InferenceId=inference_id
        )
        assert json.loads(tagged["Body"]) == [1]
        assert tagged["ResponseMetadata"]["RequestId"] == inference_id  # the id the platform logs it under
        assert invoke_json(runtime, "captured", ["awful broken app"]) == ([0], "AllTraffic")

        records = poll(
            lambda: (found := captured_records(served, destination, "captured")) and len(found) >= 2 and found,
            10,
            "the capture records to be spooled",
        )
        by_input = {json.loads(r["captureData"]["endpointInput"]["data"])[0]: r for r in records}
        assert by_input["great amazing day"]["eventMetadata"]["inferenceId"] == inference_id
        assert json.loads(by_input["great amazing day"]["captureData"]["endpointOutput"]["data"]) == [1]
        assert "inferenceId" not in by_input["awful broken app"]["eventMetadata"]
    finally:
        undeploy(sm, served, "captured")


# -- what modelhost does not offer ------------------------------------------------------------------------
def test_async_and_streaming_invocations_are_refused_by_name(runtime: Any) -> None:
    """InvokeEndpointAsync and InvokeEndpointWithResponseStream: a ValidationError boto3 raises, naming
    the operation (a 404 would reach the caller as a bare status, with no word of why)."""
    asynchronous = refused(
        lambda: runtime.invoke_endpoint_async(EndpointName="anything", InputLocation="s3://bucket/input.json"),
        "ValidationError",
    )
    assert "modelhost does not support InvokeEndpointAsync" in asynchronous["Error"]["Message"], asynchronous
    streaming = refused(
        lambda: runtime.invoke_endpoint_with_response_stream(
            EndpointName="anything", ContentType="application/json", Body=b"[]"
        ),
        "ValidationError",
    )
    assert "InvokeEndpointWithResponseStream" in streaming["Message"], streaming
    with pytest.raises(runtime.exceptions.ValidationError):
        runtime.invoke_endpoint_async(EndpointName="anything", InputLocation="s3://bucket/input.json")


def test_error_messages_fill_botocores_modeled_message(
    served: Platform, sm: Any, runtime: Any, sentiment_model: Path
) -> None:
    """botocore reads ``Message`` into the modeled field (``response["Message"]``) of ValidationError,
    ModelError, ResourceInUse...; ``Error.Message`` is the same text."""
    unknown = refused(
        lambda: runtime.invoke_endpoint(EndpointName="no-such-endpoint", ContentType="application/json", Body=b"[]"),
        "ValidationError",
    )
    assert unknown["Message"] == unknown["Error"]["Message"]
    assert "no-such-endpoint" in unknown["Message"]
    deploy(sm, served, "messages", container(sentiment_model))
    try:
        with pytest.raises(runtime.exceptions.ModelError) as model_error:
            runtime.invoke_endpoint(EndpointName="messages", ContentType="application/json", Body=b'["great day"')
        response = model_error.value.response
        assert response["Message"] == response["Error"]["Message"]
        assert "Received client error (400)" in response["Message"]
        assert response["OriginalStatusCode"] == 400
        in_use = refused(lambda: sm.delete_model(ModelName="messages"), "ResourceInUse")
        assert in_use["Message"] == in_use["Error"]["Message"]
        assert "messages" in in_use["Message"]
    finally:
        undeploy(sm, served, "messages")


# -- models kept in S3 ------------------------------------------------------------------------------------
def test_create_model_from_an_s3_model_data_url(
    tmp_path_factory: pytest.TempPathFactory, s3: SeaweedS3, sentiment_model_v2: Path, tmp_path: Path
) -> None:
    """The tutorials' ModelDataUrl, s3://bucket/key/model.tar.gz, from an S3-compatible store."""
    archive = tmp_path / "model.tar.gz"
    pack(sentiment_model_v2, archive)
    key = f"boto3-{uuid.uuid4().hex[:8]}/words/model.tar.gz"
    s3.client().upload_file(str(archive), s3.bucket, key)
    url = f"s3://{s3.bucket}/{key}"
    credentials = {k: v for k, v in s3.env().items() if k != "MODELHOST_S3_ENDPOINT_URL"}  # the option says where
    with platforms(tmp_path_factory.mktemp("sagemaker-s3")) as start:
        platform = start("--s3-endpoint-url", s3.endpoint_url, env=credentials)
        sm, runtime = aws("sagemaker", platform.url), aws("sagemaker-runtime", platform.url)
        deploy(sm, platform, "from-s3", container(url))
        assert call(sm, "describe_model", ModelName="from-s3")["PrimaryContainer"]["ModelDataUrl"] == url
        assert invoke_json(runtime, "from-s3") == (WORDS, "AllTraffic")
        missing = f"s3://{s3.bucket}/boto3-missing/model.tar.gz"
        call(sm, "create_model", ModelName="missing", PrimaryContainer=container(missing), ExecutionRoleArn=ROLE)
        call(sm, "create_endpoint_config", EndpointConfigName="missing", ProductionVariants=[variant("missing")])
        call(sm, "create_endpoint", EndpointName="missing", EndpointConfigName="missing")
        failed = poll(
            lambda: (d := call(sm, "describe_endpoint", EndpointName="missing"))["EndpointStatus"] == "Failed" and d,
            60,
            "the endpoint of a missing S3 object to fail",
        )
        assert "boto3-missing/model.tar.gz" in failed["FailureReason"], failed
        undeploy(sm, platform, "from-s3")
        undeploy(sm, platform, "missing")
        with pytest.raises(ClientError):
            sm.describe_model(ModelName="from-s3")
