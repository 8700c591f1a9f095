"""HTTP/1.1 on the platform's port: invocations on a fast path, everything else relayed to the API.

Measured, a front door built as an ASGI app under uvicorn spent ~150 µs of CPU per proxied
request (scope dicts, an Event, a task and two writes per response): on a small machine that CPU
comes out of the model's share. This protocol parses with httptools and calls the front door
straight from the parser's callbacks; a response is one write.

    /endpoints/...  ─► FrontDoor.handle (body read whole, size-limited)
    anything else   ─► relayed as a byte stream to the API's own server on a loopback port
                       (head re-sent, body streamed, response copied back)

Requests on one connection are answered in order (pipelined ones wait their turn). One deadline
per connection, checked by a sweep twice a second: the request must arrive within the read
timeout (else 408), an idle kept-alive connection closes after the keep-alive timeout.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import os
import socket
from typing import cast

import httptools

from modelhost.frontdoor.gateway import Gateway, RouteMatch
from modelhost.frontdoor.handoff import MAX_TIMES_BACK, Handoff
from modelhost.frontdoor.proxy import PREFIX, FrontDoor, FrontDoorError, render_error
from modelhost.server.head_limit import HEAD_TOO_LARGE, HEAD_TOO_LARGE_MESSAGE, HeadBudget, HeadTooLarge

log = logging.getLogger("modelhost.frontdoor")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HIGH_WATER = 1 << 20


def _head_too_large() -> FrontDoorError:
    return FrontDoorError(431, HEAD_TOO_LARGE, HEAD_TOO_LARGE_MESSAGE)


def _too_large(limit: int) -> FrontDoorError:
    return FrontDoorError(
        413, "ValidationError", f"the request body is larger than the limit of {limit / 1024**2:g} MB"
    )


class ConnectionSettings:
    def __init__(
        self,
        *,
        api_host: str,
        api_port: int,
        read_timeout_s: float = 30.0,
        keep_alive_s: float = 60.0,
        gateway: Gateway | None = None,
        handoff: Handoff | None = None,
    ):
        self.gateway = gateway  # the user's routes; None: only invocations and the API
        self.handoff = handoff  # passes connections to workers and takes them back; None: never
        self.api_host = api_host
        self.api_port = api_port
        self.read_timeout_s = read_timeout_s
        self.keep_alive_s = keep_alive_s
        self.connections: set[FrontDoorProtocol] = set()
        self.stopping = False


class _Job:
    """One request on a connection, answered in order."""

    keep_alive = True
    complete = False  # the whole request has been read

    def start(self) -> None: ...

    def feed(self, chunk: bytes) -> None: ...

    def end(self) -> None: ...


class _Invocation(_Job):
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
            self._connection.refuse(_too_large(self._connection.door.max_payload_bytes))
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


class _Answered(_Invocation):
    """A request answered without running anything (a 405 for a route's path): its body is read, then dropped."""

    def __init__(self, connection: FrontDoorProtocol, method: bytes, answer: bytes) -> None:
        super().__init__(connection, method, "", [])
        self._answer = answer

    def feed(self, chunk: bytes) -> None:
        pass

    def _run(self) -> None:
        self._respond(self._answer)


class _GatewayCall(_Invocation):
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
            refusal = self._gateway.refusal(self._found, self._headers, _too_large(limit))
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


class _Relay(_Job, asyncio.Protocol):
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


class FrontDoorProtocol(asyncio.Protocol):
    def __init__(
        self, door: FrontDoor, settings: ConnectionSettings, *, replay: bytes = b"", times_back: int = 0
    ) -> None:
        self.door = door
        self.settings = settings
        self._replay = replay  # a connection a worker gave back: what it had read of the next request
        self._times_back = times_back
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._jobs: collections.deque[_Job] = collections.deque()
        self._reading: _Job | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._names: list[bytes] = []  # the header names as sent (the gateway's events keep their case)
        self._expect_continue = False
        self._content_length = -1  # of the request being read; -1: not said
        self._head = HeadBudget()
        self.deadline = math.inf  # loop time; the server's sweep acts on it (no timer per request)
        self._closed = False
        self._paused = False

    # -- asyncio.Protocol ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self.settings.connections.add(self)
        self._arm(self.settings.read_timeout_s)
        if self._replay:
            replay, self._replay = self._replay, b""
            self.data_received(replay)
        elif self._times_back and self.settings.stopping:  # given back as the platform stops: idle
            self.close()
        elif self._times_back:
            self._arm(self.settings.keep_alive_s)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.refuse(FrontDoorError(400, "BadRequest", "protocol upgrades are not supported"))
            return
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, HeadTooLarge):
                raise
            self.refuse(_head_too_large())
            return
        except httptools.HttpParserError as exc:
            self.refuse(FrontDoorError(400, "BadRequest", f"malformed HTTP request: {exc}"))
            return
        if self._head.fed(len(data)):
            self.refuse(_head_too_large())

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._disarm()
        self.settings.connections.discard(self)
        for job in self._jobs:  # a relayed response (a log being followed) has no one to go to
            if isinstance(job, _Relay):
                job.abort()

    def peer_ip(self) -> str:
        """The client's address (the gateway's ``sourceIp``); "" where the socket has none."""
        peer = self._transport.get_extra_info("peername") if self._transport is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else ""

    def pause_writing(self) -> None:
        pass  # responses are bounded (one body per request); relays check the buffer themselves

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ----------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._names = []
        self._expect_continue = False
        self._content_length = -1
        self._head.begin()
        self._arm(self.settings.read_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head.take(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head.take(len(name) + len(value) + 4)  # stops the parser past the limit: a 431
        sent, name = name, name.lower()
        if name == b"content-length":
            self._content_length = int(value) if value.isdigit() else -1
        if name == b"expect":
            self._expect_continue = value.lower() == b"100-continue"
            return  # answered here; not passed on
        self._headers.append((name, value))
        self._names.append(sent)

    def on_headers_complete(self) -> None:
        self._head.end()
        method = self._parser.get_method()
        raw_path = self._url.partition(b"?")[0]
        path = raw_path.decode("latin-1")
        job: _Job
        if path.startswith(PREFIX):
            if self._content_length > self.door.max_payload_bytes:
                self.refuse(_too_large(self.door.max_payload_bytes))  # said up front: not read at all
                return
            job = _Invocation(self, method, path, self._headers)
        elif (gateway := self.settings.gateway) is not None and (
            found := gateway.match(method.decode("latin-1"), path)
        ) is not None:
            if self._content_length > found.route.max_body_bytes:
                refusal = gateway.refusal(found, self._headers, _too_large(found.route.max_body_bytes))
                self.refuse(refusal, message_key="message")  # a route's error shape
                return
            job = _GatewayCall(self, gateway, found, method, self._url, self._headers, self._names)
        elif gateway is not None and gateway.allowed_methods(path):
            job = _Answered(self, method, gateway.method_not_allowed(method.decode("latin-1"), path, self._headers))
        else:
            head = [method, b" ", self._url, b" HTTP/1.1\r\n"]
            chunked = False
            for name, value in self._headers:
                head += [name, b": ", value, b"\r\n"]
                chunked = chunked or (name == b"transfer-encoding" and b"chunked" in value.lower())
            head.append(b"\r\n")
            job = _Relay(self, b"".join(head), chunked, head_only=method == b"HEAD")
        job.keep_alive = self._parser.should_keep_alive() and not self.settings.stopping
        self._reading = job
        self._jobs.append(job)
        if self._expect_continue and self._transport is not None:
            self._transport.write(_CONTINUE)
        if len(self._jobs) == 1:
            job.start()

    def on_body(self, body: bytes) -> None:
        if self._reading is not None:
            self._reading.feed(body)

    def on_message_complete(self) -> None:
        self._disarm()
        job, self._reading = self._reading, None
        if job is not None:
            job.end()

    # -- jobs ------------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._closed:
            self._transport.write(data)

    def finish(self, job: _Job, data: bytes) -> None:
        """``job`` is answered: write what is left of its response, then start the next one."""
        if self._closed or not self._jobs or self._jobs[0] is not job:
            return
        self._jobs.popleft()
        if data:
            self.write(data)
        if not job.keep_alive or self.settings.stopping:
            self.close()
            return
        handoff = job.handoff if isinstance(job, _Invocation) else None
        if handoff is not None and not self._jobs and self._reading is None and self._hand_off(*handoff):
            return
        if self._jobs:
            self._jobs[0].start()
        elif self._reading is None:
            self._arm(self.settings.keep_alive_s)
        self.resume_reading()

    def refuse(self, error: FrontDoorError, *, message_key: str = "Message") -> None:
        """Answer with ``error`` and close: the rest of the request is not read."""
        if self._closed:
            return
        self._jobs.clear()
        self._reading = None
        self.door.reject(error, self.write, message_key=message_key)
        self.close()

    def _hand_off(self, name: str, endpoint: str) -> bool:
        """Pass this (idle) connection to the worker behind ``name``; False: it stays here."""
        handoff = self.settings.handoff
        transport = self._transport
        if handoff is None or transport is None or self._times_back >= MAX_TIMES_BACK:
            return False
        if transport.get_write_buffer_size():  # the answer is not all out yet: the worker would race it
            return False
        sock = transport.get_extra_info("socket")
        if sock is None:
            return False
        fd = os.dup(sock.fileno())
        try:
            given = handoff.give(fd, name, endpoint, self._times_back)
        finally:
            os.close(fd)
        if given:  # the worker has its own descriptor: closing ours leaves the connection open
            self._closed = True
            self._disarm()
            self.settings.connections.discard(self)
            transport.close()
        return given

    @property
    def idle(self) -> bool:
        return not self._jobs and self._reading is None

    def pause_reading(self) -> None:
        if not self._paused and self._transport is not None and not self._closed:
            self._paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self._transport is not None and not self._closed:
            self._paused = False
            self._transport.resume_reading()

    def close(self) -> None:
        if not self._closed and self._transport is not None:
            self._closed = True
            self._disarm()
            self._transport.close()

    # -- the one deadline ---------------------------------------------------------------------------------
    def _arm(self, seconds: float) -> None:
        self.deadline = self._loop.time() + seconds

    def _disarm(self) -> None:
        self.deadline = math.inf

    def expire(self) -> None:
        """Called by the server's sweep once ``deadline`` has passed."""
        self.deadline = math.inf
        if self._reading is not None:
            seconds = self.settings.read_timeout_s
            self.refuse(FrontDoorError(408, "RequestTimeout", f"the request did not arrive within {seconds:g} s"))
        elif self.idle:
            self.close()


class FrontDoorServer:
    """The listening side: connections in, and a graceful stop (in-flight requests are answered)."""

    def __init__(self, door: FrontDoor, settings: ConnectionSettings) -> None:
        self._door = door
        self._settings = settings
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._adopting: set[asyncio.Task[tuple[asyncio.Transport, FrontDoorProtocol]]] = set()

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: FrontDoorProtocol(self._door, self._settings), sock=sock, backlog=2048
        )
        self._sweeper = loop.create_task(self._sweep())
        if self._settings.handoff is not None:
            self._settings.handoff.on_returned = self._given_back

    def _given_back(self, sock: socket.socket, data: bytes, times_back: int) -> None:
        """A connection a worker gave back: a front door connection again, its pending bytes first."""
        loop = asyncio.get_running_loop()

        def protocol() -> FrontDoorProtocol:
            return FrontDoorProtocol(self._door, self._settings, replay=data, times_back=times_back)

        task = loop.create_task(loop.connect_accepted_socket(protocol, sock))
        self._adopting.add(task)
        task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task[tuple[asyncio.Transport, FrontDoorProtocol]]) -> None:
        self._adopting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a connection given back by a worker could not be taken: %r", task.exception())

    async def _sweep(self, every_s: float = 0.5) -> None:
        """Read deadlines and idle keep-alive connections, for every connection at once."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every_s)
            now = loop.time()
            for connection in [c for c in self._settings.connections if c.deadline < now]:
                connection.expire()

    async def stop(self, grace_s: float) -> None:
        self._settings.stopping = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._settings.handoff is not None:  # handed connections come back, to be answered and closed here
            self._settings.handoff.recall()
        for connection in list(self._settings.connections):
            if connection.idle:
                connection.close()
        deadline = asyncio.get_running_loop().time() + grace_s
        while self._settings.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self._settings.connections):
            connection.close()
        if self._settings.handoff is not None:
            self._settings.handoff.close()
