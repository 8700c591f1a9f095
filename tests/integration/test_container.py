"""The container entrypoint ``serve``, configured only by SageMaker's environment variables."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.models import sklearn_text_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SERVE = Path(sys.executable).with_name("serve")
# Generic names a host may have set that must not leak into the server's configuration here.
_SCRUBBED = {"PORT", "HOST", "WORKERS", "PROGRAM", "TIMEOUT_S", "MODEL_URI", "SAGEMAKER_PROGRAM"}
_SCRUBBED |= {name for name in os.environ if name.startswith(("SM_", "SAGEMAKER_", "MODELHOST_"))}


class Container:
    """``serve`` (the console script) as a container would run it, with its log in a file."""

    def __init__(self, model_dir: Path, log_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        environment = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        environment |= {
            "SM_MODEL_DIR": str(model_dir),
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "MODELHOST_HOST": "127.0.0.1",  # never all interfaces in a test
            "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
            "MODELHOST_CACHE_DIR": str(log_path.parent / "cache"),
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [str(SERVE), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 45) -> Container:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ping", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise AssertionError(f"serve not ready in {timeout} s:\n{self.log()}")

    def wait_exit(self, timeout: float = 45) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"serve still running after {timeout} s:\n{self.log()}") from exc

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()
        return self.process.returncode


RunContainer = Callable[..., Container]


@pytest.fixture
def container(tmp_path: Path) -> Iterator[RunContainer]:
    started: list[Container] = []

    def run(model_dir: Path, *args: str, env: dict[str, str] | None = None) -> Container:
        server = Container(model_dir, tmp_path / f"serve-{len(started)}.log", *args, env=env)
        started.append(server)
        return server

    yield run
    for server in started:
        server.stop()


def test_serve_entrypoint_serves_the_model_in_sm_model_dir(container: RunContainer, tmp_path: Path) -> None:
    server = container(sklearn_text_pipeline(tmp_path / "model")).wait_ready()
    ping = httpx.get(f"{server.url}/ping", timeout=5)
    assert ping.status_code == 200
    response = httpx.post(f"{server.url}/invocations", json=["great amazing day", "awful broken app"], timeout=10)
    assert response.status_code == 200
    assert response.json() == [1, 0]
    csv = httpx.post(
        f"{server.url}/invocations",
        content=b"great amazing day\nawful broken app\n",
        headers={"content-type": "text/csv", "accept": "text/csv"},
        timeout=10,
    )
    assert csv.status_code == 200
    assert csv.text == "1\n0\n"
    assert f"127.0.0.1:{server.port}" in server.log()
    assert server.stop() == 0


HANDLER = """
from helpers import shout  # a module next to the handler, under code/


def model_fn(model_dir):
    return {"suffix": "!"}


def predict_fn(data, model):
    return {"handled_by": "handler.py", "result": shout(data) + model["suffix"]}
"""

DECOY = """
def model_fn(model_dir):
    raise RuntimeError("inference.py was used although SAGEMAKER_PROGRAM names handler.py")


def predict_fn(data, model):
    return "decoy"
"""


def handler_model(folder: Path) -> Path:
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "handler.py").write_text(HANDLER)
    (folder / "code" / "helpers.py").write_text("def shout(text):\n    return text.upper()\n")
    (folder / "inference.py").write_text(DECOY)
    return folder


def test_sagemaker_program_names_a_handler_under_code(container: RunContainer, tmp_path: Path) -> None:
    server = container(
        handler_model(tmp_path / "model"),
        "serve",  # SageMaker runs the image as `docker run IMAGE serve`
        env={"SAGEMAKER_PROGRAM": "handler.py"},
    ).wait_ready()
    response = httpx.post(f"{server.url}/invocations", json="hello", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"handled_by": "handler.py", "result": "HELLO!"}
    assert "handler.py" in server.log()


def test_sagemaker_program_that_is_missing_fails_to_start_saying_so(container: RunContainer, tmp_path: Path) -> None:
    server = container(handler_model(tmp_path / "model"), env={"SAGEMAKER_PROGRAM": "missing.py"})
    assert server.wait_exit() != 0
    assert "missing.py" in server.log()


def test_serve_refuses_arguments_other_than_serve(container: RunContainer, tmp_path: Path) -> None:
    server = container(tmp_path, "--port", "1234")
    assert server.wait_exit() != 0
    assert "--port" in server.log()


def test_sagemaker_model_server_timeout_applies(container: RunContainer, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "inference.py").write_text(
        "import time\n\n\ndef model_fn(model_dir):\n    return None\n\n\n"
        "def predict_fn(data, model):\n    time.sleep(data)\n    return data\n"
    )
    server = container(folder, env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"}).wait_ready()
    assert httpx.post(f"{server.url}/invocations", json=0, timeout=10).status_code == 200
    started = time.monotonic()
    response = httpx.post(f"{server.url}/invocations", json=5, timeout=10)
    assert response.status_code == 504
    assert time.monotonic() - started < 3


def test_sagemaker_bind_to_port_wins_over_a_generic_port_variable(container: RunContainer, tmp_path: Path) -> None:
    other = free_port()
    server = container(sklearn_text_pipeline(tmp_path / "model"), env={"PORT": str(other)})
    deadline = time.monotonic() + 30
    while True:
        assert server.process.poll() is None, server.log()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{other}/ping", timeout=1).status_code == 200:
                pytest.fail(f"serve listens on PORT={other}, not on SAGEMAKER_BIND_TO_PORT={server.port}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/ping", timeout=1).status_code == 200:
                break
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
