"""A function's artifacts through a real `up` whose cap (MODELHOST_MAX_FUNCTION_ARTIFACTS_GB) is 512 bytes.

Devices, pipes and artifacts over the cap are a 400 when the function is made; a file that claims no
size (/proc) is stopped by the instance as it copies (the function is Failed, saying why). Two functions
that share one code folder each get their own private copies, and the code folder is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.platform.conftest import Platform, platforms, poll
from tests.platform.test_functions_routes import assert_error, wait_active, write_handler

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CAP_BYTES = 512

READER = """
import os
import stat


def handler(event, context):
    folder = os.environ["MODELHOST_FUNCTION_ARTIFACTS_DIR"]
    path = os.path.join(folder, "ok")
    with open(path) as file:
        text = file.read()
    return {
        "folder": folder,
        "text": text,
        "folder_mode": stat.S_IMODE(os.stat(folder).st_mode),
        "file_mode": stat.S_IMODE(os.stat(path).st_mode),
    }
"""


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platforms(tmp_path_factory.mktemp("artifacts")) as start:
        yield start(env={"MODELHOST_MAX_FUNCTION_ARTIFACTS_GB": repr(CAP_BYTES / 1024**3)})


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_handler(tmp_path_factory.mktemp("shared-code") / "reader", READER)


def post_function(platform: Platform, name: str, code: Path, artifacts: dict[str, str]) -> httpx.Response:
    body = {"name": name, "handler": "app.handler", "code_uri": str(code), "artifacts": artifacts}
    return httpx.post(f"{platform.url}/api/v1/functions", json=body, timeout=60)


def delete_function(platform: Platform, name: str) -> None:
    platform.client.delete_function(name)


@pytest.mark.parametrize(
    ("source", "says"),
    [("/dev/zero", "is a character device"), ("pipe", "is a named pipe"), ("big", "the limit")],
)
def test_a_device_a_pipe_or_too_much_is_refused_when_the_function_is_made(
    capped: Platform, code: Path, tmp_path: Path, source: str, says: str
) -> None:
    if source == "pipe":
        os.mkfifo(tmp_path / "pipe")
        source = str(tmp_path / "pipe")
    elif source == "big":
        (tmp_path / "big").write_bytes(bytes(CAP_BYTES + 1))
        source = str(tmp_path / "big")
    body = assert_error(post_function(capped, "refused", code, {"data": source}), 400, "ValidationException")
    assert body["message"].startswith("Artifacts: artifact 'data'"), body
    assert says in body["message"], body
    assert "refused" not in {f["name"] for f in capped.client.list_functions()}


def test_what_is_read_past_the_cap_fails_the_function_saying_why(capped: Platform, code: Path) -> None:
    """/proc/self/status says it is empty, so only the copy itself can stop it."""
    response = post_function(capped, "procfs", code, {"ok": "/proc/self/status"})
    assert response.status_code == 201, response.text

    def failed() -> dict[str, Any] | None:
        described: dict[str, Any] = capped.client.describe_function("procfs")
        return described if described["state"] == "Failed" else None

    try:
        described = poll(failed, 120, "procfs Failed")
        assert "the limit; MODELHOST_MAX_FUNCTION_ARTIFACTS_GB" in described["failure_reason"], described
    finally:
        delete_function(capped, "procfs")


def test_functions_sharing_code_get_private_copies_of_their_own(capped: Platform, code: Path, tmp_path: Path) -> None:
    sources = {}
    for name in ("share-a", "share-b"):
        sources[name] = tmp_path / f"{name}.txt"
        sources[name].write_text(f"the artifact of {name}")
        sources[name].chmod(0o640)
        response = post_function(capped, name, code, {"ok": str(sources[name])})
        assert response.status_code == 201, response.text
    try:
        for name in ("share-a", "share-b"):
            wait_active(capped, name)
            capped.client.create_route("GET", f"/v1/{name}", function=name)
        with httpx.Client(base_url=capped.url, timeout=60) as http:
            answers = {name: http.get(f"/v1/{name}").json() for name in ("share-a", "share-b")}
        for name, answer in answers.items():
            assert answer["text"] == f"the artifact of {name}", answer
            assert answer["folder_mode"] == 0o700, answer
            assert answer["file_mode"] == 0o600, answer  # the source is 0640: never widened
            assert Path(answer["folder"]).is_relative_to(capped.state_dir / "functions" / "run" / name), answer
        assert sorted(p.name for p in code.iterdir() if not p.name.startswith((".", "__"))) == ["app.py"]
    finally:
        for name in ("share-a", "share-b"):
            if any(r["path"] == f"/v1/{name}" for r in capped.client.list_routes()):
                capped.client.delete_route("GET", f"/v1/{name}")
            delete_function(capped, name)
