"""The gateway: the user's routes on the platform's port, in front of functions and endpoints.

    METHOD /path/{param} ─► route match ─► API key (x-api-key) ─► rate limit (token bucket, 429)
        ─► function: an API Gateway proxy event ─► its instance's /invocations (functions/bridge.py)
              ◄─ the handler's value: {statusCode, headers, body} is honoured, anything else is the JSON body
        ─► endpoint: the body as an invocation (FrontDoor.handle)

A handler that raises is a 502 (``FunctionError``, the exception's type and message; the traceback
is in the function's log); one that outlives its timeout is a 504 (``FunctionTimeout``) and its
worker is recycled. Like the invocation path, everything here is callbacks on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson

from modelhost.control.gateway_resources import Cors, Route, TargetKind
from modelhost.control.resources import ApiKey
from modelhost.frontdoor.answers import render_route_error
from modelhost.frontdoor.proxy import FrontDoor, FrontDoorError, Respond, render
from modelhost.frontdoor.throttle import Buckets, retry_after
from modelhost.frontdoor.upstream import UpstreamError, UpstreamResponse, encode_request
from modelhost.runtime.deployment import Deployment
from modelhost.runtime.instance import Instance

log = logging.getLogger("modelhost.gateway")

_TEXT_TYPES = re.compile(rb"^(text/|application/(json|[\w.+-]*\+json|xml|x-www-form-urlencoded|javascript))")
_DROPPED_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_HEADER_TEXT = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class FunctionRuntime(Protocol):
    def route(self, endpoint: str) -> Deployment | None: ...

    def deployments(self) -> dict[str, Deployment]: ...


class Keys(Protocol):
    def key_for(self, presented: bytes) -> ApiKey | None: ...


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    parameters: dict[str, str]
    preflight: bool = False  # an OPTIONS request for a route with CORS: answered by the gateway itself


class CompiledRoutes:
    """Exact paths by dict lookup; templates by regex, the most literal segments first."""

    def __init__(self, routes: list[Route]) -> None:
        self._exact: dict[tuple[str, str], Route] = {}
        templates: list[tuple[int, str, re.Pattern[str], Route]] = []
        for route in routes:
            path = route.path.rstrip("/") or "/"
            if "{" not in path:
                self._exact[(route.method, path)] = route
                continue
            pattern = "".join(
                f"/(?P<{segment[1:-1]}>[^/]+)" if segment.startswith("{") else "/" + re.escape(segment)
                for segment in path.strip("/").split("/")
            )
            literal = sum(1 for segment in path.split("/") if segment and not segment.startswith("{"))
            templates.append((literal, route.method, re.compile(pattern + "$"), route))
        templates.sort(key=lambda item: -item[0])
        self._templates = templates
        self.validators: dict[str, Any] = {}  # route key ─► its compiled request schema
        for route in routes:
            if route.request_schema is not None:
                from jsonschema import Draft202012Validator

                self.validators[route.key] = Draft202012Validator(dict(route.request_schema))

    def match(self, method: str, path: str) -> RouteMatch | None:
        path = path.rstrip("/") or "/"
        for wanted in (method, "ANY"):
            route = self._exact.get((wanted, path))
            if route is not None:
                return RouteMatch(route, {})
        for _, route_method, pattern, route in self._templates:
            if route_method in (method, "ANY") and (found := pattern.match(path)) is not None:
                return RouteMatch(route, found.groupdict())
        return None

    def preflight(self, path: str) -> RouteMatch | None:
        """For OPTIONS on a path whose routes have CORS: the route that answers the preflight."""
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "ANY"):
            found = self.match(method, path)
            if found is not None and found.route.cors is not None:
                return RouteMatch(found.route, found.parameters, preflight=True)
        return None

    def methods_for(self, path: str) -> list[str]:
        found = [m for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD") if self.match(m, path) is not None]
        return [*found, "OPTIONS"]


class Gateway:
    def __init__(
        self,
        door: FrontDoor,
        functions: FunctionRuntime,
        function_state: Callable[[str], str | None],
        keys: Keys,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._door = door
        self._functions = functions
        self._function_state = function_state
        self._keys = keys
        self._routes = CompiledRoutes([])
        self._buckets = Buckets(clock)
        self._ids = itertools.count(1)
        self._id_prefix = f"gw{os.getpid():x}-"
        self.usage: collections.Counter[tuple[str, str]] = collections.Counter()  # (key name, route) ─► calls

    def replace_routes(self, routes: list[Route]) -> None:
        self._routes = CompiledRoutes(routes)

    def allowed_methods(self, path: str) -> list[str]:
        """The methods routes take on ``path`` (empty: no route has it): for a 405's Allow header."""
        methods = self._routes.methods_for(path)
        return methods if len(methods) > 1 else []

    def method_not_allowed(self, method: str, path: str) -> bytes:
        allowed = ", ".join(self.allowed_methods(path))
        request_id = f"{self._id_prefix}{next(self._ids):x}"
        error = FrontDoorError(
            405, "MethodNotAllowed", f"{path} takes {allowed}, not {method}", headers=[(b"allow", allowed.encode())]
        )
        return render_route_error(error, request_id)

    def match(self, method: str, path: str) -> RouteMatch | None:
        found = self._routes.match(method, path)
        if found is None and method == "OPTIONS":
            return self._routes.preflight(path)
        return found

    def handle(  # noqa: PLR0917 (called once per request by the protocol: positional on purpose)
        self,
        found: RouteMatch,
        method: str,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        respond: Respond,
    ) -> None:
        request_id = f"{self._id_prefix}{next(self._ids):x}"
        route = found.route
        origin = next((value for name, value in headers if name == b"origin"), None)
        if route.cors is not None and origin is not None:
            respond = _with_cors(respond, route.cors, origin.decode("latin-1"))
        try:
            if found.preflight:
                respond(self._preflight(found, url, origin, request_id))
                return
            key = self._authorize(route, headers)
            self._throttle(route, key)
            self._validate(route, headers, body)
            if key is not None:
                self.usage[(key.name, route.key)] += 1
            if route.target_kind is TargetKind.ENDPOINT:
                path = f"/endpoints/{route.target}/invocations"
                self._door.handle(b"POST", path, headers, body, respond)
                return
            self._call_function(
                found,
                method=method,
                url=url,
                headers=headers,
                body=body,
                request_id=request_id,
                key=key,
                respond=respond,
            )
        except FrontDoorError as exc:
            respond(render_route_error(exc, request_id))

    def _preflight(self, found: RouteMatch, url: bytes, origin: bytes | None, request_id: str) -> bytes:
        cors = found.route.cors
        assert cors is not None
        if origin is None or not cors.allows(origin.decode("latin-1")):
            raise FrontDoorError(403, "Forbidden", "This origin may not call the route (CORS).")
        path = url.partition(b"?")[0].decode("utf-8", "replace")
        headers = [
            (b"access-control-allow-methods", ", ".join(self._routes.methods_for(path)).encode()),
            (b"access-control-allow-headers", ", ".join(cors.allow_headers).encode()),
            (b"access-control-max-age", str(cors.max_age_s).encode()),
            (b"x-amzn-requestid", request_id.encode()),
        ]
        return render(204, headers, b"")

    def _validate(self, route: Route, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """The body against the route's JSON Schema, before anything runs: 400 naming the failing field."""
        validator = self._routes.validators.get(route.key)
        if validator is None:
            return
        content_type = next((value for name, value in headers if name == b"content-type"), b"application/json")
        media = content_type.split(b";", 1)[0].strip().lower()
        if media != b"application/json" and not media.endswith(b"+json"):
            raise FrontDoorError(
                415, "UnsupportedMediaType", f"{route.key} takes application/json, not {media.decode('latin-1')}"
            )
        try:
            document = orjson.loads(body or b"null")
        except orjson.JSONDecodeError as exc:
            raise FrontDoorError(400, "ValidationError", f"body: malformed JSON: {exc}") from None
        from jsonschema.exceptions import best_match

        error = best_match(validator.iter_errors(document))
        if error is not None:
            field = ".".join(str(part) for part in error.absolute_path)
            where = f"body.{field}" if field else "body"
            raise FrontDoorError(400, "ValidationError", f"{where}: {error.message}", field=field or None)

    def _authorize(self, route: Route, headers: list[tuple[bytes, bytes]]) -> ApiKey | None:
        presented = next((value for name, value in headers if name == b"x-api-key"), None)
        if not route.api_key_required:
            return self._keys.key_for(presented) if presented else None
        if not presented:
            raise FrontDoorError(401, "MissingAuthenticationToken", f"{route.key} requires an API key (x-api-key).")
        key = self._keys.key_for(presented)
        if key is None:
            raise FrontDoorError(403, "Forbidden", "This API key is not valid (unknown or revoked).")
        return key

    def _throttle(self, route: Route, key: ApiKey | None) -> None:
        """The key's own limit (over every route), then the route's (per key when keys are required)."""
        if key is not None and key.rate_per_s is not None and key.burst is not None:
            wait = self._buckets.take(("key", key.name), key.rate_per_s, key.burst)
            if wait > 0:
                raise FrontDoorError(
                    429,
                    "TooManyRequestsException",
                    f"Rate exceeded for API key {key.name}: {key.rate_per_s:g} requests a second, "
                    f"bursts of {key.burst}.",
                    headers=[(b"retry-after", str(retry_after(wait)).encode())],
                )
        limit = route.rate_limit
        if limit is None:
            return
        wait = self._buckets.take((route.key, key.name if key else None), limit.rate, limit.burst)
        if wait > 0:
            raise FrontDoorError(
                429,
                "TooManyRequestsException",
                f"Rate exceeded for {route.key}: {limit.rate:g} requests a second, bursts of {limit.burst}.",
                headers=[(b"retry-after", str(retry_after(wait)).encode())],
            )

    # -- functions ------------------------------------------------------------------------------------
    def _call_function(
        self,
        found: RouteMatch,
        *,
        method: str,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        request_id: str,
        key: ApiKey | None,
        respond: Respond,
    ) -> None:
        name = found.route.target
        deployment = self._functions.route(name)
        if deployment is None:
            state = self._function_state(name)
            raise FrontDoorError(
                503 if state in (None, "Pending") else 502,
                "ServiceUnavailable" if state in (None, "Pending") else "FunctionFailed",
                f"Function {name} is {state or 'not running'}; it has no instance to call."
                + (" Retry shortly." if state in (None, "Pending") else f" See `modelhost function logs {name}`."),
            )
        event = proxy_event(found, method=method, url=url, headers=headers, body=body, request_id=request_id, key=key)
        request = encode_request(
            b"POST",
            b"/invocations",
            [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode())],
            orjson.dumps(event),
        )
        call = _FunctionCall(self, name, deployment, request, request_id, respond)
        call.send()

    async def expire_overdue_forever(self, every_s: float = 1.0) -> None:
        """Calls a function instance did not answer in time (beyond its own 504) are aborted."""
        while True:
            await asyncio.sleep(every_s)
            now = time.monotonic()
            for deployment in self._functions.deployments().values():
                for instance in deployment.instances:
                    for pool in instance.pools:
                        pool.expire_overdue(now)


