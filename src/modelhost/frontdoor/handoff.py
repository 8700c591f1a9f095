"""Connection hand-off, the front door's side: one channel per worker, connections out, connections back.

After the front door answered a plain invocation (see ``FrontDoor.handle`` for what qualifies),
the connection goes to the worker that served it, which answers its next requests itself: the
front door's CPU per request drops to nothing for such traffic. The wire format is in
``modelhost.server.handoff_channel``, the worker's side in ``modelhost.server.handoff``. This
module keeps the channels (opened on first use, closed when the worker closes its end) and turns
connections that come back into front door connections again, with the bytes the worker had read
of their next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from modelhost.server.handoff_channel import CONNECTION, MORE, RECALL, RETURNED, parse_returned, receive, send_with_fd

log = logging.getLogger("modelhost.frontdoor")

MAX_TIMES_BACK = 3  # a connection the workers keep giving back (requests they do not serve) stays here

Returned = Callable[[socket.socket, bytes, int], None]


@dataclass
class _Channel:
    sock: socket.socket
    endpoint: str
    partial: tuple[int, int, list[bytes], int] | None = None  # fd, times back, bytes, bytes still to come
    handed: int = 0


class Handoff:
    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._loop = asyncio.get_running_loop()
        self.on_returned: Returned | None = None  # the server: makes a front door connection of it

    def give(self, fd: int, name: str, endpoint: str, times_back: int) -> bool:
        """Pass the connection ``fd`` to the worker behind hand-off socket ``name``; False: keep it."""
        channel = self._channel(name, endpoint)
        if channel is None:
            return False
        try:
            send_with_fd(channel.sock, CONNECTION + bytes([min(times_back, 255)]), fd)
        except BlockingIOError:
            return False  # its queue is full: serve it here this time
        except OSError:
            self._close(name)
            return False
        channel.handed += 1
        return True

    def recall(self, endpoint: str | None = None) -> None:
        """Ask the workers of ``endpoint`` (None: of every endpoint) to give their connections back."""
        for name, channel in list(self._channels.items()):
            if endpoint is None or channel.endpoint == endpoint:
                self._send_recall(name)

    def _send_recall(self, name: str) -> None:
        """A recall must arrive (the endpoint may need keys now): a full channel is tried again shortly."""
        channel = self._channels.get(name)
        if channel is None:
            return
        try:
            channel.sock.send(RECALL)
        except (BlockingIOError, InterruptedError):
            self._loop.call_later(0.005, self._send_recall, name)
        except OSError:
            self._close(name)

    def handed(self) -> dict[str, int]:
        """Connections handed so far, by worker socket (for tests and diagnostics)."""
        return {name: channel.handed for name, channel in self._channels.items()}

    def close(self) -> None:
        for name in list(self._channels):
            self._close(name)

    # -- channels ---------------------------------------------------------------------------------------
    def _channel(self, name: str, endpoint: str) -> _Channel | None:
        channel = self._channels.get(name)
        if channel is not None:
            return channel
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        try:
            sock.connect("\0" + name[1:] if name.startswith("@") else name)
        except OSError as exc:
            log.debug("no hand-off channel to %s: %s", name, exc)
            sock.close()
            return None
        channel = self._channels[name] = _Channel(sock, endpoint)
        self._loop.add_reader(sock.fileno(), self._on_message, name)
        return channel

    def _close(self, name: str) -> None:
        channel = self._channels.pop(name, None)
        if channel is None:
            return
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(channel.sock.fileno())
        if channel.partial is not None:
            os.close(channel.partial[0])
        channel.sock.close()

    def _on_message(self, name: str) -> None:
        channel = self._channels.get(name)
        if channel is None:
            return
        try:
            message, fd = receive(channel.sock)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            message, fd = b"", None
        if not message:  # the worker is gone
            self._close(name)
            return
        kind = message[:1]
        if kind == RETURNED and fd is not None:
            more, times_back, first = parse_returned(message)
            channel.partial = (fd, times_back, [first], more)
        elif kind == MORE and channel.partial is not None:
            fd_, times_back, chunks, more = channel.partial
            chunk = message[1:]
            chunks.append(chunk)
            channel.partial = (fd_, times_back, chunks, more - len(chunk))
        elif fd is not None:
            os.close(fd)
            return
        if channel.partial is not None and channel.partial[3] <= 0:
            fd_, times_back, chunks, _ = channel.partial
            channel.partial = None
            self._deliver(fd_, b"".join(chunks), times_back)

    def _deliver(self, fd: int, data: bytes, times_back: int) -> None:
        sock = socket.socket(fileno=fd)
        if self.on_returned is None:
            sock.close()
            return
        self.on_returned(sock, data, times_back)
