"""The OpenAPI 3.1 document of the user's routes, and the page where a person can try them.

Served at ``/api/v1/gateway/openapi.json`` and ``/api/v1/gateway/docs`` without the management
token: it is the gateway's published interface, what API Gateway's exported document is. Request
and response schemas are JSON Schema 2020-12, which OpenAPI 3.1 takes as it is; routes that need a
key carry an ``x-api-key`` security requirement, so the docs page asks for the key before "Try it out".

Each operation's ``operationId`` is unique in the document and depends only on its method and
path, so client code generated from one document keeps working with the next.
"""

from __future__ import annotations

import collections
import hashlib
import re
from typing import Any

from modelhost import __version__
from modelhost.control.gateway_resources import Route, TargetKind

_EXPANDED = ("get", "post", "put", "patch", "delete")  # what ANY stands for here (HEAD and OPTIONS: implied)
_ORDER = ("get", "head", "post", "put", "patch", "delete")  # of the methods of a path in the document
_ENDPOINT_TEXT_TYPES = ("text/csv", "application/jsonlines", "text/plain")
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


def readable_operation_id(method: str, path: str) -> str:
    """``post_v1_items_id`` for POST /v1/items/{id}: what a code generator makes a method name of."""
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    return f"{method.lower()}_{words}"


def operation_ids(operations: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """A unique id for each (method, path): the readable one, plus a digest of the exact method and
    path where paths differ only in punctuation or parameters (``/v1/a-b`` and ``/v1/a_b``)."""
    readable = {operation: readable_operation_id(*operation) for operation in operations}
    shared = collections.Counter(readable.values())
    ids = {op: name if shared[name] == 1 else f"{name}_{_digest(*op)}" for op, name in readable.items()}
    if len(set(ids.values())) < len(ids):  # a digested id met a plain one (a literal path spelling it out)
        ids = {op: f"{name}_{_digest(*op)}" for op, name in readable.items()}
    return ids


def _digest(method: str, path: str) -> str:
    return hashlib.sha256(f"{method.upper()} {path}".encode()).hexdigest()[:8]


def _answer(route: Route) -> dict[str, Any]:
    """The 200: the route's response schema and example when it has them, else any JSON."""
    media: dict[str, Any] = {"schema": dict(route.response_schema) if route.response_schema is not None else {}}
    if route.response_example is not None:
        media["example"] = route.response_example
    if route.target_kind is TargetKind.ENDPOINT:
        description = "the endpoint's answer, as the model returns it (Accept chooses its type)"
    else:
        description = "the function's answer: the body it returned (a proxy response sets status and headers)"
    return {"description": description, "content": {"application/json": media}}


def _responses(route: Route, target: str) -> dict[str, Any]:
    """What the platform itself may answer: each status the gateway or the target can produce."""
    if route.request_schema is not None:
        invalid = "the body is malformed JSON or does not satisfy the route's schema (field names the place)"
    elif route.target_kind is TargetKind.ENDPOINT:
        invalid = "the endpoint refused the input (SageMaker's ValidationError)"
    else:
        invalid = "the request is malformed"
    responses: dict[str, Any] = {"200": _answer(route), "400": _error(invalid)}
    if route.api_key_required:
        responses["401"] = _error("no API key (x-api-key)")
        responses["403"] = _error("the API key is unknown or revoked")
    responses["413"] = _error(f"the body is larger than the route allows ({route.max_body_bytes} bytes)")
    if route.request_schema is not None:
        responses["415"] = _error("the body is not JSON (Content-Type application/json or +json)")
    elif route.target_kind is TargetKind.ENDPOINT:
        responses["415"] = _error("the endpoint does not take this Content-Type")
    responses["429"] = {
        **_error("too many requests: the route's rate limit, or the API key's own"),
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
    }
    responses["502"] = _error(f"the {target} failed")
    responses["503"] = _error(f"the {target} is not ready yet")
    responses["504"] = _error(f"the {target} did not answer in time")
    return responses


def _operation(route: Route, method: str, operation_id: str) -> dict[str, Any]:
    target = "function" if route.target_kind is TargetKind.FUNCTION else "endpoint"
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": route.summary or f"{route.method} {route.path} ({target} {route.target})",
        "tags": [route.target],
        "responses": _responses(route, target),
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
        content: dict[str, Any] = {"application/json": media}
        if route.target_kind is TargetKind.ENDPOINT and route.request_schema is None:
            # the model server's other media types, passed to the endpoint as they are
            content.update({media_type: {"schema": {"type": "string"}} for media_type in _ENDPOINT_TEXT_TYPES})
            content["application/x-npy"] = {"schema": {"type": "string", "contentMediaType": "application/x-npy"}}
        operation["requestBody"] = {"required": route.request_schema is not None, "content": content}
    if route.api_key_required:
        operation["security"] = [{"apiKey": []}]
    return operation


def _operations(routes: list[Route]) -> dict[tuple[str, str], Route]:
    """(method, path) ─► the route that answers it; a route's own method wins over an ANY on its path."""
    found: dict[tuple[str, str], Route] = {}
    for route in sorted(routes, key=lambda r: r.method != "ANY"):  # ANY first, so exact methods overwrite it
        methods = _EXPANDED if route.method == "ANY" else (route.method.lower(),)
        for method in methods:
            if method != "options":  # preflights are the gateway's (CORS), not an operation
                found[(method, route.path)] = route
    return found


def routes_document(routes: list[Route]) -> dict[str, Any]:
    """The document of ``routes``: the same routes give the same document, whatever their order."""
    operations = _operations(routes)
    ids = operation_ids(list(operations))
    paths: dict[str, dict[str, Any]] = {}
    for method, path in sorted(operations, key=lambda operation: (operation[1], _ORDER.index(operation[0]))):
        paths.setdefault(path, {})[method] = _operation(operations[(method, path)], method, ids[(method, path)])
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
