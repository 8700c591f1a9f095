"""The SageMaker API's request checks: botocore's model (service.validate), images, List* pages, artifact URIs."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelhost.control.resources import FRAMEWORKS, Model, ProductionVariant
from modelhost.errors import ValidationFailed
from modelhost.sagemaker.images import ACCEPTED, framework_for
from modelhost.sagemaker.operations import DEFAULT_MAX_RESULTS, _artifact_uri, _offset, _page, _token
from modelhost.sagemaker.service import validate


def failure(operation: str, params: dict[str, Any]) -> str:
    with pytest.raises(ValidationFailed) as caught:
        validate(operation, params)
    assert caught.value.status == 400
    assert caught.value.code == "ValidationException"
    return caught.value.message


def errors_in(message: str) -> list[str]:
    return message.split(": ", 1)[1].split("; Value ")


def a_model(**extra: Any) -> dict[str, Any]:
    return {"ModelName": "sentiment", "PrimaryContainer": {"ModelDataUrl": "s3://bucket/model.tar.gz"}, **extra}


def a_config(variant: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    given = {"VariantName": "a", "ModelName": "sentiment", "InitialInstanceCount": 1, **(variant or {})}
    return {"EndpointConfigName": "config", "ProductionVariants": [given], **extra}


# -- service.validate: what passes ---------------------------------------------------------------------
def test_a_valid_create_model_passes() -> None:
    validate("CreateModel", a_model(Tags=[{"Key": "team", "Value": "ml"}]))


def test_a_valid_endpoint_config_with_data_capture_passes() -> None:
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 50,
        "DestinationS3Uri": "s3://bucket/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    validate("CreateEndpointConfig", a_config({"InitialVariantWeight": 0.5}, DataCaptureConfig=capture))


def test_members_the_model_does_not_know_are_ignored() -> None:
    validate("CreateModel", a_model(SomethingNewer={"Anything": [1, 2]}, AlsoNew=3))
    validate("CreateModel", {**a_model(), "PrimaryContainer": {"ModelDataUrl": "s3://b/k", "FutureField": "x"}})


def test_optional_members_given_as_null_are_skipped() -> None:
    validate("CreateModel", a_model(Tags=None, VpcConfig=None, EnableNetworkIsolation=None))


@pytest.mark.parametrize("url", ["file:///srv/models/sentiment.tar.gz", "/srv/models/sentiment", "s3://bucket/key"])
def test_model_data_url_accepts_file_uris_and_local_paths(url: str) -> None:
    validate("CreateModel", {"ModelName": "m", "PrimaryContainer": {"ModelDataUrl": url}})


@pytest.mark.parametrize("uri", ["file:///srv/capture", "/srv/capture", "s3://bucket/capture"])
def test_capture_destination_accepts_file_uris_and_local_paths(uri: str) -> None:
    capture = {"InitialSamplingPercentage": 10, "DestinationS3Uri": uri, "CaptureOptions": [{"CaptureMode": "Input"}]}
    validate("CreateEndpointConfig", a_config(DataCaptureConfig=capture))


def test_the_widened_patterns_keep_their_length_limit() -> None:
    message = failure("CreateModel", {"ModelName": "m", "PrimaryContainer": {"ModelDataUrl": "/" + "x" * 1024}})

    assert message.startswith("1 validation error detected: ")
    assert "at 'primaryContainer.modelDataUrl'" in message
    assert "Member must have length less than or equal to 1024" in message


def test_java_only_patterns_are_not_checked() -> None:
    # Tag keys have a \p{L}-pattern Python's re cannot compile: any letters pass, the length is still checked.
    validate("CreateModel", a_model(Tags=[{"Key": "équipe ✓", "Value": "ml"}]))
    message = failure("CreateModel", a_model(Tags=[{"Key": "k" * 129, "Value": "v"}]))
    assert "at 'tags.1.member.key'" in message
    assert "length less than or equal to 128" in message


# -- service.validate: what fails, worded as AWS words it -------------------------------------------------
def test_a_missing_required_member_is_named_in_camel_case() -> None:
    assert failure("CreateModel", {}) == (
        "1 validation error detected: Value null at 'modelName' failed to satisfy constraint: Member must not be null"
    )


def test_a_required_member_given_as_null_is_missing() -> None:
    assert "Value null at 'modelName'" in failure("DescribeModel", {"ModelName": None})


def test_a_pattern_failure_quotes_the_value_and_the_pattern() -> None:
    message = failure("CreateModel", {"ModelName": "bad_name!"})

    assert message == (
        "1 validation error detected: Value 'bad_name!' at 'modelName' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: [a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?"
    )


def test_a_name_longer_than_63_fails_its_length() -> None:
    message = failure("DescribeEndpoint", {"EndpointName": "e" * 64})

    assert "at 'endpointName' failed to satisfy constraint: Member must have length less than or equal to 63" in (
        message
    )


def test_a_list_member_is_named_by_its_one_based_index() -> None:
    message = failure("CreateEndpointConfig", a_config({"InitialVariantWeight": -1}))

    assert message == (
        "1 validation error detected: Value -1 at 'productionVariants.1.member.initialVariantWeight' "
        "failed to satisfy constraint: Member must have value greater than or equal to 0"
    )


def test_the_second_list_member_is_numbered_2() -> None:
    variants = [
        {"VariantName": "a", "ModelName": "m", "InitialInstanceCount": 1},
        {"VariantName": "b", "ModelName": "m", "InitialInstanceCount": 0},
    ]
    message = failure("CreateEndpointConfig", {"EndpointConfigName": "c", "ProductionVariants": variants})

    assert "Value 0 at 'productionVariants.2.member.initialInstanceCount'" in message
    assert "greater than or equal to 1" in message


def test_every_error_is_counted_and_listed() -> None:
    message = failure(
        "CreateEndpointConfig",
        a_config({"InitialVariantWeight": -1, "InitialInstanceCount": 0, "VariantName": "bad name"}),
    )

    assert message.startswith("3 validation errors detected: ")
    assert len(errors_in(message)) == 3
    for field in ("initialVariantWeight", "initialInstanceCount", "variantName"):
        assert f"at 'productionVariants.1.member.{field}'" in message


def test_errors_across_the_request_are_all_reported() -> None:
    message = failure("ListEndpoints", {"SortBy": "Size", "SortOrder": "Up", "MaxResults": 0, "StatusEquals": "Up"})

    assert message.startswith("4 validation errors detected: ")
    assert "Value 'Size' at 'sortBy' failed to satisfy constraint: Member must satisfy enum value set: " in message
    assert "[Name, CreationTime, Status]" in message
    assert "[Ascending, Descending]" in message
    assert "Value 0 at 'maxResults'" in message
    assert "at 'statusEquals'" in message


def test_an_empty_required_list_fails_its_minimum_length() -> None:
    message = failure("CreateEndpointConfig", {"EndpointConfigName": "c", "ProductionVariants": []})

    assert message == (
        "1 validation error detected: Value [] at 'productionVariants' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )


def test_a_range_maximum_is_checked() -> None:
    message = failure("ListModels", {"MaxResults": 101})

    assert "Value 101 at 'maxResults' failed to satisfy constraint: " in message
    assert "Member must have value less than or equal to 100" in message


@pytest.mark.parametrize(
    ("params", "where", "kind"),
    [
        ({"ModelName": 5}, "modelName", "a string"),
        ({**a_model(), "EnableNetworkIsolation": "yes"}, "enableNetworkIsolation", "a boolean"),
        ({**a_model(), "PrimaryContainer": "nope"}, "primaryContainer", "an object"),
        ({**a_model(), "Containers": {}}, "containers", "a list"),
        ({**a_model(), "PrimaryContainer": {"Environment": []}}, "primaryContainer.environment", "a map"),
    ],
)
def test_a_value_of_the_wrong_type_is_named(params: dict[str, Any], where: str, kind: str) -> None:
    message = failure("CreateModel", params)

    assert f"at '{where}' failed to satisfy constraint: Member must be {kind}" in message


def test_numbers_are_not_strings_or_booleans() -> None:
    message = failure("CreateEndpointConfig", a_config({"InitialInstanceCount": "1", "InitialVariantWeight": True}))

    assert message.startswith("2 validation errors detected: ")
    assert "Value '1' at 'productionVariants.1.member.initialInstanceCount' failed to satisfy constraint: " in message
    assert "Member must be an integer" in message
    assert "Value True at 'productionVariants.1.member.initialVariantWeight'" in message
    assert "Member must be a number" in message


def test_an_integer_is_a_valid_float() -> None:
    validate("CreateEndpointConfig", a_config({"InitialVariantWeight": 1}))


def test_timestamps_may_be_numbers_or_strings_not_booleans() -> None:
    validate("ListModels", {"CreationTimeAfter": 1_700_000_000, "CreationTimeBefore": "2024-01-01T00:00:00Z"})

    assert "Value True at 'creationTimeAfter' failed to satisfy constraint: Member must be a timestamp" in failure(
        "ListModels", {"CreationTimeAfter": True}
    )


def test_nested_structures_are_named_by_their_path() -> None:
    capture = {
        "InitialSamplingPercentage": 200,
        "DestinationS3Uri": "s3://bucket/capture",
        "CaptureOptions": [{"CaptureMode": "Both"}],
    }
    message = failure("CreateEndpointConfig", a_config(DataCaptureConfig=capture))

    assert message.startswith("2 validation errors detected: ")
    assert "Value 200 at 'dataCaptureConfig.initialSamplingPercentage'" in message
    assert "Value 'Both' at 'dataCaptureConfig.captureOptions.1.member.captureMode'" in message
    assert "Member must satisfy enum value set: [Input, Output, InputAndOutput]" in message


def test_a_structure_nested_in_a_list_member_is_checked() -> None:
    message = failure(
        "CreateEndpointConfig", a_config({"ServerlessConfig": {"MemorySizeInMB": 1, "MaxConcurrency": 1}})
    )

    assert "Value 1 at 'productionVariants.1.member.serverlessConfig.memorySizeInMB'" in message
    assert "greater than or equal to 1024" in message


def test_required_members_of_nested_structures_are_named() -> None:
    container = {"ModelDataSource": {"S3DataSource": {"S3Uri": "s3://bucket/key"}}}
    message = failure("CreateModel", {"ModelName": "m", "PrimaryContainer": container})

    assert message.startswith("2 validation errors detected: ")
    assert "Value null at 'primaryContainer.modelDataSource.s3DataSource.s3DataType'" in message
    assert "Value null at 'primaryContainer.modelDataSource.s3DataSource.compressionType'" in message


def test_a_list_of_structures_names_missing_members() -> None:
    message = failure("CreateModel", a_model(Tags=[{"Key": "ok", "Value": "v"}, {"Key": ""}]))

    assert message.startswith("2 validation errors detected: ")
    assert "Value null at 'tags.2.member.value' failed to satisfy constraint: Member must not be null" in message
    assert "Value '' at 'tags.2.member.key'" in message


def test_map_keys_and_values_are_named_by_the_key() -> None:
    environment = {"GOOD": "ok", "A B": "x" * 1025, "N": 5}
    message = failure("CreateModel", {"ModelName": "m", "PrimaryContainer": {"Environment": environment}})

    assert message.startswith("3 validation errors detected: ")
    assert "Value 'A B' at 'primaryContainer.environment.A B.key'" in message
    assert "regular expression pattern: [a-zA-Z_][a-zA-Z0-9_]*" in message
    assert "at 'primaryContainer.environment.A B.value' failed to satisfy constraint: " in message
    assert "Member must have length less than or equal to 1024" in message
    assert "Value 5 at 'primaryContainer.environment.N.value' failed to satisfy constraint: " in message
    assert "Member must be a string" in message


def test_a_map_with_too_many_entries_fails_its_length() -> None:
    environment = {f"K{i}": "v" for i in range(101)}
    message = failure("CreateModel", {"ModelName": "m", "PrimaryContainer": {"Environment": environment}})

    assert message.startswith("1 validation error detected: ")
    assert "at 'primaryContainer.environment' failed to satisfy constraint: " in message
    assert "Member must have length less than or equal to 100" in message


def test_long_values_are_cut_in_the_message() -> None:
    message = failure("DescribeEndpoint", {"EndpointName": "e" * 300})

    assert f"Value '{'e' * 100}...' at 'endpointName'" in message
    assert "e" * 101 not in message


def test_other_patterns_are_still_checked() -> None:
    container = {"ModelDataUrl": "s3://bucket/key", "Image": "has space"}
    message = failure("CreateModel", {"ModelName": "m", "PrimaryContainer": container})

    assert "Value 'has space' at 'primaryContainer.image'" in message


# -- images.framework_for ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "image",
    [
        None,
        "",
        "modelhost",
        "modelhost:latest",
        "modelhost@sha256:" + "a" * 64,
        "localhost:5000/modelhost",
        "registry.example.com:5000/modelhost:1.2",
    ],
)
def test_the_generic_image_leaves_the_framework_to_the_artifact(image: str | None) -> None:
    assert framework_for(image) is None


@pytest.mark.parametrize(
    ("image", "framework"),
    [
        ("modelhost/sklearn", "sklearn"),
        ("modelhost/sklearn:1.4", "sklearn"),
        ("modelhost/xgboost@sha256:" + "b" * 64, "xgboost"),
        ("modelhost/spacy:3@sha256:" + "c" * 64, "spacy"),
        ("ghcr.io/modelhost/transformers:latest", "transformers"),
        ("registry.example.com:5000/modelhost/custom:2", "custom"),
        ("modelhost-xgboost", "xgboost"),
        ("modelhost-xgboost:2.0", "xgboost"),
        ("ghcr.io/acme/modelhost-sklearn:1", "sklearn"),
        ("localhost:5000/modelhost-spacy@sha256:" + "d" * 64, "spacy"),
    ],
)
def test_a_modelhost_image_names_its_framework(image: str, framework: str) -> None:
    assert framework_for(image) == framework


@pytest.mark.parametrize(
    "image",
    [
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.1.0-cpu-py310",
        "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.7-1",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-byoc@sha256:" + "e" * 64,
        "acme/modelhostish:1",
        "acme/modelhost-sklearn-extra/x",
    ],
)
def test_other_images_are_recorded_and_the_framework_detected(image: str) -> None:
    assert framework_for(image) is None


@pytest.mark.parametrize("image", ["modelhost/pytorch", "modelhost/pytorch:2.1", "modelhost-tensorflow:2"])
def test_an_unknown_modelhost_runtime_is_refused_listing_the_accepted_ones(image: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        framework_for(image)

    message = caught.value.message
    assert message.startswith("PrimaryContainer.Image: ")
    assert repr(image) in message
    assert ", ".join(ACCEPTED) in message
    for framework in FRAMEWORKS:
        assert f"modelhost/{framework}" in message


def test_accepted_lists_the_generic_image_and_one_per_framework() -> None:
    expected = ("modelhost", *(f"modelhost/{f}" for f in FRAMEWORKS))
    assert expected == ACCEPTED


# -- operations._page: filters, order, pages ------------------------------------------------------------
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class Item:
    name: str
    created_at: datetime
    status: str = "InService"


def items(count: int = 25) -> list[Item]:
    # Created out of name order, a minute apart; names mix cases.
    return [Item(f"Model-{(i * 7) % count:02d}", T0 + timedelta(minutes=i)) for i in range(count)]


def page(request: dict[str, Any], given: list[Item], *, status: bool = False) -> tuple[list[Item], str | None]:
    return _page(
        request,
        list(given),
        lambda i: i.name,
        lambda i: i.created_at,
        status=(lambda i: i.status) if status else None,
    )


def every_page(request: dict[str, Any], given: list[Item], **kwargs: Any) -> list[list[Item]]:
    pages, token = [], None
    while True:
        found, token = page({**request, **({"NextToken": token} if token else {})}, given, **kwargs)
        pages.append(found)
        if token is None:
            return pages
        assert len(pages) < 100


@pytest.mark.parametrize("max_results", [1, 3, 7, 10, 24, 25, 26, 100])
def test_pages_cover_every_item_exactly_once(max_results: int) -> None:
    given = items(25)

    pages = every_page({"MaxResults": max_results}, given)

    names = [item.name for found in pages for item in found]
    assert sorted(names) == sorted(item.name for item in given)
    assert len(names) == len(set(names)) == 25
    assert all(len(found) == max_results for found in pages[:-1])
    assert 1 <= len(pages[-1]) <= max_results
    assert len(pages) == -(-25 // max_results)


def test_the_default_page_has_ten_items_newest_first() -> None:
    given = items(25)

    found, token = page({}, given)

    assert DEFAULT_MAX_RESULTS == 10
    assert [item.created_at for item in found] == [T0 + timedelta(minutes=i) for i in range(24, 14, -1)]
    assert token is not None


def test_the_last_page_gives_no_token() -> None:
    found, token = page({"MaxResults": 5}, items(5))

    assert len(found) == 5
    assert token is None


def test_no_items_make_an_empty_page_without_token() -> None:
    assert page({}, []) == ([], None)


def test_sort_by_creation_time_ascending() -> None:
    found, _ = page({"SortBy": "CreationTime", "SortOrder": "Ascending", "MaxResults": 100}, items(25))

    assert [item.created_at for item in found] == sorted(item.created_at for item in items(25))


def test_sort_by_name_both_ways() -> None:
    given = items(25)

    ascending, _ = page({"SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 100}, given)
    descending, _ = page({"SortBy": "Name", "MaxResults": 100}, given)  # Descending is the default order

    assert [i.name for i in ascending] == sorted(i.name for i in given)
    assert [i.name for i in descending] == sorted((i.name for i in given), reverse=True)


def test_equal_creation_times_are_ordered_by_name() -> None:
    given = [Item("b", T0), Item("c", T0), Item("a", T0)]

    ascending, _ = page({"SortOrder": "Ascending"}, given)
    descending, _ = page({"SortOrder": "Descending"}, given)

    assert [i.name for i in ascending] == ["a", "b", "c"]
    assert [i.name for i in descending] == ["c", "b", "a"]


def test_sort_by_status_then_name() -> None:
    given = [Item("b", T0, "InService"), Item("a", T0, "InService"), Item("c", T0, "Creating"), Item("d", T0, "Failed")]

    found, _ = page({"SortBy": "Status", "SortOrder": "Ascending"}, given, status=True)

    assert [i.name for i in found] == ["c", "d", "a", "b"]


def test_sort_by_status_without_a_status_falls_back_to_creation_time() -> None:
    given = [Item("late", T0 + timedelta(minutes=1)), Item("early", T0)]

    found, _ = page({"SortBy": "Status", "SortOrder": "Ascending"}, given)

    assert [i.name for i in found] == ["early", "late"]


def test_pages_keep_their_order_across_tokens() -> None:
    request = {"SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 4}
    given = items(25)

    names = [item.name for found in every_page(request, given) for item in found]

    assert names == sorted(item.name for item in given)


def test_name_contains_is_case_insensitive() -> None:
    given = [Item("Sentiment-A", T0), Item("sentiment-b", T0), Item("SENTIMENT", T0), Item("spam", T0)]

    found, _ = page({"NameContains": "sEnTiMeNt", "SortBy": "Name", "SortOrder": "Ascending"}, given)

    assert [i.name for i in found] == ["SENTIMENT", "Sentiment-A", "sentiment-b"]


def test_name_contains_pages_count_only_the_matches() -> None:
    given = [Item(f"keep-{i}", T0 + timedelta(minutes=i)) for i in range(5)]
    given += [Item(f"drop-{i}", T0 + timedelta(minutes=i)) for i in range(5)]

    pages = every_page({"NameContains": "KEEP", "MaxResults": 2}, given)

    assert [len(found) for found in pages] == [2, 2, 1]
    assert {item.name for found in pages for item in found} == {f"keep-{i}" for i in range(5)}


@pytest.mark.parametrize(
    ("after", "before"),
    [
        ((T0 + timedelta(minutes=2)).timestamp(), (T0 + timedelta(minutes=6)).timestamp()),
        ("2024-05-01T12:02:00Z", "2024-05-01T12:06:00+00:00"),
    ],
)
def test_creation_time_filters_are_exclusive(after: Any, before: Any) -> None:
    given = [Item(f"m{i}", T0 + timedelta(minutes=i)) for i in range(10)]

    found, _ = page({"CreationTimeAfter": after, "CreationTimeBefore": before, "SortOrder": "Ascending"}, given)

    assert [i.name for i in found] == ["m3", "m4", "m5"]


def test_an_unreadable_timestamp_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="timestamp"):
        page({"CreationTimeAfter": "last tuesday"}, items(3))


def test_a_token_encodes_the_offset() -> None:
    for offset in (0, 1, 10, 12345):
        assert _offset(_token(offset)) == offset


def test_a_token_is_url_safe_text() -> None:
    token = _token(10**12)

    assert isinstance(token, str)
    assert token.isascii()
    assert not set(token) & set("+/ ")


def test_no_token_starts_at_the_beginning() -> None:
    assert _offset(None) == 0
    assert _offset("") == 0


def test_a_token_past_the_end_gives_an_empty_page() -> None:
    assert page({"NextToken": _token(100)}, items(5)) == ([], None)


def encoded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize(
    "token",
    [
        "not a token",
        "abc",  # bad padding
        "!!!!",
        "é",
        encoded(b"not json"),
        encoded(b"[1, 2]"),
        encoded(b'"offset"'),
        encoded(b"{}"),
        encoded(b'{"start": 3}'),
        encoded(b'{"offset": -1}'),
        encoded(b'{"offset": "3"}'),
        encoded(b'{"offset": 2.5}'),
        encoded(b'{"offset": null}'),
        encoded(b"\xff\xfe"),
    ],
)
def test_a_token_this_api_did_not_give_out_is_refused(token: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _offset(token)

    assert caught.value.message == "NextToken: not a token this API gave out"


def test_page_refuses_a_bad_token() -> None:
    with pytest.raises(ValidationFailed, match="NextToken"):
        page({"NextToken": "garbage"}, items(3))


# -- operations._artifact_uri -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["s3://bucket/models/model.tar.gz", "s3://bucket/prefix/", "file:///srv/models/m.tar.gz", "/srv/models/m"],
)
def test_artifact_uris_modelhost_can_read_are_kept(url: str) -> None:
    assert _artifact_uri(url, "PrimaryContainer.ModelDataUrl") == url


@pytest.mark.parametrize("url", ["https://example.com/model.tar.gz", "http://127.0.0.1:8000/model.tar.gz"])
def test_http_artifact_uris_are_refused(url: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _artifact_uri(url, "PrimaryContainer.ModelDataUrl")

    assert caught.value.message.startswith("PrimaryContainer.ModelDataUrl: ")
    assert "HTTP(S)" in caught.value.message


@pytest.mark.parametrize("url", ["models/model.tar.gz", "model.tar.gz", "./model", "gs://bucket/model.tar.gz"])
def test_relative_paths_and_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _artifact_uri(url, "DataCaptureConfig.DestinationS3Uri")

    assert caught.value.message.startswith("DataCaptureConfig.DestinationS3Uri: ")
    assert repr(url) in caught.value.message
    assert "absolute path" in caught.value.message


@pytest.mark.parametrize("weight", [float("inf"), float("nan"), 1.7e308, -0.5])
def test_a_variant_weight_must_be_a_finite_proportion(weight: float) -> None:
    with pytest.raises(ValidationFailed, match="InitialVariantWeight: must be 0 to"):
        ProductionVariant("v1", "m1", 1, weight)


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("http://example.com/model.tar.gz", "scheme 'http' is not supported"),
        ("ftp://host/m.tar.gz", "scheme 'ftp' is not supported"),
        ("/models/a\x00b", "control characters"),
        ("s3://bucket/key\n", "control characters"),
    ],
)
def test_a_model_uri_is_a_path_file_or_s3(uri: str, says: str) -> None:
    with pytest.raises(ValidationFailed, match=f"ModelDataUrl: {says}"):
        Model("m1", uri)
    assert Model("m2", "s3://bucket/model.tar.gz").artifact_uri.startswith("s3://")
    assert Model("m3", "file:///models/a").artifact_uri.startswith("file://")
    assert Model("m4", "/models/a").artifact_uri == "/models/a"


@pytest.mark.parametrize("name", ["A=B", "", "1ABC", "A B", "Ä"])
def test_environment_names_are_variable_names(name: str) -> None:
    with pytest.raises(ValidationFailed, match="is not a variable name"):
        Model("m1", "/models/a", environment={name: "x"})
    with pytest.raises(ValidationFailed, match="NUL"):
        Model("m1", "/models/a", environment={"OK": "a\x00b"})
