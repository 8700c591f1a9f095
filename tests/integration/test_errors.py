"""Errors (and the codecs they guard) through the real server.

Every failure is a JSON body ``{"error", "message", "request_id"}`` with the right status, never a
traceback; the happy paths of each codec are checked next to their failures.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import Serve, ServerProcess
from tests.models import sklearn_regression, sklearn_text_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

MAX_PAYLOAD_MB = "0.01"  # 10 KiB: oversize bodies stay small
MAX_PAYLOAD_BYTES = int(0.01 * 1024 * 1024)


# -- helpers ----------------------------------------------------------------------------------
def assert_json_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response has ``status`` and a JSON error body ``{"error", "message", ...}``, no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str), body
    assert body["error"]
    assert isinstance(body.get("message"), str), body
    assert body["message"]
    return body


def invoke(server: ServerProcess, body: bytes, content_type: str | None, **headers: str) -> httpx.Response:
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    if content_type is not None:
        sent["content-type"] = content_type
    return httpx.post(f"{server.url}/invocations", content=body, headers=sent, timeout=10)


def read_raw_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response (with a Content-Length) off a raw socket."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a full response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def write_program(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inference.py").write_text(source)
    return folder


# -- a shared, read-only regression server ----------------------------------------------------
@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A 3-feature linear regression; one worker, a 10 KiB payload limit and a 1 s body read timeout."""
    root = tmp_path_factory.mktemp("errors-regression")
    model = sklearn_regression(root / "model", n_features=3)
    server = ServerProcess(
        model,
        root / "server.log",
        "--workers",
        "1",
        "--max-payload-mb",
        MAX_PAYLOAD_MB,
        env={"MODELHOST_READ_TIMEOUT": "1"},
    )
    try:
        yield server.wait_ready()
    finally:
        server.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)


def test_a_good_request_still_works(regression: ServerProcess) -> None:
    response = invoke(regression, b"[[1, 2, 3]]", "application/json")
    assert response.status_code == 200
    assert response.json() == [pytest.approx(14.5)]


@pytest.mark.parametrize(
    "body",
    [b"[[1, 2, 3]", b"{not json}", b"", b"[[1, 2, 3]] trailing"],
    ids=["unclosed", "bare-words", "empty", "trailing"],
)
def test_malformed_json_is_400(regression: ServerProcess, body: bytes) -> None:
    error = assert_json_error(invoke(regression, body, "application/json"), 400)
    assert error["error"] == "InvalidInput"
    assert "JSON" in error["message"]
    assert error.get("request_id")


def test_ragged_csv_is_400(regression: ServerProcess) -> None:
    error = assert_json_error(invoke(regression, b"1,2,3\n4,5\n", "text/csv"), 400)
    assert "row 2" in error["message"]


@pytest.mark.parametrize(
    "content_type", ["application/x-python-pickle", "application/octet-stream", "application/x-pickle", "image/png"]
)
def test_unsupported_content_type_is_415(regression: ServerProcess, content_type: str) -> None:
    # A real pickle: it must never be unpickled, whatever the server does with it.
    import pickle

    body = pickle.dumps([[1, 2, 3]])
    error = assert_json_error(invoke(regression, body, content_type), 415)
    assert error["error"] == "UnsupportedMediaType"
    assert content_type in error["message"]


@pytest.mark.parametrize("accept", ["application/xml", "application/x-python-pickle", "text/html, image/*"])
def test_unsupported_accept_is_406(regression: ServerProcess, accept: str) -> None:
    error = assert_json_error(invoke(regression, b"[[1, 2, 3]]", "application/json", accept=accept), 406)
    assert error["error"] == "NotAcceptable"


def test_oversize_body_with_content_length_is_413(regression: ServerProcess) -> None:
    body = json.dumps([[1.5, 2.5, 3.5]] * 2000).encode()
    assert len(body) > MAX_PAYLOAD_BYTES
    response = invoke(regression, body, "application/json")
    assert response.request.headers["content-length"] == str(len(body))
    error = assert_json_error(response, 413)
    assert error["error"] == "PayloadTooLarge"
    # and the server is fine afterwards
    assert invoke(regression, b"[[1, 2, 3]]", "application/json").status_code == 200


