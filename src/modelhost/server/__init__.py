"""The model server: ``serve(settings)`` is its composition root, with the start-up order in view."""

from __future__ import annotations

import gc
import logging
import socket
import time

from modelhost.artifacts import resolve_artifact
from modelhost.errors import ModelhostError
from modelhost.inference.loader import load_model
from modelhost.server.loading import LoadingResponder
from modelhost.server.supervisor import Supervisor
from modelhost.settings import ServerSettings

__all__ = ["bind_socket", "configure_logging", "serve"]

log = logging.getLogger("modelhost.server")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s",
    )
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ModelhostError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: ServerSettings) -> int:
    """Bind, load the model once, fork the workers and supervise them; the exit code."""
    configure_logging(settings.log_level)
    started = time.perf_counter()
    try:
        sock = bind_socket(settings.host, settings.port)
    except ModelhostError as exc:
        log.error("%s", exc.message)
        return 1
    host, port = sock.getsockname()[:2]
    log.info("listening on http://%s:%d; loading %s", host, port, settings.model_uri)
    try:
        with LoadingResponder(sock):
            artifact = resolve_artifact(settings.model_uri, settings.cache_dir, settings.s3_endpoint_url)
            log.info("artifact %s sha256=%s (%s)", artifact.uri, artifact.sha256, artifact.path)
            loaded = load_model(artifact.path, settings)
    except ModelhostError as exc:
        log.error("the model failed to load: %s", exc.message)
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
    return Supervisor(settings, sock, loaded).run()
