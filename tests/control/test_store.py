"""The control plane's state store against a real SQLite file and a real PostgreSQL server."""

from datetime import UTC

import pytest

from modelhost.control.resources import (
    DataCaptureConfig,
    EndpointConfig,
    EndpointStatus,
    Model,
    ProductionVariant,
)
from modelhost.control.store import StateStore
from modelhost.errors import ResourceExists, ResourceInUse, ResourceNotFound, ValidationFailed
from tests.pgserver import PostgresServer


@pytest.fixture(scope="module")
def postgres():
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def store(database_url):
    store = StateStore(database_url)
    yield store
    store.close()


def two_variant_config(name: str = "sentiment-config") -> EndpointConfig:
    return EndpointConfig(
        name,
        (ProductionVariant("a", "sentiment", 2, 0.7), ProductionVariant("b", "sentiment-v2", 1, 0.3)),
        DataCaptureConfig(enabled=True, sampling_percentage=20),
    )


def test_models_round_trip_and_names_are_unique(store):
    created = store.create_model(Model("sentiment", "s3://bucket/model.tar.gz", "ab" * 32, "sklearn", {"K": "v"}))
    assert created.created_at is not None
    assert created.created_at.tzinfo is UTC
    assert store.get_model("sentiment") == created
    with pytest.raises(ResourceExists, match="'sentiment' already exists"):
        store.create_model(Model("sentiment", "/elsewhere"))
    store.delete_model("sentiment")
    with pytest.raises(ResourceNotFound, match="model 'sentiment' does not exist"):
        store.get_model("sentiment")


def test_endpoint_configs_keep_their_variants_in_order(store):
    store.create_model(Model("sentiment", "/models/v1"))
    store.create_model(Model("sentiment-v2", "/models/v2"))
    created = store.create_endpoint_config(two_variant_config())
    read = store.get_endpoint_config("sentiment-config")
    assert read == created
    assert [(v.variant_name, v.initial_weight) for v in read.variants] == [("a", 0.7), ("b", 0.3)]
    assert read.data_capture.sampling_percentage == 20
    assert [c.name for c in store.list_endpoint_configs()] == ["sentiment-config"]


def test_a_config_naming_a_missing_model_is_refused_and_leaves_nothing(store):
    store.create_model(Model("sentiment", "/models/v1"))
    with pytest.raises(ValidationFailed, match=r"ProductionVariants\[b\]\.ModelName: could not find model"):
        store.create_endpoint_config(two_variant_config())
    with pytest.raises(ResourceNotFound):
        store.get_endpoint_config("sentiment-config")


def test_endpoint_lifecycle(store):
    store.create_model(Model("sentiment", "/models/v1"))
    store.create_model(Model("sentiment-v2", "/models/v2"))
    store.create_endpoint_config(two_variant_config())
    store.create_endpoint_config(EndpointConfig("single", (ProductionVariant("only", "sentiment"),)))
    endpoint = store.create_endpoint("sentiment", "sentiment-config")
    assert endpoint.status is EndpointStatus.CREATING
    assert store.set_endpoint_status("sentiment", EndpointStatus.IN_SERVICE).status is EndpointStatus.IN_SERVICE
    updating = store.set_endpoint_status("sentiment", EndpointStatus.UPDATING)
    assert updating.config_name == "sentiment-config"
    moved = store.set_endpoint_status("sentiment", EndpointStatus.IN_SERVICE, config_name="single")
    assert moved.config_name == "single"
    with pytest.raises(ResourceInUse, match="is InService; it cannot become Creating"):
        store.set_endpoint_status("sentiment", EndpointStatus.CREATING)
    store.set_endpoint_status("sentiment", EndpointStatus.UPDATING)
    with pytest.raises(ResourceInUse, match="is Updating; it cannot become Deleting"):
        store.delete_endpoint("sentiment")
    store.set_endpoint_status("sentiment", EndpointStatus.FAILED, failure_reason="the model failed to load: boom")
    assert store.get_endpoint("sentiment").failure_reason == "the model failed to load: boom"
    store.set_endpoint_status("sentiment", EndpointStatus.DELETING)
    store.delete_endpoint("sentiment")
    assert store.list_endpoints() == []


def test_endpoint_needs_an_existing_config_and_a_free_name(store):
    with pytest.raises(ResourceNotFound, match="endpoint config 'nope'"):
        store.create_endpoint("sentiment", "nope")
    store.create_model(Model("sentiment", "/models/v1"))
    store.create_endpoint_config(EndpointConfig("single", (ProductionVariant("only", "sentiment"),)))
    store.create_endpoint("sentiment", "single")
    with pytest.raises(ResourceExists):
        store.create_endpoint("sentiment", "single")


def test_state_survives_a_restart(database_url):
    url = database_url
    first = StateStore(url)
    first.create_model(Model("sentiment", "/models/v1"))
    first.create_endpoint_config(EndpointConfig("single", (ProductionVariant("only", "sentiment"),)))
    first.create_endpoint("sentiment", "single")
    first.set_endpoint_status("sentiment", EndpointStatus.IN_SERVICE)
    first.close()
    second = StateStore(url)
    assert second.get_endpoint("sentiment").status is EndpointStatus.IN_SERVICE
    assert second.get_endpoint_config("single").variants[0].model_name == "sentiment"
    second.close()


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Model("bad_name", "/m"), "ModelName"),
        (lambda: Model("ok", " "), "ModelDataUrl"),
        (lambda: Model("ok", "/m", environment={"K": 1}), "Environment"),
        (lambda: ProductionVariant("v", "m", initial_instance_count=0), "InitialInstanceCount"),
        (lambda: ProductionVariant("v", "m", initial_weight=-1), "InitialVariantWeight"),
        (lambda: EndpointConfig("c", ()), "ProductionVariants"),
        (lambda: EndpointConfig("c", (ProductionVariant("v", "m"), ProductionVariant("v", "n"))), "duplicate"),
        (lambda: EndpointConfig("c", (ProductionVariant("v", "m", initial_weight=0),)), "weights"),
        (lambda: DataCaptureConfig(sampling_percentage=101), "InitialSamplingPercentage"),
    ],
)
def test_validation_names_the_field(build, field):
    with pytest.raises(ValidationFailed, match=field):
        build()