RETRY_BUSY_S = 0.35  # a worker replaced after a timeout answers 503 "retry"; its successor is up by then
RETRIES = 2


class _FunctionCall:
    __slots__ = ("deployment", "gateway", "name", "request", "request_id", "respond", "retries", "tried")

    def __init__(  # noqa: PLR0917 (built once per call on the hot path: positional on purpose)
        self, gateway: Gateway, name: str, deployment: Deployment, request: bytes, request_id: str, respond: Respond
    ) -> None:
        self.gateway, self.name, self.deployment = gateway, name, deployment
        self.request, self.request_id, self.respond = request, request_id, respond
        self.tried: list[Instance] = []
        self.retries = 0

    def send(self) -> None:
        picked = self.deployment.variants[0].pick(exclude=self.tried)
        if picked is None:
            error = FrontDoorError(503, "ServiceUnavailable", f"Function {self.name}: no instance is healthy.")
            self.respond(render_route_error(error, self.request_id))
            return
        instance, pool = picked
        self.tried.append(instance)
        timeout_s = float(instance.spec.model.environment.get("MODELHOST_TIMEOUT", "30")) + 5.0
        pool.send(self.request, timeout_s, self.answered, self.failed)

    def answered(self, response: UpstreamResponse) -> None:
        if response.status == 503 and self.retries < RETRIES:  # its worker is being replaced: once more, later
            self.retries += 1
            self.tried.clear()
            asyncio.get_running_loop().call_later(RETRY_BUSY_S, self.send)
            return
        try:
            self.respond(function_response(self.name, response, self.request_id))
        except FrontDoorError as exc:
            self.respond(render_route_error(exc, self.request_id))

    def failed(self, error: UpstreamError) -> None:
        if not error.answered:
            self.send()
            return
        lost = FrontDoorError(502, "FunctionError", f"Function {self.name}: its instance failed: {error.message}")
        self.respond(render_route_error(lost, self.request_id))


