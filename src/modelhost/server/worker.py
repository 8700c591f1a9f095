"""One worker process: an event loop serving the shared socket, with its own inference thread.

Runs in a child forked by the supervisor after the model was loaded, so the model's memory is
shared copy-on-write. A prediction stuck past the timeout makes the worker stop accepting,
answer what it holds (those requests time out) and exit; the supervisor forks a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import mmap
import os
import signal
import socket
import struct
import time
from typing import NoReturn

import uvicorn

from modelhost.inference.loader import LoadedModel
from modelhost.server.app import ModelServerApp
from modelhost.server.batcher import AdaptiveBatcher
from modelhost.server.protocol import protocol_with_read_timeout
from modelhost.settings import ServerSettings

log = logging.getLogger("modelhost.worker")

HEARTBEAT_INTERVAL_S = 0.5


class Heartbeats:
    """One monotonic timestamp per worker slot, in memory shared across fork."""

    def __init__(self, slots: int) -> None:
        self._memory = mmap.mmap(-1, 8 * slots)

    def beat(self, slot: int) -> None:
        struct.pack_into("d", self._memory, 8 * slot, time.monotonic())

    def last(self, slot: int) -> float:
        return float(struct.unpack_from("d", self._memory, 8 * slot)[0])


def run_worker(
    slot: int, sock: socket.socket, loaded: LoadedModel, settings: ServerSettings, heartbeats: Heartbeats
) -> NoReturn:
    """The whole life of a forked worker; never returns."""
    code = 0
    try:
        for handled in (signal.SIGTERM, signal.SIGINT):
            signal.signal(handled, lambda *_: None)  # uvicorn takes them over while serving
        cpus = _worker_cpus(slot, settings.workers) if settings.pin_workers else sorted(os.sched_getaffinity(0))
        if settings.pin_workers:
            os.sched_setaffinity(0, cpus)
        loaded.pipeline.worker_started(len(cpus))
        heartbeats.beat(slot)
        _run_loop(_serve(slot, sock, loaded, settings, heartbeats))
    except BaseException:
        log.exception("worker %d failed", slot)
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)  # a forked child must not run the parent's atexit handlers


def _worker_cpus(slot: int, workers: int) -> list[int]:
    """The cores a worker keeps to: its event loop and inference thread hand every request to
    each other, which costs a cross-core wake-up (about 0.15 ms each way) unless they share one.
    Workers split the allowed cores evenly; with more workers than cores they take turns."""
    cpus = sorted(os.sched_getaffinity(0))
    if workers >= len(cpus):
        return [cpus[slot % len(cpus)]]
    share = len(cpus) // workers
    return cpus[slot * share : (slot + 1) * share]


def _run_loop(coroutine: object) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)  # type: ignore[arg-type]
    else:
        uvloop.run(coroutine)


async def _serve(
    slot: int, sock: socket.socket, loaded: LoadedModel, settings: ServerSettings, heartbeats: Heartbeats
) -> None:
    policy = loaded.batching
    batcher = AdaptiveBatcher(
        loaded.pipeline.run_batch,
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
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_config=None,
        timeout_keep_alive=int(settings.keep_alive_s),
        timeout_graceful_shutdown=int(settings.timeout_s + 5),
    )
    server = uvicorn.Server(config)
    watchdog = asyncio.get_running_loop().create_task(_watch(slot, server, batcher, settings.timeout_s, heartbeats))
    try:
        await server.serve(sockets=[sock])
    finally:
        watchdog.cancel()
        batcher.close()


async def _watch(
    slot: int, server: uvicorn.Server, batcher: AdaptiveBatcher, timeout_s: float, heartbeats: Heartbeats
) -> None:
    loop = asyncio.get_running_loop()
    master = os.getppid()
    while True:
        heartbeats.beat(slot)
        if os.getppid() != master and not server.should_exit:
            log.error("worker %d: the master process is gone; stopping", slot)
            server.should_exit = True
        stuck = batcher.stuck_for(loop.time())
        if stuck > timeout_s and not server.should_exit:
            log.error(
                "worker %d: a prediction has run for %.0f s (timeout %g s); replacing this worker",
                slot,
                stuck,
                timeout_s,
            )
            server.should_exit = True
        await asyncio.sleep(HEARTBEAT_INTERVAL_S)