def test_oversize_chunked_body_without_content_length_is_413(regression: ServerProcess) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(1000):  # 16 kB in all
            yield b"[1.5, 2.5, 3.5],"
        yield b"[1, 2, 3]]"

    response = invoke(regression, chunks(), "application/json")  # type: ignore[arg-type]
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    error = assert_json_error(response, 413)
    assert error["error"] == "PayloadTooLarge"
    assert invoke(regression, b"[[1, 2, 3]]", "application/json").status_code == 200


def test_a_body_just_under_the_limit_is_served(regression: ServerProcess) -> None:
    body = json.dumps([[1, 2, 3]] * 500).encode()
    assert len(body) < MAX_PAYLOAD_BYTES
    response = invoke(regression, body, "application/json")
    assert response.status_code == 200
    assert len(response.json()) == 500


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"[[1, 2], [3, 4]]", "application/json"), (b"1,2\n3,4\n", "text/csv")],
    ids=["json", "csv"],
)
def test_wrong_number_of_features_is_400_naming_the_features(
    regression: ServerProcess, body: bytes, content_type: str
) -> None:
    error = assert_json_error(invoke(regression, body, content_type), 400)
    assert error["error"] == "InvalidInput"
    assert "3 features" in error["message"]
    assert "got 2" in error["message"]


def test_ragged_json_rows_are_400(regression: ServerProcess) -> None:
    error = assert_json_error(invoke(regression, b"[[1, 2, 3], [4, 5]]", "application/json"), 400)
    assert error["error"] == "InvalidInput"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"x1,x2,x3\n1,2,3\n", "text/csv"),  # a CSV header row
        (b'[[1, 2, "three"]]', "application/json"),  # a text cell in a numeric row
        (b"[1, 2, 3]\n[4, 5, \xff]\n", "application/jsonlines"),  # not UTF-8
        (b"[[1, 2, 3]]", "application/json; charset=no-such-charset"),  # unknown charset
    ],
    ids=["csv-header-row", "text-cell", "jsonlines-not-utf8", "unknown-charset"],
)
def test_bad_client_input_is_a_4xx_not_a_model_error(regression: ServerProcess, body: bytes, content_type: str) -> None:
    response = invoke(regression, body, content_type)
    assert 400 <= response.status_code < 500, response.text
    assert_json_error(response, response.status_code)


def test_unknown_path_is_404(regression: ServerProcess) -> None:
    error = assert_json_error(httpx.get(f"{regression.url}/predict", timeout=5), 404)
    assert "/predict" in error["message"]
    assert_json_error(httpx.post(f"{regression.url}/invocations/extra", json=[[1, 2, 3]], timeout=5), 404)


def test_get_invocations_is_405(regression: ServerProcess) -> None:
    error = assert_json_error(httpx.get(f"{regression.url}/invocations", timeout=5), 405)
    assert "POST" in error["message"]
    assert_json_error(httpx.put(f"{regression.url}/invocations", json=[[1, 2, 3]], timeout=5), 405)


def test_405_names_the_allowed_method(regression: ServerProcess) -> None:
    response = httpx.get(f"{regression.url}/invocations", timeout=5)
    assert response.status_code == 405
    assert response.headers.get("allow") == "POST"


def test_slow_body_gets_408_while_other_requests_are_served(regression: ServerProcess) -> None:
    """The server has one worker: a client stalling mid-body must not hold it up."""
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", regression.port), timeout=10) as slow:
        slow.sendall(head + b"[[1, 2,")  # ... and nothing more
        started = time.monotonic()
        for _ in range(3):
            response = invoke(regression, b"[[1, 2, 3]]", "application/json")
            assert response.status_code == 200
        assert time.monotonic() - started < 1.0, "requests waited for the stalled one"
        readable, _, _ = select.select([slow], [], [], 0)
        assert not readable, "the slow request was answered before its read timeout"

        status, headers, body = read_raw_response(slow, timeout=10)
        waited = time.monotonic() - started
    assert status == 408
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)
    assert error["error"] == "RequestTimeout"
    assert "1 s" in error["message"]
    assert 0.5 < waited < 5, waited
    assert invoke(regression, b"[[1, 2, 3]]", "application/json").status_code == 200


