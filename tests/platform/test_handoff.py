"""Connection hand-off through a real `modelhost up`, seen from a client's TCP connection.

After the front door answered an invocation of a plain endpoint, the connection itself moves to the
instance's worker, which answers the next invocations on it. A client must not be able to tell:
same answers, headers and error shapes; anything the worker does not serve (another path, a target
variant, the REST API) is answered by the front door on the same connection. Answers from a worker
carry request ids ``<worker pid in hex>-h<n>`` (the front door's are ``fd<pid>-<n>``), which is how
these tests see where a request was served.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.platform.conftest import Platform, parent_of, platforms, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ENDPOINT = "plain"
OTHER = "other"
READ_TIMEOUT_S = 2  # a handed connection's request must arrive within this (MODELHOST_READ_TIMEOUT)
KEEP_ALIVE_S = 3  # an idle handed connection is closed after this (MODELHOST_HANDOFF_KEEP_ALIVE)
TEXTS = orjson.dumps(["great amazing day", "awful broken app"])
HANDED_ID = re.compile(r"^([0-9a-f]+)-h[0-9a-f]+$")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def request_id(self) -> str:
        return self.headers["x-amzn-requestid"]

    def handed(self) -> bool:
        return HANDED_ID.match(self.request_id) is not None

    def json(self) -> object:
        return orjson.loads(self.body)


class Connection:
    """One keep-alive HTTP/1.1 connection, by hand: requests are bytes, answers are read by content-length."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.local = self.sock.getsockname()
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, path: str, body: bytes = b"", **headers: str) -> Answer:
        self.send(request_bytes(method, path, body, **headers))
        return self.answer()

    def invoke(self, endpoint: str = ENDPOINT, body: bytes = TEXTS, **headers: str) -> Answer:
        return self.request("POST", f"/endpoints/{endpoint}/invocations", body, **headers)

    def answer(self) -> Answer:
        while b"\r\n\r\n" not in self._buffer:
            self._read()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        while len(self._buffer) < length:
            self._read()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return Answer(int(status_line.split()[1]), headers, body)

    def closed_by_server(self, timeout_s: float) -> bool:
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(30)

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection; unread: {self._buffer[:200]!r}")
        self._buffer += chunk

    def close(self) -> None:
        self.sock.close()


def request_bytes(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if method == "POST":
        headers.setdefault("Content_Type", "application/json")
        headers.setdefault("Content_Length", str(len(body)))
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sentiment_model: Path) -> Iterator[Platform]:
    env = {"MODELHOST_READ_TIMEOUT": str(READ_TIMEOUT_S), "MODELHOST_HANDOFF_KEEP_ALIVE": str(KEEP_ALIVE_S)}
    with platforms(tmp_path_factory.mktemp("handoff")) as start:
        platform = start(env=env)
        platform.deploy(sentiment_model, ENDPOINT)
        platform.deploy(sentiment_model, OTHER)
        yield platform


@pytest.fixture
def connection(served: Platform) -> Iterator[Connection]:
    opened = Connection(served.port)
    yield opened
    opened.close()


def hand_over(connection: Connection) -> Answer:
    """Invoke until an answer comes from the worker (the hand-off follows the front door's first answer)."""
    answers = [connection.invoke() for _ in range(20)]
    handed = [answer for answer in answers if answer.handed()]
    assert handed, [answer.request_id for answer in answers]
    return handed[0]


# -- tests ------------------------------------------------------------------------------------------------
def test_a_handed_connection_is_answered_by_the_endpoints_worker(served: Platform, connection: Connection) -> None:
    first = connection.invoke()
    assert first.request_id.startswith("fd")
    handed = hand_over(connection)
    assert handed.status == first.status == 200
    assert handed.json() == first.json() == [1, 0]
    for header in ("content-type", "x-amzn-invoked-production-variant"):
        assert handed.headers[header] == first.headers[header]
    assert handed.headers["x-amzn-invoked-production-variant"] == "AllTraffic"
    assert int(handed.headers["content-length"]) == len(handed.body)
    # the worker that answered is a worker of the endpoint's instance
    match = HANDED_ID.match(handed.request_id)
    assert match is not None
    assert parent_of(int(match.group(1), 16)) in served.instance_pids(ENDPOINT)
    assert connection.sock.getsockname() == connection.local  # one connection all along


