"""The native REST API under ``/api/v1`` (FastAPI), with its OpenAPI document and a docs page.

Handlers translate between the schemas and the controller, nothing more. Every error is
``{"error": ..., "message": ...}`` with the status its ModelhostError carries; a malformed body
is a 400 naming the field. When a token is configured, every route but ``/api/v1/health``, the docs pages
and the gateway's published OpenAPI document (``/api/v1/gateway/...``) needs
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelhost import __version__
from modelhost.control.controller import Controller, DeployRequest
from modelhost.control.gateway_api import gateway_router
from modelhost.control.gateway_controller import GatewayController
from modelhost.control.gateway_openapi import routes_document
from modelhost.control.gateway_resources import RateLimit
from modelhost.control.resources import check_name
from modelhost.control.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    ArtifactOut,
    DeployIn,
    DeployOut,
    EndpointAccess,
    EndpointConfigIn,
    EndpointConfigOut,
    EndpointIn,
    EndpointOut,
    EndpointUpdate,
    ErrorOut,
    ModelIn,
    ModelOut,
)
from modelhost.errors import ModelhostError, PayloadTooLarge, ValidationFailed
from modelhost.sagemaker.api import SageMakerApi

API = "/api/v1"
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (400, "invalid request"),
        (401, "missing or wrong token"),
        (404, "no such resource"),
        (409, "exists, or in use"),
    )
}


def build_api(
    controller: Controller,
    *,
    token: str | None,
    scratch_dir: Path,
    max_artifact_bytes: int = 20 * 1024**3,
    gateway: GatewayController | None = None,
    usage: Any = None,
) -> FastAPI:
    app = FastAPI(
        title="modelhost",
        version=__version__,
        description="Deploy saved models as endpoints and manage them. "
        "Invocations go to POST /endpoints/{name}/invocations.",
        openapi_url=f"{API}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )

    def authorize(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise _Unauthorized()

    router = APIRouter(prefix=API, dependencies=[Depends(authorize)], responses=_ERRORS)

    @app.get(f"{API}/health", tags=["platform"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    _add_docs_page(app)

    # -- models ----------------------------------------------------------------------------------
    @router.post("/models", status_code=201, tags=["models"])
    async def create_model(body: ModelIn) -> ModelOut:
        return ModelOut.of(await controller.create_model(body.to_resource()))

    @router.get("/models", tags=["models"])
    async def list_models() -> dict[str, list[ModelOut]]:
        return {"models": [ModelOut.of(m) for m in await controller.list_models()]}

    @router.get("/models/{name}", tags=["models"])
    async def describe_model(name: str) -> ModelOut:
        return ModelOut.of(await controller.describe_model(name))

    @router.delete("/models/{name}", status_code=204, tags=["models"])
    async def delete_model(name: str) -> None:
        await controller.delete_model(name)

    # -- endpoint configs ------------------------------------------------------------------------------
    @router.post("/endpoint-configs", status_code=201, tags=["endpoint configs"])
    async def create_endpoint_config(body: EndpointConfigIn) -> EndpointConfigOut:
        return EndpointConfigOut.of(await controller.create_endpoint_config(body.to_resource()))

    @router.get("/endpoint-configs", tags=["endpoint configs"])
    async def list_endpoint_configs() -> dict[str, list[EndpointConfigOut]]:
        return {"endpoint_configs": [EndpointConfigOut.of(c) for c in await controller.list_endpoint_configs()]}

    @router.get("/endpoint-configs/{name}", tags=["endpoint configs"])
    async def describe_endpoint_config(name: str) -> EndpointConfigOut:
        return EndpointConfigOut.of(await controller.describe_endpoint_config(name))

    @router.delete("/endpoint-configs/{name}", status_code=204, tags=["endpoint configs"])
    async def delete_endpoint_config(name: str) -> None:
        await controller.delete_endpoint_config(name)

    # -- endpoints -------------------------------------------------------------------------------------
    def view(endpoint: Any) -> EndpointOut:
        return EndpointOut.of(endpoint, controller.runtime.route(endpoint.name))

    @router.post("/endpoints", status_code=201, tags=["endpoints"])
    async def create_endpoint(body: EndpointIn) -> EndpointOut:
        return view(await controller.create_endpoint(body.name, body.config_name))

    @router.get("/endpoints", tags=["endpoints"])
    async def list_endpoints() -> dict[str, list[EndpointOut]]:
        return {"endpoints": [view(e) for e in await controller.list_endpoints()]}

    @router.get("/endpoints/{name}", tags=["endpoints"])
    async def describe_endpoint(name: str) -> EndpointOut:
        return view(await controller.describe_endpoint(name))

    @router.put("/endpoints/{name}", status_code=202, tags=["endpoints"])
    async def update_endpoint(name: str, body: EndpointUpdate) -> EndpointOut:
        """Move the endpoint to another config: the new instances serve before the old ones stop."""
        return view(await controller.update_endpoint(name, body.config_name))

    @router.delete("/endpoints/{name}", status_code=202, tags=["endpoints"])
    async def delete_endpoint(
        name: str,
        with_deployed_resources: Annotated[
            bool, Query(description="also delete the models, configs and artifacts `deploy` made for it")
        ] = False,
    ) -> EndpointOut:
        return view(await controller.delete_endpoint(name, with_deployed_resources=with_deployed_resources))

    @router.put("/endpoints/{name}/access", tags=["access"])
    async def set_endpoint_access(name: str, body: EndpointAccess) -> EndpointOut:
        """Require (or stop requiring) an API key for the endpoint's invocations."""
        return view(await controller.set_endpoint_access(name, require_api_key=body.require_api_key))

    _add_api_keys(router, controller)

    @router.get("/endpoints/{name}/logs", response_class=PlainTextResponse, tags=["endpoints"])
    async def endpoint_logs(
        name: str,
        max_bytes: Annotated[int, Query(ge=1, le=16 * 1024**2)] = 64 * 1024,
        follow: Annotated[bool, Query(description="stream new lines as they are written")] = False,
    ) -> Response:
        """The end of each instance's log (model server output: loading, errors, tracebacks)."""
        await controller.describe_endpoint(name)
        if follow:
            return StreamingResponse(controller.runtime.follow_logs(name), media_type="text/plain")
        return PlainTextResponse(controller.logs(name, max_bytes))

    # -- deploy and artifacts -----------------------------------------------------------------------------
    @router.post("/deployments", status_code=202, tags=["deploy"])
    async def deploy(body: DeployIn) -> DeployOut:
        """Model + one-variant config + endpoint (created, or updated if it exists) in one call."""
        request = DeployRequest(
            body.endpoint_name,
            body.artifact_uri,
            body.artifact_sha256,
            body.framework,
            body.environment,
            body.instance_count,
            body.data_capture.to_resource(),
        )
        endpoint, resource_name = await controller.deploy(request)
        if body.require_api_key is not None:
            endpoint = await controller.set_endpoint_access(body.endpoint_name, require_api_key=body.require_api_key)
        return DeployOut(endpoint=view(endpoint), model_name=resource_name, config_name=resource_name)

    _add_artifact_upload(router, controller, scratch_dir, max_artifact_bytes)
    if gateway is not None:
        router.include_router(gateway_router(gateway, usage))
        _add_gateway_docs(app, gateway)
    app.include_router(router)
    _add_sagemaker_api(app, SageMakerApi(controller, token=token))
    _install_error_handlers(app)
    return app


