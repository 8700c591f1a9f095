"""UpstreamPool against a real HTTP/1.1 server, scripted per test with asyncio.start_server (127.0.0.1)
or asyncio.start_unix_server (a socket file, or a name in Linux's abstract namespace).

Each test's server is a handler run once per accepted connection; it counts connections and keeps
every request it read, so the tests can say exactly how many connections and sends a request took.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelhost.frontdoor.upstream import (
    PASSED_ON,
    Address,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    encode_request,
)

pytestmark = pytest.mark.timeout(20)

Handler = Callable[["Upstream", int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
    uvloop = None

LOOPS = {"asyncio": asyncio.new_event_loop, **({"uvloop": uvloop.new_event_loop} if uvloop is not None else {})}
_loop: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"factory": asyncio.new_event_loop}


@pytest.fixture(autouse=True, params=list(LOOPS))
def event_loop_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test on asyncio's loop and on uvloop's (the front door's; its transports differ)."""
    _loop["factory"] = LOOPS[request.param]
    yield request.param
    _loop["factory"] = asyncio.new_event_loop


def run(coroutine: Coroutine[Any, Any, Any], timeout: float = 5.0) -> Any:
    with asyncio.Runner(loop_factory=_loop["factory"]) as runner:
        return runner.run(asyncio.wait_for(coroutine, timeout))


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


