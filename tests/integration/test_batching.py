"""Adaptive batching through the real server: answers stay with their callers, bad inputs fail alone."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import Serve, ServerProcess
from tests.models import sklearn_regression, spacy_ner

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

THREADS = 32


def start(model: Path, log: Path, *args: str) -> ServerProcess:
    return ServerProcess(model, log, *args).wait_ready()


def stop(server: ServerProcess) -> None:
    server.stop()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)


def fan_out(url: str, requests: list[tuple[bytes, dict[str, str]]]) -> list[httpx.Response]:
    """POST every (body, headers) to /invocations from THREADS threads at once; responses in order."""
    limits = httpx.Limits(max_connections=THREADS, max_keepalive_connections=THREADS)
    with httpx.Client(base_url=url, timeout=30, limits=limits) as client, ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda r: client.post("/invocations", content=r[0], headers=r[1]), requests))


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


# -- a numeric model: every caller gets exactly its own answer ------------------------------------
@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Any]]:
    import joblib

    root = tmp_path_factory.mktemp("batching-regression")
    model_dir = sklearn_regression(root / "model", n_features=3)
    server = start(model_dir, root / "server.log", "--workers", "1")
    try:
        yield server, joblib.load(model_dir / "model.pkl")
    finally:
        stop(server)


def rows_for(i: int) -> list[list[float]]:
    """1 to 4 rows per request, every value unique to the request."""
    return [[i + 0.25 * k, -i * 0.5 + k, (i % 7) * 1.5 - k] for k in range(i % 4 + 1)]


def encode_request(i: int, rows: list[list[float]]) -> tuple[bytes, dict[str, str]]:
    """Four ways of sending the same rows, so one batch mixes codecs and envelopes."""
    kind = i % 4
    if kind == 0:
        return orjson_dumps(rows), {"content-type": "application/json"}
    if kind == 1:
        return orjson_dumps({"instances": rows}), {"content-type": "application/json"}
    if kind == 2:
        body = "".join(",".join(repr(v) for v in row) + "\n" for row in rows).encode()
        return body, {"content-type": "text/csv", "accept": "text/csv"}
    return npy(np.asarray(rows, dtype=np.float64)), {"content-type": "application/x-npy"}


def orjson_dumps(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value)


def decode_answer(i: int, response: httpx.Response) -> list[float]:
    assert response.status_code == 200, response.text
    kind = i % 4
    if kind == 0:
        return list(response.json())
    if kind == 1:
        return list(response.json()["predictions"])
    if kind == 2:
        assert response.headers["content-type"].startswith("text/csv")
        return [float(line) for line in response.text.splitlines()]
    assert response.headers["content-type"].startswith("application/x-npy")
    return np.load(io.BytesIO(response.content), allow_pickle=False).tolist()


def test_concurrent_requests_each_get_their_own_answer(regression: tuple[ServerProcess, Any]) -> None:
    server, model = regression
    inputs = [rows_for(i) for i in range(200)]
    responses = fan_out(server.url, [encode_request(i, rows) for i, rows in enumerate(inputs)])
    for i, (rows, response) in enumerate(zip(inputs, responses, strict=True)):
        expected = model.predict(np.asarray(rows)).tolist()
        assert decode_answer(i, response) == pytest.approx(expected, rel=1e-9, abs=1e-9), f"request {i}"


def test_a_bad_request_in_a_concurrent_batch_fails_alone(regression: tuple[ServerProcess, Any]) -> None:
    server, model = regression
    bad = {7, 19, 33, 50, 51, 77}
    requests = []
    for i in range(90):
        if i in bad:
            rows: Any = [[1.0, 2.0]] if i % 2 else [[1.0, 2.0, 3.0], [4.0, 5.0]]  # short or ragged
        else:
            rows = rows_for(i)
        requests.append((orjson_dumps(rows), {"content-type": "application/json"}))
    responses = fan_out(server.url, requests)
    for i, response in enumerate(responses):
        if i in bad:
            assert response.status_code == 400, (i, response.text)
            assert response.json()["error"] == "InvalidInput"
        else:
            assert response.status_code == 200, (i, response.text)
            expected = model.predict(np.asarray(rows_for(i))).tolist()
            assert response.json() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_a_lone_request_is_not_delayed_by_the_batch_wait(serve: Serve, tmp_path: Path) -> None:
    server = serve(sklearn_regression(tmp_path / "model"), "--workers", "1", "--max-batch-delay-ms", "500")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.post("/invocations", json=[[1, 2, 3]]).status_code == 200  # warm up
        for i in range(5):
            started = time.perf_counter()
            response = client.post("/invocations", json=[[i, 2, 3]])
            took = time.perf_counter() - started
            assert response.status_code == 200
            assert took < 0.2, f"a lone request took {took * 1000:.0f} ms with a 500 ms batch wait"


# -- spaCy: a number where a text belongs ---------------------------------------------------------
@pytest.fixture(scope="module")
def ner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Any]]:
    import spacy

    root = tmp_path_factory.mktemp("batching-ner")
    model_dir = spacy_ner(root / "model")
    server = start(model_dir, root / "server.log", "--workers", "1")
    try:
        yield server, spacy.load(model_dir)
    finally:
        stop(server)


TEXTS = ["STARBUCKS Vancouver", "paid AMAZON online", "coffee at STARBUCKS", "ATM WITHDRAWAL", "UBER trip help"]


def entities(nlp: Any, text: str) -> list[dict[str, Any]]:
    return [{"text": e.text, "label": e.label_, "start": e.start_char, "end": e.end_char} for e in nlp(text).ents]


def test_spacy_bad_instance_in_a_concurrent_batch_fails_alone(ner: tuple[ServerProcess, Any]) -> None:
    server, nlp = ner
    bad = {5, 17, 40}
    requests = []
    for i in range(60):
        value: Any = 42 if i in bad else f"{TEXTS[i % len(TEXTS)]} {i}"
        requests.append((orjson_dumps([value]), {"content-type": "application/json"}))
    responses = fan_out(server.url, requests)
    for i, response in enumerate(responses):
        if i in bad:
            assert response.status_code == 400, (i, response.text)
            assert "text" in response.json()["message"]
        else:
            assert response.status_code == 200, (i, response.text)
            [answer] = response.json()
            assert answer["entities"] == entities(nlp, f"{TEXTS[i % len(TEXTS)]} {i}"), i


# -- evidence that batches form (and do not form with --no-batching) -------------------------------
BATCH_PROGRAM = """
import os
import time


