"""Where the control plane's state lives: SQLAlchemy 2, SQLite by default, PostgreSQL by URL.

Every change is one transaction, so a crash leaves either the old state or the new one. The
store knows nothing of processes: the runtime reads what should run and reports status back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    false,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from modelhost.control.resources import (
    ApiKey,
    DataCaptureConfig,
    Endpoint,
    EndpointConfig,
    EndpointStatus,
    Model,
    ProductionVariant,
    VariantOverride,
    check_transition,
)
from modelhost.errors import ResourceExists, ResourceNotFound, ValidationFailed

metadata = MetaData()

models = Table(
    "models",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("artifact_uri", Text, nullable=False),
    Column("artifact_sha256", String(64)),
    Column("framework", String(32)),
    Column("mode", String(16), nullable=False, server_default="SingleModel"),
    Column("environment", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("image", Text),
    Column("properties", JSON),
)

endpoint_configs = Table(
    "endpoint_configs",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("data_capture", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("properties", JSON),
)

production_variants = Table(
    "production_variants",
    metadata,
    Column("config_name", String(63), ForeignKey("endpoint_configs.name", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("variant_name", String(63), nullable=False),
    Column("model_name", String(63), nullable=False),
    Column("instance_count", Integer, nullable=False),
    Column("weight", Float, nullable=False),
    Column("properties", JSON),
)

endpoints = Table(
    "endpoints",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("config_name", String(63), nullable=False),
    Column("status", String(16), nullable=False),
    Column("failure_reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("require_api_key", Boolean, nullable=False, server_default=false()),
    Column("variant_overrides", JSON),
    Column("tags", JSON),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("key_sha256", String(64), nullable=False, unique=True),
    Column("key_prefix", String(16), nullable=False),
    Column("endpoints", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("access_key_id", String(32), unique=True),
    Column("rate", Float),
    Column("burst", Integer),
)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; everything here is stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class StateStore:
    def __init__(self, url: str) -> None:
        self._engine: Engine = create_engine(url)
        metadata.create_all(self._engine)
        add_missing_columns(self._engine, metadata)

    @property
    def engine(self) -> Engine:
        """For the stores of other resources that live in the same database (gateway_store.py)."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self._engine.begin() as connection:
            yield connection

    # -- models ---------------------------------------------------------------------------------
    def create_model(self, model: Model) -> Model:
        created = Model(
            model.name,
            model.artifact_uri,
            model.artifact_sha256,
            model.framework,
            dict(model.environment),
            _now(),
            dict(model.tags),
            model.mode,
            model.image,
            dict(model.properties),
        )
        try:
            with self._transaction() as db:
                db.execute(
                    insert(models).values(
                        name=created.name,
                        artifact_uri=created.artifact_uri,
                        artifact_sha256=created.artifact_sha256,
                        framework=created.framework,
                        mode=created.mode,
                        environment=dict(created.environment),
                        tags=dict(created.tags),
                        created_at=created.created_at,
                        image=created.image,
                        properties=dict(created.properties),
                    )
                )
        except IntegrityError as exc:
            raise ResourceExists(f"model {model.name!r} already exists") from exc
        return created

    def get_model(self, name: str) -> Model:
        with self._transaction() as db:
            row = db.execute(select(models).where(models.c.name == name)).mappings().first()
        if row is None:
            raise ResourceNotFound(f"model {name!r} does not exist")
        return _model(row)

    def list_models(self) -> list[Model]:
        with self._transaction() as db:
            rows = db.execute(select(models).order_by(models.c.created_at, models.c.name)).mappings().all()
        return [_model(row) for row in rows]

    def delete_model(self, name: str) -> None:
        """Like SageMaker, a model may go while configs still name it; they fail when deployed."""
        with self._transaction() as db:
            if db.execute(delete(models).where(models.c.name == name)).rowcount == 0:
                raise ResourceNotFound(f"model {name!r} does not exist")

    # -- endpoint configs ---------------------------------------------------------------------------
    def create_endpoint_config(self, config: EndpointConfig) -> EndpointConfig:
        created = EndpointConfig(
            config.name, tuple(config.variants), config.data_capture, _now(), dict(config.tags), dict(config.properties)
        )
        try:
            with self._transaction() as db:
                for variant in created.variants:
                    found = db.execute(select(models.c.name).where(models.c.name == variant.model_name)).first()
                    if found is None:
                        raise ValidationFailed(
                            f"ProductionVariants[{variant.variant_name}].ModelName: "
                            f"could not find model {variant.model_name!r}"
                        )
                db.execute(
                    insert(endpoint_configs).values(
                        name=created.name,
                        data_capture=_capture_json(created.data_capture),
                        tags=dict(created.tags),
                        created_at=created.created_at,
                        properties=dict(created.properties),
                    )
                )
                db.execute(
                    insert(production_variants),
                    [
                        {
                            "config_name": created.name,
                            "position": i,
                            "variant_name": v.variant_name,
                            "model_name": v.model_name,
                            "instance_count": v.initial_instance_count,
                            "weight": v.initial_weight,
                            "properties": dict(v.properties),
                        }
                        for i, v in enumerate(created.variants)
                    ],
                )
        except IntegrityError as exc:
            raise ResourceExists(f"endpoint config {config.name!r} already exists") from exc
        return created

    def get_endpoint_config(self, name: str) -> EndpointConfig:
        with self._transaction() as db:
            return self._read_config(db, name)

    def list_endpoint_configs(self) -> list[EndpointConfig]:
        with self._transaction() as db:
            names = (
                db.execute(
                    select(endpoint_configs.c.name).order_by(endpoint_configs.c.created_at, endpoint_configs.c.name)
                )
                .scalars()
                .all()
            )
            return [self._read_config(db, name) for name in names]

    def delete_endpoint_config(self, name: str) -> None:
        """Like SageMaker, an endpoint keeps running on a config deleted under it."""
        with self._transaction() as db:
            db.execute(delete(production_variants).where(production_variants.c.config_name == name))
            if db.execute(delete(endpoint_configs).where(endpoint_configs.c.name == name)).rowcount == 0:
                raise ResourceNotFound(f"endpoint config {name!r} does not exist")

    @staticmethod
    def _read_config(db: Connection, name: str) -> EndpointConfig:
        row = db.execute(select(endpoint_configs).where(endpoint_configs.c.name == name)).mappings().first()
        if row is None:
            raise ResourceNotFound(f"endpoint config {name!r} does not exist")
        variants = (
            db.execute(
                select(production_variants)
                .where(production_variants.c.config_name == name)
                .order_by(production_variants.c.position)
            )
            .mappings()
            .all()
        )
        return EndpointConfig(
            name=row["name"],
            variants=tuple(
                ProductionVariant(
                    v["variant_name"], v["model_name"], v["instance_count"], v["weight"], dict(v["properties"] or {})
                )
                for v in variants
            ),
            data_capture=DataCaptureConfig(**row["data_capture"]),
            created_at=_aware(row["created_at"]),
            tags=dict(row["tags"]),
            properties=dict(row["properties"] or {}),
        )

    # -- endpoints ----------------------------------------------------------------------------------
    def create_endpoint(self, name: str, config_name: str, tags: Mapping[str, str] | None = None) -> Endpoint:
        now = _now()
        endpoint = Endpoint(name, config_name, EndpointStatus.CREATING, None, now, now, tags=dict(tags or {}))
        try:
            with self._transaction() as db:
                self._read_config(db, config_name)
                db.execute(
                    insert(endpoints).values(
                        name=name,
                        config_name=config_name,
                        status=endpoint.status.value,
                        failure_reason=None,
                        created_at=now,
                        updated_at=now,
                        tags=dict(endpoint.tags),
                    )
                )
        except IntegrityError as exc:
            raise ResourceExists(f"endpoint {name!r} already exists") from exc
        return endpoint

    def get_endpoint(self, name: str) -> Endpoint:
        with self._transaction() as db:
            return self._read_endpoint(db, name)

    def list_endpoints(self) -> list[Endpoint]:
        with self._transaction() as db:
            rows = db.execute(select(endpoints).order_by(endpoints.c.created_at, endpoints.c.name)).mappings().all()
        return [_endpoint(row) for row in rows]

    def set_endpoint_status(
        self,
        name: str,
        status: EndpointStatus,
        *,
        failure_reason: str | None = None,
        config_name: str | None = None,
        variant_overrides: Mapping[str, VariantOverride] | None = None,
    ) -> Endpoint:
        """Move an endpoint along its lifecycle (optionally onto another config), checked.

        The config is not looked up: like SageMaker's, an endpoint may run on a config deleted
        since (the controller checks it exists when an update starts).
        """
        with self._transaction() as db:
            current = self._read_endpoint(db, name)
            check_transition(name, current.status, status)
            values: dict[str, Any] = {"status": status.value, "failure_reason": failure_reason, "updated_at": _now()}
            if config_name is not None:
                values["config_name"] = config_name
            if variant_overrides is not None:
                values["variant_overrides"] = _overrides_json(variant_overrides)
            db.execute(update(endpoints).where(endpoints.c.name == name).values(**values))
            return self._read_endpoint(db, name)

    def delete_endpoint(self, name: str) -> None:
        """Forget an endpoint the runtime has stopped (it must be Deleting)."""
        with self._transaction() as db:
            current = self._read_endpoint(db, name)
            if current.status is not EndpointStatus.DELETING:
                check_transition(name, current.status, EndpointStatus.DELETING)
            db.execute(delete(endpoints).where(endpoints.c.name == name))

    def set_endpoint_access(self, name: str, *, require_api_key: bool) -> Endpoint:
        with self._transaction() as db:
            self._read_endpoint(db, name)
            db.execute(
                update(endpoints)
                .where(endpoints.c.name == name)
                .values(require_api_key=require_api_key, updated_at=_now())
            )
            return self._read_endpoint(db, name)

    # -- API keys -----------------------------------------------------------------------------------
    def create_api_key(self, key: ApiKey) -> ApiKey:
        created = ApiKey(
            key.name,
            key.key_sha256,
            key.key_prefix,
            key.endpoints,
            _now(),
            key.access_key_id,
            key.rate_per_s,
            key.burst,
        )
        try:
            with self._transaction() as db:
                db.execute(
                    insert(api_keys).values(
                        name=created.name,
                        key_sha256=created.key_sha256,
                        key_prefix=created.key_prefix,
                        endpoints=list(created.endpoints) if created.endpoints is not None else None,
                        created_at=created.created_at,
                        access_key_id=created.access_key_id,
                        rate=created.rate_per_s,
                        burst=created.burst,
                    )
                )
        except IntegrityError as exc:
            raise ResourceExists(f"API key {key.name!r} already exists") from exc
        return created

    def list_api_keys(self) -> list[ApiKey]:
        with self._transaction() as db:
            rows = db.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.name)).mappings().all()
        return [_api_key(row) for row in rows]

    def delete_api_key(self, name: str) -> None:
        with self._transaction() as db:
            if db.execute(delete(api_keys).where(api_keys.c.name == name)).rowcount == 0:
                raise ResourceNotFound(f"API key {name!r} does not exist")

    @staticmethod
    def _read_endpoint(db: Connection, name: str) -> Endpoint:
        row = db.execute(select(endpoints).where(endpoints.c.name == name)).mappings().first()
        if row is None:
            raise ResourceNotFound(f"endpoint {name!r} does not exist")
        return _endpoint(row)


