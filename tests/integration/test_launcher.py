"""The warm instance launcher through a real launcher process: each start gets its own child's pid."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from modelhost.runtime.launcher import Launcher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _environment(tmp_path: Path, name: str) -> dict[str, str]:
    """An instance that cannot load (no such artifact): it logs its pid, then exits with code 1."""
    return {
        **{key: value for key, value in os.environ.items() if key in ("PATH", "PYTHONPATH", "HOME")},
        "MODELHOST_MODEL": str(tmp_path / f"{name}-missing"),
        "MODELHOST_HOST": "127.0.0.1",
        "MODELHOST_PORT": "0",
        "MODELHOST_CACHE_DIR": str(tmp_path / f"{name}-cache"),
    }


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return b") Z " not in stat and b") X " not in stat


def test_a_cancelled_start_does_not_hand_its_child_to_the_next_start(tmp_path: Path) -> None:
    """An endpoint deleted while its instance starts must not leave the next start with the wrong pid."""

    async def scenario() -> tuple[int, int, str]:
        launcher = Launcher()
        await launcher.start()
        try:
            first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
            first = asyncio.create_task(launcher.spawn(_environment(tmp_path, "first"), str(first_log), "first"))
            while not launcher._pending:  # the request is written; its pid is on the way
                await asyncio.sleep(0.001)
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await first
            second = await launcher.spawn(_environment(tmp_path, "second"), str(second_log), "second")
            code = await asyncio.wait_for(second.wait(), 30)
            return second.pid, code, second_log.read_text()
        finally:
            await launcher.stop()

    pid, code, log = asyncio.run(scenario())
    assert code == 1, log
    assert f"[{pid}]" in log, f"the second start was given another process's pid {pid}:\n{log}"
    assert "second-missing" in log


def test_the_child_of_a_cancelled_start_is_stopped(tmp_path: Path) -> None:
    """Its endpoint is gone: an instance that would load and serve must not be left running."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "inference.py").write_text("def model_fn(model_dir):\n    return {}\n")
    environment = {**_environment(tmp_path, "orphan"), "MODELHOST_MODEL": str(model)}
    log = tmp_path / "orphan.log"

    async def scenario() -> list[int]:
        launcher = Launcher()
        await launcher.start()
        try:
            before = set(_children(launcher))
            start = asyncio.create_task(launcher.spawn(environment, str(log), "orphan"))
            while not launcher._pending:
                await asyncio.sleep(0.001)
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await start
            await asyncio.sleep(3)  # long enough for it to load and serve, were it running
            return [pid for pid in _children(launcher) if pid not in before and _alive(pid)]
        finally:
            await launcher.stop()

    assert asyncio.run(scenario()) == []
    assert "serving on" not in (log.read_text() if log.exists() else "")


def _children(launcher: Launcher) -> list[int]:
    process = launcher._process
    assert process is not None
    path = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []
