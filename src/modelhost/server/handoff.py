"""Connection hand-off, the worker's side: client connections the front door passed here, served here.

Proxying costs the front door ~65 µs of CPU per request, on the same cores the model needs. So
once the front door has answered a plain invocation of a plain endpoint (one variant, no data
capture, no API key), it passes the client's TCP connection itself to the worker that served it
(``SCM_RIGHTS`` over a Unix socket: the same connection, no new handshake, nothing the client
can see). The worker then reads that connection's next requests and answers them exactly as the
front door would have: same status, headers and error shapes (``modelhost.frontdoor.answers``).

A worker serves only ``POST /endpoints/<its endpoint>/invocations`` over HTTP/1.1 with a
content-length. Anything else on a handed connection (another path, a target variant or model,
chunked bodies, ``Expect``) goes back to the front door with the bytes read so far, as does every
connection when the worker stops (idle ones at once, a busy one after its answer): an update or
a stop loses no request. A worker killed with SIGKILL drops its handed connections (the clients
see a reset, as with any server that dies) — the one thing proxying did better.

The channel and its messages are in ``modelhost.server.handoff_channel``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import re
import socket
from collections.abc import Callable
from typing import cast

from modelhost.frontdoor.answers import FrontDoorError, model_error, render, render_error
from modelhost.inference.types import Invocation, Outcome, Rendered
from modelhost.server.batcher import AdaptiveBatcher
from modelhost.server.handoff_channel import CONNECTION, RECALL, Outbox, receive
from modelhost.server.head_limit import MAX_HEAD_BYTES
from modelhost.server.responses import error_body

log = logging.getLogger("modelhost.handoff")

_PRINTABLE = re.compile(r"[^\x21-\x7e]")
_FOREIGN = frozenset(
    {
        b"transfer-encoding",
        b"expect",
        b"upgrade",
        b"x-amzn-sagemaker-target-variant",
        b"x-amzn-sagemaker-target-model",
    }
)


def parse_head(head: bytes, path: bytes) -> tuple[int, bool, list[tuple[bytes, bytes]]] | None:
    """(content length, keep-alive, headers) of a request a worker serves itself; None: the front door's.

    Only ``POST <path> HTTP/1.1`` with exactly one content-length and none of the headers that need
    the front door (chunked bodies, ``Expect``, a target variant or model); header names lowercased.
    """
    lines = head.split(b"\r\n")
    if lines[0] != b"POST " + path + b" HTTP/1.1":
        return None
    length = -1
    keep_alive = True
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            return None
        name = name.lower()
        value = value.strip(b" \t")
        if name in _FOREIGN:
            return None
        if name == b"content-length":
            if length >= 0 or not value.isdigit():
                return None
            length = int(value)
        elif name == b"connection":
            keep_alive = b"close" not in value.lower()
        headers.append((name, value))
    return (length, keep_alive, headers) if length >= 0 else None


class HandoffService:
    """In a worker: accepts the front door's channel, serves the connections it passes, gives them back."""

    def __init__(
        self,
        listener: socket.socket,
        batcher: AdaptiveBatcher,
        endpoint: str,
        variant: str,
        *,
        timeout_s: float,
        read_timeout_s: float,
        keep_alive_s: float,
        max_payload_bytes: int,
    ) -> None:
        self._listener = listener
        self.batcher = batcher
        self.path = f"/endpoints/{endpoint}/invocations".encode()
        self.endpoint, self.variant = endpoint, variant
        self.variant_header = (b"x-amzn-invoked-production-variant", variant.encode())
        self.timeout_s = timeout_s
        self.read_timeout_s = read_timeout_s
        self.keep_alive_s = keep_alive_s
        self.max_payload_bytes = max_payload_bytes
        self.connections: set[HandedConnection] = set()
        self.draining = False
        self._outboxes: dict[int, Outbox] = {}  # by the channel's descriptor
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}-h"
        self._loop = asyncio.get_running_loop()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._listener.setblocking(False)
        self._loop.add_reader(self._listener.fileno(), self._accept)
        self._sweeper = self._loop.create_task(self._sweep())

    def new_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):x}"

    # -- the channel -----------------------------------------------------------------------------
    def _accept(self) -> None:
        try:
            channel, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        channel.setblocking(False)
        outbox = self._outboxes[channel.fileno()] = Outbox(channel, self._loop)
        self._loop.add_reader(channel.fileno(), self._on_message, outbox)

    def _on_message(self, outbox: Outbox) -> None:
        try:
            message, fd = receive(outbox.channel)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            message, fd = b"", None
        if not message:
            self._outboxes.pop(outbox.channel.fileno(), None)
            outbox.close()
            return
        kind = message[:1]
        if kind == CONNECTION and fd is not None:
            times_back = message[1] if len(message) > 1 else 0
            self._adopt(outbox, fd, times_back)
        elif kind == RECALL:
            for connection in list(self.connections):
                connection.leave()
        elif fd is not None:
            os.close(fd)

    def _adopt(self, outbox: Outbox, fd: int, times_back: int) -> None:
        if self.draining:  # too late: straight back
            outbox.give_back(fd, b"", times_back)
            return
        sock = socket.socket(fileno=fd)
        task = self._loop.create_task(
            self._loop.connect_accepted_socket(lambda: HandedConnection(self, outbox, times_back), sock)
        )
        task.add_done_callback(_log_failure)

    # -- deadlines and the end -----------------------------------------------------------------------
    async def _sweep(self, every_s: float = 0.5) -> None:
        while True:
            await asyncio.sleep(every_s)
            now = self._loop.time()
            for connection in [c for c in self.connections if c.deadline < now]:
                connection.expire()

    async def drain(self, timeout_s: float) -> None:
        """Give every connection back (a busy one once answered); close what is left after ``timeout_s``."""
        self.draining = True
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._listener.fileno())
        for connection in list(self.connections):
            connection.leave()
        deadline = self._loop.time() + timeout_s
        while self.connections and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        while any(outbox.pending() for outbox in self._outboxes.values()) and self._loop.time() < deadline:
            await asyncio.sleep(0.01)  # connections given back, not all sent yet
        for outbox in self._outboxes.values():
            outbox.close()
        self._outboxes.clear()


