"""The OpenAPI 3.1 document of the user's routes, and the page where a person can try them.

Served at ``/api/v1/gateway/openapi.json`` and ``/api/v1/gateway/docs`` without the management
token: it is the gateway's published interface, what API Gateway's exported document is. Request
schemas are JSON Schema 2020-12, which OpenAPI 3.1 takes as it is; routes that need a key carry
an ``x-api-key`` security requirement, so the docs page asks for the key before "Try it out".
"""

from __future__ import annotations

import re
from typing import Any

from modelhost import __version__
from modelhost.control.gateway_resources import Route, TargetKind

_EXPANDED = ("get", "post", "put", "patch", "delete")
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "the error's type, also in x-amzn-ErrorType"},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        "field": {"type": ["string", "null"], "description": "the body field a schema check failed on"},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    return f"{method}_{words}"


def _operation(route: Route, method: str) -> dict[str, Any]:
    target = "function" if route.target_kind is TargetKind.FUNCTION else "endpoint"
    operation: dict[str, Any] = {
        "operationId": _operation_id(method, route.path),
        "summary": route.summary or f"{route.method} {route.path} ({target} {route.target})",
        "tags": [route.target],
        "responses": {
            "200": {"description": f"the {target}'s answer", "content": {"application/json": {"schema": {}}}},
            "400": _error("the body is not valid (malformed, or fails the route's schema)"),
            "413": _error("the body is larger than the route allows"),
            "429": {
                **_error("too many requests: the route's rate limit"),
                "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
            },
            "502": _error(f"the {target} failed"),
            "503": _error(f"the {target} is not ready yet"),
            "504": _error(f"the {target} did not answer in time"),
        },
    }
    parameters = [
        {"name": name[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.path.split("/")
        if name.startswith("{")
    ]
    if parameters:
        operation["parameters"] = parameters
    if method not in ("get", "head", "delete"):
        media: dict[str, Any] = {"schema": dict(route.request_schema) if route.request_schema is not None else {}}
        if route.example is not None:
            media["example"] = route.example
        operation["requestBody"] = {
            "required": route.request_schema is not None,
            "content": {"application/json": media},
        }
    if route.api_key_required:
        operation["security"] = [{"apiKey": []}]
        operation["responses"]["401"] = _error("no API key (x-api-key)")
        operation["responses"]["403"] = _error("the API key is unknown or revoked")
    return operation


def routes_document(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        methods = _EXPANDED if route.method == "ANY" else (route.method.lower(),)
        item = paths.setdefault(route.path, {})
        for method in methods:
            if method == "options":
                continue
            item[method] = _operation(route, method)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelhost gateway",
            "version": __version__,
            "description": "The routes of this modelhost platform: functions and endpoints behind HTTP paths.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA},
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
    }
