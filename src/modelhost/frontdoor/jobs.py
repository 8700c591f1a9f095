"""The requests a front door connection answers in order: an invocation, a gateway route's call,
an answer made up front, and a relay to the API server. ``FrontDoorProtocol`` frames requests and
queues one job per request; a job writes its answer through its connection when its turn comes."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

import httptools

from modelhost.frontdoor.gateway import Gateway, RouteMatch
from modelhost.frontdoor.proxy import FrontDoorError, render_error

if TYPE_CHECKING:
    from modelhost.frontdoor.protocol import FrontDoorProtocol

log = logging.getLogger("modelhost.frontdoor")

_HIGH_WATER = 1 << 20


def too_large(limit: int) -> FrontDoorError:
    return FrontDoorError(
        413, "ValidationError", f"the request body is larger than the limit of {limit / 1024**2:g} MB"
    )


class Job:
    """One request on a connection, answered in order."""

    keep_alive = True
    complete = False  # the whole request has been read

    def start(self) -> None: ...

    def feed(self, chunk: bytes) -> None: ...

    def end(self) -> None: ...


class Invocation(Job):
    def __init__(self, connection: FrontDoorProtocol, method: bytes, path: str, headers: list[tuple[bytes, bytes]]):
        self._connection = connection
        self._method, self._path, self._headers = method, path, headers
        self._chunks: list[bytes] = []
        self._size = 0
        self._active = False
        self.handoff: tuple[str, str] | None = None  # (worker socket, endpoint): may take the connection

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._connection.door.max_payload_bytes:
            self._connection.refuse(too_large(self._connection.door.max_payload_bytes))
            return
        self._chunks.append(chunk)

    def end(self) -> None:
        self.complete = True
        if self._active:
            self._run()

    def start(self) -> None:
        self._active = True
        if self.complete:
            self._run()

    def _run(self) -> None:
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        self._connection.door.handle(self._method, self._path, self._headers, body, self._respond, self._served)

    def _served(self, name: str, endpoint: str) -> None:
        self.handoff = (name, endpoint)

    def _respond(self, data: bytes) -> None:
        if self._method == b"HEAD":  # the head of the answer only: a body would be read as the next response
            data = data[: data.find(b"\r\n\r\n") + 4]
        self._connection.finish(self, data)


class Answered(Invocation):
    """A request answered without running anything (a 405 for a route's path): its body is read, then dropped."""

    def __init__(self, connection: FrontDoorProtocol, method: bytes, answer: bytes) -> None:
        super().__init__(connection, method, "", [])
        self._answer = answer

    def feed(self, chunk: bytes) -> None:
        pass

    def _run(self) -> None:
        self._respond(self._answer)


class GatewayCall(Invocation):
    """A request for one of the user's routes: read whole (within the route's size limit), then the gateway."""

    def __init__(  # noqa: PLR0917 (built once per request on the hot path: positional on purpose)
        self,
        connection: FrontDoorProtocol,
        gateway: Gateway,
        found: RouteMatch,
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        names: list[bytes],
    ) -> None:
        super().__init__(connection, method, "", headers)
        self._gateway, self._found, self._url, self._names = gateway, found, url, names

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        limit = self._found.route.max_body_bytes
        if self._size > limit:
            refusal = self._gateway.refusal(self._found, self._headers, too_large(limit))
            self._connection.refuse(refusal, message_key="message")  # a route's error shape
            return
        self._chunks.append(chunk)

    def _run(self) -> None:
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        method = self._method.decode("latin-1")
        source_ip = self._connection.peer_ip()
        self._gateway.handle(
            self._found, method, self._url, self._headers, body, self._respond, names=self._names, source_ip=source_ip
        )


class Relay(Job, asyncio.Protocol):
    """A request for the API: streamed to the API's server, its response streamed back."""

    def __init__(self, connection: FrontDoorProtocol, head: bytes, chunked: bool, head_only: bool = False) -> None:
        self._connection = connection
        self._head_only = head_only  # a HEAD request: its response ends with its head
        self._pending: list[bytes] = [head]
        self._chunked = chunked
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._sent_any = False
        self._done = False

    # -- the client's side --------------------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self._connection.settings
        task = loop.create_task(loop.create_connection(lambda: self, settings.api_host, settings.api_port))
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[tuple[asyncio.BaseTransport, asyncio.BaseProtocol]]) -> None:
        if task.cancelled() or task.exception() is not None:
            log.error("cannot reach the API server: %s", task.exception())
            self._give_up("the API server is not reachable")

    def feed(self, chunk: bytes) -> None:
        self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if self._chunked else chunk)

    def end(self) -> None:
        self.complete = True
        if self._chunked:
            self._write(b"0\r\n\r\n")

    def _write(self, data: bytes) -> None:
        if self._transport is None:
            self._pending.append(data)
            return
        self._transport.write(data)
        if self._transport.get_write_buffer_size() > _HIGH_WATER:
            self._connection.pause_reading()

    # -- the API server's side -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(b"".join(self._pending))
        self._pending = []

    def data_received(self, data: bytes) -> None:
        self._sent_any = True
        self._connection.write(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._connection.close()

    def on_headers_complete(self) -> None:
        if self._head_only and self._parser.get_status_code() >= 200:
            self.on_message_complete()

    def on_message_complete(self) -> None:
        if self._done or self._parser.get_status_code() < 200:
            return  # an interim response (100 Continue); the real one follows (or already finished)
        self.keep_alive = self.keep_alive and self._parser.should_keep_alive()
        self._done = True
        if self._transport is not None:
            self._transport.close()
        self._connection.finish(self, b"")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done:
            self._give_up("the API server closed the connection")

    def pause_writing(self) -> None:
        self._connection.pause_reading()

    def resume_writing(self) -> None:
        self._connection.resume_reading()

    def abort(self) -> None:
        self._done = True
        if self._transport is not None:
            self._transport.abort()

    def _give_up(self, reason: str) -> None:
        if self._done:
            return
        self._done = True
        if self._sent_any:
            self._connection.close()
        else:
            self.keep_alive = False
            self._connection.finish(
                self, render_error(FrontDoorError(502, "BadGateway", reason), "-", message_key="message")
            )
