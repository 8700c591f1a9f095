"""The front door's HTTP protocol over real sockets: the fast path, the relay to the API, and bad input.

An "instance" (a tiny asyncio HTTP server answering /invocations) and an "API" (uvicorn with a
small ASGI app) run in the test's own loop; clients speak raw HTTP/1.1 so that pipelining,
``Expect: 100-continue``, chunked bodies and slow clients can be exercised exactly.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn

from modelhost.control.resources import EndpointConfig, Model, ProductionVariant
from modelhost.frontdoor.protocol import ConnectionSettings, FrontDoorServer
from modelhost.frontdoor.proxy import FrontDoor
from modelhost.frontdoor.upstream import UpstreamPool
from modelhost.runtime.deployment import Deployment, Variant
from modelhost.runtime.instance import Instance, InstanceSpec


async def _instance_server(seen: list[bytes]) -> tuple[asyncio.Server, int]:
    """Answers POST /invocations with the request body reversed; status 400 when it is b'bad'."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            seen.append(head + body)
            if body == b"bad":
                status, answer = b"400 Bad Request", b'{"error":"InvalidInput"}'
            else:
                status, answer = b"200 OK", body[::-1]
            writer.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
                b"x-amzn-sagemaker-custom-attributes: echoed\r\ncontent-length: "
                + str(len(answer)).encode()
                + b"\r\n\r\n"
                + answer
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _api_app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = json.dumps({"path": scope["path"], "method": scope["method"], "received": len(body)}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer})


class _Routes:
    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment

    def route(self, endpoint: str) -> Deployment | None:
        return self.deployment if endpoint == "echo" else None

    def deployments(self) -> dict[str, Deployment]:
        return {"echo": self.deployment}


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = b""
    return status, headers, body


Scenario = Callable[[int, list[bytes]], Awaitable[None]]


def _run(scenario: Scenario, *, read_timeout_s: float = 5.0, max_payload: int = 1024, tmp: Path) -> None:
    async def main() -> None:
        seen: list[bytes] = []
        instance_server, instance_port = await _instance_server(seen)
        api_sock = socket.create_server(("127.0.0.1", 0))
        api = uvicorn.Server(uvicorn.Config(_api_app, lifespan="off", log_config=None, access_log=False))
        api_task = asyncio.create_task(api.serve(sockets=[api_sock]))
        instance = Instance(
            InstanceSpec("echo", "AllTraffic", 0, Model("m", "/nowhere")),
            run_dir=tmp / "run",
            log_path=tmp / "log",
            environment={},
            load_timeout_s=1,
            request_timeout_s=5,
        )
        instance.pools = [UpstreamPool(("127.0.0.1", instance_port))]
        config = EndpointConfig("c", (ProductionVariant("AllTraffic", "m"),))
        deployment = Deployment("echo", config, [Variant("AllTraffic", 1.0, [instance])])
        door = FrontDoor(_Routes(deployment), lambda name: None, max_payload_bytes=max_payload, timeout_s=5)
        settings = ConnectionSettings(
            api_host="127.0.0.1",
            api_port=api_sock.getsockname()[1],
            read_timeout_s=read_timeout_s,
            keep_alive_s=5,
        )
        server = FrontDoorServer(door, settings)
        public = socket.create_server(("127.0.0.1", 0))
        await server.start(public)
        try:
            await scenario(public.getsockname()[1], seen)
        finally:
            await server.stop(grace_s=1)
            api.should_exit = True
            await api_task
            instance_server.close()
            await instance_server.wait_closed()
            for pool in instance.pools:
                pool.close()

    asyncio.run(main())


