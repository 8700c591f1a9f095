"""A local HTTP server of JSON schemas that records every request: each one is a fetch the platform
should never have made (route schemas must not reach outside themselves). ``schema_server`` in
tests/conftest.py starts one per test."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Fetches(http.server.BaseHTTPRequestHandler):
    asked: list[str] = []  # the paths requested, in order

    def do_GET(self) -> None:
        self.asked.append(self.path)
        body = b'{"type": "string"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving_schemas() -> Iterator[str]:
    """The server's base URL while it runs; ``Fetches.asked`` starts empty."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fetches)
    Fetches.asked = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