def _log_failure(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a handed connection could not be adopted: %r", task.exception())


class HandedConnection(asyncio.Protocol):
    """One client connection handed to this worker: requests framed here, answered in order."""

    def __init__(self, service: HandoffService, outbox: Outbox, times_back: int) -> None:
        self._service = service
        self._outbox = outbox
        self._times_back = times_back
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._busy = False  # a request is with the model; what arrives meanwhile waits its turn
        self._leaving = False  # to be given back once not busy
        self._closed = False
        self.deadline = math.inf

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._service.connections.add(self)
        self.deadline = self._loop.time() + self._service.keep_alive_s
        self._next()  # the client may have sent its next request already

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._service.connections.discard(self)

    # -- requests ----------------------------------------------------------------------------------
    def _next(self) -> None:
        """Start the next whole request in the buffer, or give the connection back, or wait for bytes."""
        if self._closed or self._busy:
            return
        if self._leaving:
            self._give_back()
            return
        buffer = self._buffer
        if not buffer:
            self.deadline = self._loop.time() + self._service.keep_alive_s
            return
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:  # the front door's 431
                self._give_back()
            else:
                self._arm_read_deadline()
            return
        head = parse_head(bytes(buffer[:end]), self._service.path) if end <= MAX_HEAD_BYTES else None
        if head is None:
            self._give_back()
            return
        length, keep_alive, headers = head
        if length > self._service.max_payload_bytes:
            self._give_back()  # the front door's 413
            return
        start = end + 4
        if len(buffer) < start + length:
            self._arm_read_deadline()
            return
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        self._busy = True
        self.deadline = math.inf
        self._invoke(body, headers, keep_alive)

    def _invoke(self, body: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
        content_type = accept = attributes = None
        request_id = ""
        for name, value in headers:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"x-amzn-sagemaker-custom-attributes":
                attributes = value.decode("latin-1")
            elif name in (b"x-amzn-sagemaker-inference-id", b"x-request-id"):
                request_id = _PRINTABLE.sub("", value.decode("latin-1"))[:128]
        request_id = request_id or self._service.new_request_id()
        invocation = Invocation(body, content_type, accept, attributes, request_id)
        deadline = self._loop.time() + self._service.timeout_s
        self._service.batcher.enqueue(invocation, deadline, self._answered(request_id, keep_alive))

    def _answered(self, request_id: str, keep_alive: bool) -> Callable[[Outcome], None]:
        def answer(outcome: Outcome) -> None:
            self._respond(_render(self._service, outcome, request_id), keep_alive)

        return answer

    def _respond(self, data: bytes, keep_alive: bool) -> None:
        self._busy = False
        if self._closed or self._transport is None:
            return
        self._transport.write(data)
        if not keep_alive:
            self.close()
            return
        self._next()

    # -- leaving -------------------------------------------------------------------------------------
    def leave(self) -> None:
        """Go back to the front door: now if idle, else after the answer being prepared."""
        self._leaving = True
        if not self._busy:
            self._give_back()

    def _give_back(self) -> None:
        transport = self._transport
        if self._closed or transport is None:
            return
        if transport.get_write_buffer_size():  # the last answer is still going out
            transport.pause_reading()
            self._loop.call_later(0.002, self._give_back)
            return
        transport.pause_reading()
        sock = transport.get_extra_info("socket")
        try:
            fd = os.dup(sock.fileno())
        except OSError:
            self.close()
            return
        if not self._outbox.give_back(fd, bytes(self._buffer), self._times_back + 1):
            log.warning("cannot give a connection back to the front door; closing it")
            self._refuse_or_close()
            return
        self._closed = True  # ours no more: closing our descriptor leaves the connection open
        self._service.connections.discard(self)
        transport.close()

    def _refuse_or_close(self) -> None:
        """The front door is gone: a request waiting gets a 503, an idle connection just closes."""
        if self._buffer and self._transport is not None:
            error = FrontDoorError(503, "ServiceUnavailable", "the platform's front door is not available; retry")
            self._transport.write(render_error(error, self._service.new_request_id(), close=True))
        self.close()

    def close(self) -> None:
        if not self._closed and self._transport is not None:
            self._closed = True
            self._service.connections.discard(self)
            self._transport.close()

    def _arm_read_deadline(self) -> None:
        if self.deadline == math.inf or self.deadline > self._loop.time() + self._service.read_timeout_s:
            self.deadline = self._loop.time() + self._service.read_timeout_s

    def expire(self) -> None:
        """The sweep found the deadline passed: a request not in within the read timeout, or idle too long."""
        self.deadline = math.inf
        if self._busy:
            return
        if self._buffer and self._transport is not None:
            seconds = self._service.read_timeout_s
            error = FrontDoorError(408, "RequestTimeout", f"the request did not arrive within {seconds:g} s")
            self._transport.write(render_error(error, self._service.new_request_id(), close=True))
        self.close()


def _render(service: HandoffService, outcome: Outcome, request_id: str) -> bytes:
    """The bytes the front door would have sent for this outcome of the model server."""
    if isinstance(outcome, Rendered):
        headers = [(b"content-type", outcome.content_type.encode("latin-1"))]
        if outcome.custom_attributes is not None:  # where the front door puts it too (proxy._answer)
            headers.append((b"x-amzn-sagemaker-custom-attributes", outcome.custom_attributes.encode("latin-1")))
        headers += [service.variant_header, (b"x-amzn-requestid", request_id.encode())]
        return render(200, headers, outcome.body)
    if outcome.status >= 500:
        log.warning("request %s: %s %s", request_id, outcome.status, outcome.message)
    original = error_body(outcome.code, outcome.message, request_id)
    return render_error(model_error(service.endpoint, service.variant, outcome.status, original), request_id)
