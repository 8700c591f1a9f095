"""``modelhost up``: the control plane, the front door and the local runtime in one process.

Composition root, with the start-up order in view:

    1. lock the state directory (one platform per state)
    2. open the state store and the artifact store
    3. build the runtime, the controller, the front door and the API
    4. mark the stored endpoints and functions as coming back (recover), then answer on the port
    5. on SIGTERM/SIGINT: stop accepting, finish in-flight requests, stop every instance
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

from modelhost.control.api import build_api
from modelhost.control.artifact_store import ArtifactStore, open_artifact_store
from modelhost.control.controller import Controller
from modelhost.control.gateway_controller import GatewayController
from modelhost.control.gateway_store import GatewayStore
from modelhost.control.store import StateStore
from modelhost.errors import ModelhostError
from modelhost.frontdoor.capture import DataCapture
from modelhost.frontdoor.gateway import Gateway
from modelhost.frontdoor.handoff import Handoff
from modelhost.frontdoor.protocol import ConnectionSettings, FrontDoorServer
from modelhost.frontdoor.proxy import FrontDoor
from modelhost.platform.settings import PlatformSettings
from modelhost.runtime.launcher import Launcher
from modelhost.runtime.local import LocalRuntime
from modelhost.server import configure_logging
from modelhost.server.protocol import protocol_with_read_timeout

log = logging.getLogger("modelhost.platform")


def run_platform(settings: PlatformSettings) -> int:
    """Run until SIGTERM/SIGINT; the exit code."""
    configure_logging(settings.log_level)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _state_lock(settings.state_dir):
            token = _token(settings)
            return _run_loop(settings, token)
    except ModelhostError as exc:
        log.error("%s", exc.message)
        return 1


@contextlib.contextmanager
def _state_lock(state_dir: Path) -> Iterator[None]:
    path = state_dir / "up.lock"
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise ModelhostError(
                f"another modelhost up (pid {handle.read().strip() or '?'}) uses {state_dir}; "
                "stop it or give this one --state-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def _token(settings: PlatformSettings) -> str | None:
    """The management API's token: given, or (off loopback) made once and kept in the state dir."""
    if settings.token is not None or settings.loopback_only:
        return settings.token
    path = settings.state_dir / "token"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
        log.warning("bound to %s: the management API needs a token; made one in %s", settings.host, path)
    else:
        log.info("bound to %s: the management API needs the token in %s", settings.host, path)
    return path.read_text().strip()


def _functions(  # noqa: PLR0917 (the composition root's pieces, passed once)
    settings: PlatformSettings,
    store: StateStore,
    artifacts: ArtifactStore,
    controller: Controller,
    launcher: Launcher,
    port: int,
    environment: dict[str, str],
) -> tuple[GatewayController, LocalRuntime]:
    """Functions: a runtime of their own (sharing the launcher) and their controller."""
    functions_runtime = LocalRuntime(
        settings.state_dir / "functions",
        environment=environment,
        load_timeout_s=settings.load_timeout_s,
        request_timeout_s=settings.request_timeout_s,
        launcher=launcher,
        owns_launcher=False,
    )
    gateway_controller = GatewayController(
        GatewayStore(store.engine),
        functions_runtime,
        artifacts,
        controller,
        platform_url=_local_url(settings.host, port),
        credentials=controller.access.function_credentials(),
        max_artifact_bytes=int(settings.max_function_artifacts_gb * 1024**3),
    )
    return gateway_controller, functions_runtime


def _local_url(host: str, port: int) -> str:
    """How the platform's own functions reach its port (a wildcard bind is reached on loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _signing_master(state_dir: Path) -> bytes:
    """The secret API keys are derived from (so SigV4 signatures can be checked; see control/access.py).

    Kept in the state dir, not the database: a copy of the database gives away no key.
    """
    path = state_dir / "signing.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        master = path.read_bytes()
        if len(master) < 32:
            raise SystemExit(
                f"{path} is damaged (fewer than 32 bytes); remove it to make a new one (keys then change)"
            ) from None
        return master
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def _run_loop(settings: PlatformSettings, token: str | None) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(settings, token))
    return int(uvloop.run(_serve(settings, token)))


class _ApiServer(uvicorn.Server):  # type: ignore[misc]
    """uvicorn for the API, behind the front door; the platform handles the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        raise ModelhostError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def _capture_destinations(
    artifacts: ArtifactStore, settings: PlatformSettings
) -> Callable[[str | None], ArtifactStore]:
    """The store for a config's capture destination: the platform's own, or one opened (once) by URI."""
    opened: dict[str, ArtifactStore] = {}

    def destination(uri: str | None) -> ArtifactStore:
        if uri is None:
            return artifacts
        if uri not in opened:
            opened[uri] = open_artifact_store(uri, settings.s3_endpoint_url)
        return opened[uri]

    return destination


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def handle(signum: int) -> None:
        log.info("%s: stopping (in-flight requests are answered first)", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, handle, signum)