def _add_api_keys(router: APIRouter, controller: Controller) -> None:
    @router.post("/api-keys", status_code=201, tags=["access"])
    async def create_api_key(body: ApiKeyIn) -> ApiKeyCreated:
        """A new key for invocations; the response holds the key itself, shown this once."""
        endpoints = tuple(body.endpoints) if body.endpoints is not None else None
        if body.rate is None and body.burst is not None:
            raise ValidationFailed("burst: give rate too")
        limit = RateLimit.parse(body.rate, body.burst) if body.rate is not None else None
        record, secret = await controller.create_api_key(
            body.name,
            endpoints,
            rate_per_s=limit.rate if limit else None,
            burst=limit.burst if limit else None,
        )
        return ApiKeyCreated(**ApiKeyOut.of(record).model_dump(), key=secret)

    @router.get("/api-keys", tags=["access"])
    async def list_api_keys() -> dict[str, list[ApiKeyOut]]:
        return {"api_keys": [ApiKeyOut.of(key) for key in await controller.list_api_keys()]}

    @router.delete("/api-keys/{name}", status_code=204, tags=["access"])
    async def revoke_api_key(name: str) -> None:
        """Revoke a key: invocations with it are refused from now on."""
        await controller.revoke_api_key(name)


def _add_sagemaker_api(app: FastAPI, sagemaker: SageMakerApi) -> None:
    """SageMaker's control API (boto3's ``sagemaker`` client) on ``POST /``; it checks its own access (SigV4)."""

    @app.post("/", include_in_schema=False)
    async def sagemaker_call(request: Request) -> Response:
        raw_target = request.scope.get("raw_path", b"/").decode("latin-1")
        if request.scope.get("query_string"):
            raw_target += "?" + request.scope["query_string"].decode("latin-1")
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]
        status, answer_headers, body = await sagemaker.handle(request.method, raw_target, headers, await request.body())
        return Response(body, status_code=status, headers=dict(answer_headers))