def model_fn(model_dir):
    return None


def predict_fn(instances, model):
    time.sleep(0.02)  # long enough for requests to queue behind this prediction
    with open(os.path.join(os.path.dirname(__file__), "batches.log"), "a") as log:
        log.write(f"{len(instances)}\\n")
    return [{"batch": len(instances), "echo": instance} for instance in instances]
"""


def batch_recorder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "inference.py").write_text(BATCH_PROGRAM)
    (folder / "modelhost.yaml").write_text("batching:\n  enabled: true\n  max_batch_size: 16\n")
    return folder


def recorded_batches(folder: Path) -> list[int]:
    return [int(line) for line in (folder / "batches.log").read_text().split()]


def test_concurrent_requests_are_predicted_in_batches(serve: Serve, tmp_path: Path) -> None:
    folder = batch_recorder(tmp_path / "model")
    server = serve(folder, "--workers", "1")
    requests = [(orjson_dumps([f"request-{i}"]), {"content-type": "application/json"}) for i in range(96)]
    responses = fan_out(server.url, requests)
    sizes = []
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        [answer] = response.json()
        assert answer["echo"] == f"request-{i}"
        sizes.append(answer["batch"])
    assert max(sizes) > 1, sizes
    assert max(sizes) <= 16
    recorded = recorded_batches(folder)
    assert sum(recorded) == 96
    assert max(recorded) > 1
    assert len(recorded) < 96


def test_no_batching_predicts_one_request_at_a_time(serve: Serve, tmp_path: Path) -> None:
    folder = batch_recorder(tmp_path / "model")
    server = serve(folder, "--workers", "1", "--no-batching")
    requests = [(orjson_dumps([f"request-{i}"]), {"content-type": "application/json"}) for i in range(48)]
    responses = fan_out(server.url, requests)
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        assert response.json() == [{"batch": 1, "echo": f"request-{i}"}]
    assert recorded_batches(folder) == [1] * 48
    assert httpx.get(f"{server.url}/execution-parameters").json()["BatchStrategy"] == "SINGLE_RECORD"