def _doors(
    settings: PlatformSettings, front_door: FrontDoor, gateway: Gateway, controller: Controller, api_port: int
) -> FrontDoorServer:
    """The public port's server; with hand-off, an endpoint that starts requiring a key recalls its connections."""
    handoff = Handoff() if settings.connection_handoff else None
    if handoff is not None:
        controller.access.on_protected = handoff.recall
    connections = ConnectionSettings(api_host="127.0.0.1", api_port=api_port, gateway=gateway, handoff=handoff)
    return FrontDoorServer(front_door, connections)


async def _serve(settings: PlatformSettings, token: str | None) -> int:
    public = _listen(settings.host, settings.port)  # first: a taken port fails before anything starts
    internal = _listen("127.0.0.1", 0)
    store = StateStore(settings.database_url)
    artifacts = open_artifact_store(settings.artifacts_location, settings.s3_endpoint_url)
    environment = {"MODELHOST_TIMEOUT": str(settings.request_timeout_s)}
    if settings.s3_endpoint_url:
        environment["MODELHOST_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    launcher = Launcher()
    await launcher.start()  # imports in the background; the first deploy finds it warm
    runtime = LocalRuntime(
        settings.state_dir,
        environment=environment,
        load_timeout_s=settings.load_timeout_s,
        request_timeout_s=settings.request_timeout_s,
        launcher=launcher,
        handoff=settings.connection_handoff,
    )
    controller = Controller(
        store,
        runtime,
        artifacts,
        signing_master=_signing_master(settings.state_dir),
        admin_token=token,  # signed requests by access key id "modelhost" need the token as the secret
        max_instances=settings.max_instances,
    )
    gateway_controller, functions_runtime = _functions(
        settings, store, artifacts, controller, launcher, public.getsockname()[1], environment
    )
    capture = DataCapture(settings.state_dir / "capture-spool", _capture_destinations(artifacts, settings))
    front_door = FrontDoor(
        runtime,
        controller.known_status,
        max_payload_bytes=int(settings.max_payload_mb * 1024 * 1024),
        timeout_s=settings.request_timeout_s + 10,
        capture=capture,
        access=controller.access,
        handoff=settings.connection_handoff,
    )
    gateway = Gateway(front_door, functions_runtime, gateway_controller.known_state, controller.access)
    gateway_controller.publish_to(gateway)
    api = build_api(
        controller,
        token=token,
        scratch_dir=settings.state_dir / "tmp",
        gateway=gateway_controller,
        usage=gateway.usage,
    )
    api_server = _ApiServer(
        uvicorn.Config(
            api,
            interface="asgi3",
            http=protocol_with_read_timeout(30.0),
            lifespan="off",
            ws="none",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            log_config=None,
            timeout_keep_alive=5,
        )
    )
    doors = _doors(settings, front_door, gateway, controller, internal.getsockname()[1])
    stop = asyncio.Event()
    _stop_on_signals(stop)
    api_task = asyncio.create_task(api_server.serve(sockets=[internal]))
    sweeper = asyncio.create_task(front_door.expire_overdue_forever())
    function_sweeper = asyncio.create_task(gateway.expire_overdue_forever())
    usage_keeper = asyncio.create_task(gateway_controller.flush_usage_forever(gateway.usage))
    capturing = asyncio.create_task(capture.run())
    try:
        # Stored statuses are marked (SystemUpdating, Pending) before the port answers, so no client
        # reads a status from before the restart; the instances come up in the background.
        await controller.recover()
        await gateway_controller.recover()
        await doors.start(public)
        log.info(
            "modelhost up on http://%s:%d (state %s, artifacts %s)",
            settings.host,
            public.getsockname()[1],
            settings.state_dir,
            artifacts.root_uri,
        )
        await stop.wait()
        await doors.stop(grace_s=settings.request_timeout_s + 10)
    finally:
        sweeper.cancel()
        function_sweeper.cancel()
        usage_keeper.cancel()
        api_server.should_exit = True
        await asyncio.gather(api_task, return_exceptions=True)
        log.info("stopping every instance")
        await gateway_controller.shutdown()
        with contextlib.suppress(Exception):
            await gateway_controller.flush_usage(gateway.usage)
        await controller.shutdown()
        capturing.cancel()  # its last flush ships what was captured
        await asyncio.gather(capturing, return_exceptions=True)
        store.close()
        log.info("stopped")
    return 0