def _add_artifact_upload(router: APIRouter, controller: Controller, scratch_dir: Path, max_bytes: int) -> None:
    @router.put(
        "/artifacts/{name}",
        status_code=201,
        tags=["deploy"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def upload_artifact(name: str, request: Request) -> ArtifactOut:
        """Store a ``model.tar.gz`` (the body) in the artifact store; its URI and SHA-256."""
        check_name(name, "name")
        scratch_dir.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix="upload-", suffix=".tar.gz", dir=scratch_dir)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(handle, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLarge(f"the artifact is larger than {max_bytes / 1024**3:g} GB")
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise ValidationFailed("body: the artifact is empty; send a model.tar.gz")
            sha256 = digest.hexdigest()
            key = f"models/{name}/{sha256[:16]}/model.tar.gz"
            uri = await asyncio.to_thread(controller.artifacts.put_file, key, Path(partial))
        finally:
            Path(partial).unlink(missing_ok=True)
        return ArtifactOut(uri=uri, sha256=sha256, size=size)


def _add_docs_page(app: FastAPI) -> None:
    @app.get(f"{API}/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return _swagger_page(f"{API}/openapi.json", "modelhost API")

    @app.get(f"{API}/docs-assets/{{name}}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        return _docs_asset(name)


def _add_gateway_docs(app: FastAPI, gateway: GatewayController) -> None:
    """The routes' OpenAPI document and its try-it page: public, like a published API Gateway export."""

    @app.get(f"{API}/gateway/openapi.json", include_in_schema=False)
    async def gateway_openapi() -> JSONResponse:
        return JSONResponse(routes_document(await gateway.list_routes()))

    @app.get(f"{API}/gateway/docs", include_in_schema=False)
    async def gateway_docs() -> HTMLResponse:
        return _swagger_page(f"{API}/gateway/openapi.json", "modelhost gateway")


class _Unauthorized(ModelhostError):
    status = 401
    code = "Unauthorized"

    def __init__(self) -> None:
        super().__init__("this API needs 'Authorization: Bearer <token>' (the token modelhost up was given)")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ModelhostError)
    async def modelhost_error(request: Request, exc: ModelhostError) -> JSONResponse:
        headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.code, "message": exc.message}, exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            if error["type"] == "json_invalid":  # its location is a character offset, not a field
                problems.append(f"body: malformed JSON at character {error['loc'][-1]}")
                continue
            where = ".".join(str(part) for part in error["loc"] if part != "body") or "body"
            problems.append(f"{where}: {error['msg']}")
        return JSONResponse({"error": "ValidationException", "message": "; ".join(problems)}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
        return JSONResponse({"error": code, "message": message}, exc.status_code, headers=exc.headers)


def _swagger_page(openapi_url: str, title: str) -> HTMLResponse:
    """Swagger UI for a document, its files served by this API (no CDN)."""
    return get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url=f"{API}/docs-assets/swagger-ui-bundle.js",
        swagger_css_url=f"{API}/docs-assets/swagger-ui.css",
        swagger_favicon_url=f"{API}/docs-assets/favicon.png",
    )


def _docs_asset(name: str) -> Response:
    """Swagger UI's files, shipped by fastapi-offline: the docs page works without a CDN."""
    import fastapi_offline

    folder = Path(fastapi_offline.__file__).parent / "static"
    media = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    path = folder / name
    if "/" in name or path.suffix not in media or not path.is_file():
        return JSONResponse({"error": "NotFound", "message": f"no docs asset {name!r}"}, 404)
    return Response(path.read_bytes(), media_type=media[path.suffix], headers={"cache-control": "max-age=86400"})
