"""The hand-off channel between the front door and one worker slot: its socket, messages and framing.

One SOCK_SEQPACKET Unix socket per worker slot (abstract namespace), on which messages keep their
boundaries and can carry a descriptor (SCM_RIGHTS):

    front door ──"C" + fd──► worker: serve this connection (one byte: times it came back before)
    front door ──"D"───────► worker: give every connection back
    worker ──"R" + fd + bytes─► front door: this connection, and what was read of its next request
    worker ──"B" + bytes──────► front door: more of those bytes, right after their "R"

What the front door and the worker do with a connection is in ``modelhost.frontdoor.handoff`` and
``modelhost.server.handoff``; this module is the wire between them.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import logging
import os
import socket
import struct

log = logging.getLogger("modelhost.handoff")

CONNECTION = b"C"  # front door -> worker: a connection to serve (header: times it came back before)
RECALL = b"D"  # front door -> worker: give every connection back
RETURNED = b"R"  # worker -> front door: a connection, with >IB (bytes that follow, times back) and bytes
MORE = b"B"  # worker -> front door: more bytes of the connection just returned
CHUNK = 48 * 1024  # bytes per message: well under the smallest socket buffer
MAX_MESSAGE = CHUNK + 16
_RETURN_HEADER = struct.Struct(">IB")


def handoff_name(master_pid: int, slot: int) -> str:
    """The abstract socket name of one worker slot's hand-off channel ('@' for the abstract namespace)."""
    return f"@modelhost-{master_pid}-{slot}-handoff"


def bind_handoff_sockets(count: int) -> list[socket.socket]:
    """One listening hand-off socket per worker slot (the front door connects once per worker)."""
    sockets = []
    for slot in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.bind("\0" + handoff_name(os.getpid(), slot)[1:])
        sock.listen(16)
        sockets.append(sock)
    return sockets


def send_with_fd(channel: socket.socket, message: bytes, fd: int) -> None:
    """One message carrying a descriptor (the receiver gets its own copy of it)."""
    channel.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def receive(channel: socket.socket) -> tuple[bytes, int | None]:
    """One message and the descriptor it carried, if any; ``b""`` at the end (BlockingIOError: none yet)."""
    message, ancillary, _flags, _address = channel.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(4 * 4))
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(data[: len(data) - len(data) % received.itemsize])
            fds.extend(received)
    for extra in fds[1:]:  # never sent; closed rather than leaked
        os.close(extra)
    return message, (fds[0] if fds else None)


def returned_messages(data: bytes, times_back: int) -> list[bytes]:
    """The messages that give a connection back: "R" (to carry its descriptor) with the first bytes
    read of it, then "B" messages of at most CHUNK bytes with the rest."""
    first, rest = data[:CHUNK], data[CHUNK:]
    messages = [RETURNED + _RETURN_HEADER.pack(len(rest), min(times_back, 255)) + first]
    messages += [MORE + rest[start : start + CHUNK] for start in range(0, len(rest), CHUNK)]
    return messages


class Outbox:
    """Messages to the front door on one channel, sent in order; what the channel cannot take yet waits.

    A channel holds only a few large messages at a time (4 of CHUNK bytes on Linux), so a connection
    given back with much already read of it must wait for the front door to read: never block the
    worker's loop on that, never drop a message (the front door would wait for the rest forever).
    """

    def __init__(self, channel: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.channel = channel
        self.broken = False
        self._loop = loop
        self._queue: collections.deque[tuple[bytes, int | None]] = collections.deque()
        self._waiting = False

    def give_back(self, fd: int, data: bytes, times_back: int) -> bool:
        """Queue a connection (``fd`` is the outbox's to close once sent); False: the channel is broken."""
        if self.broken:
            os.close(fd)
            return False
        first, *rest = returned_messages(data, times_back)
        self._queue.append((first, fd))
        self._queue.extend((message, None) for message in rest)
        self._flush()
        return not self.broken

    def _flush(self) -> None:
        while self._queue:
            message, fd = self._queue[0]
            try:
                if fd is None:
                    self.channel.send(message)
                else:
                    send_with_fd(self.channel, message, fd)
            except (BlockingIOError, InterruptedError):
                if not self._waiting:
                    self._loop.add_writer(self.channel.fileno(), self._flush)
                    self._waiting = True
                return
            except OSError as exc:
                log.warning("the hand-off channel to the front door broke (%s); closing what it had", exc)
                self.close()
                return
            self._queue.popleft()
            if fd is not None:
                os.close(fd)
        self._stop_waiting()

    def _stop_waiting(self) -> None:
        if self._waiting:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(self.channel.fileno())
            self._waiting = False

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Close the channel; connections still queued are dropped (the front door is gone)."""
        self.broken = True
        self._stop_waiting()
        while self._queue:
            _message, fd = self._queue.popleft()
            if fd is not None:
                os.close(fd)
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self.channel.fileno())
        self.channel.close()


def parse_returned(message: bytes) -> tuple[int, int, bytes]:
    """(bytes still to come in MORE messages, times back, the first bytes) of a RETURNED message."""
    more, times_back = _RETURN_HEADER.unpack_from(message, 1)
    return more, times_back, message[1 + _RETURN_HEADER.size :]
