"""``/api/v1/functions`` and ``/api/v1/routes``: the gateway's part of the REST API (schemas and handlers).

A function's code is uploaded first (``PUT /api/v1/artifacts/{name}``, as ``deploy`` uploads a
model) and named here by the URI that upload returned, or by a path or URI on the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from modelhost.control.gateway_controller import GatewayController
from modelhost.control.gateway_resources import (
    DEFAULT_BODY_LIMIT,
    MAX_BURST,
    MAX_TIMEOUT_S,
    Cors,
    Function,
    RateLimit,
    Route,
    TargetKind,
    compile_schema,
)
from modelhost.errors import ValidationFailed

_STRICT = ConfigDict(extra="forbid")


class FunctionIn(BaseModel):
    model_config = _STRICT
    name: str = Field(description="1-63 letters, digits or hyphens")
    code_uri: str = Field(description="the uploaded code (PUT /api/v1/artifacts), a path, file:// or s3://")
    code_sha256: str | None = None
    handler: str = Field(description="module.function, e.g. app.lambda_handler")
    environment: dict[str, str] = Field(default_factory=dict)
    artifacts: dict[str, str] = Field(
        default_factory=dict, description="file name -> URI; fetched into $MODELHOST_FUNCTION_ARTIFACTS_DIR"
    )
    timeout_s: float = Field(30.0, description=f"1-{MAX_TIMEOUT_S:g}; past it the call is a 504")
    memory_mb: int = Field(512, description="what the handler may allocate beyond the runtime; past it MemoryError")

    def to_resource(self) -> Function:
        return Function(
            name=self.name,
            code_uri=self.code_uri,
            handler=self.handler,
            environment=self.environment,
            artifacts=self.artifacts,
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
            code_sha256=self.code_sha256,
        )


class FunctionOut(BaseModel):
    name: str
    code_uri: str
    code_sha256: str | None
    handler: str
    environment: dict[str, str]
    artifacts: dict[str, str]
    timeout_s: float
    memory_mb: int
    state: str
    failure_reason: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, function: Function) -> FunctionOut:
        return cls(
            name=function.name,
            code_uri=function.code_uri,
            code_sha256=function.code_sha256,
            handler=function.handler,
            environment=dict(function.environment),
            artifacts=dict(function.artifacts),
            timeout_s=function.timeout_s,
            memory_mb=function.memory_mb,
            state=function.state.value,
            failure_reason=function.failure_reason,
            created_at=function.created_at,
            updated_at=function.updated_at,
        )


class CorsIn(BaseModel):
    model_config = _STRICT
    allow_origins: list[str] = Field(default_factory=lambda: ["*"])
    allow_headers: list[str] = Field(default_factory=lambda: ["content-type", "x-api-key", "authorization"])
    expose_headers: list[str] = Field(default_factory=lambda: ["x-amzn-requestid"])
    max_age_s: int = 600
    allow_credentials: bool = False

    def to_resource(self) -> Cors:
        return Cors(
            tuple(self.allow_origins),
            tuple(h.lower() for h in self.allow_headers),
            tuple(h.lower() for h in self.expose_headers),
            self.max_age_s,
            self.allow_credentials,
        )

    @classmethod
    def of(cls, cors: Cors) -> CorsIn:
        return cls(
            allow_origins=list(cors.allow_origins),
            allow_headers=list(cors.allow_headers),
            expose_headers=list(cors.expose_headers),
            max_age_s=cors.max_age_s,
            allow_credentials=cors.allow_credentials,
        )


class RouteIn(BaseModel):
    model_config = _STRICT
    method: str = Field(description="GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY")
    path: str = Field(description="e.g. /v1/churn or /v1/items/{id}")
    function: str | None = Field(None, description="the function it calls (or give endpoint)")
    endpoint: str | None = Field(None, description="the endpoint it invokes with the body (or give function)")
    api_key_required: bool = False
    rate: str | None = Field(
        None, description="e.g. 50/s or 600/m (0.001/s to 1000000/s); per API key when a key is required"
    )
    burst: int | None = Field(
        None, ge=1, le=MAX_BURST, description="requests allowed at once (default: a second's worth)"
    )
    max_body_bytes: int = DEFAULT_BODY_LIMIT
    cors: CorsIn | None = Field(None, description="browser origins that may call it; preflights answered")
    request_schema: dict[str, Any] | None = Field(
        None, description="JSON Schema (2020-12) the JSON body must satisfy (else 400 naming the field)"
    )
    example: Any = Field(None, description="an example body for the OpenAPI document")
    summary: str | None = None
    response_schema: dict[str, Any] | None = Field(
        None, description="JSON Schema (2020-12) of a 200's JSON body, for the OpenAPI document (not enforced)"
    )
    response_example: Any = Field(None, description="an example 200 body for the OpenAPI document")

    def to_resource(self) -> Route:
        if (self.function is None) == (self.endpoint is None):
            raise ValidationFailed("function, endpoint: give exactly one target")
        kind = TargetKind.FUNCTION if self.function is not None else TargetKind.ENDPOINT
        if self.rate is None and self.burst is not None:
            raise ValidationFailed("burst: give rate too")
        for schema, field in ((self.request_schema, "RequestSchema"), (self.response_schema, "ResponseSchema")):
            if schema is not None:
                compile_schema(schema, field)  # refs inside it only, patterns that compile: nothing ever fetched
        return Route(
            method=self.method.upper(),
            path=self.path,
            target_kind=kind,
            target=self.function if self.function is not None else str(self.endpoint),
            api_key_required=self.api_key_required,
            rate_limit=RateLimit.parse(self.rate, self.burst) if self.rate is not None else None,
            max_body_bytes=self.max_body_bytes,
            cors=self.cors.to_resource() if self.cors is not None else None,
            request_schema=self.request_schema,
            example=self.example,
            summary=self.summary,
            response_schema=self.response_schema,
            response_example=self.response_example,
        )


class RouteOut(BaseModel):
    method: str
    path: str
    target_kind: str
    target: str
    api_key_required: bool
    rate_per_s: float | None
    burst: int | None
    max_body_bytes: int
    created_at: datetime | None
    cors: CorsIn | None = None
    request_schema: dict[str, Any] | None = None
    example: Any = None
    summary: str | None = None
    response_schema: dict[str, Any] | None = None
    response_example: Any = None

    @classmethod
    def of(cls, route: Route) -> RouteOut:
        return cls(
            method=route.method,
            path=route.path,
            target_kind=route.target_kind.value,
            target=route.target,
            api_key_required=route.api_key_required,
            rate_per_s=route.rate_limit.rate if route.rate_limit else None,
            burst=route.rate_limit.burst if route.rate_limit else None,
            max_body_bytes=route.max_body_bytes,
            created_at=route.created_at,
            cors=CorsIn.of(route.cors) if route.cors is not None else None,
            request_schema=dict(route.request_schema) if route.request_schema is not None else None,
            example=route.example,
            summary=route.summary,
            response_schema=dict(route.response_schema) if route.response_schema is not None else None,
            response_example=route.response_example,
        )


def gateway_router(gateway: GatewayController, usage: Any = None) -> APIRouter:
    """The routes under /api/v1 for functions and routes (the caller adds auth and the prefix)."""
    router = APIRouter()

    @router.post("/functions", status_code=201, tags=["functions"])
    async def create_function(body: FunctionIn) -> FunctionOut:
        return FunctionOut.of(await gateway.create_function(body.to_resource()))

    @router.get("/functions", tags=["functions"])
    async def list_functions() -> dict[str, list[FunctionOut]]:
        return {"functions": [FunctionOut.of(f) for f in await gateway.list_functions()]}

    @router.get("/functions/{name}", tags=["functions"])
    async def describe_function(name: str) -> FunctionOut:
        return FunctionOut.of(await gateway.describe_function(name))

    @router.put("/functions/{name}", tags=["functions"])
    async def update_function(name: str, body: FunctionIn) -> FunctionOut:
        """New code or settings; the new instance serves before the old one stops."""
        if body.name != name:
            raise ValidationFailed(f"name: {body.name!r} is not the function in the path ({name!r})")
        return FunctionOut.of(await gateway.update_function(body.to_resource()))

    @router.delete("/functions/{name}", status_code=204, tags=["functions"])
    async def delete_function(name: str) -> None:
        await gateway.delete_function(name)

    @router.get("/functions/{name}/logs", tags=["functions"], response_class=PlainTextResponse)
    async def function_logs(name: str, max_bytes: Annotated[int, Query(ge=1, le=16 * 1024**2)] = 64 * 1024) -> str:
        await gateway.describe_function(name)
        return gateway.logs(name, max_bytes)

    @router.post("/routes", status_code=201, tags=["routes"])
    async def create_route(body: RouteIn) -> RouteOut:
        return RouteOut.of(await gateway.create_route(body.to_resource()))

    @router.put("/routes", tags=["routes"])
    async def replace_route(body: RouteIn) -> RouteOut:
        """New settings or target for the route with this method and path (404 if there is none)."""
        return RouteOut.of(await gateway.replace_route(body.to_resource()))

    @router.get("/routes", tags=["routes"])
    async def list_routes() -> dict[str, list[RouteOut]]:
        return {"routes": [RouteOut.of(r) for r in await gateway.list_routes()]}

    @router.delete("/routes", status_code=204, tags=["routes"])
    async def delete_route(method: str, path: str) -> None:
        await gateway.delete_route(method.upper(), path)

    if usage is not None:

        @router.get("/usage", tags=["access"])
        async def key_usage(api_key: str | None = None) -> Response:
            """Calls per API key, gateway route and day (UTC); ``api_key`` names one key's."""
            rows = [row for row in await gateway.usage(usage) if api_key is None or row["api_key"] == api_key]
            return Response(orjson.dumps({"usage": rows}), media_type="application/json")

    return router
