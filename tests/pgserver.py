"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temporary data folder, a
free port on 127.0.0.1, stopped by PID. Installed by scripts/services (apt-get install postgresql)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """``with PostgresServer() as pg: pg.url`` -> a SQLAlchemy URL of an empty database."""

    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            pytest.skip("PostgreSQL is not installed (scripts/services installs it)")
        self._bin = bindir
        self.port = _free_port()
        self._root = Path(tempfile.mkdtemp(prefix="modelhost-pg-"))
        # PostgreSQL refuses to run as root: as root, it runs as the postgres user.
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user:
            shutil.chown(self._root, self._user, self._user)
        self._process: subprocess.Popen[bytes] | None = None
        self.url = f"postgresql+psycopg://modelhost@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, user=self._user, timeout=60)

    def __enter__(self) -> PostgresServer:
        data = self._root / "data"
        self._run(str(self._bin / "initdb"), "-D", str(data), "-U", "modelhost", "--auth=trust", "-E", "UTF8")
        self._log = (self._root / "server.log").open("wb")
        self._process = subprocess.Popen(
            [
                str(self._bin / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self._root),
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            user=self._user,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self._root / 'server.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                ready = subprocess.run(
                    [str(self._bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                    check=False,
                    capture_output=True,
                )
                if ready.returncode == 0:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError("postgres did not start in 30 s")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGINT)  # fast shutdown
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
            self._log.close()
        shutil.rmtree(self._root, ignore_errors=True)

    def new_database(self) -> str:
        """A fresh, empty database on this server; its SQLAlchemy URL."""
        import psycopg

        name = f"test_{next(_counter)}_{os.getpid()}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=modelhost dbname=postgres", autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://modelhost@127.0.0.1:{self.port}/{name}"


_counter = iter(range(1, 1_000_000))
