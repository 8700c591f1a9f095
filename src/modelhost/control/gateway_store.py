"""Where functions and routes are kept: the same database as the hosting resources, tables of their own."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from modelhost.control.gateway_resources import Cors, Function, FunctionState, RateLimit, Route, TargetKind
from modelhost.control.store import add_missing_columns
from modelhost.errors import ResourceExists, ResourceNotFound

metadata = MetaData()

functions = Table(
    "functions",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("code_uri", Text, nullable=False),
    Column("code_sha256", String(64)),
    Column("handler", String(255), nullable=False),
    Column("environment", JSON, nullable=False),
    Column("artifacts", JSON, nullable=False),
    Column("timeout_s", Float, nullable=False),
    Column("memory_mb", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("failure_reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

routes = Table(
    "routes",
    metadata,
    Column("method", String(8), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("target_kind", String(16), nullable=False),
    Column("target", String(63), nullable=False),
    Column("api_key_required", Boolean, nullable=False),
    Column("rate", Float),
    Column("burst", Integer),
    Column("max_body_bytes", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("cors", JSON),
    Column("request_schema", JSON),
    Column("example", JSON),
    Column("summary", Text),
    Column("response_schema", JSON),
    Column("response_example", JSON),
)


usage = Table(
    "api_key_usage",
    metadata,
    Column("key_name", String(63), primary_key=True),
    Column("route", String(1100), primary_key=True),
    Column("day", String(10), primary_key=True),  # UTC, YYYY-MM-DD
    Column("calls", Integer, nullable=False),
)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class GatewayStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        metadata.create_all(engine)
        add_missing_columns(engine, metadata)

    # -- functions ----------------------------------------------------------------------------------
    def create_function(self, function: Function) -> Function:
        now = _now()
        try:
            with self._engine.begin() as db:
                db.execute(insert(functions).values(**_function_row(function), created_at=now, updated_at=now))
        except IntegrityError as exc:
            raise ResourceExists(f"function {function.name!r} already exists") from exc
        return self.get_function(function.name)

    def replace_function(self, function: Function) -> Function:
        """New code, handler or settings for an existing function (it goes back to Pending)."""
        with self._engine.begin() as db:
            values = _function_row(function)
            del values["name"]
            values.update(state=FunctionState.PENDING.value, failure_reason=None, updated_at=_now())
            if db.execute(update(functions).where(functions.c.name == function.name).values(**values)).rowcount == 0:
                raise ResourceNotFound(f"function {function.name!r} does not exist")
        return self.get_function(function.name)

    def set_function_state(self, name: str, state: FunctionState, failure_reason: str | None = None) -> Function:
        with self._engine.begin() as db:
            changed = db.execute(
                update(functions)
                .where(functions.c.name == name)
                .values(state=state.value, failure_reason=failure_reason, updated_at=_now())
            ).rowcount
        if changed == 0:
            raise ResourceNotFound(f"function {name!r} does not exist")
        return self.get_function(name)

    def get_function(self, name: str) -> Function:
        with self._engine.begin() as db:
            row = db.execute(select(functions).where(functions.c.name == name)).mappings().first()
        if row is None:
            raise ResourceNotFound(f"function {name!r} does not exist")
        return _function(row)

    def list_functions(self) -> list[Function]:
        with self._engine.begin() as db:
            rows = db.execute(select(functions).order_by(functions.c.name)).mappings().all()
        return [_function(row) for row in rows]

    def delete_function(self, name: str) -> None:
        with self._engine.begin() as db:
            if db.execute(delete(functions).where(functions.c.name == name)).rowcount == 0:
                raise ResourceNotFound(f"function {name!r} does not exist")

    # -- routes -------------------------------------------------------------------------------------
    def create_route(self, route: Route) -> Route:
        try:
            with self._engine.begin() as db:
                db.execute(insert(routes).values(method=route.method, path=route.path, **_route_settings(route)))
        except IntegrityError as exc:
            raise ResourceExists(f"route {route.key} already exists") from exc
        return self.get_route(route.method, route.path)

    def replace_route(self, route: Route) -> Route:
        """New settings or target for an existing route (its creation time stays)."""
        settings = _route_settings(route)
        del settings["created_at"]
        where = (routes.c.method == route.method, routes.c.path == route.path)
        with self._engine.begin() as db:
            if db.execute(update(routes).where(*where).values(**settings)).rowcount == 0:
                raise ResourceNotFound(f"route {route.key} does not exist")
        return self.get_route(route.method, route.path)

    def get_route(self, method: str, path: str) -> Route:
        with self._engine.begin() as db:
            row = db.execute(select(routes).where(routes.c.method == method, routes.c.path == path)).mappings().first()
        if row is None:
            raise ResourceNotFound(f"route {method} {path} does not exist")
        return _route(row)

    def list_routes(self) -> list[Route]:
        with self._engine.begin() as db:
            rows = db.execute(select(routes).order_by(routes.c.path, routes.c.method)).mappings().all()
        return [_route(row) for row in rows]

    def delete_route(self, method: str, path: str) -> None:
        with self._engine.begin() as db:
            if db.execute(delete(routes).where(routes.c.method == method, routes.c.path == path)).rowcount == 0:
                raise ResourceNotFound(f"route {method} {path} does not exist")

    # -- usage --------------------------------------------------------------------------------------
    def add_usage(self, counts: Mapping[tuple[str, str], int], day: str) -> None:
        """Add calls per (key, route) to the day's totals, in one transaction."""
        with self._engine.begin() as db:
            for (key_name, route), calls in counts.items():
                where = (usage.c.key_name == key_name, usage.c.route == route, usage.c.day == day)
                changed = db.execute(update(usage).where(*where).values(calls=usage.c.calls + calls)).rowcount
                if changed == 0:
                    db.execute(insert(usage).values(key_name=key_name, route=route, day=day, calls=calls))

    def list_usage(self) -> list[dict[str, Any]]:
        with self._engine.begin() as db:
            rows = db.execute(select(usage).order_by(usage.c.day, usage.c.key_name, usage.c.route)).mappings()
            return [dict(row) for row in rows]


