"""The model server: ``serve(settings)`` is its composition root, with the start-up order in view."""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
from pathlib import Path

import orjson

from modelhost.artifacts import UnpackLimits, resolve_artifact
from modelhost.errors import ArtifactError, ModelhostError
from modelhost.inference.loader import load_model
from modelhost.server.handoff_channel import bind_handoff_sockets
from modelhost.server.loading import LoadingResponder
from modelhost.server.supervisor import Supervisor
from modelhost.settings import ServerSettings

__all__ = ["bind_sockets", "configure_logging", "serve"]

log = logging.getLogger("modelhost.server")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s",
    )
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)


def bind_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one address (SO_REUSEPORT), one per worker slot.

    Port 0 picks a free port for the first; the others join it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(2048)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ModelhostError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sockets


def bind_local_sockets(count: int) -> list[socket.socket]:
    """One Unix socket per worker slot, in Linux's abstract namespace (no file to clean up).

    The platform's front door talks to an instance through these: cheaper per request than
    loopback TCP, and it balances over the workers itself.
    """
    sockets = []
    for slot in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(f"\0modelhost-{os.getpid()}-{slot}")
        sock.listen(2048)
        sockets.append(sock)
    return sockets


def _write_addresses(path: Path, port: int, local: list[socket.socket], handoff: list[socket.socket]) -> None:
    """Atomically, so a reader never sees half of it. Abstract socket names are written with '@'."""

    def names(sockets: list[socket.socket]) -> list[str]:
        found = [sock.getsockname() for sock in sockets]
        return ["@" + n[1:].decode() if isinstance(n, bytes) else n for n in found]

    text = orjson.dumps({"port": port, "unix": names(local), "handoff": names(handoff)})
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(text)
    partial.replace(path)


def serve(settings: ServerSettings) -> int:
    """Bind, load the model once, fork the workers and supervise them; the exit code."""
    configure_logging(settings.log_level)
    started = time.perf_counter()
    try:
        sockets = bind_sockets(settings.host, settings.port, settings.workers)
    except ModelhostError as exc:
        log.error("%s", exc.message)
        return 1
    host, port = sockets[0].getsockname()[:2]
    local = bind_local_sockets(settings.workers) if settings.unix_sockets else []
    handoff = bind_handoff_sockets(settings.workers) if settings.handoff else []
    if settings.port_file is not None:
        _write_addresses(settings.port_file, port, local, handoff)
    log.info("listening on http://%s:%d; loading %s", host, port, settings.model_uri)
    try:
        with LoadingResponder(sockets):
            limits = UnpackLimits.of_gb(settings.max_unpacked_gb)
            artifact = resolve_artifact(settings.model_uri, settings.cache_dir, settings.s3_endpoint_url, limits)
            log.info("artifact %s sha256=%s (%s)", artifact.uri, artifact.sha256, artifact.path)
            if settings.expected_sha256 and settings.expected_sha256 != artifact.sha256:
                raise ArtifactError(
                    f"{artifact.uri}: its SHA-256 is {artifact.sha256}, not the recorded {settings.expected_sha256}; "
                    "the artifact changed since the model was created"
                )
            loaded = load_model(artifact.path, settings)
    except ModelhostError as exc:
        log.error("the model failed to load: %s", exc.message)
        for sock in [*sockets, *local, *handoff]:
            sock.close()
        return 1
    policy = loaded.batching
    log.info(
        "loaded %s model in %.2f s; batching %s",
        loaded.framework,
        time.perf_counter() - started,
        f"on (max {policy.max_batch_size} requests, max wait {policy.max_delay_ms:g} ms)" if policy.enabled else "off",
    )
    # Objects that exist now are shared with the workers; keep the collector from touching
    # (and so copying) their pages in every worker. (No collection first: it costs ~0.1 s of
    # cold start and frees little right after a load.)
    gc.freeze()
    return Supervisor(settings, sockets, loaded, local, handoff).run()
