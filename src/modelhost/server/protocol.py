"""uvicorn's httptools protocol, plus a deadline for reading each request and one write per response.

uvicorn times out idle keep-alive connections but not a client that opens a connection and
sends its request slowly or never (slowloris): such connections would pile up forever, each
holding an ASGI task once its headers are in. Here the whole request, head and body, must arrive
within the read timeout of its first byte (or of the connection), or the client gets a 408 and
is disconnected. One timer per request, in the protocol, so the app's hot path needs none.

uvicorn writes a response's head and body with two ``transport.write`` calls, each a ``send``
syscall made while holding the GIL: measured, a third of a worker's event-loop time with a fast
model. ``CoalescingTransport`` holds the head back until the body follows in the same turn of
the loop and sends both at once.

uvicorn takes a request head of any size; here a request line and headers over 64 KB (as the
platform's front door: ``modelhost.server.head_limit``) are a 431, so a client cannot make a
worker buffer headers until it runs out of memory.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelhost.server.head_limit import HEAD_TOO_LARGE, HEAD_TOO_LARGE_MESSAGE, HeadBudget, HeadTooLarge


def _timeout_response(seconds: float) -> bytes:
    body = orjson.dumps({"error": "RequestTimeout", "message": f"the request did not arrive within {seconds:g} s"})
    head = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    return head + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def _head_too_large_response() -> bytes:
    body = orjson.dumps({"error": HEAD_TOO_LARGE, "message": HEAD_TOO_LARGE_MESSAGE})
    head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"
    return head + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body


_HEAD_TOO_LARGE = _head_too_large_response()


class CoalescingTransport:
    """A transport that joins a write with the next one made in the same turn of the loop."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            held, self._held = self._held, None
            self._transport.write(held + data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:  # everything else is the real transport's
        return getattr(self._transport, name)


class ReadDeadlineProtocol(HttpToolsProtocol):  # type: ignore[misc]
    read_timeout_s: float = 30.0
    timeout_response: bytes = _timeout_response(30.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._head = HeadBudget()
        self._head_too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(CoalescingTransport(transport, self.loop))
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_too_large:
            return
        super().data_received(data)
        if not self._head_too_large and self._head.fed(len(data)):
            self._head_too_large = True
            self.send_400_response("")

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        self.transport.write(_HEAD_TOO_LARGE)
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head.begin()
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head.end()
        super().on_headers_complete()

    def _count_head(self, size: int) -> None:
        """Past the limit: stop the parser; uvicorn then answers through ``send_400_response`` (a 431)."""
        try:
            self._head.take(size)
        except HeadTooLarge:
            self._head_too_large = True
            raise

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.read_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _expire(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(self.timeout_response)  # never into the middle of another response
        self.transport.close()  # a handler waiting for the body sees http.disconnect


def protocol_with_read_timeout(seconds: float) -> type[ReadDeadlineProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with this read deadline."""
    attributes = {"read_timeout_s": seconds, "timeout_response": _timeout_response(seconds)}
    return type("ReadDeadlineProtocol", (ReadDeadlineProtocol,), attributes)
