"""The bytes of the front door's answers: invocation responses and errors shaped as SageMaker's runtime shapes them.

Its own module because two processes write these answers: the front door, and a model-server
worker serving a connection handed to it (see ``modelhost.server.handoff``). A client must not
be able to tell which one answered.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson

_STATUS_LINES = {status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus}


class FrontDoorError(Exception):
    """An answer refused: status, SageMaker-style code and message, more JSON ``fields``, and
    ``headers`` for the response (e.g. Retry-After) where the status's defaults do not fit."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: list[tuple[bytes, bytes]] | None = None, **fields: Any
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields
        self.headers = headers


def render(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A whole HTTP/1.1 response in one buffer (``content-length`` added)."""
    parts = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} Status\r\n".encode()]
    for name, value in headers:
        parts += [name, b": ", value, b"\r\n"]
    parts += [b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body]
    return b"".join(parts)


def render_error(error: FrontDoorError, request_id: str, *, close: bool = False, message_key: str = "Message") -> bytes:
    """An error as SageMaker's runtime writes it: the message under ``Message``, the key botocore
    fills the modeled field of ValidationError or ModelError from (``ClientError.response["Message"]``).
    The gateway's routes and the API relay keep modelhost's (and API Gateway's) ``message``."""
    body = orjson.dumps({"error": error.code, message_key: error.message, **error.fields, "request_id": request_id})
    headers = [
        (b"content-type", b"application/json"),
        (b"x-amzn-errortype", error.code.encode()),
        (b"x-amzn-requestid", request_id.encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    if error.headers is not None:
        headers += error.headers
    elif error.status == 405:
        headers.append((b"allow", b"POST"))
    elif error.status == 503:
        headers.append((b"retry-after", b"1"))
    return render(error.status, headers, body)


def render_route_error(error: FrontDoorError, request_id: str) -> bytes:
    """An error of the gateway's routes: ``{"error", "message", ...}``, as docs/gateway.md promises."""
    return render_error(error, request_id, message_key="message")


def model_error(name: str, variant: str, status: int, body: bytes) -> FrontDoorError:
    original = body.decode("utf-8", "replace")
    kind = "client" if status < 500 else "server"
    message = (
        f'Received {kind} error ({status}) from variant {variant} with message "{original}". '
        f"See `modelhost logs {name}` for more information."
    )
    return FrontDoorError(424, "ModelError", message, OriginalStatusCode=status, OriginalMessage=original)
