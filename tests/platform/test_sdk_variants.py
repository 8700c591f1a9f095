"""Production variants through the SDK: models, a two-variant config weighted 70/30, an endpoint.

The front door draws a variant per request in proportion to the weights; a request naming a
variant (X-Amzn-SageMaker-Target-Variant) always goes to it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from modelhost.client import ClientError
from tests.platform.conftest import Platform

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REQUESTS = 1_000
TEXTS = ["great amazing day", "awful broken app"]
ANSWERS = {"a": [1, 0], "b": ["positive", "negative"]}  # the two models answer differently


def test_two_weighted_variants(platform: Platform, sentiment_model: Path, sentiment_model_v2: Path) -> None:
    client = platform.client

    # two models: their artifacts uploaded to the platform's store
    stored_a = client.upload_artifact(sentiment_model, "model-a")
    stored_b = client.upload_artifact(sentiment_model_v2, "model-b")
    assert stored_a["uri"].startswith("file://")
    assert stored_a["sha256"] != stored_b["sha256"]
    client.create_model("model-a", stored_a["uri"], artifact_sha256=stored_a["sha256"], framework="sklearn")
    client.create_model("model-b", stored_b["uri"], artifact_sha256=stored_b["sha256"])
    assert client.describe_model("model-a")["framework"] == "sklearn"
    assert {m["name"] for m in client.list_models()} == {"model-a", "model-b"}

    variants = [
        {"variant_name": "a", "model_name": "model-a", "instance_count": 1, "weight": 70},
        {"variant_name": "b", "model_name": "model-b", "instance_count": 1, "weight": 30},
    ]
    config = client.create_endpoint_config("split", variants, tags={"team": "tests"})
    assert [(v["variant_name"], v["weight"]) for v in config["variants"]] == [("a", 70), ("b", 30)]
    assert client.describe_endpoint_config("split")["tags"] == {"team": "tests"}

    created = client.create_endpoint("ab", "split")
    assert created["status"] == "Creating"
    endpoint = platform.wait_in_service("ab")
    assert endpoint["config_name"] == endpoint["running_config_name"] == "split"
    assert [(v["name"], v["weight"], v["model_name"]) for v in endpoint["variants"]] == [
        ("a", 70.0, "model-a"),
        ("b", 30.0, "model-b"),
    ]
    for variant in endpoint["variants"]:
        [instance] = variant["instances"]
        assert instance["state"] == "Healthy"

    # the weighted split, seen by a plain HTTP client through the response header
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=platform.url, timeout=30) as http:
        for _ in range(REQUESTS):
            response = http.post(
                "/endpoints/ab/invocations", content=orjson.dumps(TEXTS), headers={"content-type": "application/json"}
            )
            assert response.status_code == 200, response.text
            variant = response.headers["x-amzn-invoked-production-variant"]
            assert response.json() == ANSWERS[variant]
            seen[variant] += 1
        assert set(seen) == {"a", "b"}
        assert abs(seen["a"] - 700) <= 60, seen

        # a targeted variant always answers from that variant
        for name in ("a", "b") * 25:
            response = http.post(
                "/endpoints/ab/invocations",
                content=orjson.dumps(TEXTS),
                headers={"content-type": "application/json", "x-amzn-sagemaker-target-variant": name},
            )
            assert response.status_code == 200
            assert response.headers["x-amzn-invoked-production-variant"] == name
            assert response.json() == ANSWERS[name]

        # an unknown variant is the caller's error, naming the variants there are
        unknown = http.post(
            "/endpoints/ab/invocations",
            content=orjson.dumps(TEXTS),
            headers={"content-type": "application/json", "x-amzn-sagemaker-target-variant": "c"},
        )
        assert unknown.status_code == 400
        assert unknown.headers["x-amzn-errortype"] == "ValidationError"
        assert "'c'" in unknown.json()["Message"]
        assert "a, b" in unknown.json()["Message"]

    # the same through the SDK
    answer = client.invoke("ab", TEXTS, target_variant="b")
    assert answer.variant == "b"
    assert answer.json() == ANSWERS["b"]
    assert answer.content_type.startswith("application/json")
    with pytest.raises(ClientError) as refused:
        client.invoke("ab", TEXTS, target_variant="c")
    assert refused.value.status == 400
    assert refused.value.code == "ValidationError"

    # unlike SageMaker, a config (or model) in use cannot be deleted: it brings the endpoint back
    # after a restart; the endpoint is untouched
    for delete, name in ((client.delete_endpoint_config, "split"), (client.delete_model, "model-a")):
        with pytest.raises(ClientError) as in_use:
            delete(name)
        assert (in_use.value.status, in_use.value.code) == (409, "ResourceInUse")
    assert client.describe_endpoint("ab")["status"] == "InService"
    assert client.invoke("ab", TEXTS).variant in {"a", "b"}

    # delete: the endpoint goes; its models and config stay (it did not deploy them)
    client.delete_endpoint("ab")
    client.delete_endpoint_config("split")
    assert platform.descendants() == []
    assert {m["name"] for m in client.list_models()} == {"model-a", "model-b"}
    client.delete_model("model-a")
    client.delete_model("model-b")
    assert client.list_models() == []
    assert not [p for p in (platform.state_dir / "artifacts").rglob("*") if p.is_file()]


def test_the_sdk_is_modelhost_client() -> None:
    """The SDK is documented as ``modelhost.Client`` (client.py's docstring; the CLI is built on it)."""
    import modelhost
    import modelhost.client

    assert getattr(modelhost, "Client", None) is modelhost.client.Client
