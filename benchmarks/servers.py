"""Server processes under test: start on a free port, poll ``/ping`` with a deadline, stop by PID.

Each server runs in a session of its own, so its process group holds it and its workers and
nothing else: stopping sends SIGTERM to its main process (a graceful stop), then SIGKILL to the
group for whatever is left. Nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vocabulary import BenchmarkError

HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.005  # fine enough for the cold-start figure


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server; ``{port}`` in ``args`` stands for the port it gets."""

    key: str  # stable name, used by the targets and the JSON
    label: str  # what the table shows
    args: tuple[str, ...]
    workers: int
    env: Mapping[str, str] = field(default_factory=dict)

    def command(self, port: int) -> list[str]:
        return [arg.replace("{port}", str(port)) for arg in self.args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_call(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class ServerProcess:
    """A started server: its port, its main process and its log file."""

    def __init__(self, spec: ServerSpec, log_path: Path) -> None:
        self.spec = spec
        self.port = free_port()
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                spec.command(self.port),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **spec.env},
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def ping_ok(self) -> bool:
        try:
            status, _ = http_call(self.port, "GET", "/ping", timeout=1.0)
        except OSError:  # refused before the bind, reset while loading
            return False
        return status == 200

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll ``/ping`` until 200; fail early, with the log's tail, if the server exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchmarkError(f"{self.spec.label} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.ping_ok():
                return
            time.sleep(POLL_INTERVAL_S)
        raise BenchmarkError(f"{self.spec.label} not ready within {timeout_s:g} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # its own group (start_new_session): stragglers only
        self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running(spec: ServerSpec, log_path: Path) -> Iterator[ServerProcess]:
    """A ready server for the ``with`` block, stopped afterwards whatever happened."""
    server = ServerProcess(spec, log_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def cold_start_s(spec: ServerSpec, log_path: Path) -> float:
    """Seconds from starting the process to its first 200 on ``/ping``."""
    started = time.perf_counter()
    server = ServerProcess(spec, log_path)
    try:
        server.wait_ready()
        return time.perf_counter() - started
    finally:
        server.stop()