def add_missing_columns(engine: Engine, metadata: MetaData) -> None:
    """Bring a state store made by an older modelhost up to date: add the columns it lacks.

    Columns only ever get added, and added ones are nullable (or have a server default), so an
    older store needs no more than ``ALTER TABLE ... ADD COLUMN``; ``create_all`` adds new tables.
    """
    present = inspect(engine)
    with engine.begin() as db:
        for table in metadata.sorted_tables:
            existing = {column["name"] for column in present.get_columns(table.name)}
            for column in table.columns:
                if column.name in existing:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                default = ""
                if column.server_default is not None:
                    value = column.server_default.arg  # type: ignore[attr-defined]
                    literal = f"'{value}'" if isinstance(value, str) else value.compile(dialect=engine.dialect)
                    default = f" DEFAULT {literal}"
                db.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}{default}'))
                if column.unique:  # ADD COLUMN cannot say UNIQUE (SQLite): an index keeps the promise
                    db.execute(
                        text(f'CREATE UNIQUE INDEX "uq_{table.name}_{column.name}" ON {table.name} ("{column.name}")')
                    )


def _model(row: Any) -> Model:
    return Model(
        row["name"],
        row["artifact_uri"],
        row["artifact_sha256"],
        row["framework"],
        dict(row["environment"]),
        _aware(row["created_at"]),
        dict(row["tags"]),
        row["mode"],
        row["image"],
        dict(row["properties"] or {}),
    )


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        row["name"],
        row["config_name"],
        EndpointStatus(row["status"]),
        row["failure_reason"],
        _aware(row["created_at"]),
        _aware(row["updated_at"]),
        bool(row["require_api_key"]),
        {
            variant: VariantOverride(value.get("weight"), value.get("instance_count"))
            for variant, value in (row["variant_overrides"] or {}).items()
        },
        dict(row["tags"] or {}),
    )


def _api_key(row: Any) -> ApiKey:
    endpoints = row["endpoints"]
    return ApiKey(
        row["name"],
        row["key_sha256"],
        row["key_prefix"],
        tuple(endpoints) if endpoints is not None else None,
        _aware(row["created_at"]),
        row["access_key_id"],
        row["rate"],
        row["burst"],
    )


def _overrides_json(overrides: Mapping[str, VariantOverride]) -> dict[str, Any]:
    return {
        variant: {"weight": value.weight, "instance_count": value.instance_count}
        for variant, value in overrides.items()
    }


def _capture_json(capture: DataCaptureConfig) -> dict[str, Any]:
    return {
        "enabled": capture.enabled,
        "sampling_percentage": capture.sampling_percentage,
        "destination_uri": capture.destination_uri,
        "capture_input": capture.capture_input,
        "capture_output": capture.capture_output,
    }
