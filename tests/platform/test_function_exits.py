"""A handler that raises SystemExit, KeyboardInterrupt, GeneratorExit or another BaseException, through a real `up`.

Each is a 502 ``FunctionError`` naming the exception, like any handler error, with the traceback in
the function's log; the worker that served it stays, so the next call is answered by the same process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.platform.conftest import Platform, platforms
from tests.platform.test_functions_routes import assert_error, create_function, wait_active, write_handler

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

EXITER = """
import os
import sys


class Escape(BaseException):
    pass


def handler(event, context):
    mode = (event.get("queryStringParameters") or {}).get("mode", "pid")
    if mode == "exit":
        sys.exit(3)
    if mode == "kbint":
        raise KeyboardInterrupt("told to stop")
    if mode == "genexit":
        raise GeneratorExit()
    if mode == "escape":
        raise Escape("a BaseException of the handler's own")
    return {"pid": os.getpid()}
"""


@pytest.fixture(scope="module")
def exits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platforms(tmp_path_factory.mktemp("exits")) as start:
        platform = start()
        code = write_handler(tmp_path_factory.mktemp("exiter-code") / "exiter", EXITER)
        create_function(platform, "exiter", code)
        wait_active(platform, "exiter")
        platform.client.create_route("GET", "/v1/exiter", function="exiter")
        yield platform


def worker_pid(http: httpx.Client) -> int:
    response = http.get("/v1/exiter")
    assert response.status_code == 200, response.text
    pid: int = response.json()["pid"]
    return pid


@pytest.mark.parametrize(
    ("mode", "named"),
    [
        ("exit", "SystemExit: 3"),
        ("kbint", "KeyboardInterrupt: told to stop"),
        ("genexit", "GeneratorExit"),
        ("escape", "Escape: a BaseException of the handler's own"),
    ],
)
def test_a_base_exception_is_a_502_and_the_worker_serves_the_next_call(exits: Platform, mode: str, named: str) -> None:
    with httpx.Client(base_url=exits.url, timeout=60) as http:
        before = worker_pid(http)
        body = assert_error(http.get("/v1/exiter", params={"mode": mode}), 502, "FunctionError")
        assert body["message"].startswith(f"Function exiter raised {named}"), body
        assert worker_pid(http) == before, "the worker was replaced"
        os.kill(before, 0)  # still the same live process
    log = exits.cli("function", "logs", "exiter").stdout
    assert "Traceback" in log
    assert named.partition(":")[0] in log
