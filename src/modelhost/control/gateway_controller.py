"""Functions and routes: stored, run, and handed to the front door's gateway.

A function runs as a model-server instance (functions/bridge.py is its handler program), started
by a runtime of its own: ``LocalRuntime`` keyed by function name, so functions never show up as
endpoints. Like endpoints, a request changes the store and answers; starting the instance runs in
the background and ends as the function's state (Active, or Failed with the load error).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from modelhost.control.artifact_store import ArtifactStore
from modelhost.control.controller import Controller
from modelhost.control.gateway_resources import Function, FunctionState, Route, TargetKind
from modelhost.control.gateway_store import GatewayStore
from modelhost.control.lifecycle import LifecycleTasks
from modelhost.control.resources import EndpointConfig, Model, ProductionVariant
from modelhost.errors import ArtifactError, ModelhostError, ResourceInUse, ResourceNotFound, ValidationFailed
from modelhost.functions import artifacts as artifact_copies
from modelhost.functions import bridge
from modelhost.runtime import ACCESS_KEY_ID_VARIABLE, SECRET_VARIABLE
from modelhost.runtime.local import LocalRuntime

log = logging.getLogger("modelhost.gateway")

T = TypeVar("T")
VARIANT = "function"  # the one variant of a function's deployment


class RouteSink(Protocol):
    """Where the controller publishes the routes (the front door's gateway)."""

    def replace_routes(self, routes: list[Route]) -> None: ...


class GatewayController:
    def __init__(
        self,
        store: GatewayStore,
        runtime: LocalRuntime,
        artifacts: ArtifactStore,
        hosting: Controller,
        *,
        platform_url: str,
        credentials: tuple[str, str] | None = None,
        max_artifact_bytes: int = artifact_copies.DEFAULT_MAX_BYTES,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.artifacts = artifacts
        self._hosting = hosting
        self._platform_url = platform_url
        self._credentials = credentials  # (access key id, secret) every function signs its invocations with
        self._max_artifact_bytes = max_artifact_bytes  # one function's artifacts, in all
        self._tasks = LifecycleTasks("function", log)
        self._sinks: list[RouteSink] = []
        self._states: dict[str, str] = {}  # last known state per function, for the gateway

    def known_state(self, name: str) -> str | None:
        """The function's last known state, without a database call (None: no such function)."""
        return self._states.get(name)

    async def _db(self, call: Callable[..., T], *args: object) -> T:
        return await asyncio.to_thread(call, *args)

    def publish_to(self, sink: RouteSink) -> None:
        self._sinks.append(sink)

    # -- functions ----------------------------------------------------------------------------------
    async def create_function(self, function: Function) -> Function:
        await self._check_artifacts(function)
        created = await self._db(self.store.create_function, function)
        self._states[created.name] = created.state.value
        self._start(created.name, self._bring_up(created))
        return created

    async def update_function(self, function: Function) -> Function:
        """New code or settings: the new instance serves before the old one stops (as an endpoint update)."""
        previous = await self._db(self.store.get_function, function.name)
        await self._check_artifacts(function)
        updated = await self._db(self.store.replace_function, function)
        if self.runtime.route(updated.name) is None:
            self._states[updated.name] = updated.state.value
        self._start(updated.name, self._bring_up(updated))
        if previous.code_uri != updated.code_uri:
            await self._forget_code(previous.code_uri)
        return updated

    async def describe_function(self, name: str) -> Function:
        return await self._db(self.store.get_function, name)

    async def list_functions(self) -> list[Function]:
        return await self._db(self.store.list_functions)

    async def delete_function(self, name: str) -> None:
        function = await self._db(self.store.get_function, name)
        users = [r.key for r in await self.list_routes() if r.target_kind is TargetKind.FUNCTION and r.target == name]
        if users:
            raise ResourceInUse(f"function {name!r} is the target of route(s) {', '.join(users)}; delete them first")
        await self._tasks.cancel(name)
        await self.runtime.remove(name)
        await self._db(self.store.delete_function, name)
        self._states.pop(name, None)
        await self._forget_code(function.code_uri)
        log.info("function %s: deleted", name)

    def logs(self, name: str, max_bytes: int) -> str:
        return self.runtime.logs(name, max_bytes)

    async def _check_artifacts(self, function: Function) -> None:
        """Local artifacts are on this machine: a device, a pipe or one over the cap is a 400 now,
        not a Failed function later (the instance checks again as it copies)."""
        try:
            await asyncio.to_thread(artifact_copies.check_local, function.artifacts, self._max_artifact_bytes)
        except ArtifactError as exc:
            raise ValidationFailed(f"Artifacts: {exc.message}") from exc

    def _start(self, name: str, work: Awaitable[None]) -> None:
        """A new start replaces one in progress (an update while the create still starts)."""
        previous = self._tasks.get(name)
        if previous is not None:
            previous.cancel()
        self._tasks.start(name, work)

    async def _bring_up(self, function: Function) -> None:
        config, models = self._deployment(function)

        def failed(reason: str) -> None:
            log.error("function %s: %s", function.name, reason)
            self._start(f"{function.name} failure", self._set_state(function.name, FunctionState.FAILED, reason))

        try:
            await self.runtime.deploy(function.name, config, models, failed)
        except ModelhostError as exc:
            if self.runtime.route(function.name) is not None:  # an update: the previous code still serves
                reason = f"the update failed and was rolled back: {exc.message}"
                log.error("function %s: %s", function.name, reason)
                await self._set_state(function.name, FunctionState.ACTIVE, reason)
                return
            log.error("function %s: failed to start: %s", function.name, exc.message)
            await self._set_state(function.name, FunctionState.FAILED, exc.message)
            return
        await self._set_state(function.name, FunctionState.ACTIVE)
        log.info("function %s: Active", function.name)

    async def _set_state(self, name: str, state: FunctionState, reason: str | None = None) -> None:
        with contextlib.suppress(ResourceNotFound):
            await self._db(self.store.set_function_state, name, state, reason)
            self._states[name] = state.value

    def _deployment(self, function: Function) -> tuple[EndpointConfig, dict[str, Model]]:
        """The function as a one-instance deployment of the model server, with the bridge as its program."""
        defaults = {
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self._platform_url,
            "AWS_ENDPOINT_URL_SAGEMAKER": self._platform_url,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        if self._credentials is not None:  # what modelhost.runtime.invoke_endpoint signs with, whatever AWS_* hold
            access_key_id, secret = self._credentials
            defaults[ACCESS_KEY_ID_VARIABLE] = access_key_id
            defaults[SECRET_VARIABLE] = secret
            if "AWS_ACCESS_KEY_ID" not in os.environ:  # and boto3, unless the platform has AWS credentials
                defaults["AWS_ACCESS_KEY_ID"] = access_key_id
                defaults["AWS_SECRET_ACCESS_KEY"] = secret
        environment = {
            **defaults,
            **function.environment,
            "MODELHOST_URL": self._platform_url,
            "SAGEMAKER_PROGRAM": str(Path(bridge.__file__).resolve()),
            "MODELHOST_FUNCTION_NAME": function.name,
            "MODELHOST_FUNCTION_HANDLER": function.handler,
            "MODELHOST_FUNCTION_ARTIFACTS": json.dumps(dict(function.artifacts)),
            artifact_copies.MAX_BYTES_ENV: str(self._max_artifact_bytes),
            "MODELHOST_FUNCTION_MEMORY_MB": str(function.memory_mb),
            "MODELHOST_FUNCTION_PACKAGES_DIR": str(self.runtime.run_root.parent / "packages"),
            "MODELHOST_TIMEOUT": f"{function.timeout_s:g}",
        }
        model = Model(function.name, function.code_uri, function.code_sha256, "custom", environment)
        config = EndpointConfig(function.name, (ProductionVariant(VARIANT, function.name, 1, 1.0),))
        return config, {function.name: model}

    async def _forget_code(self, uri: str) -> None:
        if not self.artifacts.owns(uri):
            return
        if any(f.code_uri == uri for f in await self.list_functions()):
            return
        await asyncio.to_thread(self.artifacts.delete, uri)

    # -- routes -------------------------------------------------------------------------------------
    async def create_route(self, route: Route) -> Route:
        await self._check_target(route)
        await self._check_overlap(route)
        created = await self._db(self.store.create_route, route)
        await self._publish()
        return created

    async def replace_route(self, route: Route) -> Route:
        """New settings or target for route METHOD PATH; the gateway takes them at once."""
        await self._db(self.store.get_route, route.method, route.path)
        await self._check_target(route)
        await self._check_overlap(route)
        replaced = await self._db(self.store.replace_route, route)
        await self._publish()
        return replaced

    async def _check_target(self, route: Route) -> None:
        if route.target_kind is TargetKind.FUNCTION:
            try:
                await self.describe_function(route.target)
            except ResourceNotFound as exc:
                raise ValidationFailed(f"Target: there is no function {route.target!r}") from exc
        else:
            try:
                await self._hosting.describe_endpoint(route.target)
            except ResourceNotFound as exc:
                raise ValidationFailed(f"Target: there is no endpoint {route.target!r}") from exc

    async def _check_overlap(self, route: Route) -> None:
        """Two routes may not match the same requests the same way (ambiguous templates)."""
        shape = _shape(route.path)
        for other in await self.list_routes():
            same_methods = other.method == route.method or "ANY" in (other.method, route.method)
            if same_methods and _shape(other.path) == shape and other.path != route.path:
                raise ValidationFailed(f"Path: {route.path} matches the same requests as route {other.key}")

    async def list_routes(self) -> list[Route]:
        return await self._db(self.store.list_routes)

    async def delete_route(self, method: str, path: str) -> None:
        await self._db(self.store.delete_route, method, path)
        await self._publish()

    async def _publish(self) -> None:
        routes = await self.list_routes()
        for sink in self._sinks:
            sink.replace_routes(routes)

    # -- usage --------------------------------------------------------------------------------------
    async def flush_usage(self, counts: collections.Counter[tuple[str, str]]) -> None:
        """Move the gateway's counts (key, route) ─► calls into the store, under today's date."""
        if not counts:
            return
        taken = dict(counts)
        counts.subtract(taken)
        for item in [item for item, n in counts.items() if n == 0]:
            del counts[item]
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        try:
            await self._db(self.store.add_usage, taken, day)
        except Exception:
            counts.update(taken)  # kept for the next flush
            raise

    async def flush_usage_forever(self, counts: collections.Counter[tuple[str, str]], every_s: float = 10.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.flush_usage(counts)
            except Exception:
                log.exception("usage could not be stored; kept for the next try")

    async def usage(self, pending: collections.Counter[tuple[str, str]]) -> list[dict[str, Any]]:
        """Calls per key, route and day: what is stored and what has not been flushed yet."""
        totals: collections.Counter[tuple[str, str, str]] = collections.Counter()
        for row in await self._db(self.store.list_usage):
            totals[(row["key_name"], row["route"], row["day"])] += row["calls"]
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        for (key_name, route), calls in pending.items():
            totals[(key_name, route, day)] += calls
        return [
            {"api_key": key_name, "route": route, "day": day, "calls": calls}
            for (key_name, route, day), calls in sorted(totals.items())
        ]

    # -- start and stop -----------------------------------------------------------------------------
    async def recover(self) -> None:
        """Start every stored function again, and hand the routes to the front door."""
        await self._publish()
        for function in await self.list_functions():
            await self._db(self.store.set_function_state, function.name, FunctionState.PENDING, None)
            self._states[function.name] = FunctionState.PENDING.value
            self._start(function.name, self._bring_up(function))

    async def shutdown(self) -> None:
        await self._tasks.cancel_all()
        await self.runtime.shutdown()


def _shape(path: str) -> tuple[str, ...]:
    return tuple("{}" if segment.startswith("{") else segment for segment in path.strip("/").split("/"))
