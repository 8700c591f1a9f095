"""The pre-fork worker pool: the master loads the model once, then forks and supervises workers.

master: bind socket -> load model (answering 503 meanwhile) -> fork N workers -> loop:
    a worker exited        -> fork a replacement (backing off if it keeps dying at start)
    a worker went silent   -> SIGKILL it (its loop is blocked), then replace it
    SIGTERM / SIGINT       -> SIGTERM every worker, wait for in-flight requests, SIGKILL stragglers
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import time
from dataclasses import dataclass
from types import FrameType

from modelhost.inference.loader import LoadedModel
from modelhost.server.board import WorkerBoard
from modelhost.server.worker import run_worker
from modelhost.settings import ServerSettings

log = logging.getLogger("modelhost.supervisor")

CRASH_WINDOW_S = 2.0  # a worker that dies sooner than this after its start counts as a crash
MAX_CRASHES = 5  # consecutive early deaths before the server gives up
SILENCE_GRACE_S = 10.0  # beyond the request timeout, before a silent worker is killed


@dataclass
class _Worker:
    slot: int
    pid: int
    started: float
    drain_deadline: float | None = None  # set once a replacement took over its slot


class Supervisor:
    def __init__(
        self,
        settings: ServerSettings,
        sockets: list[socket.socket],
        loaded: LoadedModel,
        local_sockets: list[socket.socket] | None = None,
        handoff_sockets: list[socket.socket] | None = None,
    ) -> None:
        self._settings = settings
        self._sockets = sockets
        self._local_sockets = local_sockets or []  # one Unix socket per slot, for the platform's front door
        self._handoff_sockets = handoff_sockets or []  # and one per slot for connections it hands over
        self._loaded = loaded
        self._board = WorkerBoard(settings.workers)
        self._workers: dict[int, _Worker] = {}  # by pid
        self._crashes = 0
        self._stopping = False
        self._failed = False
        self._wake_read, self._wake_write = os.pipe()

    # -- signals ------------------------------------------------------------------------------
    def handle_term(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def handle_chld(self, signum: int, frame: FrameType | None) -> None:
        pass  # the wakeup fd already woke the loop; reaping and replacing happen there

    def _install_signals(self) -> None:
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGTERM, self.handle_term)
        signal.signal(signal.SIGINT, self.handle_term)
        signal.signal(signal.SIGCHLD, self.handle_chld)
        signal.signal(signal.SIGUSR1, self.handle_chld)  # a worker started draining

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until told to stop; the process exit code."""
        self._install_signals()
        for slot in range(self._settings.workers):
            self._spawn(slot)
        log.info("serving on http://%s:%d with %d worker(s)", *self._address(), self._settings.workers)
        while not self._stopping:
            select.select([self._wake_read], [], [], 0.5)
            self._drain_wakeups()
            self._reap()
            self._replace_draining()
            self._kill_silent()
            self._check_parent()
        self._shutdown()
        return 1 if self._failed else 0

    def _spawn(self, slot: int) -> None:
        self._board.reset(slot)
        master = os.getpid()  # read before fork: the child may only run after a SIGKILL took us
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            for handled in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                signal.signal(handled, signal.SIG_DFL)
            os.close(self._wake_read)
            os.close(self._wake_write)
            own = [self._sockets[slot], *self._local_sockets[slot : slot + 1]]
            handoff = self._handoff_sockets[slot] if self._handoff_sockets else None
            run_worker(slot, own, self._loaded, self._settings, self._board, master_pid=master, handoff=handoff)
        self._workers[pid] = _Worker(slot, pid, time.monotonic())
        log.info("worker %d started (pid %d)", slot, pid)

    def _reap(self) -> None:
        while self._workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            lived = time.monotonic() - worker.started
            if self._stopping or worker.drain_deadline is not None:
                continue  # shutting down, or already replaced
            if self._board.draining(worker.slot):  # recycled itself before we saw the mark
                log.info("worker %d (pid %d) recycled itself; starting a new one", worker.slot, pid)
                self._spawn(worker.slot)
                continue
            log.warning(
                "worker %d (pid %d) %s after %.1f s; starting a new one", worker.slot, pid, _describe(status), lived
            )
            self._crashes = self._crashes + 1 if lived < CRASH_WINDOW_S else 0
            if self._crashes >= MAX_CRASHES:
                log.error("workers keep dying at start (%d times in a row); giving up", self._crashes)
                self._failed = self._stopping = True
                return
            if self._crashes:
                time.sleep(min(0.2 * 2**self._crashes, 5.0))
            self._spawn(worker.slot)

    def _replace_draining(self) -> None:
        for worker in list(self._workers.values()):
            if worker.drain_deadline is None and self._board.draining(worker.slot):
                log.warning("worker %d (pid %d) is draining; starting its replacement", worker.slot, worker.pid)
                worker.drain_deadline = time.monotonic() + self._settings.timeout_s + SILENCE_GRACE_S
                self._spawn(worker.slot)

    def _kill_silent(self) -> None:
        limit = self._settings.timeout_s + SILENCE_GRACE_S
        now = time.monotonic()
        for worker in list(self._workers.values()):
            if worker.drain_deadline is not None:
                if now > worker.drain_deadline:
                    log.error("draining worker pid %d did not exit; killing it", worker.pid)
                    _kill(worker.pid, signal.SIGKILL)
                continue
            silent = now - self._board.last_beat(worker.slot)
            if silent > limit:
                log.error("worker %d (pid %d) silent for %.0f s; killing it", worker.slot, worker.pid, silent)
                _kill(worker.pid, signal.SIGKILL)
                self._board.reset(worker.slot)  # don't kill it twice while it dies

    def _check_parent(self) -> None:
        """Run by the platform, the server must not outlive it (a kill -9 leaves no orphan serving)."""
        parent = self._settings.parent_pid
        if parent is not None and os.getppid() != parent:
            log.error("the platform process (pid %d) is gone; stopping", parent)
            self._stopping = True

    def _shutdown(self) -> None:
        log.info("shutting down: waiting for in-flight requests")
        for pid in self._workers:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self._settings.timeout_s + 10
        while self._workers and time.monotonic() < deadline:
            select.select([self._wake_read], [], [], 0.1)
            self._drain_wakeups()
            self._reap()
        for pid in self._workers:
            log.warning("worker pid %d did not stop in time; killing it", pid)
            _kill(pid, signal.SIGKILL)
        while self._workers:
            self._reap()
            time.sleep(0.01)
        for sock in [*self._sockets, *self._local_sockets, *self._handoff_sockets]:
            sock.close()
        log.info("stopped")

    # -- small helpers ------------------------------------------------------------------------
    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_read, 512):
                pass
        except BlockingIOError:
            pass

    def _address(self) -> tuple[str, int]:
        host, port = self._sockets[0].getsockname()[:2]
        return str(host), int(port)


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"
