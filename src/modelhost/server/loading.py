"""Answers 503 on the server's port while the model loads, before any worker exists.

SageMaker (and our own control plane) polls ``/ping`` from the moment the container starts;
a refused connection and a model still loading should look different to it.
"""

from __future__ import annotations

import select
import socket
import threading

import orjson

_BODY = orjson.dumps({"status": "Loading", "message": "the model is loading"})
_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\nretry-after: 1\r\nconnection: close\r\n\r\n" + _BODY
)


class LoadingResponder:
    def __init__(self, sockets: list[socket.socket]) -> None:
        self._sockets = sockets
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="modelhost-loading", daemon=True)

    def __enter__(self) -> LoadingResponder:
        for sock in self._sockets:
            sock.setblocking(False)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _serve(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select(self._sockets, [], [], 0.05)
            for sock in readable:
                self._answer(sock)

    @staticmethod
    def _answer(sock: socket.socket) -> None:
        try:
            connection, _ = sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        with connection:
            connection.settimeout(0.5)
            try:
                received = b""
                while b"\r\n\r\n" not in received and len(received) < 16384:
                    chunk = connection.recv(4096)
                    if not chunk:
                        break
                    received += chunk
                connection.sendall(_RESPONSE)
            except OSError:
                pass