def test_the_client_s_request_id_and_custom_attributes_reach_the_model(connection: Connection) -> None:
    hand_over(connection)
    answer = connection.invoke(X_Amzn_SageMaker_Inference_Id="my-id-1", X_Amzn_SageMaker_Custom_Attributes="k=v")
    assert answer.status == 200
    assert answer.request_id == "my-id-1"


def test_a_model_error_has_the_front_door_s_shape(served: Platform, connection: Connection) -> None:
    fresh = Connection(served.port)
    try:
        from_front_door = fresh.invoke(body=b'["great day"')
    finally:
        fresh.close()
    hand_over(connection)
    from_worker = connection.invoke(body=b'["great day"')
    assert from_worker.handed()
    assert not from_front_door.handed()
    for answer in (from_worker, from_front_door):
        assert answer.status == 424
        assert answer.headers["x-amzn-errortype"] == "ModelError"
        assert answer.headers["content-type"].startswith("application/json")
    worker_body, front_body = from_worker.json(), from_front_door.json()
    assert isinstance(worker_body, dict)
    assert isinstance(front_body, dict)
    assert worker_body.keys() == front_body.keys()
    for key in ("error", "OriginalStatusCode"):
        assert worker_body[key] == front_body[key], key
    worker_original = orjson.loads(str(worker_body["OriginalMessage"]))
    front_original = orjson.loads(str(front_body["OriginalMessage"]))
    assert worker_original.pop("request_id") == from_worker.request_id  # the model server's body, as sent
    assert front_original.pop("request_id") == from_front_door.request_id
    assert worker_original == front_original
    assert worker_body["request_id"] == from_worker.request_id
    assert f"modelhost logs {ENDPOINT}" in str(worker_body["Message"])
    assert connection.invoke().status == 200  # and the connection goes on


def test_anything_else_on_a_handed_connection_is_answered_by_the_front_door(connection: Connection) -> None:
    hand_over(connection)
    health = connection.request("GET", "/api/v1/health")
    assert health.status == 200
    health_body = health.json()
    assert isinstance(health_body, dict)
    assert health_body["status"] == "ok"

    targeted = connection.invoke(X_Amzn_SageMaker_Target_Variant="AllTraffic")
    assert targeted.status == 200
    assert targeted.headers["x-amzn-invoked-production-variant"] == "AllTraffic"
    unknown_variant = connection.invoke(X_Amzn_SageMaker_Target_Variant="Nope")
    assert unknown_variant.status == 400
    assert not unknown_variant.handed()

    other = connection.invoke(OTHER)
    assert other.status == 200
    assert other.json() == [1, 0]
    missing = connection.invoke("no-such-endpoint")
    assert (missing.status, missing.headers["x-amzn-errortype"]) == (400, "ValidationError")
    wrong_method = connection.request("GET", f"/endpoints/{ENDPOINT}/invocations")
    assert (wrong_method.status, wrong_method.headers["allow"]) == (405, "POST")

    chunked = request_bytes("POST", f"/endpoints/{ENDPOINT}/invocations", b"", Transfer_Encoding="chunked")
    chunked = chunked.replace(b"Content-Length: 0\r\n", b"")
    connection.send(chunked + b"%x\r\n%s\r\n0\r\n\r\n" % (len(TEXTS), TEXTS))
    assert connection.answer().json() == [1, 0]

    assert connection.invoke().status == 200
    assert connection.sock.getsockname() == connection.local


def test_a_foreign_request_with_a_large_body_comes_back_whole(connection: Connection) -> None:
    """What the worker read of a request it does not serve goes back to the front door, every byte."""
    hand_over(connection)
    texts = [f"great amazing day number {index}" for index in range(20_000)]  # ~700 KB
    answer = connection.invoke(body=orjson.dumps(texts), X_Amzn_SageMaker_Target_Variant="AllTraffic")
    assert answer.status == 200, answer.body[:300]
    predictions = answer.json()
    assert isinstance(predictions, list)
    assert len(predictions) == len(texts)
    assert connection.invoke().status == 200