def payload(size: int) -> bytes:
    """Deterministic bytes that are not all alike (a parser bug cannot hide in a repeated byte)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def response(status: int = 200, body: bytes = b"", headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    head = [b"HTTP/1.1 %d X\r\n" % status, b"Content-Length: %d\r\n" % len(body)]
    head += [name + b": " + value + b"\r\n" for name, value in headers]
    return b"".join([*head, b"\r\n", body])


@dataclass
class Received:
    connection: int
    method: bytes
    path: bytes
    headers: dict[bytes, bytes]
    body: bytes


class Upstream:
    """A real HTTP/1.1 server on 127.0.0.1:<free port> whose behaviour is the test's handler."""

    def __init__(self, handler: Handler, unix: str | None = None) -> None:
        self.handler = handler
        self.unix = unix  # None: TCP on 127.0.0.1; a path, or "@name" for an abstract socket
        self.connections = 0
        self.requests: list[Received] = []
        self.disconnected = 0  # connections whose client side went away (the server read EOF)
        self.closed = 0  # connections this server closed (its handler returned)
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Upstream:
        if self.unix is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
        else:
            path = "\0" + self.unix[1:] if self.unix.startswith("@") else self.unix
            self._server = await asyncio.start_unix_server(self._serve, path)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    @property
    def address(self) -> Address:
        return self.unix if self.unix is not None else ("127.0.0.1", self.port)

    def pool(self, **options: Any) -> UpstreamPool:
        return UpstreamPool(self.address, **options)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        self._writers.append(writer)
        try:
            await self.handler(self, index, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.closed += 1

    async def read_request(self, index: int, reader: asyncio.StreamReader) -> Received | None:
        """The next request on this connection, or None when the client closed it."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.disconnected += 1
            return None
        request_line, *lines = head[:-4].split(b"\r\n")
        method, path, version = request_line.split(b" ")
        assert version == b"HTTP/1.1"
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
        received = Received(index, method, path, headers, body)
        self.requests.append(received)
        return received


async def echo(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep-alive: every request answered 200 with its own body."""
    while (request := await server.read_request(index, reader)) is not None:
        writer.write(response(200, request.body, [(b"Content-Type", b"application/octet-stream")]))
        await writer.drain()


REQUEST = encode_request(b"POST", b"/invocations", [], b"ping")


# -- encode_request ----------------------------------------------------------------------------


def test_encode_request_is_one_http11_message_with_length_and_headers() -> None:
    encoded = encode_request(b"POST", b"/invocations", [(b"content-type", b"text/csv"), (b"accept", b"*/*")], b"1,2")

    assert encoded == (
        b"POST /invocations HTTP/1.1\r\n"
        b"host: instance\r\n"
        b"content-length: 3\r\n"
        b"content-type: text/csv\r\n"
        b"accept: */*\r\n"
        b"\r\n"
        b"1,2"
    )
    assert (
        encode_request(b"GET", b"/ping", [], b"")
        == b"GET /ping HTTP/1.1\r\nhost: instance\r\ncontent-length: 0\r\n\r\n"
    )


# -- round trips ----------------------------------------------------------------------------------


def test_request_round_trips_status_passed_on_headers_and_body() -> None:
    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await server.read_request(index, reader)
        assert request is not None
        headers = [
            (b"Server", b"uvicorn"),
            (b"Content-Type", b"application/json"),
            (b"X-Amzn-SageMaker-Custom-Attributes", b"Mixed=Case; b=2"),
            (b"X-Other", b"dropped"),
        ]
        writer.write(response(201, b"answer to " + request.body, headers))
        await writer.drain()
        await server.read_request(index, reader)  # until the client goes

    async def main() -> tuple[UpstreamResponse, Upstream, UpstreamPool]:
        async with Upstream(handler) as server:
            pool = server.pool()
            request = encode_request(b"POST", b"/invocations", [(b"content-type", b"application/json")], b'{"a": 1}')
            result = await pool.request(request, timeout_s=5)
            pool.close()
            return result, server, pool

    result, server, pool = run(main())

    assert result.status == 201
    assert result.body == b'answer to {"a": 1}'
    # only the headers the front door passes on, names lower-cased, values as sent
    assert sorted(result.headers) == sorted(
        [(b"content-type", b"application/json"), (b"x-amzn-sagemaker-custom-attributes", b"Mixed=Case; b=2")]
    )
    assert {name for name, _ in result.headers} <= set(PASSED_ON)
    assert result.header(b"content-type") == b"application/json"
    assert result.header(b"Content-Type") is None  # look-ups are by the lower-cased name
    assert result.header(b"x-other") is None
    [seen] = server.requests
    assert (seen.method, seen.path, seen.body) == (b"POST", b"/invocations", b'{"a": 1}')
    assert seen.headers[b"content-type"] == b"application/json"
    assert seen.headers[b"host"] == b"instance"
    assert seen.headers[b"content-length"] == b"8"
    assert pool.in_flight == 0


def test_header_values_are_trimmed_and_an_empty_body_is_fine() -> None:
    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server.read_request(index, reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type:text/csv  \r\ncontent-length:0\r\n\r\n")

    async def main() -> None:
        async with Upstream(handler) as server:
            pool = server.pool()
            for _ in range(2):
                result = await pool.request(REQUEST, timeout_s=5)
                assert (result.status, result.body, result.header(b"content-type")) == (200, b"", b"text/csv")
            assert server.connections == 1
            pool.close()

    run(main())


def test_error_statuses_are_responses_not_exceptions() -> None:
    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        statuses = iter([400, 500, 503])
        while await server.read_request(index, reader) is not None:
            writer.write(response(next(statuses), b'{"error": "x"}'))

    async def main() -> list[int]:
        async with Upstream(handler) as server:
            pool = server.pool()
            statuses = [(await pool.request(REQUEST, timeout_s=5)).status for _ in range(3)]
            pool.close()
            assert server.connections == 1  # an error status does not cost the connection
            return statuses

    assert run(main()) == [400, 500, 503]


# -- keep-alive --------------------------------------------------------------------------------


def test_sequential_requests_reuse_one_kept_alive_connection() -> None:
    async def main() -> None:
        async with Upstream(echo) as server:
            pool = server.pool()
            bodies = []
            for n in range(5):
                request = encode_request(b"POST", b"/invocations", [], b"request %d" % n)
                bodies.append((await pool.request(request, timeout_s=5)).body)
            assert bodies == [b"request %d" % n for n in range(5)]
            assert server.connections == 1
            assert [r.connection for r in server.requests] == [0] * 5
            assert pool.in_flight == 0
            pool.close()

    run(main())


def gated_echo(release: asyncio.Event) -> Handler:
    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await server.read_request(index, reader)) is not None:
            await release.wait()
            writer.write(response(200, request.body))

    return handler


def test_concurrent_requests_open_connections_that_are_then_reused() -> None:
    async def main() -> None:
        release = asyncio.Event()
        async with Upstream(gated_echo(release)) as server:
            pool = server.pool()
            tasks = [asyncio.create_task(pool.request(REQUEST, timeout_s=5)) for _ in range(3)]
            await until(lambda: len(server.requests) == 3)
            assert pool.in_flight == 3
            release.set()
            assert [r.status for r in await asyncio.gather(*tasks)] == [200, 200, 200]
            assert pool.in_flight == 0
            assert server.connections == 3

            again = await asyncio.gather(*(pool.request(REQUEST, timeout_s=5) for _ in range(3)))
            assert [r.status for r in again] == [200, 200, 200]
            assert server.connections == 3  # the three idle ones were reused
            pool.close()

    run(main())


def test_idle_connections_beyond_max_idle_are_closed() -> None:
    async def main() -> None:
        release = asyncio.Event()
        async with Upstream(gated_echo(release)) as server:
            pool = server.pool(max_idle=1)
            tasks = [asyncio.create_task(pool.request(REQUEST, timeout_s=5)) for _ in range(3)]
            await until(lambda: len(server.requests) == 3)
            release.set()
            await asyncio.gather(*tasks)
            await until(lambda: server.disconnected == 2)  # only one was kept

            await pool.request(REQUEST, timeout_s=5)
            assert server.connections == 3  # ...and that one is used
            pool.close()

    run(main())


@pytest.mark.parametrize(
    ("status_line", "extra"),
    [
        (b"HTTP/1.1 200 OK", [(b"Connection", b"close")]),
        (b"HTTP/1.1 200 OK", [(b"connection", b"Close")]),
        (b"HTTP/1.0 200 OK", []),
    ],
    ids=["connection-close", "lower-case", "http-1.0"],
)
def test_a_response_that_ends_the_connection_is_honoured(status_line: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await server.read_request(index, reader)) is not None:
            writer.write(response(200, request.body, extra).replace(b"HTTP/1.1 200 X", status_line, 1))
            await writer.drain()
            # the connection stays open on this side: the client must not reuse it all the same

    async def main() -> None:
        async with Upstream(handler) as server:
            pool = server.pool()
            for _ in range(3):
                assert (await pool.request(REQUEST, timeout_s=5)).body == b"ping"
            assert server.connections == 3
            assert [r.connection for r in server.requests] == [0, 1, 2]
            await until(lambda: server.disconnected == 3)  # the client closed each one
            pool.close()

    run(main())


# -- connections that go away ---------------------------------------------------------------------


def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    """The server's keep-alive timeout: it answers, then closes the connection while it sits idle."""

    async def answer_once(
        server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        request = await server.read_request(index, reader)
        assert request is not None
        writer.write(response(200, b"from connection %d" % index))
        await writer.drain()

    async def main() -> None:
        async with Upstream(answer_once) as server:
            pool = server.pool()
            assert (await pool.request(REQUEST, timeout_s=5)).body == b"from connection 0"
            await until(lambda: server.closed == 1)
            await asyncio.sleep(0.05)  # time for the client to see the FIN of its idle connection

            assert (await pool.request(REQUEST, timeout_s=5)).body == b"from connection 1"
            assert server.connections == 2
            assert [r.connection for r in server.requests] == [0, 1]
            assert pool.in_flight == 0
            pool.close()

    run(main())


def test_a_stale_kept_alive_connection_is_retried_once_on_a_fresh_one() -> None:
    """The race the retry exists for: the connection looked open, the request went out, and the
    server closed it without answering (answered=False): sent again, transparently."""

    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await server.read_request(index, reader)
        assert first is not None
        if index == 0:
            writer.write(response(200, b"first"))
            await writer.drain()
            await server.read_request(index, reader)  # the second request: closed unanswered
            return
        writer.write(response(200, b"retried on connection %d" % index))
        await writer.drain()
        await server.read_request(index, reader)

    async def main() -> None:
        async with Upstream(handler) as server:
            pool = server.pool()
            assert (await pool.request(REQUEST, timeout_s=5)).body == b"first"

            second = await pool.request(REQUEST, timeout_s=5)

            assert second.status == 200
            assert second.body == b"retried on connection 1"
            assert server.connections == 2
            assert [r.connection for r in server.requests] == [0, 0, 1]
            assert server.requests[2].body == server.requests[1].body == b"ping"  # the same request
            assert pool.in_flight == 0
            pool.close()

    run(main())


def test_the_retry_happens_only_once() -> None:
    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(index, reader)
        if index == 0:
            writer.write(response(200, b"first"))
            await writer.drain()
            await server.read_request(index, reader)
        # every later request (and connection) is closed without an answer

    async def main() -> None:
        async with Upstream(handler) as server:
            pool = server.pool()
            await pool.request(REQUEST, timeout_s=5)

            with pytest.raises(UpstreamError, match="closed the connection") as raised:
                await pool.request(REQUEST, timeout_s=5)

            assert raised.value.answered is False
            assert server.connections == 2  # the stale one and one fresh one, no third try
            assert len(server.requests) == 3
            assert pool.in_flight == 0
            pool.close()

    run(main())


def test_a_fresh_connection_closed_unanswered_is_not_retried() -> None:
    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(index, reader)  # and close

    async def main() -> None:
        async with Upstream(handler) as server:
            pool = server.pool()
            with pytest.raises(UpstreamError, match="closed the connection") as raised:
                await pool.request(REQUEST, timeout_s=5)
            assert raised.value.answered is False  # the caller may try another instance
            await asyncio.sleep(0.05)
            assert server.connections == 1
            assert pool.in_flight == 0
            pool.close()

    run(main())


@pytest.mark.parametrize("reused", [False, True], ids=["fresh-connection", "kept-alive-connection"])
@pytest.mark.parametrize(
    "partial",
    [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it", b"HTTP/1.1 200 OK\r\nContent-Le", b"H"],
    ids=["part-of-the-body", "part-of-the-head", "one-byte"],
)
def test_a_server_that_closes_mid_response_is_an_answered_error_and_not_retried(reused: bool, partial: bytes) -> None:
    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if reused:
            await server.read_request(index, reader)
            writer.write(response(200, b"first"))
            await writer.drain()
        await server.read_request(index, reader)
        writer.write(partial)
        await writer.drain()

    async def main() -> None:
        async with Upstream(handler) as server:
            pool = server.pool()
            if reused:
                await pool.request(REQUEST, timeout_s=5)

            with pytest.raises(UpstreamError, match="closed the connection") as raised:
                await pool.request(REQUEST, timeout_s=5)

            assert raised.value.answered is True  # the instance saw the request: never sent twice
            await asyncio.sleep(0.05)  # a retry, if there were one, would have connected by now
            assert server.connections == 1
            assert len(server.requests) == (2 if reused else 1)
            assert pool.in_flight == 0
            pool.close()

    run(main())


@pytest.mark.parametrize(
    "answer",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nclose-delimited body",
        b"HTTP/1.1 200 OK\r\nX-Huge: " + b"x" * (70 * 1024),
    ],
    ids=[
        "not-http",
        "bad-status",
        "length-not-a-number",
        "negative-length",
        "more-than-its-length",
        "chunked",
        "chunked-and-length",
        "no-length",
        "head-over-64-kib",
    ],
)
def test_a_response_not_framed_by_content_length_is_an_answered_error(answer: bytes) -> None:
    """The instances are modelhost's own server, which frames every response with content-length;
    anything else fails the request (answered: the request was seen) and drops the connection."""

    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(index, reader)
        writer.write(answer)
        await writer.drain()
        await server.read_request(index, reader)  # EOF: counted in server.disconnected

    async def main() -> None:
        async with Upstream(handler) as server:
            pool = server.pool()
            with pytest.raises(UpstreamError, match="^the instance sent ") as raised:
                await pool.request(REQUEST, timeout_s=5)
            assert raised.value.answered is True
            await until(lambda: server.disconnected == 1)  # the client dropped the connection
            assert pool.in_flight == 0
            assert (server.connections, len(server.requests)) == (1, 1)
            pool.close()

    run(main())


def test_a_stray_response_on_an_idle_connection_drops_it() -> None:
    """Bytes nobody asked for: the connection is not one to trust with the next request."""

    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        while (request := await server.read_request(index, reader)) is not None:
            writer.write(response(200, b"%d:%s" % (index, request.body)))
            if first:
                await writer.drain()
                await asyncio.sleep(0.01)
                writer.write(response(200, b"stray"))  # nobody asked for this one
                first = False
            await writer.drain()

    async def main() -> None:
        async with Upstream(handler) as server:
            pool = server.pool()
            assert (await pool.request(REQUEST, timeout_s=5)).body == b"0:ping"
            await until(lambda: server.disconnected == 1)  # the client dropped connection 0

            both = await asyncio.gather(pool.request(REQUEST, timeout_s=5), pool.request(REQUEST, timeout_s=5))

            assert sorted(r.body for r in both) == [b"1:ping", b"2:ping"]
            assert pool.in_flight == 0
            pool.close()

    run(main())


def test_connection_refused_is_an_unanswered_upstream_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def main() -> UpstreamPool:
        pool = UpstreamPool(("127.0.0.1", port))
        assert pool.port == port
        with pytest.raises(UpstreamError, match="cannot connect to the instance at") as raised:
            await pool.request(REQUEST, timeout_s=5)
        assert raised.value.answered is False
        assert "127.0.0.1" in raised.value.message
        assert str(port) in raised.value.message
        return pool

    assert run(main()).in_flight == 0


# -- deadlines and close ---------------------------------------------------------------------------


async def never_answer(
    server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while await server.read_request(index, reader) is not None:
        pass


def test_expire_overdue_aborts_only_requests_past_their_deadline() -> None:
    async def main() -> None:
        async with Upstream(never_answer) as server:
            pool = server.pool()
            started = time.monotonic()
            patient = asyncio.create_task(pool.request(REQUEST, timeout_s=60))
            hasty = asyncio.create_task(pool.request(REQUEST, timeout_s=1))
            await until(lambda: len(server.requests) == 2)
            assert pool.in_flight == 2

            pool.expire_overdue(started)  # nobody is late yet
            await asyncio.sleep(0.02)
            assert not hasty.done()
            assert not patient.done()

            pool.expire_overdue(started + 30)  # past the 1 s deadline, well before the 60 s one
            with pytest.raises(UpstreamError, match="did not answer in time") as raised:
                await hasty
            assert raised.value.answered is True
            assert not patient.done()
            assert pool.in_flight == 1
            await until(lambda: server.disconnected == 1)  # the expired connection was aborted

            pool.expire_overdue(started + 120)
            with pytest.raises(UpstreamError, match="did not answer in time"):
                await patient
            assert pool.in_flight == 0
            assert len(server.requests) == 2  # an expired request is not sent again
            pool.close()

    run(main())


def test_an_expired_kept_alive_connection_is_not_reused_nor_the_request_retried() -> None:
    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if index == 0:
            await server.read_request(index, reader)
            writer.write(response(200, b"first"))
            await writer.drain()
            await never_answer(server, index, reader, writer)
        else:
            await echo(server, index, reader, writer)

    async def main() -> None:
        async with Upstream(handler) as server:
            pool = server.pool()
            await pool.request(REQUEST, timeout_s=5)
            task = asyncio.create_task(pool.request(REQUEST, timeout_s=0.5))  # on kept-alive connection 0
            await until(lambda: len(server.requests) == 2)
            pool.expire_overdue(time.monotonic() + 1)
            with pytest.raises(UpstreamError, match="did not answer in time"):
                await task
            await asyncio.sleep(0.05)
            assert server.connections == 1  # not retried

            assert (await pool.request(REQUEST, timeout_s=5)).body == b"ping"
            assert server.connections == 2  # a fresh connection for the next one
            pool.close()

    run(main())


def test_close_aborts_a_request_in_flight_and_the_idle_connections() -> None:
    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await server.read_request(index, reader)) is not None:
            if request.body == b"answer":
                writer.write(response(200, request.body))
                await writer.drain()

    async def main() -> None:
        async with Upstream(handler) as server:
            pool = server.pool()
            answered = asyncio.create_task(pool.request(encode_request(b"POST", b"/", [], b"answer"), timeout_s=5))
            pending = asyncio.create_task(pool.request(encode_request(b"POST", b"/", [], b"hang"), timeout_s=5))
            assert (await answered).body == b"answer"  # its connection is idle now
            await until(lambda: len(server.requests) == 2)
            assert server.connections == 2
            assert not pool.closed

            pool.close()

            assert pool.closed
            with pytest.raises(UpstreamError, match="closed the connection"):
                await pending
            assert pool.in_flight == 0
            await until(lambda: server.disconnected == 2)  # the idle one and the busy one
            assert len(server.requests) == 2

    run(main())


def test_close_aborts_a_request_in_flight_on_a_kept_alive_connection() -> None:
    async def handler(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if index == 0:
            await server.read_request(index, reader)
            writer.write(response(200, b"first"))
            await writer.drain()
            await never_answer(server, index, reader, writer)
        else:
            await echo(server, index, reader, writer)

    async def main() -> None:
        async with Upstream(handler) as server:
            pool = server.pool()
            await pool.request(REQUEST, timeout_s=5)
            task = asyncio.create_task(pool.request(REQUEST, timeout_s=5))  # on kept-alive connection 0
            await until(lambda: len(server.requests) == 2)

            pool.close()

            with pytest.raises(UpstreamError) as raised:
                await task
            assert raised.value.answered is False
            await asyncio.sleep(0.05)  # a retry, if there were one, would have connected by now
            assert server.connections == 1  # not sent again on a fresh connection of the closed pool
            assert len(server.requests) == 2
            assert pool.in_flight == 0

    run(main())


def test_a_closed_pool_sends_nothing_more() -> None:
    async def main() -> None:
        async with Upstream(echo) as server:
            pool = server.pool()
            await pool.request(REQUEST, timeout_s=5)
            pool.close()

            with pytest.raises(UpstreamError, match="taken out of service"):
                await pool.request(REQUEST, timeout_s=5)
            assert len(server.requests) == 1
            assert pool.in_flight == 0

    run(main())


# -- response framing -----------------------------------------------------------------------------


def test_a_response_split_into_small_segments_still_parses() -> None:
    message = response(200, b"hello, split world", [(b"Content-Type", b"text/plain")])

    async def trickle(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server.read_request(index, reader) is not None:
            for offset in range(0, len(message), 3):  # the head's end marker split across writes, too
                writer.write(message[offset : offset + 3])
                await writer.drain()
                await asyncio.sleep(0.0005)

    async def main() -> None:
        async with Upstream(trickle) as server:
            pool = server.pool()
            for _ in range(2):
                result = await pool.request(REQUEST, timeout_s=5)
                assert result.body == b"hello, split world"
                assert result.header(b"content-type") == b"text/plain"
            assert server.connections == 1
            pool.close()

    run(main())


def test_one_megabyte_bodies_both_ways() -> None:
    body = payload(1 << 20)

    async def main() -> None:
        async with Upstream(echo) as server:
            pool = server.pool()
            request = encode_request(b"POST", b"/invocations", [(b"content-type", b"application/x-npy")], body)
            for _ in range(2):
                result = await pool.request(request, timeout_s=5)
                assert result.status == 200
                assert len(result.body) == len(body)
                assert result.body == body
            assert [r.body == body for r in server.requests] == [True, True]
            assert server.connections == 1
            pool.close()

    run(main())


def test_one_megabyte_response_in_uneven_segments() -> None:
    body = payload(1 << 20)
    message = response(200, body, [(b"Content-Type", b"application/octet-stream")])

    async def segments(
        server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await server.read_request(index, reader) is not None:
            for offset in range(0, len(message), 65536 - 17):
                writer.write(message[offset : offset + 65536 - 17])
                await writer.drain()
                await asyncio.sleep(0)

    async def main() -> None:
        async with Upstream(segments) as server:
            pool = server.pool()
            for _ in range(2):  # the connection is still in step after a long response
                result = await pool.request(REQUEST, timeout_s=5)
                assert result.body == body
            assert server.connections == 1
            pool.close()

    run(main())


def test_in_flight_returns_to_zero_after_successes_and_failures() -> None:
    async def mixed(server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await server.read_request(index, reader)
        if request is not None and request.body != b"drop":
            writer.write(response(200, request.body, [(b"Connection", b"close")]))
            await writer.drain()

    async def main() -> None:
        async with Upstream(mixed) as server:
            pool = server.pool()
            outcomes = await asyncio.gather(
                *(
                    pool.request(encode_request(b"POST", b"/", [], b"drop" if n % 2 else b"keep"), timeout_s=5)
                    for n in range(6)
                ),
                return_exceptions=True,
            )
            assert [isinstance(o, UpstreamError) for o in outcomes] == [False, True] * 3
            assert pool.in_flight == 0
            pool.close()
        with contextlib.suppress(UpstreamError):
            await pool.request(REQUEST, timeout_s=5)  # closed, and the server is gone
        assert pool.in_flight == 0

    run(main())


# -- the callback API ---------------------------------------------------------------------------


def test_send_calls_exactly_one_callback_later() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused_port = sock.getsockname()[1]

    async def main() -> None:
        async with Upstream(echo) as server:
            pool = server.pool()
            calls: list[tuple[str, object]] = []
            done = asyncio.Event()

            def on_response(result: UpstreamResponse) -> None:
                calls.append(("response", result.body))
                done.set()

            def on_error(error: UpstreamError) -> None:
                calls.append(("error", error.answered))
                done.set()

            for sent in range(2):  # a fresh connection, then the kept-alive one
                done.clear()
                pool.send(REQUEST, 5, on_response, on_error)
                assert len(calls) == sent  # not from inside send()
                await done.wait()
            await asyncio.sleep(0.02)  # no second call arrives late
            assert calls == [("response", b"ping"), ("response", b"ping")]
            assert pool.in_flight == 0
            pool.close()

            unreachable = UpstreamPool(("127.0.0.1", refused_port))
            calls.clear()
            done.clear()
            unreachable.send(REQUEST, 5, on_response, on_error)
            assert calls == []  # not from inside send()
            await done.wait()
            await asyncio.sleep(0.02)
            assert calls == [("error", False)]
            assert unreachable.in_flight == 0

    run(main())


def test_in_flight_counts_a_request_on_a_kept_alive_connection_from_send_on() -> None:
    async def main() -> None:
        async with Upstream(echo) as server:
            pool = server.pool()
            await pool.request(REQUEST, timeout_s=5)
            finished = asyncio.Event()

            pool.send(REQUEST, 5, lambda _: finished.set(), lambda _: finished.set())

            assert pool.in_flight == 1
            await finished.wait()
            assert pool.in_flight == 0
            pool.close()

    run(main())


def test_in_flight_counts_a_request_from_send_on_even_while_its_connection_opens() -> None:
    async def main() -> None:
        async with Upstream(echo) as server:
            pool = server.pool()
            finished = asyncio.Event()

            pool.send(REQUEST, 5, lambda _: finished.set(), lambda _: finished.set())

            try:
                assert pool.in_flight == 1
            finally:
                await finished.wait()
                pool.close()

    run(main())


def test_send_from_inside_a_response_callback_reuses_the_connection() -> None:
    """The connection is back in the pool before the callback runs, so a chained request can take it."""

    async def main() -> None:
        async with Upstream(echo) as server:
            pool = server.pool()
            bodies: list[bytes] = []
            finished = asyncio.Event()

            def on_response(result: UpstreamResponse) -> None:
                bodies.append(result.body)
                if len(bodies) < 5:
                    pool.send(encode_request(b"POST", b"/", [], b"%d" % len(bodies)), 5, on_response, on_error)
                else:
                    finished.set()

            def on_error(error: UpstreamError) -> None:
                raise AssertionError(error)

            pool.send(encode_request(b"POST", b"/", [], b"0"), 5, on_response, on_error)
            await finished.wait()
            assert bodies == [b"0", b"1", b"2", b"3", b"4"]
            assert server.connections == 1
            assert pool.in_flight == 0
            pool.close()

    run(main())


# -- Unix sockets ---------------------------------------------------------------------------------


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short folder for socket files (AF_UNIX paths stop at ~107 bytes; pytest's tmp_path may not)."""
    folder = Path(tempfile.mkdtemp(prefix="upstream-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def kept_alive_then_stale(
    server: Upstream, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Awaitable[None]:
    """Connection 0 answers twice, then closes on the third request unanswered; later ones echo."""

    async def handle() -> None:
        for answered in range(3):
            request = await server.read_request(index, reader)
            if request is None:
                return
            if index == 0 and answered == 2:
                return
            writer.write(response(200, b"%d:%s" % (index, request.body)))
            await writer.drain()
        await echo(server, index, reader, writer)

    return handle()


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_unix_socket_round_trip_keep_alive_and_stale_retry(socket_dir: Path, kind: str) -> None:
    address = str(socket_dir / "worker-0.sock") if kind == "path" else f"@modelhost-test-{uuid.uuid4().hex}"

    async def main() -> None:
        async with Upstream(kept_alive_then_stale, unix=address) as server:
            pool = server.pool()
            assert pool.address == address
            assert pool.port is None
            bodies = [
                (await pool.request(encode_request(b"POST", b"/", [], b"%d" % n), timeout_s=5)).body for n in range(3)
            ]
            assert bodies == [b"0:0", b"0:1", b"1:2"]  # the third went out again on a fresh connection
            assert server.connections == 2
            assert [r.connection for r in server.requests] == [0, 0, 0, 1]
            assert pool.in_flight == 0
            pool.close()

    run(main())
    if kind == "path":
        assert (socket_dir / "worker-0.sock").exists()  # the server's file; the pool does not touch it


def test_unix_socket_large_body(socket_dir: Path) -> None:
    body = payload(1 << 20)

    async def main() -> None:
        async with Upstream(echo, unix=str(socket_dir / "w.sock")) as server:
            pool = server.pool()
            result = await pool.request(encode_request(b"POST", b"/", [], body), timeout_s=5)
            assert result.body == body
            pool.close()

    run(main())


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_a_unix_socket_nobody_listens_on_is_an_unanswered_error(socket_dir: Path, kind: str) -> None:
    address = str(socket_dir / "missing.sock") if kind == "path" else f"@modelhost-test-{uuid.uuid4().hex}"

    async def main() -> UpstreamPool:
        pool = UpstreamPool(address)
        with pytest.raises(UpstreamError, match="cannot connect to the instance at") as raised:
            await pool.request(REQUEST, timeout_s=5)
        assert raised.value.answered is False
        assert address in raised.value.message
        return pool

    assert run(main()).in_flight == 0
