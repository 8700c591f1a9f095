"""HTTP/1.1 on the platform's port: invocations on a fast path, everything else relayed to the API.

Measured, a front door built as an ASGI app under uvicorn spent ~150 µs of CPU per proxied
request (scope dicts, an Event, a task and two writes per response): on a small machine that CPU
comes out of the model's share. This protocol parses with httptools and calls the front door
straight from the parser's callbacks; a response is one write.

    /endpoints/...  ─► FrontDoor.handle (body read whole, size-limited)
    anything else   ─► relayed as a byte stream to the API's own server on a loopback port
                       (head re-sent, body streamed, response copied back)

Requests on one connection are answered in order (pipelined ones wait their turn): one job per
request, the jobs in ``modelhost.frontdoor.jobs``. One deadline
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

from modelhost.frontdoor.gateway import Gateway
from modelhost.frontdoor.handoff import MAX_TIMES_BACK, Handoff
from modelhost.frontdoor.jobs import Answered, GatewayCall, Invocation, Job, Relay, too_large
from modelhost.frontdoor.proxy import PREFIX, FrontDoor, FrontDoorError
from modelhost.server.head_limit import HEAD_TOO_LARGE, HEAD_TOO_LARGE_MESSAGE, HeadBudget, HeadTooLarge

log = logging.getLogger("modelhost.frontdoor")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _head_too_large() -> FrontDoorError:
    return FrontDoorError(431, HEAD_TOO_LARGE, HEAD_TOO_LARGE_MESSAGE)


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
        self._jobs: collections.deque[Job] = collections.deque()
        self._reading: Job | None = None
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
            if isinstance(job, Relay):
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
        job: Job
        if path.startswith(PREFIX):
            if self._content_length > self.door.max_payload_bytes:
                self.refuse(too_large(self.door.max_payload_bytes))  # said up front: not read at all
                return
            job = Invocation(self, method, path, self._headers)
        elif (gateway := self.settings.gateway) is not None and (
            found := gateway.match(method.decode("latin-1"), path)
        ) is not None:
            if self._content_length > found.route.max_body_bytes:
                refusal = gateway.refusal(found, self._headers, too_large(found.route.max_body_bytes))
                self.refuse(refusal, message_key="message")  # a route's error shape
                return
            job = GatewayCall(self, gateway, found, method, self._url, self._headers, self._names)
        elif gateway is not None and gateway.allowed_methods(path):
            job = Answered(self, method, gateway.method_not_allowed(method.decode("latin-1"), path, self._headers))
        else:
            head = [method, b" ", self._url, b" HTTP/1.1\r\n"]
            chunked = False
            for name, value in self._headers:
                head += [name, b": ", value, b"\r\n"]
                chunked = chunked or (name == b"transfer-encoding" and b"chunked" in value.lower())
            head.append(b"\r\n")
            job = Relay(self, b"".join(head), chunked, head_only=method == b"HEAD")
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

    def finish(self, job: Job, data: bytes) -> None:
        """``job`` is answered: write what is left of its response, then start the next one."""
        if self._closed or not self._jobs or self._jobs[0] is not job:
            return
        self._jobs.popleft()
        if data:
            self.write(data)
        if not job.keep_alive or self.settings.stopping:
            self.close()
            return
        handoff = job.handoff if isinstance(job, Invocation) else None
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
