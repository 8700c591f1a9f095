"""``POST /endpoints/{name}/invocations``: SageMaker's runtime path, in front of every endpoint's instances.

    read the body (size limit) ─► the endpoint's deployment ─► a variant (weights, or
    X-Amzn-SageMaker-Target-Variant) ─► its least-busy healthy instance ─► the model server's
    /invocations ─► the answer, with X-Amzn-Invoked-Production-Variant

Errors are shaped as SageMaker's runtime shapes them, so boto3 reads them: the type in
``x-amzn-ErrorType``; a model's own error becomes ``ModelError`` (424) carrying the original
status and message; an unknown endpoint or variant is a ``ValidationError`` (400).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import orjson

from modelhost.frontdoor.upstream import UpstreamError, encode_request
from modelhost.runtime.deployment import Deployment
from modelhost.runtime.instance import Instance

log = logging.getLogger("modelhost.frontdoor")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PREFIX = "/endpoints/"
SUFFIX = "/invocations"
_FORWARDED = {
    b"content-type": b"content-type",
    b"accept": b"accept",
    b"x-amzn-sagemaker-custom-attributes": b"x-amzn-sagemaker-custom-attributes",
    b"x-amzn-sagemaker-target-model": b"x-amzn-sagemaker-target-model",
}
_RETURNED = (b"content-type", b"x-amzn-sagemaker-custom-attributes")
_PRINTABLE = re.compile(r"[^\x21-\x7e]")
_JSON = b"application/json"


class RouteTable(Protocol):
    def route(self, endpoint: str) -> Deployment | None: ...

    def deployments(self) -> dict[str, Deployment]: ...


class FrontDoorError(Exception):
    def __init__(self, status: int, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields


class FrontDoor:
    def __init__(
        self,
        routes: RouteTable,
        endpoint_status: Callable[[str], str | None],
        *,
        max_payload_bytes: int = 6 * 1024 * 1024,
        timeout_s: float = 70.0,
    ) -> None:
        self._routes = routes
        self._endpoint_status = endpoint_status  # what the control plane knows of a name without a route
        self._max_payload_bytes = max_payload_bytes
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._id_prefix = f"fd{os.getpid():x}-"

    @staticmethod
    def endpoint_name(path: str) -> str | None:
        if path.startswith(PREFIX) and path.endswith(SUFFIX):
            name = path[len(PREFIX) : -len(SUFFIX)]
            return name if name and "/" not in name else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = self.endpoint_name(scope["path"]) or ""
        request_id = ""
        try:
            forwarded: list[tuple[bytes, bytes]] = []
            target_variant = None
            length = -1
            for key, value in scope["headers"]:
                if key in _FORWARDED:
                    forwarded.append((key, value))
                elif key == b"content-length":
                    length = int(value) if value.isdigit() else -1
                elif key == b"x-amzn-sagemaker-target-variant":
                    target_variant = value.decode("latin-1")
                elif key in (b"x-amzn-sagemaker-inference-id", b"x-request-id"):
                    request_id = _PRINTABLE.sub("", value.decode("latin-1"))[:128]
            request_id = request_id or f"{self._id_prefix}{next(self._ids):x}"
            forwarded.append((b"x-request-id", request_id.encode()))
            if scope["method"] != "POST":
                raise FrontDoorError(405, "MethodNotAllowed", f"use POST {PREFIX}{name}{SUFFIX}")
            if length > self._max_payload_bytes:
                raise FrontDoorError(413, "ValidationError", self._too_large())
            body = await self._read_body(receive)
            await self._invoke(
                name, target_variant=target_variant, headers=forwarded, body=body, request_id=request_id, send=send
            )
        except FrontDoorError as exc:
            await self._error(send, exc, request_id)

    async def _invoke(
        self,
        name: str,
        *,
        target_variant: str | None,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        request_id: str,
        send: Send,
    ) -> None:
        deployment = self._routes.route(name)
        if deployment is None:
            status = self._endpoint_status(name)
            if status is None:
                raise FrontDoorError(400, "ValidationError", f"Endpoint {name} not found.")
            raise FrontDoorError(503, "ServiceUnavailable", f"Endpoint {name} is {status}; it is not serving yet.")
        if target_variant is None:
            variant = deployment.choose_variant()
        else:
            found = deployment.variant(target_variant)
            if found is None:
                names = ", ".join(v.name for v in deployment.variants)
                raise FrontDoorError(
                    400, "ValidationError", f"Endpoint {name} has no variant {target_variant!r} (it has {names})."
                )
            variant = found
        request = encode_request(b"POST", b"/invocations", headers, body)
        tried: list[Instance] = []
        while True:
            instance = variant.pick_instance(exclude=tried)
            pool = instance.pool if instance is not None else None
            if instance is None or pool is None:
                raise FrontDoorError(
                    503, "ServiceUnavailable", f"Endpoint {name}: no instance of variant {variant.name} is healthy."
                )
            tried.append(instance)
            try:
                response = await pool.request(request, self._timeout_s)
            except UpstreamError as exc:
                if exc.answered:
                    raise FrontDoorError(
                        503, "ServiceUnavailable", f"Endpoint {name}: the instance stopped before answering: {exc}"
                    ) from exc
                continue  # could not reach it: another instance of the variant, if there is one
            break
        if response.status >= 400:
            raise self._model_error(name, variant.name, response.status, response.body)
        out = [(key, value) for key, value in response.headers if key in _RETURNED]
        out.append((b"x-amzn-invoked-production-variant", variant.name.encode()))
        out.append((b"x-amzn-requestid", request_id.encode()))
        out.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": out})
        await send({"type": "http.response.body", "body": response.body})

    async def expire_overdue_forever(self, every_s: float = 1.0) -> None:
        """One sweep a second aborts requests an instance did not answer in time (no timer per request)."""
        while True:
            await asyncio.sleep(every_s)
            now = time.monotonic()
            for deployment in self._routes.deployments().values():
                for instance in deployment.instances:
                    if instance.pool is not None:
                        instance.pool.expire_overdue(now)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise FrontDoorError(408, "ValidationError", "the request body did not arrive")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_payload_bytes:
                raise FrontDoorError(413, "ValidationError", self._too_large())
            if not message.get("more_body"):
                return chunk if not chunks else b"".join([*chunks, chunk])
            chunks.append(chunk)

    def _too_large(self) -> str:
        return f"the request body is larger than the limit of {self._max_payload_bytes / 1024 / 1024:g} MB"

    @staticmethod
    def _model_error(name: str, variant: str, status: int, body: bytes) -> FrontDoorError:
        original = body.decode("utf-8", "replace")
        kind = "client" if status < 500 else "server"
        message = (
            f'Received {kind} error ({status}) from variant {variant} with message "{original}". '
            f"See `modelhost logs {name}` for more information."
        )
        return FrontDoorError(424, "ModelError", message, OriginalStatusCode=status, OriginalMessage=original)

    @staticmethod
    async def _error(send: Send, error: FrontDoorError, request_id: str) -> None:
        body = orjson.dumps({"error": error.code, "message": error.message, **error.fields, "request_id": request_id})
        headers = [
            (b"content-type", _JSON),
            (b"content-length", str(len(body)).encode()),
            (b"x-amzn-errortype", error.code.encode()),
            (b"x-amzn-requestid", request_id.encode()),
        ]
        if error.status == 405:
            headers.append((b"allow", b"POST"))
        if error.status == 503:
            headers.append((b"retry-after", b"1"))
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
