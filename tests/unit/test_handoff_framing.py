"""The hand-off channel's framing, over real Unix sockets: connections out, connections back with bytes.

The front door's ``Handoff`` connects to a listening SEQPACKET socket that plays the worker here;
descriptors travel with SCM_RIGHTS, and what a worker read of a returned connection's next request
comes back whole however many messages it takes.
"""

from __future__ import annotations

import array
import asyncio
import os
import socket
import uuid

import pytest

from modelhost.frontdoor.handoff import Handoff
from modelhost.server.handoff import parse_head
from modelhost.server.handoff_channel import (
    CHUNK,
    CONNECTION,
    MORE,
    RECALL,
    RETURNED,
    Outbox,
    parse_returned,
    receive,
    returned_messages,
    send_with_fd,
)

PATH = b"/endpoints/sentiment/invocations"


def head(*lines: str, request_line: str = "POST /endpoints/sentiment/invocations HTTP/1.1") -> bytes:
    return "\r\n".join([request_line, *lines]).encode()


# -- the heads a worker serves ------------------------------------------------------------------------------
def test_a_plain_invocation_is_the_workers() -> None:
    parsed = parse_head(head("Host: x", "Content-Type: application/json", "Content-Length: 12"), PATH)
    assert parsed == (12, True, [(b"host", b"x"), (b"content-type", b"application/json"), (b"content-length", b"12")])


def test_connection_close_is_honoured() -> None:
    parsed = parse_head(head("Content-Length: 0", "Connection: Close"), PATH)
    assert parsed is not None
    assert parsed[:2] == (0, False)


@pytest.mark.parametrize(
    "request_head",
    [
        head("Content-Length: 2", request_line="GET /endpoints/sentiment/invocations HTTP/1.1"),
        head("Content-Length: 2", request_line="POST /endpoints/other/invocations HTTP/1.1"),
        head("Content-Length: 2", request_line="POST /endpoints/sentiment/invocations HTTP/1.0"),
        head("Content-Length: 2", request_line="POST /endpoints/sentiment/invocations?x=1 HTTP/1.1"),
        head("Transfer-Encoding: chunked"),
        head("Content-Length: 2", "Expect: 100-continue"),
        head("Content-Length: 2", "X-Amzn-SageMaker-Target-Variant: AllTraffic"),
        head("Content-Length: 2", "X-Amzn-SageMaker-Target-Model: a.tar.gz"),
        head("Content-Length: 2", "Content-Length: 2"),
        head("Content-Length: -1"),
        head("Content-Length: 1e3"),
        head("Content-Type: application/json"),  # no length: the front door's 411 or chunked reading
        head("Content-Length: 2", " Folded: header"),
        head("Content-Length : 2"),
        head("Content-Length: 2", "no colon"),
    ],
)
def test_anything_else_goes_back_to_the_front_door(request_head: bytes) -> None:
    assert parse_head(request_head, PATH) is None


# -- messages -------------------------------------------------------------------------------------------------
def test_a_connection_given_back_is_one_message_with_its_length_then_chunks() -> None:
    data = b"x" * (2 * CHUNK + 5)
    first, *rest = returned_messages(data, 2)
    assert first[:1] == RETURNED
    assert parse_returned(first) == (CHUNK + 5, 2, b"x" * CHUNK)
    assert [message[:1] for message in rest] == [MORE, MORE]
    assert b"".join(message[1:] for message in rest) == b"x" * (CHUNK + 5)
    assert returned_messages(b"", 300) == [RETURNED + b"\0\0\0\0\xff"]  # times back saturates at 255


def test_a_descriptor_sent_is_the_same_connection() -> None:
    worker, front = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    client, server = socket.socketpair()
    with worker, front, client, server:
        send_with_fd(worker, RETURNED + b"\0\0\0\0\0", server.fileno())
        message, fd = receive(front)
        assert message == RETURNED + b"\0\0\0\0\0"
        assert fd is not None
        with socket.socket(fileno=fd) as returned:
            returned.sendall(b"through the copy")
            assert client.recv(100) == b"through the copy"