def test_a_head_over_the_limit_on_a_handed_connection_is_the_front_door_s_431(connection: Connection) -> None:
    hand_over(connection)
    answer = connection.invoke(X_Big="a" * 70_000)
    assert answer.status == 431
    assert answer.headers["x-amzn-errortype"] == "RequestHeaderFieldsTooLarge"
    assert not answer.handed()
    assert connection.closed_by_server(5)


def test_pipelined_requests_are_answered_in_order(connection: Connection) -> None:
    hand_over(connection)
    bad = request_bytes("POST", f"/endpoints/{ENDPOINT}/invocations", b'["x"')
    good = request_bytes("POST", f"/endpoints/{ENDPOINT}/invocations", orjson.dumps(["awful broken app"]))
    health = request_bytes("GET", "/api/v1/health")
    connection.send(good + bad + good + health + good)
    statuses = [connection.answer().status for _ in range(5)]
    assert statuses == [200, 424, 200, 200, 200]


def test_a_request_that_stalls_is_a_408_then_the_connection_closes(connection: Connection) -> None:
    hand_over(connection)
    whole = request_bytes("POST", f"/endpoints/{ENDPOINT}/invocations", TEXTS)
    connection.send(whole[:-5])  # the body's last bytes never come
    started = time.monotonic()
    answer = connection.answer()
    waited = time.monotonic() - started
    assert answer.status == 408
    assert answer.headers["x-amzn-errortype"] == "RequestTimeout"
    assert answer.handed()
    assert READ_TIMEOUT_S - 0.5 < waited < READ_TIMEOUT_S + 5
    assert connection.closed_by_server(5)


def test_an_idle_handed_connection_is_closed_after_the_keep_alive(connection: Connection) -> None:
    hand_over(connection)
    started = time.monotonic()
    assert connection.closed_by_server(KEEP_ALIVE_S + 5)
    assert time.monotonic() - started > KEEP_ALIVE_S - 1


def test_requiring_a_key_takes_the_endpoint_s_connections_back(
    served: Platform, connection: Connection, sentiment_model: Path
) -> None:
    """A connection handed before the endpoint was protected must not keep serving it without a key."""
    guarded = "guarded-later"
    served.cli("deploy", str(sentiment_model), "--name", guarded)
    answers = [connection.invoke(guarded) for _ in range(20)]
    assert any(answer.handed() for answer in answers), [answer.request_id for answer in answers]

    served.cli("access", guarded, "--require-api-key")
    refused = connection.invoke(guarded)
    assert refused.status == 401, refused.body
    assert refused.headers["x-amzn-errortype"] == "MissingAuthenticationToken"
    assert all(connection.invoke(guarded).status == 401 for _ in range(5))  # not handed again while protected

    served.cli("access", guarded, "--no-api-key")
    assert connection.invoke(guarded).status == 200
    served.cli("rm", guarded)


def test_an_instance_that_stops_gives_its_connections_back(
    served: Platform, connection: Connection, sentiment_model: Path
) -> None:
    """An update replaces the worker a connection was handed to: the connection lives on, answered anew."""
    handed = hand_over(connection)
    match = HANDED_ID.match(handed.request_id)
    assert match is not None
    old_worker = int(match.group(1), 16)
    served.cli("update", ENDPOINT, str(sentiment_model))
    served.wait_in_service(ENDPOINT)
    poll(lambda: old_worker not in served.descendants(), 30, "the old instance to stop")
    answers = [connection.invoke() for _ in range(20)]
    assert all(answer.status == 200 for answer in answers)
    later = [HANDED_ID.match(answer.request_id) for answer in answers]
    assert all(int(m.group(1), 16) != old_worker for m in later if m is not None)
    assert connection.sock.getsockname() == connection.local


def test_without_handoff_the_front_door_answers_everything(tmp_path: Path, sentiment_model: Path) -> None:
    with platforms(tmp_path) as start:
        platform = start("--no-handoff")
        platform.deploy(sentiment_model, ENDPOINT)
        connection = Connection(platform.port)
        try:
            answers = [connection.invoke() for _ in range(20)]
        finally:
            connection.close()
    assert all(answer.status == 200 for answer in answers)
    assert not any(answer.handed() for answer in answers), [answer.request_id for answer in answers]
