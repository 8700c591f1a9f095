"""A state store made by an older modelhost opens with today's (_add_missing_columns); with_overrides."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelhost.control.resources import (
    ApiKey,
    DataCaptureConfig,
    EndpointConfig,
    EndpointStatus,
    Model,
    ProductionVariant,
    VariantOverride,
    with_overrides,
)
from modelhost.control.store import StateStore, metadata
from modelhost.errors import ResourceExists, ValidationFailed

CREATED = "2024-05-01 12:00:00.000000"  # how SQLAlchemy writes a DateTime into SQLite

# The schema of the release before the SageMaker API (commit 34e4d0a), as SQLAlchemy created it:
# no models.image/properties, endpoint_configs.properties, production_variants.properties,
# endpoints.variant_overrides/tags, api_keys.access_key_id.
PREVIOUS_SCHEMA = """
CREATE TABLE models (
    name VARCHAR(63) NOT NULL,
    artifact_uri TEXT NOT NULL,
    artifact_sha256 VARCHAR(64),
    framework VARCHAR(32),
    mode VARCHAR(16) DEFAULT 'SingleModel' NOT NULL,
    environment JSON NOT NULL,
    tags JSON NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (name)
);
CREATE TABLE endpoint_configs (
    name VARCHAR(63) NOT NULL,
    data_capture JSON NOT NULL,
    tags JSON NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (name)
);
CREATE TABLE production_variants (
    config_name VARCHAR(63) NOT NULL,
    position INTEGER NOT NULL,
    variant_name VARCHAR(63) NOT NULL,
    model_name VARCHAR(63) NOT NULL,
    instance_count INTEGER NOT NULL,
    weight FLOAT NOT NULL,
    PRIMARY KEY (config_name, position),
    FOREIGN KEY(config_name) REFERENCES endpoint_configs (name) ON DELETE CASCADE
);
CREATE TABLE endpoints (
    name VARCHAR(63) NOT NULL,
    config_name VARCHAR(63) NOT NULL,
    status VARCHAR(16) NOT NULL,
    failure_reason TEXT,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    require_api_key BOOLEAN DEFAULT 0 NOT NULL,
    PRIMARY KEY (name)
);
CREATE TABLE api_keys (
    name VARCHAR(63) NOT NULL,
    key_sha256 VARCHAR(64) NOT NULL,
    key_prefix VARCHAR(16) NOT NULL,
    endpoints JSON,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (name),
    UNIQUE (key_sha256)
);
"""

# An older one still (before multi-model endpoints and API keys): no models.mode, no
# endpoints.require_api_key, no api_keys table at all.
FIRST_SCHEMA = """
CREATE TABLE models (
    name VARCHAR(63) NOT NULL,
    artifact_uri TEXT NOT NULL,
    artifact_sha256 VARCHAR(64),
    framework VARCHAR(32),
    environment JSON NOT NULL,
    tags JSON NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (name)
);
CREATE TABLE endpoint_configs (
    name VARCHAR(63) NOT NULL,
    data_capture JSON NOT NULL,
    tags JSON NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (name)
);
CREATE TABLE production_variants (
    config_name VARCHAR(63) NOT NULL,
    position INTEGER NOT NULL,
    variant_name VARCHAR(63) NOT NULL,
    model_name VARCHAR(63) NOT NULL,
    instance_count INTEGER NOT NULL,
    weight FLOAT NOT NULL,
    PRIMARY KEY (config_name, position),
    FOREIGN KEY(config_name) REFERENCES endpoint_configs (name) ON DELETE CASCADE
);
CREATE TABLE endpoints (
    name VARCHAR(63) NOT NULL,
    config_name VARCHAR(63) NOT NULL,
    status VARCHAR(16) NOT NULL,
    failure_reason TEXT,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (name)
);
"""

Migrated = tuple[StateStore, Path, str]  # the store, its file, which old schema it came from

CAPTURE = '{"enabled": true, "sampling_percentage": 20, "destination_uri": null}'


def old_database(path: Path, schema: str) -> str:
    """An SQLite file with ``schema`` and one model, config (two variants) and endpoint in it."""
    with sqlite3.connect(path) as db:
        db.executescript(schema)
        columns = {row[1] for row in db.execute("PRAGMA table_info(models)")}
        mode = ", mode" if "mode" in columns else ""
        mode_value = ", 'MultiModel'" if "mode" in columns else ""
        db.execute(
            f"INSERT INTO models (name, artifact_uri, artifact_sha256, framework, environment, tags, created_at{mode}) "
            f"VALUES ('sentiment', 's3://bucket/model.tar.gz', ?, 'sklearn', '{{\"K\": \"v\"}}', "
            f"'{{\"team\": \"ml\"}}', '{CREATED}'{mode_value})",
            ("ab" * 32,),
        )
        db.execute(
            f"INSERT INTO endpoint_configs (name, data_capture, tags, created_at) "
            f"VALUES ('sentiment-config', '{CAPTURE}', '{{}}', '{CREATED}')"
        )
        db.executemany(
            "INSERT INTO production_variants (config_name, position, variant_name, model_name, instance_count, weight)"
            " VALUES ('sentiment-config', ?, ?, 'sentiment', ?, ?)",
            [(0, "a", 2, 0.7), (1, "b", 1, 0.3)],
        )
        db.execute(
            "INSERT INTO endpoints (name, config_name, status, failure_reason, created_at, updated_at) "
            f"VALUES ('sentiment', 'sentiment-config', 'InService', NULL, '{CREATED}', '{CREATED}')"
        )
        if "api_keys" in {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}:
            db.execute(
                "INSERT INTO api_keys (name, key_sha256, key_prefix, endpoints, created_at) "
                f"VALUES ('ci', ?, 'mhk_abcd', '[\"sentiment\"]', '{CREATED}')",
                ("cd" * 32,),
            )
    db.close()
    return f"sqlite:///{path}"


def columns(path: Path, table: str) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    finally:
        db.close()


@pytest.fixture(params=["previous", "first"])
def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Migrated]:
    path = tmp_path / "state.db"
    url = old_database(path, PREVIOUS_SCHEMA if request.param == "previous" else FIRST_SCHEMA)
    store = StateStore(url)
    yield store, path, request.param
    store.close()


def test_every_column_of_today_is_added(migrated: Migrated) -> None:
    _, path, _ = migrated

    for table in metadata.sorted_tables:
        assert columns(path, table.name) == {column.name for column in table.columns}, table.name


def test_old_rows_read_back(migrated: Migrated) -> None:
    store, _, version = migrated

    model = store.get_model("sentiment")
    assert model.artifact_uri == "s3://bucket/model.tar.gz"
    assert model.artifact_sha256 == "ab" * 32
    assert model.framework == "sklearn"
    assert dict(model.environment) == {"K": "v"}
    assert dict(model.tags) == {"team": "ml"}
    assert model.created_at == datetime(2024, 5, 1, 12, tzinfo=UTC)
    # the first schema had no mode: its models get the column's default
    assert model.mode == ("MultiModel" if version == "previous" else "SingleModel")
    assert model.image is None
    assert dict(model.properties) == {}

    config = store.get_endpoint_config("sentiment-config")
    assert config.variants == (
        ProductionVariant("a", "sentiment", 2, 0.7),
        ProductionVariant("b", "sentiment", 1, 0.3),
    )
    assert config.data_capture == DataCaptureConfig(enabled=True, sampling_percentage=20)
    assert dict(config.properties) == {}

    endpoint = store.get_endpoint("sentiment")
    assert endpoint.status is EndpointStatus.IN_SERVICE
    assert endpoint.config_name == "sentiment-config"
    assert endpoint.require_api_key is False
    assert dict(endpoint.variant_overrides) == {}
    assert dict(endpoint.tags) == {}
    assert [e.name for e in store.list_endpoints()] == ["sentiment"]


def test_old_api_keys_read_back_without_an_access_key_id(migrated: Migrated) -> None:
    store, _, version = migrated

    keys = store.list_api_keys()

    if version == "first":
        assert keys == []  # the table is new
        return
    [key] = keys
    assert (key.name, key.key_sha256, key.key_prefix, key.endpoints) == ("ci", "cd" * 32, "mhk_abcd", ("sentiment",))
    assert key.access_key_id is None


def test_a_model_with_an_image_and_properties_can_be_created(migrated: Migrated) -> None:
    store, _, _ = migrated
    properties = {"ExecutionRoleArn": "arn:aws:iam::000000000000:role/x", "VpcConfig": {"Subnets": ["s"]}}

    store.create_model(
        Model("new-model", "file:///srv/m", image="modelhost/sklearn:1", properties=properties, mode="SingleModel")
    )

    model = store.get_model("new-model")
    assert model.image == "modelhost/sklearn:1"
    assert dict(model.properties) == properties
    assert [m.name for m in store.list_models()] == ["sentiment", "new-model"]


def test_a_config_with_properties_can_be_created(migrated: Migrated) -> None:
    store, _, _ = migrated
    variant = ProductionVariant("only", "sentiment", 1, 1.0, {"InstanceType": "ml.m5.large"})

    store.create_endpoint_config(EndpointConfig("new-config", (variant,), properties={"KmsKeyId": "k"}))

    config = store.get_endpoint_config("new-config")
    assert dict(config.properties) == {"KmsKeyId": "k"}
    assert dict(config.variants[0].properties) == {"InstanceType": "ml.m5.large"}


def test_an_old_endpoint_takes_variant_overrides(migrated: Migrated) -> None:
    store, _, _ = migrated
    overrides = {"a": VariantOverride(0.2, 3), "b": VariantOverride(weight=0.8)}

    updated = store.set_endpoint_status("sentiment", EndpointStatus.UPDATING, variant_overrides=overrides)

    assert dict(updated.variant_overrides) == overrides
    assert store.get_endpoint("sentiment").variant_overrides == overrides
    # a later status change without overrides keeps them
    store.set_endpoint_status("sentiment", EndpointStatus.IN_SERVICE)
    assert store.get_endpoint("sentiment").variant_overrides == overrides


def test_an_old_endpoint_can_require_an_api_key(migrated: Migrated) -> None:
    store, _, _ = migrated

    assert store.set_endpoint_access("sentiment", require_api_key=True).require_api_key is True
    assert store.get_endpoint("sentiment").require_api_key is True


def test_a_new_endpoint_with_tags_can_be_created(migrated: Migrated) -> None:
    store, _, _ = migrated

    store.create_endpoint("tagged", "sentiment-config", {"owner": "me"})

    assert dict(store.get_endpoint("tagged").tags) == {"owner": "me"}
    assert store.get_endpoint("tagged").require_api_key is False


def test_an_api_key_with_an_access_key_id_can_be_created(migrated: Migrated) -> None:
    store, _, _ = migrated

    store.create_api_key(ApiKey("boto", "ef" * 32, "mhk_efef", None, access_key_id="MHKAAAAAAAAAAAAAAAAA"))

    [key] = [k for k in store.list_api_keys() if k.name == "boto"]
    assert key.access_key_id == "MHKAAAAAAAAAAAAAAAAA"
    assert key.endpoints is None


def test_access_key_ids_stay_unique_in_a_migrated_store(migrated: Migrated) -> None:
    # A fresh store declares api_keys.access_key_id UNIQUE; a migrated one should refuse a repeat too.
    store, _, _ = migrated
    store.create_api_key(ApiKey("one", "01" * 32, "mhk_0101", access_key_id="MHKAAAAAAAAAAAAAAAAA"))

    with pytest.raises(ResourceExists):
        store.create_api_key(ApiKey("two", "02" * 32, "mhk_0202", access_key_id="MHKAAAAAAAAAAAAAAAAA"))


def test_access_key_ids_are_unique_in_a_fresh_store(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        store.create_api_key(ApiKey("one", "01" * 32, "mhk_0101", access_key_id="MHKAAAAAAAAAAAAAAAAA"))
        with pytest.raises(ResourceExists):
            store.create_api_key(ApiKey("two", "02" * 32, "mhk_0202", access_key_id="MHKAAAAAAAAAAAAAAAAA"))
    finally:
        store.close()


def test_opening_a_migrated_store_again_changes_nothing(migrated: Migrated) -> None:
    store, path, _ = migrated
    store.set_endpoint_status("sentiment", EndpointStatus.UPDATING, variant_overrides={"a": VariantOverride(0.5)})
    store.close()
    before = {table.name: columns(path, table.name) for table in metadata.sorted_tables}

    again = StateStore(f"sqlite:///{path}")
    try:
        assert {table.name: columns(path, table.name) for table in metadata.sorted_tables} == before
        assert again.get_endpoint("sentiment").variant_overrides == {"a": VariantOverride(0.5)}
        assert again.get_model("sentiment").framework == "sklearn"
    finally:
        again.close()


def test_a_fresh_store_needs_no_migration(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    StateStore(f"sqlite:///{path}").close()
    StateStore(f"sqlite:///{path}").close()

    for table in metadata.sorted_tables:
        assert columns(path, table.name) == {column.name for column in table.columns}


# -- with_overrides ---------------------------------------------------------------------------------------
def config() -> EndpointConfig:
    return EndpointConfig(
        "cfg",
        (
            ProductionVariant("a", "m1", 2, 0.7, {"InstanceType": "ml.m5.large"}),
            ProductionVariant("b", "m2", 1, 0.3),
        ),
        DataCaptureConfig(enabled=True, sampling_percentage=5, destination_uri="s3://b/c"),
        datetime(2024, 5, 1, tzinfo=UTC),
        {"team": "ml"},
        {"KmsKeyId": "k"},
    )


def test_no_overrides_give_the_config_itself() -> None:
    original = config()

    assert with_overrides(original, {}) is original


def test_an_override_sets_weight_and_count() -> None:
    result = with_overrides(config(), {"a": VariantOverride(0.1, 5)})

    assert result.variants[0] == ProductionVariant("a", "m1", 5, 0.1, {"InstanceType": "ml.m5.large"})
    assert result.variants[1] == config().variants[1]


def test_an_override_of_the_weight_keeps_the_count_and_the_other_way() -> None:
    result = with_overrides(config(), {"a": VariantOverride(weight=0.0), "b": VariantOverride(instance_count=4)})

    assert (result.variants[0].initial_weight, result.variants[0].initial_instance_count) == (0.0, 2)
    assert (result.variants[1].initial_weight, result.variants[1].initial_instance_count) == (0.3, 4)


def test_an_empty_override_changes_nothing() -> None:
    assert with_overrides(config(), {"a": VariantOverride()}).variants == config().variants


def test_overrides_keep_everything_else_of_the_config() -> None:
    original = config()

    result = with_overrides(original, {"b": VariantOverride(0.9, 2)})

    assert (result.name, result.data_capture, result.created_at) == (
        original.name,
        original.data_capture,
        original.created_at,
    )
    assert dict(result.tags) == {"team": "ml"}
    assert dict(result.properties) == {"KmsKeyId": "k"}
    assert [v.variant_name for v in result.variants] == ["a", "b"]
    assert original.variants[1].initial_weight == 0.3  # the original is untouched


def test_overrides_of_variants_the_config_lacks_are_ignored() -> None:
    assert with_overrides(config(), {"gone": VariantOverride(0.5, 3)}).variants == config().variants


def test_overrides_are_checked_like_a_config() -> None:
    with pytest.raises(ValidationFailed, match="InitialInstanceCount"):
        with_overrides(config(), {"a": VariantOverride(instance_count=0)})
    with pytest.raises(ValidationFailed, match="weights must not all be 0"):
        with_overrides(config(), {"a": VariantOverride(weight=0.0), "b": VariantOverride(weight=0.0)})
