"""One worker process: an event loop serving its slot's socket, with its own inference thread.

Runs in a child forked by the supervisor after the model was loaded, so the model's memory is
shared copy-on-write. A prediction stuck past the timeout makes the worker mark itself draining,
stop accepting, answer what it holds (those requests time out) and exit; the supervisor forks a
fresh worker for the slot as soon as it sees the mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
from typing import NoReturn

import uvicorn
import uvicorn.lifespan.off  # uvicorn would import it in every worker; before fork it is shared
from threadpoolctl import threadpool_limits

from modelhost.inference.loader import LoadedModel
from modelhost.server.app import ModelServerApp
from modelhost.server.batcher import AdaptiveBatcher
from modelhost.server.board import WorkerBoard
from modelhost.server.handoff import HandoffService
from modelhost.server.protocol import protocol_with_read_timeout
from modelhost.settings import ServerSettings

log = logging.getLogger("modelhost.worker")

HEARTBEAT_INTERVAL_S = 0.5
DRAIN_GRACE_S = 0.3  # a recycled worker: from closing its listener to its shutdown


def run_worker(
    slot: int,
    sockets: list[socket.socket],
    loaded: LoadedModel,
    settings: ServerSettings,
    board: WorkerBoard,
    *,
    master_pid: int,
    handoff: socket.socket | None = None,
) -> NoReturn:
    """The whole life of a forked worker; never returns."""
    code = 0
    stop_requested = _StopFlag()
    try:
        for handled in (signal.SIGTERM, signal.SIGINT):
            # Until uvicorn takes them over (and after), a stop request is remembered, not lost.
            signal.signal(handled, stop_requested.handle)
        cpus = _worker_cpus(slot, settings.workers) if settings.pin_workers else sorted(os.sched_getaffinity(0))
        if settings.pin_workers:
            os.sched_setaffinity(0, cpus)
        _limit_native_threads(len(cpus))
        loaded.pipeline.worker_started(len(cpus))
        board.beat(slot)
        _run_loop(
            _serve(
                slot,
                sockets,
                loaded,
                settings,
                board,
                stop_requested=stop_requested,
                master_pid=master_pid,
                handoff=handoff,
            )
        )
    except BaseException:
        log.exception("worker %d failed", slot)
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)  # a forked child must not run the parent's atexit handlers


class _StopFlag:
    """Set by a signal handler: no lock (a handler may interrupt another), just a flag."""

    requested = False

    def handle(self, signum: int, frame: object) -> None:
        self.requested = True


def _worker_cpus(slot: int, workers: int) -> list[int]:
    """The cores a worker keeps to: its event loop and inference thread hand every request to
    each other, which costs a cross-core wake-up (about 0.15 ms each way) unless they share one.
    Workers split the allowed cores evenly; with more workers than cores they take turns."""
    cpus = sorted(os.sched_getaffinity(0))
    if workers >= len(cpus):
        return [cpus[slot % len(cpus)]]
    share = len(cpus) // workers
    return cpus[slot * share : (slot + 1) * share]


def _limit_native_threads(threads: int) -> None:
    """BLAS and OpenMP pools sized for the whole machine oversubscribe a worker's share of it
    (OpenBLAS threads even spin while they wait), so they are cut to the worker's cores."""
    threadpool_limits(limits=threads)


def _run_loop(coroutine: object) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)  # type: ignore[arg-type]
    else:
        uvloop.run(coroutine)


