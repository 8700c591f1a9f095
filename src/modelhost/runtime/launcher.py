"""A warm process that forks instances, so the model server's imports are paid once, not per instance.

Starting ``python -m modelhost.server`` costs the interpreter's start and the server's imports
(and scikit-learn's, about a second) before the model even loads: most of a cold deploy. The
launcher imports all that once, when the platform starts, and forks a child per instance. The
child becomes exactly what ``python -m modelhost.server`` would be: its own session (process
group), its log on stdout/stderr, the instance's environment, then ``serve(ServerSettings())``.

    platform ──stdin: {"env": {...}, "log": path}──► launcher ──fork──► instance
             ◄─stdout: {"pid": n} / {"exited": n, "code": c}──┘

The launcher is the instances' parent: it reaps them and reports each exit. It stops when the
platform goes away (its instances follow: they watch their parent). ``Launcher`` is the
platform's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import logging
import os
import select
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import orjson

log = logging.getLogger("modelhost.runtime")

PRELOAD_DEFAULT = "sklearn"  # imported by the launcher when installed; MODELHOST_PRELOAD overrides


# -- the launcher process ------------------------------------------------------------------------------
def _become_instance(environment: dict[str, str], log_path: str, label: str) -> None:
    """In the forked child: detach, redirect output, take the instance's environment, serve. Never returns."""
    code = 1
    try:
        os.setsid()
        with contextlib.suppress(OSError):  # what ps/top show: not the launcher's name
            Path("/proc/self/comm").write_text(f"mh {label}"[:15])
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        output = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        os.close(devnull)
        os.environ.clear()
        os.environ.update(environment)
        os.environ["MODELHOST_PARENT_PID"] = str(os.getppid())  # the launcher: stop if it goes

        from modelhost.server import serve
        from modelhost.settings import ServerSettings

        code = serve(ServerSettings())
    except BaseException as exc:
        with contextlib.suppress(Exception):
            sys.stderr.write(f"the instance failed to start: {exc!r}\n")
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _preload() -> None:
    import modelhost.server  # noqa: F401 (the imports are the point)

    for name in filter(None, os.environ.get("MODELHOST_PRELOAD", PRELOAD_DEFAULT).split(",")):
        with contextlib.suppress(ImportError):
            importlib.import_module(name.strip())


def _report(out: IO[bytes], message: Mapping[str, object]) -> None:
    out.write(orjson.dumps(message) + b"\n")
    out.flush()


def main() -> None:
    platform_pid = os.getppid()
    _preload()
    commands, out = sys.stdin.buffer, sys.stdout.buffer
    _report(out, {"ready": os.getpid()})
    children: set[int] = set()
    buffer = b""
    while True:
        readable, _, _ = select.select([commands], [], [], 0.2)
        if readable:
            chunk = os.read(commands.fileno(), 65536)
            if not chunk:  # the platform closed the pipe: it is stopping
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = orjson.loads(line)
                pid = os.fork()
                if pid == 0:
                    _become_instance(request["env"], request["log"], request.get("label", "instance"))
                children.add(pid)
                _report(out, {"pid": pid, "ticket": request.get("ticket")})
        for pid in list(children):
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    children.discard(pid)
                    _report(out, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})
        if os.getppid() != platform_pid:
            break
    for pid in children:  # they stop by themselves too (parent watch); this is quicker
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


# -- the platform's side --------------------------------------------------------------------------------
class LaunchedProcess:
    """An instance process forked by the launcher: what ``asyncio.subprocess.Process`` offers, by pid."""

    def __init__(self, pid: int, exited: asyncio.Future[int]) -> None:
        self.pid = pid
        self._exited = exited

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)


class Launcher:
    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._tickets = itertools.count(1)
        self._pending: dict[int, asyncio.Future[int]] = {}  # by ticket: spawns waiting for their pid
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._ready: asyncio.Future[int] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start the launcher (its imports run in the background: this returns at once)."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "modelhost.runtime.launcher",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._reader = loop.create_task(self._read(self._process, self._ready))

    async def spawn(self, environment: Mapping[str, str], log_path: str, label: str) -> LaunchedProcess:
        """Fork an instance with this environment and log; starts the launcher again if it died."""
        async with self._lock:
            if self._process is None or self._process.returncode is not None:
                await self.start()
            assert self._process is not None
            assert self._process.stdin is not None
            assert self._ready is not None
            await asyncio.shield(self._ready)  # a cancelled spawn must not cancel the launcher's start for all
            ticket = next(self._tickets)
            reply = self._pending[ticket] = asyncio.get_running_loop().create_future()
            request = {"env": dict(environment), "log": log_path, "label": label, "ticket": ticket}
            self._process.stdin.write(orjson.dumps(request) + b"\n")
            await self._process.stdin.drain()
            # A spawn cancelled from here on (its endpoint deleted) still gets a child: the
            # reader kills it when its pid arrives, and no other spawn can take that pid.
            pid = await reply
            if pid < 0:
                raise OSError("the instance launcher stopped")
            exited = self._exits.setdefault(pid, asyncio.get_running_loop().create_future())
            return LaunchedProcess(pid, exited)

    async def _read(self, process: asyncio.subprocess.Process, ready: asyncio.Future[int]) -> None:
        assert process.stdout is not None
        pending = self._pending
        try:
            while line := await process.stdout.readline():
                message = orjson.loads(line)
                if "ready" in message:
                    if not ready.done():
                        ready.set_result(int(message["ready"]))
                elif "pid" in message:
                    self._deliver(pending.pop(int(message["ticket"]), None), int(message["pid"]))
                elif "exited" in message:
                    future = self._exits.setdefault(int(message["exited"]), asyncio.get_running_loop().create_future())
                    if not future.done():
                        future.set_result(int(message["code"]))
        finally:
            if self._stopping:
                log.info("the instance launcher stopped")
            else:
                log.warning("the instance launcher stopped unexpectedly; the next instance starts a new one")
            if not ready.done():
                ready.set_exception(OSError("the instance launcher did not start"))
            for waiting in pending.values():
                if not waiting.done():
                    waiting.set_result(-1)
            pending.clear()
            for future in self._exits.values():  # its instances stop with it (they watch their parent)
                if not future.done():
                    future.set_result(-1)
            self._exits.clear()

    @staticmethod
    def _deliver(reply: asyncio.Future[int] | None, pid: int) -> None:
        """Hand the pid to the spawn that asked for it, or stop the child if that spawn was cancelled."""
        if reply is not None and not reply.done():
            reply.set_result(pid)
            return
        log.info("stopping instance process %d: the start that asked for it was cancelled", pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # its own session and group, workers included
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # before its setsid

    async def stop(self) -> None:
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


if __name__ == "__main__":
    main()
