"""The pre-fork worker pool through real processes: replacement, graceful stop, worker count, loading."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Serve, ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

# A model of no framework: cheap to load and fork, tells which worker answered, can be told to
# sleep (recording that it started), and sleeps in model_fn when TEST_LOAD_DELAY is set.
PROGRAM = """
import os
import time


def model_fn(model_dir):
    time.sleep(float(os.environ.get("TEST_LOAD_DELAY", "0")))
    return {"loaded": True}


def predict_fn(data, model):
    if isinstance(data, dict) and "sleep" in data:
        with open(data["marker"], "a") as marker:
            marker.write(f"{os.getpid()}\\n")
        time.sleep(data["sleep"])
    return {"pid": os.getpid(), "data": data}
"""


def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "inference.py").write_text(PROGRAM)
    return folder


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def wait_for_workers(server: ServerProcess, count: int, timeout: float = 15) -> list[int]:
    wait_for(lambda: len(server.worker_pids()) == count, timeout, f"{count} workers run")
    return server.worker_pids()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def group_is_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_killed_worker_is_replaced_and_requests_keep_succeeding(serve: Serve, tmp_path: Path) -> None:
    server = serve(model_dir(tmp_path), "--workers", "2")
    before = wait_for_workers(server, 2)
    victim = before[0]
    os.kill(victim, signal.SIGKILL)

    wait_for(
        lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 2,
        15,
        "the killed worker is replaced",
    )
    after = server.worker_pids()
    replacement = set(after) - set(before)
    assert len(replacement) == 1
    assert before[1] in after
    assert not alive(victim)

    with httpx.Client(base_url=server.url, timeout=10) as client:
        answered_by = set()
        for i in range(20):
            response = client.post("/invocations", json=i, headers={"connection": "close"})
            assert response.status_code == 200
            assert response.json()["data"] == i
            answered_by.add(response.json()["pid"])
    assert answered_by <= set(after)
    assert victim not in answered_by
    assert "was killed by SIGKILL" in server.log()
    assert server.process.poll() is None


def test_sigterm_lets_in_flight_requests_finish_then_exits_cleanly(serve: Serve, tmp_path: Path) -> None:
    server = serve(model_dir(tmp_path), "--workers", "2")
    workers = wait_for_workers(server, 2)
    marker = tmp_path / "started.txt"
    results: list[int | str] = []

    def call(i: int) -> None:
        try:
            response = httpx.post(
                f"{server.url}/invocations", json={"sleep": 1.0, "marker": str(marker), "i": i}, timeout=20
            )
            results.append(response.status_code)
        except httpx.HTTPError as exc:
            results.append(repr(exc))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: marker.exists() and marker.read_text().strip() != "", 10, "a prediction started")
    time.sleep(0.2)  # let the kernel hand every already-connected request to a worker
    sent_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(20)
    assert results == [200] * 4, f"{results}\n{server.log()}"
    assert server.process.wait(20) == 0, server.log()
    assert time.monotonic() - sent_at < 15
    wait_for(lambda: group_is_gone(server.process.pid), 5, "no worker process is left")
    assert not any(alive(pid) for pid in workers)
    assert "shutting down" in server.log()
    # nothing is listening any more
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/ping", timeout=2)


def test_sigterm_on_an_idle_server_exits_zero_quickly(serve: Serve, tmp_path: Path) -> None:
    server = serve(model_dir(tmp_path), "--workers", "2")
    wait_for_workers(server, 2)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0, server.log()
    assert time.monotonic() - started < 5
    wait_for(lambda: group_is_gone(server.process.pid), 5, "no worker process is left")


def test_sagemaker_model_server_workers_sets_the_worker_count(serve: Serve, tmp_path: Path) -> None:
    server = serve(model_dir(tmp_path), env={"SAGEMAKER_MODEL_SERVER_WORKERS": "3"})
    pids = wait_for_workers(server, 3)
    assert len(set(pids)) == 3
    parameters = httpx.get(f"{server.url}/execution-parameters", timeout=5).json()
    assert parameters["MaxConcurrentTransforms"] == 3
    time.sleep(0.5)  # no extra worker shows up later
    assert sorted(server.worker_pids()) == sorted(pids)


def test_cli_workers_option_wins_over_the_environment(serve: Serve, tmp_path: Path) -> None:
    server = serve(model_dir(tmp_path), "--workers", "1", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "3"})
    assert len(wait_for_workers(server, 1)) == 1


def test_ping_answers_503_while_the_model_loads_then_200(serve: Serve, tmp_path: Path) -> None:
    server = serve(model_dir(tmp_path), "--workers", "1", env={"TEST_LOAD_DELAY": "2"}, ready=False)
    seen: list[int] = []
    loading_response: httpx.Response | None = None
    loading_invocation: httpx.Response | None = None
    deadline = time.monotonic() + 30
    while not seen or seen[-1] != 200:
        assert time.monotonic() < deadline, f"never ready; saw {seen}\n{server.log()}"
        assert server.process.poll() is None, server.log()
        try:
            response = httpx.get(f"{server.url}/ping", timeout=2)
        except httpx.HTTPError:  # not listening yet
            time.sleep(0.05)
            continue
        seen.append(response.status_code)
        if response.status_code == 503 and loading_response is None:
            loading_response = response
            loading_invocation = httpx.post(f"{server.url}/invocations", json="early", timeout=2)
        time.sleep(0.05)
    assert 503 in seen, seen
    assert seen.index(503) < seen.index(200)
    assert set(seen) == {503, 200}
    first_200 = seen.index(200)
    assert all(status == 200 for status in seen[first_200:])

    assert loading_response is not None
    assert loading_response.headers["content-type"].startswith("application/json")
    assert loading_response.json()["status"] == "Loading"
    assert loading_response.headers.get("retry-after") == "1"
    assert loading_invocation is not None
    assert loading_invocation.status_code == 503
    assert loading_invocation.headers["content-type"].startswith("application/json")

    response = httpx.post(f"{server.url}/invocations", json="later", timeout=5)
    assert response.status_code == 200
    assert response.json()["data"] == "later"


def test_workers_exit_when_the_master_is_killed(serve: Serve, tmp_path: Path) -> None:
    server = serve(model_dir(tmp_path), "--workers", "2")
    workers = wait_for_workers(server, 2)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(5)
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "orphaned workers are still running 5 s after their master died"
        time.sleep(0.1)


def test_connections_are_spread_over_the_workers(serve: Serve, tmp_path: Path) -> None:
    """Each worker has its own SO_REUSEPORT socket: new connections reach both of two workers."""
    server = serve(model_dir(tmp_path), "--workers", "2")
    wait_for_workers(server, 2)
    answered_by = set()
    for _ in range(40):  # a new connection each time
        with httpx.Client() as client:
            answered_by.add(client.post(f"{server.url}/invocations", json=[1], timeout=5).json()["pid"])
    assert answered_by == set(server.worker_pids())


def test_a_stuck_worker_is_replaced_at_once_and_its_slot_keeps_serving(serve: Serve, tmp_path: Path) -> None:
    server = serve(model_dir(tmp_path), "--workers", "1", "--timeout", "1")
    [stuck] = wait_for_workers(server, 1)
    marker = tmp_path / "marker"
    slow = httpx.post(f"{server.url}/invocations", json={"sleep": 8, "marker": str(marker)}, timeout=10)
    assert slow.status_code == 504
    started = time.monotonic()
    statuses = []
    while not statuses or statuses[-1] != 200:  # at most a brief 503 "retry" while it is replaced
        response = httpx.post(f"{server.url}/invocations", json=[1], timeout=10)
        statuses.append(response.status_code)
        assert time.monotonic() - started < 3, statuses  # not held up until the stuck prediction ends
    assert set(statuses) <= {200, 503}
    assert response.json()["pid"] != stuck
    assert "replacing this worker" in server.log()
