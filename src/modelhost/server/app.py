"""The model server's HTTP surface, as a plain ASGI app: SageMaker's container contract.

    GET  /ping                   200 once the model is loaded (a worker exists only after that)
    POST /invocations            decode -> batch -> predict -> encode
    GET  /execution-parameters   what SageMaker batch transform asks a container

Handlers only parse and render; the batcher and the pipeline do the work. Written against raw
ASGI rather than a framework because this is the hot path and has three routes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelhost.errors import InvocationError, PayloadTooLarge, RequestTimeout
from modelhost.inference.types import Invocation, Rendered
from modelhost.server.batcher import AdaptiveBatcher
from modelhost.server.responses import JSON, error_body, json_body

log = logging.getLogger("modelhost.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PING_BODY = json_body({"status": "Healthy"})
_PRINTABLE = re.compile(r"[^\x21-\x7e]")  # what a client's request id may keep: it is echoed in a header


class ModelServerApp:
    def __init__(
        self,
        batcher: AdaptiveBatcher,
        *,
        timeout_s: float,
        read_timeout_s: float,
        max_payload_bytes: int,
        execution_parameters: dict[str, Any],
    ) -> None:
        self.batcher = batcher
        self._timeout_s = timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_payload_bytes = max_payload_bytes
        self._execution_parameters = json_body(execution_parameters)
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}-"
        self._clock = asyncio.get_running_loop().time

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/invocations":
            if method != "POST":
                body = error_body("MethodNotAllowed", "use POST /invocations")
                await _respond(send, 405, body, JSON, extra=[(b"allow", b"POST")])
                return
            await self._invocations(scope, receive, send)
        elif path == "/ping":
            await _respond(send, 200, _PING_BODY, JSON)
        elif path == "/execution-parameters":
            await _respond(send, 200, self._execution_parameters, JSON)
        else:
            await _respond(send, 404, error_body("NotFound", f"no route {method} {path}"), JSON)

    async def _invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = accept = attributes = request_id = None
        length = -1
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"x-amzn-sagemaker-custom-attributes":
                attributes = value.decode("latin-1")
            elif name in (b"x-request-id", b"x-amzn-sagemaker-inference-id"):
                request_id = _PRINTABLE.sub("", value.decode("latin-1"))[:128] or None
        request_id = request_id or f"{self._id_prefix}{next(self._ids):x}"
        deadline = self._clock() + self._timeout_s

        self.batcher.announce()
        try:
            if length > self._max_payload_bytes:
                raise PayloadTooLarge(self._too_large())
            body = await self._read_body(receive)
        except InvocationError as exc:
            self.batcher.withdraw()
            await _respond(
                send, exc.status, error_body(exc.code, exc.message, request_id), JSON, request_id, close=True
            )
            return
        except BaseException:
            self.batcher.withdraw()
            raise
        outcome = await self.batcher.submit(Invocation(body, content_type, accept, attributes, request_id), deadline)
        if isinstance(outcome, Rendered):
            extra = _attribute_headers(outcome)
            await _respond(send, 200, outcome.body, outcome.content_type.encode("latin-1"), request_id, extra=extra)
        else:
            if outcome.status >= 500:
                log.warning("request %s: %s %s", request_id, outcome.status, outcome.message)
            await _respond(
                send, outcome.status, error_body(outcome.code, outcome.message, request_id), JSON, request_id
            )

    async def _read_body(self, receive: Receive) -> bytes:
        # No timer here: the protocol closes a connection whose request is not in within the
        # read timeout, which ends this loop with http.disconnect.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()  # usually the whole body came with the headers
            if message["type"] == "http.disconnect":
                raise RequestTimeout(f"the request body did not arrive within {self._read_timeout_s:g} s")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_payload_bytes:
                raise PayloadTooLarge(self._too_large())
            if not message.get("more_body"):
                return chunk if not chunks else b"".join([*chunks, chunk])
            chunks.append(chunk)

    def _too_large(self) -> str:
        return f"the request body is larger than the limit of {self._max_payload_bytes / 1024 / 1024:g} MB"


def _attribute_headers(outcome: Rendered) -> list[tuple[bytes, bytes]] | None:
    """The custom attributes the model set, as SageMaker's response header (None: it set none)."""
    if outcome.custom_attributes is None:
        return None
    return [(b"x-amzn-sagemaker-custom-attributes", outcome.custom_attributes.encode("latin-1"))]


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    request_id: str | None = None,
    *,
    close: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode("latin-1")))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