def test_extra_descriptors_are_closed_not_leaked() -> None:
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    read_1, write_1 = os.pipe()
    read_2, write_2 = os.pipe()
    with sender, receiver:
        before = len(os.listdir("/proc/self/fd"))
        fds = array.array("i", [read_1, read_2])
        sender.sendmsg([CONNECTION + b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        message, fd = receive(receiver)
        assert message == CONNECTION + b"\0"
        assert fd is not None
        os.close(fd)
        assert len(os.listdir("/proc/self/fd")) == before  # the second copy was closed by receive
    for descriptor in (read_1, write_1, read_2, write_2):
        os.close(descriptor)


# -- the front door's side, end to end ----------------------------------------------------------------------
async def _hand_over_and_back(data: bytes) -> tuple[int, bytes, bytes]:
    """Give a connection to a worker's channel, get it back with ``data``: what the front door saw.

    The worker's side is the real ``Outbox`` on the same loop: a channel takes only a few large
    messages, so the outbox must wait for the front door to read them.
    """
    loop = asyncio.get_running_loop()
    name = f"@modelhost-test-{uuid.uuid4().hex}-handoff"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind("\0" + name[1:])
    listener.listen(1)
    client, server = socket.socketpair()
    handoff = Handoff()
    returned: asyncio.Future[tuple[socket.socket, bytes, int]] = loop.create_future()
    handoff.on_returned = lambda sock, got, times_back: returned.set_result((sock, got, times_back))
    try:
        assert handoff.give(server.fileno(), name, "sentiment", 1)
        assert handoff.handed() == {name: 1}
        channel, _ = listener.accept()
        channel.settimeout(5)
        message, fd = receive(channel)
        assert message == CONNECTION + b"\x01"
        assert fd is not None
        handoff.recall("other-endpoint")  # not this channel's endpoint: nothing sent
        handoff.recall("sentiment")
        assert channel.recv(16) == RECALL
        channel.setblocking(False)
        outbox = Outbox(channel, loop)
        assert outbox.give_back(fd, data, 2)
        sock, got, times_back = await asyncio.wait_for(returned, 5)
        assert outbox.pending() == 0
        outbox.close()
        with sock:
            sock.sendall(b"still the client's")
            heard = client.recv(100)
        return times_back, got, heard
    finally:
        handoff.close()
        listener.close()
        client.close()
        server.close()


@pytest.mark.parametrize("size", [0, 10, CHUNK - 5, CHUNK, CHUNK + 1, 3 * CHUNK + 17, 6 * 1024 * 1024])
def test_a_connection_comes_back_with_every_byte_read_of_it(size: int) -> None:
    data = bytes(index % 251 for index in range(size))
    times_back, got, heard = asyncio.run(_hand_over_and_back(data))
    assert times_back == 2
    assert got == data
    assert heard == b"still the client's"


def test_no_worker_listening_means_the_front_door_keeps_the_connection() -> None:
    async def give() -> bool:
        handoff = Handoff()
        client, server = socket.socketpair()
        with client, server:
            kept = not handoff.give(server.fileno(), f"@modelhost-test-{uuid.uuid4().hex}-none", "sentiment", 0)
        handoff.close()
        return kept

    assert asyncio.run(give())


def test_a_worker_that_goes_away_closes_its_channel() -> None:
    async def run() -> dict[str, int]:
        name = f"@modelhost-test-{uuid.uuid4().hex}-handoff"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind("\0" + name[1:])
        listener.listen(1)
        handoff = Handoff()
        client, server = socket.socketpair()
        with listener, client, server:
            assert handoff.give(server.fileno(), name, "sentiment", 0)
            channel, _ = listener.accept()
            _message, fd = receive(channel)
            assert fd is not None
            os.close(fd)
            channel.close()  # the worker stopped
            for _ in range(100):
                await asyncio.sleep(0.01)
                if not handoff.handed():
                    break
        left = handoff.handed()
        handoff.close()
        return left

    assert asyncio.run(run()) == {}


def test_send_with_fd_delivers_a_working_descriptor() -> None:
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    read_end, write_end = os.pipe()
    with sender, receiver:
        send_with_fd(sender, CONNECTION + b"\0", write_end)
        os.close(write_end)
        _message, fd = receive(receiver)
        assert fd is not None
        os.write(fd, b"hello")
        os.close(fd)
        assert os.read(read_end, 10) == b"hello"
    os.close(read_end)


def test_a_broken_channel_closes_the_connection_instead_of_losing_it_silently() -> None:
    async def run() -> tuple[bool, bool]:
        worker, front = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        worker.setblocking(False)
        front.close()  # the front door is gone
        client, server = socket.socketpair()
        outbox = Outbox(worker, asyncio.get_running_loop())
        given = outbox.give_back(os.dup(server.fileno()), b"GET / HTTP/1.1\r\n", 1)
        server.close()  # the worker's own descriptor; the outbox closed its copy
        client.settimeout(5)
        closed = client.recv(10) == b""  # every descriptor of the connection closed: the client sees it
        client.close()
        return given, closed

    assert asyncio.run(run()) == (False, True)