def _function_row(function: Function) -> dict[str, Any]:
    return {
        "name": function.name,
        "code_uri": function.code_uri,
        "code_sha256": function.code_sha256,
        "handler": function.handler,
        "environment": dict(function.environment),
        "artifacts": dict(function.artifacts),
        "timeout_s": function.timeout_s,
        "memory_mb": function.memory_mb,
        "state": function.state.value,
        "failure_reason": function.failure_reason,
    }


def _route_settings(route: Route) -> dict[str, Any]:
    """A route's row, less its key (method and path)."""
    return {
        "target_kind": route.target_kind.value,
        "target": route.target,
        "api_key_required": route.api_key_required,
        "rate": route.rate_limit.rate if route.rate_limit else None,
        "burst": route.rate_limit.burst if route.rate_limit else None,
        "max_body_bytes": route.max_body_bytes,
        "created_at": _now(),
        "cors": _cors_json(route.cors),
        "request_schema": _schema_json(route.request_schema),
        "example": route.example,
        "summary": route.summary,
        "response_schema": _schema_json(route.response_schema),
        "response_example": route.response_example,
    }


def _function(row: Any) -> Function:
    return Function(
        name=row["name"],
        code_uri=row["code_uri"],
        handler=row["handler"],
        environment=dict(row["environment"]),
        artifacts=dict(row["artifacts"]),
        timeout_s=row["timeout_s"],
        memory_mb=row["memory_mb"],
        code_sha256=row["code_sha256"],
        state=FunctionState(row["state"]),
        failure_reason=row["failure_reason"],
        created_at=_aware(row["created_at"]),
        updated_at=_aware(row["updated_at"]),
    )


def _route(row: Any) -> Route:
    rate_limit = RateLimit(row["rate"], row["burst"]) if row["rate"] is not None else None
    return Route(
        method=row["method"],
        path=row["path"],
        target_kind=TargetKind(row["target_kind"]),
        target=row["target"],
        api_key_required=bool(row["api_key_required"]),
        rate_limit=rate_limit,
        max_body_bytes=row["max_body_bytes"],
        created_at=_aware(row["created_at"]),
        cors=_cors(row["cors"]),
        request_schema=row["request_schema"],
        example=row["example"],
        summary=row["summary"],
        response_schema=row["response_schema"],
        response_example=row["response_example"],
    )


def _schema_json(schema: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(schema) if schema is not None else None


def _cors_json(cors: Cors | None) -> dict[str, Any] | None:
    if cors is None:
        return None
    return {
        "allow_origins": list(cors.allow_origins),
        "allow_headers": list(cors.allow_headers),
        "expose_headers": list(cors.expose_headers),
        "max_age_s": cors.max_age_s,
        "allow_credentials": cors.allow_credentials,
    }


def _cors(value: dict[str, Any] | None) -> Cors | None:
    if value is None:
        return None
    return Cors(
        tuple(value["allow_origins"]),
        tuple(value["allow_headers"]),
        tuple(value["expose_headers"]),
        value["max_age_s"],
        value["allow_credentials"],
    )
