"""One instance of a production variant: a model-server process (master + its workers) on its own port.

The instance is the model server of the first layer, started as ``python -m modelhost.server``
and configured through its environment. It picks a free port itself and writes it to a file
(no port race), stops when the platform process goes away (no orphans), and runs in its own
process group so that stopping it can never leave a worker behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from modelhost.control.resources import Model
from modelhost.errors import ModelhostError
from modelhost.frontdoor.upstream import UpstreamError, UpstreamPool, encode_request
from modelhost.runtime.launcher import Launcher

log = logging.getLogger("modelhost.runtime")

_PING = encode_request(b"GET", b"/ping", [], b"")
POLL_S = 0.03


class ProcessHandle(Protocol):
    """An instance's process: an asyncio subprocess, or one the launcher forked."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def send_signal(self, signum: int) -> None: ...


class InstanceFailed(ModelhostError):
    """An instance did not come up; the message carries the end of its log (the load error)."""

    status = 500
    code = "InstanceFailed"


class InstanceState(enum.StrEnum):
    STARTING = "Starting"
    HEALTHY = "Healthy"
    RESTARTING = "Restarting"
    STOPPED = "Stopped"
    FAILED = "Failed"


@dataclass(frozen=True)
class InstanceSpec:
    endpoint: str
    variant: str
    index: int
    model: Model

    @property
    def label(self) -> str:
        return f"{self.endpoint}/{self.variant}/{self.index}"