async def _serve(
    slot: int,
    sockets: list[socket.socket],
    loaded: LoadedModel,
    settings: ServerSettings,
    board: WorkerBoard,
    *,
    stop_requested: _StopFlag,
    master_pid: int,
    handoff: socket.socket | None = None,
) -> None:
    policy = loaded.batching
    warden = _Warden(slot, board, stop_requested, master_pid)
    batcher = AdaptiveBatcher(
        loaded.pipeline.run_batch,
        on_stuck=warden.recycle,
        max_batch_size=policy.max_batch_size if policy.enabled else 1,
        max_delay_s=policy.max_delay_ms / 1000 if policy.enabled else 0.0,
        timeout_s=settings.timeout_s,
        thread_initializer=loaded.pipeline.thread_started,
    )
    app = ModelServerApp(
        batcher,
        timeout_s=settings.timeout_s,
        read_timeout_s=settings.read_timeout_s,
        max_payload_bytes=settings.max_payload_bytes,
        execution_parameters={
            "MaxConcurrentTransforms": settings.workers,
            "BatchStrategy": "MULTI_RECORD" if policy.enabled else "SINGLE_RECORD",
            "MaxPayloadInMB": math.ceil(settings.max_payload_mb),
        },
    )
    config = uvicorn.Config(
        app,
        interface="asgi3",
        http=protocol_with_read_timeout(settings.read_timeout_s),
        lifespan="off",
        ws="none",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_config=None,
        timeout_keep_alive=int(settings.keep_alive_s),
        timeout_graceful_shutdown=int(settings.timeout_s + 5),
    )
    server = uvicorn.Server(config)
    warden.attach(server)
    handed = _handoff_service(handoff, batcher, settings)
    watchdog = asyncio.get_running_loop().create_task(warden.watch(batcher, settings.timeout_s))
    try:
        await server.serve(sockets=sockets)
        if handed is not None:  # connections the front door handed here go back to it, answered
            await handed.drain(settings.timeout_s + 5)
    finally:
        watchdog.cancel()
        batcher.close()


def _handoff_service(
    listener: socket.socket | None, batcher: AdaptiveBatcher, settings: ServerSettings
) -> HandoffService | None:
    """Serving connections the platform's front door hands over, when the platform asked for it."""
    if listener is None or settings.handoff_endpoint is None or settings.handoff_variant is None:
        return None
    service = HandoffService(
        listener,
        batcher,
        settings.handoff_endpoint,
        settings.handoff_variant,
        timeout_s=settings.timeout_s,
        read_timeout_s=settings.read_timeout_s,
        keep_alive_s=settings.handoff_keep_alive_s,
        max_payload_bytes=settings.max_payload_bytes,
    )
    service.start()
    return service


class _Warden:
    """Keeps the supervisor informed and takes this worker out of service when it must go.

    ``watch`` writes the heartbeat and stops the worker when the master is gone or a prediction
    stays stuck; ``recycle`` (also called by the batcher the moment a prediction outlives a
    deadline) marks the slot draining, wakes the supervisor to fork the replacement, and lets
    this worker stop accepting and answer what it holds.
    """

    def __init__(self, slot: int, board: WorkerBoard, stop_requested: _StopFlag, master_pid: int) -> None:
        self._slot, self._board, self._stop_requested = slot, board, stop_requested
        self._master_pid = master_pid
        self._server: uvicorn.Server | None = None
        self._recycling = False

    def attach(self, server: uvicorn.Server) -> None:
        self._server = server

    def recycle(self, reason: str) -> None:
        if self._server is None or self._server.should_exit or self._recycling:
            return
        self._recycling = True
        log.error("worker %d: %s; replacing this worker", self._slot, reason)
        self._board.mark_draining(self._slot)
        # Stop accepting now, but leave the connections accepted a moment ago time to send their
        # request (answered 503 "retry"): uvicorn's shutdown closes idle connections unanswered.
        for listener in getattr(self._server, "servers", []):
            listener.close()
        server = self._server
        asyncio.get_running_loop().call_later(DRAIN_GRACE_S, setattr, server, "should_exit", True)
        if os.getppid() == self._master_pid:  # never signal whoever adopted an orphan
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._master_pid, signal.SIGUSR1)

    async def watch(self, batcher: AdaptiveBatcher, timeout_s: float) -> None:
        assert self._server is not None
        loop = asyncio.get_running_loop()
        while not self._server.should_exit:
            self._board.beat(self._slot)
            if self._stop_requested.requested:  # SIGTERM came before uvicorn listened for it
                self._server.should_exit = True
            if os.getppid() != self._master_pid:
                log.error("worker %d: the master process is gone; stopping", self._slot)
                self._server.should_exit = True
            stuck = batcher.stuck_for(loop.time())
            if stuck > timeout_s:
                self.recycle(f"a prediction has run for {stuck:.0f} s (timeout {timeout_s:g} s)")
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)
