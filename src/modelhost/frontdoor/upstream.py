"""HTTP/1.1 to the instances: kept-alive connections per instance, parsed with httptools, driven by callbacks.

The front door's hop to a model server is on every request's path, so this is a small asyncio
protocol rather than a general client: one request at a time per connection, the whole request
in one write, the response parsed as it arrives and handed to a callback (no task or future per
request). A connection that the instance closed while it sat idle is noticed when the request
fails before any byte of an answer came back; then (and only then) the request is sent once more
on a fresh connection. ``request()`` wraps the same path in a coroutine for the runtime's
health checks.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast


class UpstreamError(Exception):
    """The instance could not be reached, or it went away before answering."""

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.answered = answered  # some of the response had arrived: the request was seen


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]  # those in PASSED_ON that the instance sent; names lower-cased
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


OnResponse = Callable[[UpstreamResponse], None]
OnError = Callable[[UpstreamError], None]


_MAX_HEAD = 64 * 1024
PASSED_ON = (b"content-type", b"x-amzn-sagemaker-custom-attributes")  # response headers kept


def _value(head: bytes, lower: bytes, marker: bytes) -> bytes | None:
    """The value of the header whose ``\\r\\nname:`` is ``marker`` (None if absent)."""
    start = lower.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


class _Connection(asyncio.Protocol):
    """One kept-alive connection; parses the model server's responses itself.

    The instances are our own model server, which always frames a response with
    ``content-length``; parsing that by hand costs a fraction of a callback per header.
    Anything else (chunked framing, a malformed head) fails the request.
    """

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False  # had served a request before this one
        self.deadline = 0.0  # monotonic; the pool's sweep aborts a request past it
        self._request = b""
        self._on_response: OnResponse | None = None
        self._on_error: OnError | None = None
        self._buffer = b""
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._length = 0
        self._received = False
        self._keep_alive = True

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        if self._on_response is None:  # nothing was asked: not a server we understand
            self.abort()
            return
        self._received = True
        buffer = self._buffer + data if self._buffer else data
        if not self._status:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    self._malformed("a response head larger than 64 KiB")
                    return
                self._buffer = buffer
                return
            if not self._parse_head(buffer[:end]):
                return
            buffer = buffer[end + 4 :]
        if len(buffer) < self._length:
            self._buffer = buffer
            return
        self._buffer = b""
        if len(buffer) > self._length:
            self._malformed("more bytes than its content-length")
            return
        self._complete(buffer)

    def _parse_head(self, head: bytes) -> bool:
        """Status, framing and the headers the front door passes on, found by search, not split."""
        if not head.startswith(b"HTTP/1.") or len(head) < 12 or not head[9:12].isdigit():
            self._malformed(f"status line {head[:40]!r}")
            return False
        lower = head.lower()  # same length: values are sliced from ``head``
        length = _value(head, lower, b"\r\ncontent-length:")
        if length is None or not length.isdigit() or b"\r\ntransfer-encoding:" in lower:
            self._malformed("a response framed without content-length")
            return False
        self._status = int(head[9:12])
        self._length = int(length)
        self._keep_alive = head[7:8] == b"1" and b"\r\nconnection: close" not in lower
        self._headers = [(name, value) for name in PASSED_ON if (value := _value(head, lower, b"\r\n" + name + b":"))]
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(UpstreamError("the instance closed the connection", answered=self._received))

    def _complete(self, body: bytes) -> None:
        response = UpstreamResponse(self._status, self._headers, body)
        self._status, self._headers = 0, []
        callback, self._on_response, self._on_error = self._on_response, None, None
        self.pool._release(self)
        if callback is not None:
            callback(response)

    def _malformed(self, what: str) -> None:
        self.abort()
        self._fail(UpstreamError(f"the instance sent {what}", answered=True))

    # -- use ---------------------------------------------------------------------------------------
    def send(self, request: bytes, deadline: float, on_response: OnResponse, on_error: OnError) -> None:
        assert self.transport is not None
        self._received = False
        self._request, self.deadline = request, deadline
        self._on_response, self._on_error = on_response, on_error
        self.transport.write(request)

    @property
    def reusable(self) -> bool:
        return not self.closed and self._keep_alive

    def expire(self) -> None:
        self.abort()
        self._fail(UpstreamError("the instance did not answer in time", answered=True))

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: UpstreamError) -> None:
        callback, on_response = self._on_error, self._on_response
        self._on_response = self._on_error = None
        if callback is None or on_response is None:
            return
        self.pool._release(self)
        if not error.answered and self.reused and not self.pool.closed:
            # The instance had closed this kept-alive connection while it sat idle: the request
            # was never seen, so it is sent once more, on a fresh connection.
            self.pool._connect_and_send(self._request, self.deadline, on_response, callback)
        else:
            callback(error)


def encode_request(method: bytes, path: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> bytes:
    """One HTTP/1.1 request, head and body in one buffer."""
    lines = [method, b" ", path, b" HTTP/1.1\r\nhost: instance\r\ncontent-length: ", str(len(body)).encode(), b"\r\n"]
    for name, value in headers:
        lines += [name, b": ", value, b"\r\n"]
    lines += [b"\r\n", body]
    return b"".join(lines)


Address = tuple[str, int] | str  # (host, port), or a Unix socket path ("@name": Linux's abstract namespace)


class UpstreamPool:
    """Kept-alive connections to one address; ``in_flight`` feeds load balancing."""

    def __init__(self, address: Address, *, max_idle: int = 512) -> None:
        self.address = address
        self.port = address[1] if isinstance(address, tuple) else None
        self.in_flight = 0
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._max_idle = max_idle
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, request: bytes, timeout_s: float, on_response: OnResponse, on_error: OnError) -> None:
        """Send an encoded request; exactly one of the callbacks is called, later."""
        deadline = time.monotonic() + timeout_s
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            connection.reused = True
            self.in_flight += 1
            self._busy.add(connection)
            connection.send(request, deadline, on_response, on_error)
            return
        self._connect_and_send(request, deadline, on_response, on_error)

    def _connect_and_send(self, request: bytes, deadline: float, on_response: OnResponse, on_error: OnError) -> None:
        async def connect() -> None:
            try:
                connection = await self._connect()
            except OSError as exc:
                self.in_flight -= 1
                on_error(UpstreamError(f"cannot connect to the instance at {self.address}: {exc.strerror or exc}"))
                return
            if self._closed:
                self.in_flight -= 1
                connection.abort()
                on_error(UpstreamError("the instance was taken out of service"))
                return
            self._busy.add(connection)
            connection.send(request, deadline, on_response, on_error)

        self.in_flight += 1  # counted while connecting too: the balancer sees this request at once
        task = asyncio.get_running_loop().create_task(connect())
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if isinstance(self.address, tuple):
            _, connection = await loop.create_connection(lambda: _Connection(self), *self.address)
            return connection
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            # Connected here, not by the loop: uvloop's Unix connect does not take abstract names.
            sock.connect("\0" + self.address[1:] if self.address.startswith("@") else self.address)
            _, connection = await loop.create_unix_connection(lambda: _Connection(self), sock=sock)
        except BaseException:
            sock.close()
            raise
        return connection

    async def request(self, request: bytes, timeout_s: float) -> UpstreamResponse:
        """``send`` as a coroutine."""
        future: asyncio.Future[UpstreamResponse] = asyncio.get_running_loop().create_future()

        def resolve(response: UpstreamResponse) -> None:
            if not future.done():
                future.set_result(response)

        def reject(error: UpstreamError) -> None:
            if not future.done():
                future.set_exception(error)

        self.send(request, timeout_s, resolve, reject)
        return await future

    def _release(self, connection: _Connection) -> None:
        self.in_flight -= 1
        self._busy.discard(connection)
        if connection.reusable and not self._closed and len(self._idle) < self._max_idle:
            self._idle.append(connection)
        elif not connection.closed:
            connection.abort()

    def expire_overdue(self, now: float) -> None:
        """Abort requests past their deadline; called by one periodic sweep, not a timer per request."""
        for connection in [c for c in self._busy if c.deadline < now]:
            connection.expire()

    def close(self) -> None:
        self._closed = True
        for connection in [*self._idle, *self._busy]:
            connection.abort()
        self._idle.clear()


_pending: set[asyncio.Task[None]] = set()  # connect tasks, kept referenced until done