def _invocation(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST /endpoints/echo/invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + extra
        + b"content-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def test_an_invocation_is_proxied_with_the_variant_header(tmp_path: Path) -> None:
    async def scenario(port: int, seen: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for body in (b"[1,2]", b"[3]"):  # two on one kept-alive connection
            writer.write(_invocation(body, b"x-amzn-sagemaker-custom-attributes: trace=1\r\n"))
            status, headers, answer = await _read_response(reader)
            assert status == 200
            assert answer == body[::-1]
            assert headers["x-amzn-invoked-production-variant"] == "AllTraffic"
            assert headers["x-amzn-sagemaker-custom-attributes"] == "echoed"
            assert headers["content-type"] == "application/json"
        writer.close()
        assert b"POST /invocations HTTP/1.1" in seen[0]
        assert b"x-amzn-sagemaker-custom-attributes: trace=1" in seen[0]

    _run(scenario, tmp=tmp_path)


def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    async def scenario(port: int, seen: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        bodies = [f"[{i}]".encode() for i in range(10)]
        writer.write(b"".join(_invocation(body) for body in bodies) + b"GET /api/v1/x HTTP/1.1\r\nhost: x\r\n\r\n")
        for body in bodies:
            status, _, answer = await _read_response(reader)
            assert (status, answer) == (200, body[::-1])
        status, _, answer = await _read_response(reader)
        assert status == 200
        assert json.loads(answer)["path"] == "/api/v1/x"
        writer.close()

    _run(scenario, tmp=tmp_path)


def test_a_model_error_comes_back_as_sagemaker_model_error(tmp_path: Path) -> None:
    async def scenario(port: int, seen: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_invocation(b"bad"))
        status, headers, answer = await _read_response(reader)
        assert status == 424
        assert headers["x-amzn-errortype"] == "ModelError"
        error = json.loads(answer)
        assert error["OriginalStatusCode"] == 400
        assert error["OriginalMessage"] == '{"error":"InvalidInput"}'
        writer.write(_invocation(b"[1]"))  # the connection stays usable
        assert (await _read_response(reader))[0] == 200
        writer.close()

    _run(scenario, tmp=tmp_path)


def test_unknown_endpoint_wrong_method_and_bad_path(tmp_path: Path) -> None:
    async def scenario(port: int, seen: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_invocation(b"[1]").replace(b"/endpoints/echo/", b"/endpoints/nope/"))
        status, headers, answer = await _read_response(reader)
        assert (status, headers["x-amzn-errortype"]) == (400, "ValidationError")
        assert "nope" in json.loads(answer)["Message"]
        writer.write(b"GET /endpoints/echo/invocations HTTP/1.1\r\nhost: x\r\n\r\n")
        status, headers, _ = await _read_response(reader)
        assert (status, headers["allow"]) == (405, "POST")
        writer.write(_invocation(b"[1]").replace(b"/invocations", b"/other"))
        assert (await _read_response(reader))[0] == 404
        writer.write(_invocation(b"[1]").replace(b"/invocations", b"/async-invocations"))
        status, headers, answer = await _read_response(reader)
        assert (status, headers["x-amzn-errortype"]) == (400, "ValidationError")  # an operation modelhost lacks
        assert "InvokeEndpointAsync" in json.loads(answer)["Message"]
        writer.close()

    _run(scenario, tmp=tmp_path)


def test_the_api_relay_streams_chunked_bodies_and_answers_expect_continue(tmp_path: Path) -> None:
    async def scenario(port: int, seen: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"PUT /api/v1/artifacts/m HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n"
        )
        interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        payload = b"x" * 300_000
        for start in range(0, len(payload), 65_536):
            chunk = payload[start : start + 65_536]
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        writer.write(b"0\r\n\r\n")
        status, _, answer = await _read_response(reader)
        assert status == 200
        assert json.loads(answer) == {"path": "/api/v1/artifacts/m", "method": "PUT", "received": len(payload)}
        writer.write(_invocation(b"[7]"))  # an invocation after an API call, same connection
        assert (await _read_response(reader))[2] == b"]7["
        writer.close()

    _run(scenario, tmp=tmp_path)


def test_a_body_over_the_limit_is_refused_with_413_and_closed(tmp_path: Path) -> None:
    async def scenario(port: int, seen: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_invocation(b"[" + b"1," * 2000 + b"1]"))
        status, _, answer = await _read_response(reader)
        assert status == 413
        assert "limit" in json.loads(answer)["Message"]
        assert await reader.read() == b""  # closed
        assert seen == []

    _run(scenario, max_payload=1024, tmp=tmp_path)


def test_a_slow_request_gets_408_and_a_malformed_one_400(tmp_path: Path) -> None:
    async def scenario(port: int, seen: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /endpoints/echo/invocations HTTP/1.1\r\ncontent-length: 10\r\n\r\n[1")
        status, _, answer = await asyncio.wait_for(_read_response(reader), 5)
        assert status == 408
        assert json.loads(answer)["error"] == "RequestTimeout"
        assert await reader.read() == b""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, _ = await _read_response(reader)
        assert status == 400
        writer.close()

    _run(scenario, read_timeout_s=0.6, tmp=tmp_path)
