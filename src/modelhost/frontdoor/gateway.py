"""The gateway: the user's routes on the platform's port, in front of functions and endpoints.

    METHOD /path/{param} ─► route match ─► CORS preflight? answered here (no key, no function)
        ─► API key (x-api-key) ─► rate limits (the key's and the route's: both or neither, 429)
        ─► function: an API Gateway proxy event (lambda_proxy.py) ─► its instance's /invocations
              (functions/bridge.py)
              ◄─ the handler's value: {statusCode, headers, body} is honoured, anything else is the JSON body
        ─► endpoint: the body as an invocation (FrontDoor.handle)

A handler that raises is a 502 (``FunctionError``, the exception's type and message; the traceback
is in the function's log); one that outlives its timeout is a 504 (``FunctionTimeout``) and its
worker is recycled. Like the invocation path, everything here is callbacks on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

import orjson

from modelhost.control.gateway_resources import Cors, Route, TargetKind, compile_schema
from modelhost.control.resources import ApiKey
from modelhost.errors import ValidationFailed
from modelhost.frontdoor.answers import render_route_error
from modelhost.frontdoor.lambda_proxy import RouteRequest, function_response, header, proxy_event
from modelhost.frontdoor.proxy import FrontDoor, FrontDoorError, Respond, render
from modelhost.frontdoor.throttle import Buckets, Demand, retry_after
from modelhost.frontdoor.upstream import UpstreamError, UpstreamResponse, encode_request
from modelhost.runtime.deployment import Deployment
from modelhost.runtime.instance import Instance

log = logging.getLogger("modelhost.gateway")


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
        self.unusable: dict[str, str] = {}  # route key ─► why its schema cannot be applied (a 500 per request)
        for route in routes:
            if route.request_schema is not None:
                self._compile(route.key, route.request_schema)

    def _compile(self, key: str, schema: Mapping[str, Any]) -> None:
        """A route's schema compiled once, never fetching; one that cannot be is its requests' 500, not ours."""
        try:
            self.validators[key] = compile_schema(schema)
        except ValidationFailed as exc:  # a route stored before the API checked this (the store loads it)
            log.error("route %s: its request schema cannot be applied: %s", key, exc.message)
            self.unusable[key] = exc.message

    def match(self, method: str, path: str) -> RouteMatch | None:
        path = path.rstrip("/") or "/"
        for wanted in (method, "ANY"):
            route = self._exact.get((wanted, path))
            if route is not None:
                return RouteMatch(route, {})
        for _, route_method, pattern, route in self._templates:
            if route_method in (method, "ANY") and (found := pattern.match(path)) is not None:
                return RouteMatch(route, {name: _decoded(value) for name, value in found.groupdict().items()})
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


def _first_error(key: str, validator: Any, document: Any) -> Any:
    """The most relevant of ``document``'s errors, or None; a validator that fails itself is a 500 JSON answer.

    The schema was checked when the route was made, so this is a bug or a schema (say, a deep
    ``$ref`` chain) that only some bodies reach: the caller still gets an answer.
    """
    from jsonschema.exceptions import best_match

    try:
        return best_match(validator.iter_errors(document))
    except Exception:
        log.exception("route %s: its request schema failed on a body", key)
        raise FrontDoorError(500, "InternalFailure", f"{key}: its request schema could not be applied.") from None


def _decoded(segment: str) -> str:
    """A path parameter as API Gateway passes it: percent-decoded (UTF-8); the path itself stays raw.

    The protocol gives the path as latin-1 text of the raw bytes, so that is undone first.
    """
    return unquote_to_bytes(segment.encode("latin-1")).decode("utf-8", "replace")


def is_preflight(method: str, route: Route, headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """A browser's CORS preflight for a route with CORS, which the gateway answers itself.

    OPTIONS with Origin and Access-Control-Request-Method, on a route that does not take OPTIONS
    by name: an ANY route's preflight is not its function's business (nor does it need a key).
    """
    return (
        method == "OPTIONS"
        and route.cors is not None
        and route.method != "OPTIONS"
        and header(headers, b"origin") is not None
        and header(headers, b"access-control-request-method") is not None
    )


def cors_headers(cors: Cors | None, origin: bytes | None) -> list[tuple[bytes, bytes]]:
    """What a browser needs to read an answer from a route with ``cors`` for ``origin``; [] if it may not."""
    if cors is None or origin is None:
        return []
    text = origin.decode("latin-1")
    if not cors.allows(text):
        return []
    allowed = "*" if "*" in cors.allow_origins and not cors.allow_credentials else text
    found = [(b"access-control-allow-origin", allowed.encode("latin-1")), (b"vary", b"Origin")]
    if cors.expose_headers:
        found.append((b"access-control-expose-headers", ", ".join(cors.expose_headers).encode("latin-1")))
    if cors.allow_credentials:
        found.append((b"access-control-allow-credentials", b"true"))
    return found


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

    def method_not_allowed(self, method: str, path: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
        """The 405 for a path routes take with other methods, readable by a browser its CORS allows."""
        allowed = ", ".join(self.allowed_methods(path))
        request_id = f"{self._id_prefix}{next(self._ids):x}"
        cors = self._routes.preflight(path)
        extra = cors_headers(cors.route.cors if cors is not None else None, header(headers, b"origin"))
        error = FrontDoorError(
            405,
            "MethodNotAllowed",
            f"{path} takes {allowed}, not {method}",
            headers=[(b"allow", allowed.encode()), *extra],
        )
        return render_route_error(error, request_id)

    def refusal(
        self, found: RouteMatch, headers: Sequence[tuple[bytes, bytes]], error: FrontDoorError
    ) -> FrontDoorError:
        """``error`` (refused by the protocol, e.g. a 413) with the route's CORS headers, so a browser sees it."""
        extra = cors_headers(found.route.cors, header(headers, b"origin"))
        if extra:
            error.headers = [*(error.headers or []), *extra]
        return error

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
        *,
        names: Sequence[bytes] = (),
        source_ip: str = "",
    ) -> None:
        """One request for a route. ``headers`` have lowercase names (the gateway looks them up so);
        ``names`` are those names as the client sent them, for the event; ``source_ip`` is the peer's."""
        request_id = f"{self._id_prefix}{next(self._ids):x}"
        route = found.route
        origin = header(headers, b"origin")
        if extra := cors_headers(route.cors, origin):
            respond = _with_headers(respond, extra)
        try:
            if found.preflight or is_preflight(method, route, headers):
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
                RouteRequest(found, method, url, headers, body, request_id, key, names, source_ip), respond
            )
        except FrontDoorError as exc:
            respond(render_route_error(exc, request_id))
        except Exception:  # a bug of ours: the caller still gets an answer, the connection is kept
            log.exception("route %s: request %s failed", route.key, request_id)
            respond(render_route_error(FrontDoorError(500, "InternalFailure", "The gateway failed."), request_id))

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
            if route.key in self._routes.unusable:
                raise FrontDoorError(500, "InternalFailure", f"{route.key}: its request schema cannot be applied.")
            return
        content_type = header(headers, b"content-type") or b"application/json"
        media = content_type.split(b";", 1)[0].strip().lower()
        if media != b"application/json" and not media.endswith(b"+json"):
            raise FrontDoorError(
                415, "UnsupportedMediaType", f"{route.key} takes application/json, not {media.decode('latin-1')}"
            )
        try:
            document = orjson.loads(body or b"null")
        except orjson.JSONDecodeError as exc:
            raise FrontDoorError(400, "ValidationError", f"body: malformed JSON: {exc}") from None
        error = _first_error(route.key, validator, document)
        if error is not None:
            field = ".".join(str(part) for part in error.absolute_path)
            where = f"body.{field}" if field else "body"
            raise FrontDoorError(400, "ValidationError", f"{where}: {error.message}", field=field or None)

    def _authorize(self, route: Route, headers: list[tuple[bytes, bytes]]) -> ApiKey | None:
        presented = header(headers, b"x-api-key")
        if not route.api_key_required:
            return self._keys.key_for(presented) if presented else None
        if not presented:
            raise FrontDoorError(401, "MissingAuthenticationToken", f"{route.key} requires an API key (x-api-key).")
        key = self._keys.key_for(presented)
        if key is None:
            raise FrontDoorError(403, "Forbidden", "This API key is not valid (unknown or revoked).")
        return key

    def _throttle(self, route: Route, key: ApiKey | None) -> None:
        """The key's own limit (over every route) and the route's: a token from each, or from neither.

        The route's bucket is per key only when the route requires keys; otherwise it is the route's
        alone, so presenting a key (any key) does not get a caller a bucket of its own.
        """
        limits: dict[Demand, str] = {}  # what each bucket's 429 says
        if key is not None and key.rate_per_s is not None and key.burst is not None:
            said = f"API key {key.name}: {key.rate_per_s:g} requests a second, bursts of {key.burst}"
            limits[Demand(("key", key.name), key.rate_per_s, key.burst)] = said
        if (limit := route.rate_limit) is not None:
            per_key = key.name if key is not None and route.api_key_required else None
            said = f"{route.key}: {limit.rate:g} requests a second, bursts of {limit.burst}"
            limits[Demand((route.key, per_key), limit.rate, limit.burst)] = said
        refused = self._buckets.take_all(list(limits)) if limits else None
        if refused is None:
            return
        message = f"Rate exceeded for {limits[refused.demand]}."
        raise FrontDoorError(
            429,
            "TooManyRequestsException",
            message,
            headers=[(b"retry-after", str(retry_after(refused.wait_s)).encode())],
        )

    # -- functions ------------------------------------------------------------------------------------
    def _call_function(self, request: RouteRequest, respond: Respond) -> None:
        name = request.found.route.target
        deployment = self._functions.route(name)
        if deployment is None:
            state = self._function_state(name)
            raise FrontDoorError(
                503 if state in (None, "Pending") else 502,
                "ServiceUnavailable" if state in (None, "Pending") else "FunctionFailed",
                f"Function {name} is {state or 'not running'}; it has no instance to call."
                + (" Retry shortly." if state in (None, "Pending") else f" See `modelhost function logs {name}`."),
            )
        encoded = encode_request(
            b"POST",
            b"/invocations",
            [(b"content-type", b"application/json"), (b"x-request-id", request.request_id.encode())],
            orjson.dumps(proxy_event(request)),
        )
        call = _FunctionCall(self, name, deployment, encoded, request.request_id, respond)
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


def _with_headers(respond: Respond, extra: list[tuple[bytes, bytes]]) -> Respond:
    """``respond`` with ``extra`` headers (CORS's) added to whatever the answer is."""
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in extra)

    def with_headers(data: bytes) -> None:
        end_of_status = data.find(b"\r\n") + 2
        respond(data[:end_of_status] + lines + data[end_of_status:] if end_of_status > 1 else data)

    return with_headers