def _with_cors(respond: Respond, cors: Cors, origin: str) -> Respond:
    """``respond`` with the CORS headers the browser needs added to whatever the answer is."""
    if not cors.allows(origin):
        return respond
    allowed = "*" if "*" in cors.allow_origins and not cors.allow_credentials else origin
    lines = [f"access-control-allow-origin: {allowed}", "vary: Origin"]
    if cors.expose_headers:
        lines.append(f"access-control-expose-headers: {', '.join(cors.expose_headers)}")
    if cors.allow_credentials:
        lines.append("access-control-allow-credentials: true")
    extra = ("\r\n".join(lines) + "\r\n").encode("latin-1")

    def with_headers(data: bytes) -> None:
        end_of_status = data.find(b"\r\n") + 2
        respond(data[:end_of_status] + extra + data[end_of_status:] if end_of_status > 1 else data)

    return with_headers


# -- the event and the answer --------------------------------------------------------------------------
def proxy_event(
    found: RouteMatch,
    *,
    method: str,
    url: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    request_id: str,
    key: ApiKey | None,
) -> dict[str, Any]:
    """API Gateway's Lambda proxy event (payload format 1.0), as the seeds' handlers read it."""
    path_bytes, _, query_bytes = url.partition(b"?")
    path = path_bytes.decode("utf-8", "replace")
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    content_type = b""
    for name, value in headers:
        text_name, text_value = name.decode("latin-1"), value.decode("latin-1")
        single[text_name] = text_value
        multi.setdefault(text_name, []).append(text_value)
        if name == b"content-type":
            content_type = value.lower()
    query_single: dict[str, str] = {}
    query_multi: dict[str, list[str]] = {}
    for field, text in parse_qsl(query_bytes.decode("utf-8", "replace"), keep_blank_values=True):
        query_single[field] = text
        query_multi.setdefault(field, []).append(text)
    encoded = False
    text_body: str | None = None
    if body:
        try:
            text_body = body.decode("utf-8") if (not content_type or _TEXT_TYPES.match(content_type)) else None
        except UnicodeDecodeError:
            text_body = None
        if text_body is None:
            text_body, encoded = base64.b64encode(body).decode(), True
    route = found.route
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": query_single or None,
        "multiValueQueryStringParameters": query_multi or None,
        "pathParameters": found.parameters or None,
        "stageVariables": None,
        "requestContext": {
            "requestId": request_id,
            "resourcePath": route.path,
            "httpMethod": method,
            "path": path,
            "stage": "$default",
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"apiKey": key.key_prefix + "…" if key else None, "apiKeyId": key.name if key else None},
        },
        "body": text_body,
        "isBase64Encoded": encoded,
    }