def test_client_disconnect_mid_body_leaves_the_server_healthy(regression: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", regression.port), timeout=5) as gone:
        gone.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n[[1,"
        )
    for _ in range(3):
        assert invoke(regression, b"[[1, 2, 3]]", "application/json").status_code == 200


# -- user handlers that fail ------------------------------------------------------------------
FAILING_PROGRAM = '''
import json


class RefusedMediaType(Exception):
    """Like the toolkit's errors: carries the HTTP status it maps to."""

    status_code = 415


def model_fn(model_dir):
    return {"loaded": True}


def input_fn(body, content_type):
    if content_type == "application/x-refused":
        raise RefusedMediaType("this handler does not read application/x-refused")
    return json.loads(body)


def predict_fn(data, model):
    if data == "explode":
        raise RuntimeError("the model exploded: bad tensor shape (7, 3)")
    return {"echo": data}
'''


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("errors-failing")
    server = ServerProcess(write_program(root / "model", FAILING_PROGRAM), root / "server.log", "--workers", "1")
    try:
        yield server.wait_ready()
    finally:
        server.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)


def test_handler_answers_normally(failing: ServerProcess) -> None:
    response = invoke(failing, b'"hello"', "application/json")
    assert response.status_code == 200
    assert response.json() == {"echo": "hello"}


def test_predict_fn_raising_is_500_with_its_message_and_no_traceback(failing: ServerProcess) -> None:
    error = assert_json_error(invoke(failing, b'"explode"', "application/json"), 500)
    assert "the model exploded: bad tensor shape (7, 3)" in error["message"]
    assert "RuntimeError" in error["message"]
    # the traceback went to the log instead
    deadline = time.monotonic() + 5
    while "Traceback" not in failing.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Traceback" in failing.log()
    assert invoke(failing, b'"after"', "application/json").status_code == 200


def test_input_fn_exception_with_status_code_keeps_its_status(failing: ServerProcess) -> None:
    error = assert_json_error(invoke(failing, b'"x"', "application/x-refused"), 415)
    assert "does not read application/x-refused" in error["message"]


def test_input_fn_failing_on_bad_json_is_a_json_error(failing: ServerProcess) -> None:
    response = invoke(failing, b"{broken", "application/json")
    assert response.status_code >= 400
    assert_json_error(response, response.status_code)


HANGING_PROGRAM = """
import time


def model_fn(model_dir):
    return None


def predict_fn(data, model):
    if data == "hang":
        time.sleep(60)
    return {"echo": data}
"""


def test_hanging_model_is_504_within_the_timeout_and_the_server_recovers(serve: Serve, tmp_path: Path) -> None:
    server = serve(write_program(tmp_path / "model", HANGING_PROGRAM), "--workers", "1", "--timeout", "1")
    [first_worker] = server.worker_pids()
    started = time.monotonic()
    response = invoke(server, b'"hang"', "application/json")
    took = time.monotonic() - started
    error = assert_json_error(response, 504)
    assert error["error"] == "PredictionTimeout"
    assert 0.8 < took < 3.0, took

    # a later request succeeds: on this worker if it still can, else on its replacement
    deadline = time.monotonic() + 20
    while True:
        try:
            later = httpx.post(f"{server.url}/invocations", json="fine", timeout=5)
        except httpx.HTTPError:
            later = None
        if later is not None and later.status_code == 200:
            break
        assert time.monotonic() < deadline, f"no successful request after the hang:\n{server.log()}"
        time.sleep(0.1)
    assert later.json() == {"echo": "fine"}
    # the stuck worker was recycled (its inference thread cannot be interrupted)
    deadline = time.monotonic() + 10
    while first_worker in server.worker_pids():
        assert time.monotonic() < deadline, "the stuck worker was never replaced"
        time.sleep(0.1)
    assert server.process.poll() is None


LOAD_FAILING_PROGRAM = """
def model_fn(model_dir):
    raise RuntimeError("weights.bin is corrupt: checksum mismatch")


def predict_fn(data, model):
    return data
"""


def test_model_failing_to_load_exits_non_zero_saying_why(serve: Serve, tmp_path: Path) -> None:
    server = serve(write_program(tmp_path / "model", LOAD_FAILING_PROGRAM), "--workers", "1", ready=False)
    statuses: list[int] = []
    deadline = time.monotonic() + 30
    while server.process.poll() is None:
        assert time.monotonic() < deadline, "the server did not give up on a model that cannot load"
        with contextlib.suppress(httpx.HTTPError):  # not listening yet, or gone
            statuses.append(httpx.get(f"{server.url}/ping", timeout=1).status_code)
        time.sleep(0.02)
    assert server.process.returncode != 0
    assert 200 not in statuses
    assert set(statuses) <= {503}
    log = server.log()
    assert "failed to load" in log
    assert "weights.bin is corrupt: checksum mismatch" in log


def test_slow_headers_are_cut_off_too(regression: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", regression.port), timeout=10) as slow:
        slow.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
        readable, _, _ = select.select([slow], [], [], 5)  # 5x MODELHOST_READ_TIMEOUT
        assert readable, "a client stalled mid-headers is still connected after 5 s"
        answer = slow.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"error":"RequestTimeout"' in answer


@pytest.mark.parametrize(
    "head",
    [
        b"X-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 2\r\n\r\n[]",
        b"".join(b"X-H%d: v\r\n" % n for n in range(8_000)) + b"Content-Length: 2\r\n\r\n[]",
        b"X-Huge: " + b"a" * 5_000_000,  # never finished: the parser is still buffering it
    ],
    ids=["long", "many", "unfinished-huge"],
)
def test_a_head_over_64_kb_is_431_and_the_worker_lives_on(regression: ServerProcess, head: bytes) -> None:
    with socket.create_connection(("127.0.0.1", regression.port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # it may stop reading (and reset) once it has answered
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head)
        status, headers, body = read_raw_response(sock, timeout=10)
    assert status == 431
    assert headers["connection"] == "close"
    assert json.loads(body)["error"] == "RequestHeaderFieldsTooLarge"
    near_limit = {"x-big": "a" * 60_000}
    response = httpx.post(
        f"http://127.0.0.1:{regression.port}/invocations",
        content=b"[[1, 2, 3]]",
        headers={"content-type": "application/json", **near_limit},
    )
    assert response.status_code == 200


# -- codecs over HTTP ---------------------------------------------------------------------------
def npy_bytes(array: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """TF-IDF + logistic regression: 1 for positive texts, 0 for negative ones."""
    root = tmp_path_factory.mktemp("codecs-sentiment")
    server = ServerProcess(sklearn_text_pipeline(root / "model"), root / "server.log", "--workers", "1")
    try:
        yield server.wait_ready()
    finally:
        server.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)


def test_json_list_answers_a_list(sentiment: ServerProcess) -> None:
    response = invoke(sentiment, b'["great amazing day", "awful broken app"]', "application/json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == [1, 0]


def test_json_instances_answers_predictions(sentiment: ServerProcess) -> None:
    body = b'{"instances": ["great amazing day", "awful broken app"]}'
    response = invoke(sentiment, body, "application/json; charset=utf-8")
    assert response.status_code == 200
    assert response.json() == {"predictions": [1, 0]}


def test_json_inputs_with_one_text_answers_one_prediction(sentiment: ServerProcess) -> None:
    response = invoke(sentiment, b'{"inputs": "awful terrible service"}', "application/json")
    assert response.status_code == 200
    assert response.json() == 0
    response = invoke(sentiment, b'{"inputs": ["awful terrible service", "wonderful happy team"]}', "application/json")
    assert response.json() == [0, 1]


def test_json_instances_that_are_not_a_list_is_400(sentiment: ServerProcess) -> None:
    error = assert_json_error(invoke(sentiment, b'{"instances": "great"}', "application/json"), 400)
    assert "instances" in error["message"]


def test_missing_content_type_is_read_as_json(sentiment: ServerProcess) -> None:
    response = invoke(sentiment, b'["great amazing day"]', None)
    assert response.status_code == 200
    assert response.json() == [1]


def test_text_plain_is_one_text_answered_in_json(sentiment: ServerProcess) -> None:
    response = invoke(sentiment, b"wonderful, happy, fantastic day", "text/plain")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == 1


def test_text_plain_in_latin1_is_decoded_by_its_charset(sentiment: ServerProcess) -> None:
    response = invoke(sentiment, "awful caf\u00e9 terrible".encode("latin-1"), "text/plain; charset=latin-1")
    assert response.status_code == 200
    assert response.json() == 0


def test_text_plain_that_is_not_utf8_is_400(sentiment: ServerProcess) -> None:
    error = assert_json_error(invoke(sentiment, b"great \xff\xfe day", "text/plain"), 400)
    assert "utf-8" in error["message"]


def test_csv_texts_in_and_out(sentiment: ServerProcess) -> None:
    body = b"great amazing day\nawful broken app\n"
    response = invoke(sentiment, body, "text/csv", accept="text/csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text == "1\n0\n"


def test_csv_numbers_in_and_out(regression: ServerProcess) -> None:
    response = invoke(regression, b"1,2,3\n4,5,6\n", "text/csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert [float(v) for v in response.text.splitlines()] == pytest.approx([14.5, 32.5])


def test_jsonlines_in_and_out(regression: ServerProcess) -> None:
    response = invoke(regression, b"[1, 2, 3]\n\n[4, 5, 6]\n", "application/jsonlines")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jsonlines")
    assert [json.loads(line) for line in response.text.splitlines()] == pytest.approx([14.5, 32.5])


def test_malformed_jsonlines_is_400_naming_the_line(regression: ServerProcess) -> None:
    error = assert_json_error(invoke(regression, b"[1, 2, 3]\n[4, 5\n", "application/jsonlines"), 400)
    assert "line 2" in error["message"]


def test_npy_in_and_out(regression: ServerProcess) -> None:
    body = npy_bytes(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    response = invoke(regression, body, "application/x-npy")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-npy")
    answer = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert answer.tolist() == pytest.approx([14.5, 32.5])


def test_npy_in_json_out(regression: ServerProcess) -> None:
    body = npy_bytes(np.array([[1, 2, 3]], dtype=np.int32))
    response = invoke(regression, body, "application/x-npy", accept="application/json")
    assert response.status_code == 200
    assert response.json() == pytest.approx([14.5])


def test_npy_object_array_is_refused_never_unpickled(regression: ServerProcess) -> None:
    body = npy_bytes(np.array([[1, 2, 3], {"a": 1}], dtype=object), allow_pickle=True)
    error = assert_json_error(invoke(regression, body, "application/x-npy"), 400)
    assert error["error"] == "InvalidInput"
    assert "object" in error["message"].lower()


def test_npy_garbage_is_400(regression: ServerProcess) -> None:
    assert_json_error(invoke(regression, b"\x93NUMPY not really", "application/x-npy"), 400)


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        ("text/csv", "text/csv"),
        ("application/json;q=0.5, text/csv;q=0.9", "text/csv"),
        ("text/csv;q=0, application/json", "application/json"),
        ("application/xml, application/jsonlines;q=0.8", "application/jsonlines"),
        ("*/*", "application/json"),
        ("application/xml;q=1, */*;q=0.1", "application/json"),
        ("text/*", "text/"),
        ("application/*", "application/json"),
    ],
)
def test_accept_negotiation(regression: ServerProcess, accept: str, media_type: str) -> None:
    response = invoke(regression, b"[[1, 2, 3]]", "application/json", accept=accept)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(media_type), response.headers["content-type"]
    if media_type == "text/csv":
        assert response.text == "14.5\n"


def test_csv_request_answers_csv_by_default_and_json_when_asked(regression: ServerProcess) -> None:
    assert invoke(regression, b"1,2,3\n", "text/csv").text == "14.5\n"
    response = invoke(regression, b"1,2,3\n", "text/csv", accept="application/json")
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == pytest.approx([14.5])


def test_a_client_request_id_is_echoed_only_as_printable_ascii(regression: ServerProcess) -> None:
    response = httpx.post(
        f"{regression.url}/invocations",
        content=b"[[1, 2, 3]]",
        headers={"Content-Type": b"application/json", "X-Request-Id": b"abc def\xe9-42"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abcdef-42"
