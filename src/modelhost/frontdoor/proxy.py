"""``POST /endpoints/{name}/invocations``: SageMaker's runtime path, in front of every endpoint's instances.

    the endpoint's deployment ─► a variant (weights, or X-Amzn-SageMaker-Target-Variant) ─►
    its least-busy healthy instance ─► the model server's /invocations ─► the answer, with
    X-Amzn-Invoked-Production-Variant

Errors are shaped as SageMaker's runtime shapes them, so boto3 reads them: the type in
``x-amzn-ErrorType``; a model's own error becomes ``ModelError`` (424) carrying the original
status and message; an unknown endpoint or variant is a ``ValidationError`` (400).

Everything here is callbacks on the event loop (no task per request): ``handle`` is called by
the connection protocol with a complete request and answers through ``respond``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Protocol

from modelhost.control.resources import DataCaptureConfig
from modelhost.frontdoor.answers import FrontDoorError, model_error, render, render_error
from modelhost.frontdoor.capture import DataCapture, capture_record
from modelhost.frontdoor.upstream import UpstreamError, UpstreamResponse, encode_request
from modelhost.runtime.deployment import Deployment, Variant
from modelhost.runtime.instance import Instance
from modelhost.runtime.multimodel import MultiModelHost, TargetModelError, check_target
from modelhost.sagemaker import sigv4

log = logging.getLogger("modelhost.frontdoor")

PREFIX = "/endpoints/"
SUFFIX = "/invocations"
_FORWARDED = frozenset(
    {b"content-type", b"accept", b"x-amzn-sagemaker-custom-attributes", b"x-amzn-sagemaker-target-model"}
)
_REQUEST_ID_HEADERS = frozenset({b"x-amzn-sagemaker-inference-id", b"x-request-id"})
_RETURNED = (b"content-type", b"x-amzn-sagemaker-custom-attributes")
_PRINTABLE = re.compile(r"[^\x21-\x7e]")
# sagemaker-runtime's other operations (botocore's service-2.json): boto3 gets a ValidationError naming it
_UNSUPPORTED = {
    "/async-invocations": "InvokeEndpointAsync",
    "/invocations-response-stream": "InvokeEndpointWithResponseStream",
}

Respond = Callable[[bytes], None]
Served = Callable[[str, str], None]  # (the serving worker's hand-off socket, the endpoint): it may take the connection

__all__ = ["PREFIX", "SUFFIX", "FrontDoor", "FrontDoorError", "Respond", "render", "render_error"]


class RouteTable(Protocol):
    def route(self, endpoint: str) -> Deployment | None: ...

    def deployments(self) -> dict[str, Deployment]: ...


class Access(Protocol):
    def is_protected(self, endpoint: str) -> bool: ...

    def check(self, endpoint: str, presented: bytes | None) -> tuple[int, str, str] | None: ...

    def check_signed(self, endpoint: str, access_key_id: str) -> tuple[int, str, str] | None: ...

    def secret_for(self, access_key_id: str) -> str | None: ...


def _no_route(path: str) -> FrontDoorError:
    """Why nothing answers ``path``: an operation of SageMaker's runtime modelhost does not offer is
    a ValidationError boto3 raises with its name (not a 404, which boto3 shows as a bare status)."""
    for suffix, operation in _UNSUPPORTED.items():
        if path.endswith(suffix):
            return FrontDoorError(
                400,
                "ValidationError",
                f"modelhost does not support {operation}; call InvokeEndpoint (POST {PREFIX}<name>{SUFFIX}).",
            )
    return FrontDoorError(404, "NotFound", f"no route {path}; invoke POST {PREFIX}<name>{SUFFIX}")


def endpoint_name(path: str) -> str | None:
    if path.startswith(PREFIX) and path.endswith(SUFFIX):
        name = path[len(PREFIX) : -len(SUFFIX)]
        return name if name and "/" not in name else None
    return None


class FrontDoor:
    def __init__(
        self,
        routes: RouteTable,
        endpoint_status: Callable[[str], str | None],
        *,
        max_payload_bytes: int = 6 * 1024 * 1024,
        timeout_s: float = 70.0,
        capture: DataCapture | None = None,
        access: Access | None = None,
        handoff: bool = False,
    ) -> None:
        self._routes = routes
        self.handoff = handoff  # connections may move to the worker that served them (see frontdoor/handoff.py)
        self._access = access
        self.capture = capture
        self._endpoint_status = endpoint_status  # what the control plane knows of a name without a route
        self.max_payload_bytes = max_payload_bytes
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._id_prefix = f"fd{os.getpid():x}-"

    def handle(  # noqa: PLR0917 (called once per request on the hot path: positional on purpose)
        self,
        method: bytes,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        respond: Respond,
        served: Served | None = None,
    ) -> None:
        """Answer one request under ``/endpoints/`` through ``respond`` (now or later).

        ``served`` is told, before ``respond``, which worker answered a request whose connection
        that worker may serve from now on: a plain endpoint (one variant, one model, no data
        capture, no API key) and a plain request (no target variant).
        """
        forwarded: list[tuple[bytes, bytes]] = []
        target_variant = None
        request_id = ""
        inference_id = None
        target_model = None
        api_key = None
        for key, value in headers:
            if key in _FORWARDED:
                forwarded.append((key, value))
                if key == b"x-amzn-sagemaker-target-model":
                    target_model = value.decode("latin-1")
            elif key == b"x-amzn-sagemaker-target-variant":
                target_variant = value.decode("latin-1")
            elif key == b"x-api-key":
                api_key = value
            elif key in _REQUEST_ID_HEADERS:
                request_id = _PRINTABLE.sub("", value.decode("latin-1"))[:128]
                if key == b"x-amzn-sagemaker-inference-id":
                    inference_id = request_id
        request_id = request_id or f"{self._id_prefix}{next(self._ids):x}"
        forwarded.append((b"x-request-id", request_id.encode()))
        try:
            name = endpoint_name(path)
            if name is None:
                raise _no_route(path)
            if method != b"POST":
                raise FrontDoorError(405, "MethodNotAllowed", f"use POST {path}")
            if self._access is not None and self._access.is_protected(name):
                self._authorize(name, api_key, method=method, path=path, headers=headers, body=body)
            deployment, variant = self._variant(name, target_variant)
            request = encode_request(b"POST", b"/invocations", forwarded, body)
            exchange = _Exchange(self, name, variant, request, request_id, respond)
            if variant.multi_model:
                if not target_model:
                    raise FrontDoorError(
                        400,
                        "ValidationError",
                        f"Endpoint {name} serves many models: name one with X-Amzn-SageMaker-Target-Model.",
                    )
                try:
                    exchange.target = check_target(target_model)
                except TargetModelError as exc:
                    raise FrontDoorError(400, "ValidationError", exc.message) from exc
                exchange.host = variant.pick_host()
            capture = deployment.config.data_capture
            if self.capture is not None and capture.enabled and self.capture.sampled(capture.sampling_percentage):
                exchange.captured = (capture, body, _content_type(forwarded), inference_id)
            if (
                served is not None
                and self.handoff
                and target_variant is None
                and len(deployment.variants) == 1
                and not variant.multi_model
                and not capture.enabled
                and not (self._access is not None and self._access.is_protected(name))
            ):
                exchange.served = served
            self._send(exchange)
        except FrontDoorError as exc:
            respond(render_error(exc, request_id))

    def _authorize(
        self,
        name: str,
        api_key: bytes | None,
        *,
        method: bytes,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        """An x-api-key, or a SigV4 signature (boto3's sagemaker-runtime) by a key's access key id."""
        assert self._access is not None
        authorization = next((value for key, value in headers if key == b"authorization"), b"")
        if api_key is None and authorization.startswith(sigv4.ALGORITHM.encode()):
            try:
                signed = sigv4.verify(
                    method.decode("latin-1"),
                    path,
                    [(key.decode("latin-1"), value.decode("latin-1")) for key, value in headers],
                    body,
                    self._access.secret_for,
                )
            except sigv4.SignatureError as exc:
                raise FrontDoorError(exc.status, exc.code, exc.message) from None
            refused = self._access.check_signed(name, signed.access_key_id)
        else:
            refused = self._access.check(name, api_key)
        if refused is not None:
            raise FrontDoorError(*refused)

    def reject(self, error: FrontDoorError, respond: Respond, *, message_key: str = "Message") -> None:
        """Answer a request the protocol refused before it was complete (e.g. too large); it then closes."""
        respond(render_error(error, f"{self._id_prefix}{next(self._ids):x}", close=True, message_key=message_key))

    def _variant(self, name: str, target_variant: str | None) -> tuple[Deployment, Variant]:
        deployment = self._routes.route(name)
        if deployment is None:
            status = self._endpoint_status(name)
            if status is None:
                raise FrontDoorError(400, "ValidationError", f"Endpoint {name} not found.")
            if status == "Failed":  # not coming back by itself: no retry-after
                raise FrontDoorError(
                    400, "ValidationError", f"Endpoint {name} is Failed; see `modelhost describe {name}`."
                )
            raise FrontDoorError(
                503, "ServiceUnavailable", f"Endpoint {name} ({status}) has no running instance yet; retry shortly."
            )
        if target_variant is None:
            return deployment, deployment.choose_variant()
        variant = deployment.variant(target_variant)
        if variant is None:
            names = ", ".join(v.name for v in deployment.variants)
            raise FrontDoorError(
                400, "ValidationError", f"Endpoint {name} has no variant {target_variant!r} (it has {names})."
            )
        return deployment, variant

    def _send(self, exchange: _Exchange) -> None:
        if exchange.host is not None:
            self._send_to_target(exchange, exchange.host)
            return
        picked = exchange.variant.pick(exclude=exchange.tried)
        if picked is None:
            error = FrontDoorError(
                503,
                "ServiceUnavailable",
                f"Endpoint {exchange.name}: no instance of variant {exchange.variant.name} is healthy.",
            )
            exchange.respond(render_error(error, exchange.request_id))
            return
        instance, pool = picked
        exchange.tried.append(instance)
        if exchange.served is not None:
            exchange.handoff_name = instance.handoff_names.get(pool)
        pool.send(exchange.request, self._timeout_s, exchange.answered, exchange.failed)

    def _send_to_target(self, exchange: _Exchange, host: MultiModelHost) -> None:
        """A multi-model request: to its target's server, loading it first (once) if need be."""
        assert exchange.target is not None
        instance = host.ready(exchange.target)
        pool = instance.least_busy() if instance is not None else None
        if instance is not None and pool is not None and instance not in exchange.tried:
            exchange.tried.append(instance)
            pool.send(exchange.request, self._timeout_s, exchange.answered, exchange.failed)
            return
        if exchange.loaded:
            error = FrontDoorError(
                503, "ServiceUnavailable", f"Endpoint {exchange.name}: target model {exchange.target} is not serving."
            )
            exchange.respond(render_error(error, exchange.request_id))
            return
        exchange.loaded = True
        try:
            task = host.load(exchange.target)
        except TargetModelError as exc:
            exchange.respond(render_error(FrontDoorError(400, "ValidationError", exc.message), exchange.request_id))
            return

        def loaded(task: asyncio.Task[Instance]) -> None:
            error = None if task.cancelled() else task.exception()
            if task.cancelled() or error is not None:
                message = getattr(error, "message", None) or "the endpoint is being stopped"
                exchange.respond(render_error(FrontDoorError(400, "ValidationError", message), exchange.request_id))
                return
            self._send_to_target(exchange, host)

        task.add_done_callback(loaded)

    @staticmethod
    def _answer(name: str, variant: str, response: UpstreamResponse, request_id: str) -> bytes:
        if response.status >= 400:
            return render_error(model_error(name, variant, response.status, response.body), request_id)
        headers = [(key, value) for key, value in response.headers if key in _RETURNED]
        headers.append((b"x-amzn-invoked-production-variant", variant.encode()))
        headers.append((b"x-amzn-requestid", request_id.encode()))
        return render(200, headers, response.body)

    async def expire_overdue_forever(self, every_s: float = 1.0) -> None:
        """One sweep a second aborts requests an instance did not answer in time (no timer per request)."""
        while True:
            await asyncio.sleep(every_s)
            now = time.monotonic()
            for deployment in self._routes.deployments().values():
                for instance in deployment.instances:
                    for pool in instance.pools:
                        pool.expire_overdue(now)


class _Exchange:
    """One invocation on its way: the upstream callbacks, and where to retry."""

    __slots__ = (
        "captured",
        "door",
        "handoff_name",
        "host",
        "loaded",
        "name",
        "request",
        "request_id",
        "respond",
        "served",
        "target",
        "tried",
        "variant",
    )

    def __init__(  # noqa: PLR0917 (built once per request on the hot path: positional on purpose)
        self, door: FrontDoor, name: str, variant: Variant, request: bytes, request_id: str, respond: Respond
    ) -> None:
        self.door, self.name, self.variant = door, name, variant
        self.request, self.request_id, self.respond = request, request_id, respond
        self.tried: list[Instance] = []
        self.captured: tuple[DataCaptureConfig, bytes, str, str | None] | None = None  # set when sampled
        self.target: str | None = None  # a multi-model request's model, and the instance that serves it
        self.host: MultiModelHost | None = None
        self.loaded = False
        self.served: Served | None = None  # set when the connection may move to the worker that answers
        self.handoff_name: str | None = None

    def answered(self, response: UpstreamResponse) -> None:
        if self.served is not None and self.handoff_name is not None and response.status < 500:
            self.served(self.handoff_name, self.name)
        self.respond(FrontDoor._answer(self.name, self.variant.name, response, self.request_id))
        if self.captured is not None and response.status < 400 and self.door.capture is not None:
            config, body, content_type, inference_id = self.captured
            answer_type = (response.header(b"content-type") or b"application/json").decode("latin-1")
            line = capture_record(
                body,
                content_type,
                response.body,
                answer_type,
                inference_id,
                config.capture_input,
                config.capture_output,
            )
            self.door.capture.record(config.destination_uri, self.name, self.variant.name, line)

    def failed(self, error: UpstreamError) -> None:
        if not error.answered:  # could not reach it: another instance of the variant, if any
            self.door._send(self)
            return
        lost = FrontDoorError(
            503, "ServiceUnavailable", f"Endpoint {self.name}: the instance failed before answering: {error.message}"
        )
        self.respond(render_error(lost, self.request_id))


def _content_type(headers: list[tuple[bytes, bytes]]) -> str:
    for key, value in headers:
        if key == b"content-type":
            return value.decode("latin-1")
    return "application/json"  # what the model server assumes too