class Instance:
    def __init__(
        self,
        spec: InstanceSpec,
        *,
        run_dir: Path,
        log_path: Path,
        environment: Mapping[str, str],
        load_timeout_s: float,
        request_timeout_s: float,
        launcher: Launcher | None = None,
        handoff: bool = False,
    ) -> None:
        self.spec = spec
        self._launcher = launcher
        self._handoff = handoff  # its workers serve client connections the front door hands over
        self.run_dir = run_dir
        self.log_path = log_path
        self.state = InstanceState.STARTING
        # While healthy: where the front door sends requests (one pool per worker's Unix socket),
        # and the instance's TCP port (health checks, direct access).
        self.pools: list[UpstreamPool] = []
        self.handoff_names: dict[UpstreamPool, str] = {}  # a worker's pool -> its hand-off socket
        self._control: UpstreamPool | None = None
        self.restarts = 0
        self._environment = dict(environment)
        self._load_timeout_s = load_timeout_s
        self.request_timeout_s = request_timeout_s
        self._process: ProcessHandle | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def port(self) -> int | None:
        return self._control.port if self._control is not None else None

    @property
    def in_flight(self) -> int:
        return sum(pool.in_flight for pool in self.pools)

    def least_busy(self) -> UpstreamPool | None:
        """The worker pool with the fewest requests in flight (None unless healthy)."""
        best: UpstreamPool | None = None
        for pool in self.pools:
            if best is None or pool.in_flight < best.in_flight:
                best = pool
        return best

    @property
    def healthy(self) -> bool:
        return self.state is InstanceState.HEALTHY

    # -- start -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the process and wait until its ``/ping`` answers 200; InstanceFailed otherwise."""
        self.state = InstanceState.STARTING
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        port_file = self.run_dir / "port"
        port_file.unlink(missing_ok=True)
        environment = {
            **os.environ,
            "MODELHOST_MODEL": self.spec.model.artifact_uri,
            "MODELHOST_HOST": "127.0.0.1",
            "MODELHOST_PORT": "0",
            "MODELHOST_PORT_FILE": str(port_file),
            "MODELHOST_PARENT_PID": str(os.getpid()),
            "MODELHOST_CACHE_DIR": str(self.run_dir / "cache"),
            "MODELHOST_KEEP_ALIVE": "3600",  # the front door keeps its connections
            "MODELHOST_UNIX_SOCKETS": "1",
            **({"MODELHOST_FRAMEWORK": self.spec.model.framework} if self.spec.model.framework else {}),
            **(
                {"MODELHOST_HANDOFF_ENDPOINT": self.spec.endpoint, "MODELHOST_HANDOFF_VARIANT": self.spec.variant}
                if self._handoff
                else {}
            ),
            **(
                {"MODELHOST_EXPECTED_SHA256": self.spec.model.artifact_sha256}
                if self.spec.model.artifact_sha256
                else {}
            ),
            **self._environment,
            **self.spec.model.environment,
        }
        with self.log_path.open("ab") as log_file:
            log_file.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self.spec.label}\n".encode())
        self._process = await self._spawn(environment)
        log.info("instance %s: started pid %d", self.spec.label, self._process.pid)
        try:
            port, local, handoff = await self._wait_for_addresses(port_file)
            control = UpstreamPool(("127.0.0.1", port))
            await self._wait_until_healthy(control)
        except BaseException:
            await self.kill()
            raise
        self._control = control
        self.pools = [UpstreamPool(name) for name in local] or [UpstreamPool(("127.0.0.1", port))]
        self.handoff_names = dict(zip(self.pools, handoff, strict=False)) if len(handoff) == len(local) else {}
        self.state = InstanceState.HEALTHY
        log.info("instance %s: healthy on port %d", self.spec.label, port)

    async def _spawn(self, environment: dict[str, str]) -> ProcessHandle:
        """Forked by the warm launcher when there is one (no interpreter start, no imports), else exec'd."""
        if self._launcher is not None:
            try:
                return await self._launcher.spawn(environment, str(self.log_path), self.spec.label)
            except OSError as exc:
                log.warning("instance %s: the launcher failed (%s); starting a fresh interpreter", self.spec.label, exc)
        with self.log_path.open("ab") as log_file:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "modelhost.server",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=environment,
                start_new_session=True,  # its own process group: stopping it reaches every worker
            )

    async def _wait_for_addresses(self, port_file: Path) -> tuple[int, list[str], list[str]]:
        """The TCP port, the per-worker Unix sockets and hand-off sockets the server writes once bound."""
        deadline = time.monotonic() + self._load_timeout_s
        while True:
            self._raise_if_exited()
            with contextlib.suppress(FileNotFoundError, ValueError):
                addresses = orjson.loads(port_file.read_bytes())
                return (
                    int(addresses["port"]),
                    [str(name) for name in addresses.get("unix", [])],
                    [str(name) for name in addresses.get("handoff", [])],
                )
            if time.monotonic() > deadline:
                raise InstanceFailed(f"instance {self.spec.label} did not open its port in {self._load_timeout_s:g} s")
            await asyncio.sleep(POLL_S)

    async def _wait_until_healthy(self, pool: UpstreamPool) -> None:
        deadline = time.monotonic() + self._load_timeout_s
        while True:
            self._raise_if_exited()
            with contextlib.suppress(UpstreamError):
                if (await pool.request(_PING, timeout_s=5.0)).status == 200:
                    return
            if time.monotonic() > deadline:
                raise InstanceFailed(
                    f"instance {self.spec.label} did not load its model in {self._load_timeout_s:g} s"
                    f"{self._log_excerpt()}"
                )
            await asyncio.sleep(POLL_S)

    def _raise_if_exited(self) -> None:
        assert self._process is not None
        if self._process.returncode is not None:
            raise InstanceFailed(
                f"instance {self.spec.label} exited with code {self._process.returncode} while starting"
                f"{self._log_excerpt()}"
            )

    def _log_excerpt(self, lines: int = 12) -> str:
        """The end of the instance's log since its last start: where the load error is."""
        tail = read_tail(self.log_path, 64 * 1024)
        since_start = tail.rsplit("\n--- ", 1)[-1].splitlines()[1:]
        relevant = [line for line in since_start if line.strip()][-lines:]
        return (":\n" + "\n".join(relevant)) if relevant else ""

    # -- run and stop ------------------------------------------------------------------------------
    async def wait_exit(self) -> int:
        """Until the process ends; its exit code."""
        assert self._process is not None
        return await self._process.wait()

    def mark_down(self) -> None:
        """Out of rotation: the front door stops sending here at once."""
        for pool in [*self.pools, *([self._control] if self._control is not None else [])]:
            pool.close()
        self.pools = []
        self.handoff_names = {}
        self._control = None

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) until requests the front door already sent here have their answers."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM (in-flight requests finish), then SIGKILL of the whole group after ``grace_s``."""
        self.state = InstanceState.STOPPED
        self.mark_down()
        process = self._process
        if process is None or process.returncode is not None:
            self._kill_group()
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            log.warning("instance %s: did not stop in %.0f s; killing it", self.spec.label, grace_s)
        await self.kill()

    async def kill(self) -> None:
        self.mark_down()
        self._kill_group()
        if self._process is not None:
            await self._process.wait()

    def _kill_group(self) -> None:
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)

    def remove_files(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)


def read_tail(path: Path, max_bytes: int) -> str:
    """The last ``max_bytes`` of a text file (empty if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
