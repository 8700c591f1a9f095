"""HTTP/1.1 to the instances: kept-alive connections per instance, parsed with httptools.

The front door's hop to a model server is on every request's path, so this is a small asyncio
protocol rather than a general client: one request at a time per connection, the whole body in
one write, the response parsed by httptools as it arrives. A connection that the instance closed
while it sat idle is noticed when the request fails before any byte of an answer came back;
then (and only then) the request is sent once more on a fresh connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import httptools


class UpstreamError(Exception):
    """The instance could not be reached, or it went away before answering."""

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.answered = answered  # some of the response had arrived: the request was seen


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]  # names lower-cased
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.deadline = 0.0  # monotonic; the pool's sweep aborts a request past it
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._received = False
        self._keep_alive = True

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"the instance sent a malformed response: {exc}", answered=True))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(UpstreamError("the instance closed the connection", answered=self._received))

    # -- httptools callbacks --------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._keep_alive = self._parser.should_keep_alive()
        waiter, self._waiter = self._waiter, None
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        response = UpstreamResponse(self._parser.get_status_code(), self._headers, body)
        self._headers, self._body = [], []
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # -- use ---------------------------------------------------------------------------------------
    async def roundtrip(self, request: bytes, deadline: float) -> UpstreamResponse:
        assert self.transport is not None
        self._received = False
        self.deadline = deadline
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    @property
    def reusable(self) -> bool:
        return not self.closed and self._keep_alive

    def expire(self) -> None:
        self._fail(UpstreamError("the instance did not answer in time", answered=True))
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: UpstreamError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


def encode_request(method: bytes, path: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> bytes:
    """One HTTP/1.1 request, head and body in one buffer."""
    lines = [method, b" ", path, b" HTTP/1.1\r\nhost: instance\r\ncontent-length: ", str(len(body)).encode(), b"\r\n"]
    for name, value in headers:
        lines += [name, b": ", value, b"\r\n"]
    lines += [b"\r\n", body]
    return b"".join(lines)


class UpstreamPool:
    """Kept-alive connections to one instance (``host:port``); ``in_flight`` feeds load balancing."""

    def __init__(self, host: str, port: int, *, max_idle: int = 512) -> None:
        self.host = host
        self.port = port
        self.in_flight = 0
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._max_idle = max_idle
        self._closed = False

    async def request(self, request: bytes, timeout_s: float) -> UpstreamResponse:
        """Send an encoded request; retried once on a fresh connection if a kept-alive one had gone stale."""
        deadline = time.monotonic() + timeout_s
        self.in_flight += 1
        try:
            while self._idle:
                connection = self._idle.pop()
                if connection.closed:
                    continue
                try:
                    return await self._use(connection, request, deadline)
                except UpstreamError as exc:
                    if exc.answered:
                        raise
                    break  # stale: the instance closed it while idle; a fresh one below
            return await self._use(await self._connect(), request, deadline)
        finally:
            self.in_flight -= 1

    async def _use(self, connection: _Connection, request: bytes, deadline: float) -> UpstreamResponse:
        self._busy.add(connection)
        try:
            response = await connection.roundtrip(request, deadline)
        finally:
            self._busy.discard(connection)
        if connection.reusable and not self._closed and len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            connection.abort()
        return response

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(_Connection, self.host, self.port)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to the instance at {self.host}:{self.port}: {exc.strerror}") from exc
        return connection

    def expire_overdue(self, now: float) -> None:
        """Abort requests past their deadline; called by one periodic sweep, not a timer per request."""
        for connection in [c for c in self._busy if c.deadline < now]:
            connection.expire()

    def close(self) -> None:
        self._closed = True
        for connection in [*self._idle, *self._busy]:
            connection.abort()
        self._idle.clear()
