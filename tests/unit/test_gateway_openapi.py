"""The gateway's OpenAPI document, built from routes in memory: unique operationIds, the responses.

The HTTP side (the document served by a real platform, fuzzed by schemathesis) is in
tests/platform/test_gateway_openapi.py.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from openapi_spec_validator import validate

from modelhost.control.gateway_openapi import operation_ids, readable_operation_id, routes_document
from modelhost.control.gateway_resources import RateLimit, Route, TargetKind
from modelhost.errors import ValidationFailed

SCHEMA = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
ANSWER = {"type": "object", "required": ["label"], "properties": {"label": {"enum": ["positive", "negative"]}}}


def route(method: str, path: str, target: str = "echo", **settings: Any) -> Route:
    kind = settings.pop("kind", TargetKind.FUNCTION)
    return Route(method=method, path=path, target_kind=kind, target=target, **settings)


def all_operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [operation for item in document["paths"].values() for operation in item.values()]


def ids_of(document: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (method, path): operation["operationId"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


# Paths that differ only in punctuation or in a parameter, ANY beside exact methods on one path.
NEAR_TWINS = [
    route("POST", "/v1/a-b"),
    route("POST", "/v1/a_b"),
    route("POST", "/v1/a.b"),
    route("GET", "/v1/items/{id}"),
    route("GET", "/v1/items/id"),
    route("ANY", "/v1/any"),
    route("GET", "/v1/any", target="other"),
    route("ANY", "/v1/any-thing/{name}"),
    route("PUT", "/v1/any/thing/{name}"),
    route("POST", "/v1/plain"),
]


def test_operation_ids_are_unique_and_the_document_is_valid() -> None:
    document = routes_document(NEAR_TWINS)
    validate(document)
    ids = [operation["operationId"] for operation in all_operations(document)]
    assert len(ids) == len(set(ids)), sorted(ids)
    # ANY stands for five methods; GET /v1/any is the GET route's own (its method wins over ANY)
    assert len(ids) == 3 + 2 + 5 + 5 + 1 + 1
    assert document["paths"]["/v1/any"]["get"]["tags"] == ["other"]
    assert document["paths"]["/v1/any"]["post"]["tags"] == ["echo"]


def test_an_id_without_a_twin_stays_readable() -> None:
    ids = ids_of(routes_document(NEAR_TWINS))
    assert ids[("post", "/v1/plain")] == "post_v1_plain"
    assert ids[("patch", "/v1/any")] == "patch_v1_any"
    twins = [ids[("post", "/v1/a-b")], ids[("post", "/v1/a_b")], ids[("post", "/v1/a.b")]]
    assert all(name.startswith("post_v1_a_b_") for name in twins), twins
    assert len(set(twins)) == 3


def test_operation_ids_do_not_depend_on_the_order_of_the_routes() -> None:
    expected = ids_of(routes_document(NEAR_TWINS))
    shuffled = list(NEAR_TWINS)
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert ids_of(routes_document(shuffled)) == expected


def test_a_literal_path_that_spells_out_a_twins_id_still_gets_an_id_of_its_own() -> None:
    twins = [("post", "/v1/a-b"), ("post", "/v1/a_b")]
    spelled = operation_ids(twins)[("post", "/v1/a-b")]  # post_v1_a_b_<digest>
    impostor = ("post", "/" + spelled.removeprefix("post_").replace("_", "/"))
    assert readable_operation_id(*impostor) == spelled
    ids = operation_ids([*twins, impostor])
    assert len(set(ids.values())) == 3, ids


def test_the_200_carries_the_routes_response_schema_and_example() -> None:
    documented = route(
        "POST",
        "/v1/sentiment",
        target="sentiment",
        kind=TargetKind.ENDPOINT,
        request_schema=SCHEMA,
        example={"text": "great"},
        response_schema=ANSWER,
        response_example={"label": "positive"},
    )
    document = routes_document([documented, route("GET", "/v1/bare")])
    validate(document)
    answer = document["paths"]["/v1/sentiment"]["post"]["responses"]["200"]["content"]["application/json"]
    assert answer == {"schema": ANSWER, "example": {"label": "positive"}}
    bare = document["paths"]["/v1/bare"]["get"]["responses"]["200"]["content"]["application/json"]
    assert bare == {"schema": {}}


def test_a_response_example_must_satisfy_the_response_schema() -> None:
    with pytest.raises(ValidationFailed, match="ResponseExample: does not satisfy the response schema"):
        route("GET", "/v1/x", response_schema=ANSWER, response_example={"label": "meh"})
    with pytest.raises(ValidationFailed, match="ResponseSchema: not valid JSON Schema"):
        route("GET", "/v1/x", response_schema={"type": "thing"})


@pytest.mark.parametrize(
    ("settings", "present", "absent"),
    [
        ({}, {"200", "400", "413", "429", "502", "503", "504"}, {"401", "403", "415"}),
        ({"api_key_required": True}, {"401", "403"}, {"415"}),
        ({"request_schema": SCHEMA}, {"400", "415"}, {"401", "403"}),
        ({"kind": TargetKind.ENDPOINT, "target": "model"}, {"400", "415"}, {"401"}),
        ({"rate_limit": RateLimit(5, 5), "api_key_required": True}, {"401", "403", "429"}, set()),
    ],
)
def test_each_status_the_platform_can_answer_is_documented(
    settings: dict[str, Any], present: set[str], absent: set[str]
) -> None:
    document = routes_document([route("POST", "/v1/thing", **settings)])
    validate(document)
    responses = document["paths"]["/v1/thing"]["post"]["responses"]
    assert present <= set(responses), sorted(responses)
    assert not absent & set(responses), sorted(responses)
    for status, response in responses.items():
        if status != "200":
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "Retry-After" in responses["429"]["headers"]


def test_an_endpoint_route_takes_the_model_servers_media_types_and_a_schema_route_json_only() -> None:
    document = routes_document(
        [
            route("POST", "/v1/score", "churn", kind=TargetKind.ENDPOINT),
            route("POST", "/v1/checked", "churn", kind=TargetKind.ENDPOINT, request_schema=SCHEMA),
            route("POST", "/v1/fn"),
        ]
    )
    validate(document)
    content = {path: set(item["post"]["requestBody"]["content"]) for path, item in document["paths"].items()}
    served = {"application/json", "text/csv", "application/jsonlines", "text/plain", "application/x-npy"}
    assert content["/v1/score"] == served
    assert content["/v1/checked"] == {"application/json"}
    assert content["/v1/fn"] == {"application/json"}