def function_response(name: str, response: UpstreamResponse, request_id: str) -> bytes:
    """The instance's answer as the client's: a proxy response honoured, any other value as JSON."""
    if response.status == 504:
        raise FrontDoorError(504, "FunctionTimeout", f"Function {name} did not answer within its timeout.")
    if response.status >= 400:
        message = _message_of(response.body)
        if response.status == 503:
            raise FrontDoorError(503, "ServiceUnavailable", f"Function {name} is not ready: {message}")
        raise FrontDoorError(502, "FunctionError", f"Function {name} raised {message}")
    try:
        value = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        raise FrontDoorError(502, "FunctionError", f"Function {name} answered with something not JSON") from None
    request_header = (b"x-amzn-requestid", request_id.encode())
    if not (isinstance(value, dict) and "statusCode" in value):
        return render(200, [(b"content-type", b"application/json"), request_header], response.body)
    return _proxy_response(name, value, request_header)


def _proxy_response(name: str, value: dict[str, Any], request_header: tuple[bytes, bytes]) -> bytes:
    status = value.get("statusCode")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise FrontDoorError(502, "FunctionError", f"Function {name} returned statusCode {status!r}: not 100-599")
    headers: list[tuple[bytes, bytes]] = []
    given = [(k, v) for k, v in (value.get("headers") or {}).items()]
    for k, values in (value.get("multiValueHeaders") or {}).items():
        given += [(k, v) for v in (values if isinstance(values, list) else [values])]
    for header, header_value in given:
        text = str(header_value) if not isinstance(header_value, str) else header_value
        if not isinstance(header, str) or not _TOKEN.fullmatch(header) or not _HEADER_TEXT.fullmatch(text):
            raise FrontDoorError(502, "FunctionError", f"Function {name} returned a malformed header {header!r}")
        if header.lower() not in _DROPPED_RESPONSE_HEADERS:
            headers.append((header.lower().encode(), text.encode("latin-1", "replace")))
    body_value = value.get("body")
    if body_value is None:
        body = b""
    elif not isinstance(body_value, str):
        raise FrontDoorError(502, "FunctionError", f"Function {name} returned a body that is not a string")
    elif value.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body_value, validate=True)
        except ValueError:
            raise FrontDoorError(502, "FunctionError", f"Function {name} returned a body that is not base64") from None
    else:
        body = body_value.encode()
    if body and not any(k == b"content-type" for k, _ in headers):
        headers.append((b"content-type", b"application/json"))
    headers.append(request_header)
    return render(status, headers, body)


def _message_of(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")[:500]
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return str(parsed["message"])
    return body.decode("utf-8", "replace")[:500]
