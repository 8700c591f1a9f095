"""The platform under test: ``modelhost up`` of this checkout started on a free port with a fresh
state directory in a process group of its own, with the calling shell's modelhost settings left out
of its environment; waiting for it to be healthy, running timed CLI commands against it, reading an
endpoint's description, and stopping it so that none of the processes it started outlives the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procstat import descendants, start_ticks
from servers import HOST, free_port, http_call
from vocabulary import BenchmarkError

REPO = Path(__file__).resolve().parent.parent

HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0  # SIGTERM, then SIGKILL of the process group
INSTANCE_EXIT_TIMEOUT_S = 15.0  # instances stop by themselves once `up` has gone
# Settings of `up` or of the model servers it starts (they inherit its environment): left out so
# that the run measures the defaults, whatever the calling shell exports.
STRIPPED_ENV_PREFIXES = ("MODELHOST_", "SAGEMAKER_", "SM_")


def modelhost_command() -> str:
    """The CLI of this checkout's virtual environment."""
    beside = Path(sys.executable).parent / "modelhost"
    for candidate in (beside, REPO / ".venv" / "bin" / "modelhost"):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("modelhost")
    if found is None:
        raise BenchmarkError("no modelhost command beside this Python or in .venv/bin")
    return found


def clean_environment() -> tuple[dict[str, str], list[str]]:
    stripped = sorted(key for key in os.environ if key.startswith(STRIPPED_ENV_PREFIXES))
    return {key: value for key, value in os.environ.items() if key not in stripped}, stripped


@dataclass(frozen=True)
class Cli:
    """One finished CLI command: how it ended and how long it took."""

    args: tuple[str, ...]
    returncode: int
    seconds: float
    stdout: str
    stderr: str


class Platform:
    """`modelhost up` on a free port with a fresh state directory, in a process group of its own."""

    def __init__(self, run_dir: Path, environment: dict[str, str], up_options: Sequence[str] = ()) -> None:
        self.command = modelhost_command()
        self.port = free_port()
        self.state_dir = Path(tempfile.mkdtemp(prefix="modelhost-frontdoor-"))
        self.run_dir = run_dir
        self.log_path = run_dir / "up.log"
        self.cli_log_path = run_dir / "cli.log"
        self.environment = environment
        self.seen: dict[int, int] = {}  # every process `up` started that we saw: pid -> start ticks
        run_dir.mkdir(parents=True, exist_ok=True)
        args = [self.command, "up", "--port", str(self.port), "--state-dir", str(self.state_dir), *up_options]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_healthy(self, timeout_s: float = HEALTH_TIMEOUT_S) -> float:
        """Poll GET /api/v1/health until 200; the seconds it took."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout_s:
            if self.process.poll() is not None:
                raise BenchmarkError(f"modelhost up exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                status, _ = http_call(self.port, "GET", "/api/v1/health", timeout=1.0)
                if status == 200:
                    return time.perf_counter() - started
            time.sleep(0.02)
        raise BenchmarkError(f"modelhost up not healthy within {timeout_s:g} s:\n{self.log_tail()}")

    def cli(self, *args: str, timeout_s: float) -> Cli:
        """Run `modelhost ARGS` against this platform (MODELHOST_URL) and time it; logged to cli.log."""
        environment = {**self.environment, "MODELHOST_URL": self.url}
        started = time.perf_counter()
        completed = subprocess.run(
            [self.command, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout_s,
            check=False,
        )
        result = Cli(
            tuple(args), completed.returncode, time.perf_counter() - started, completed.stdout, completed.stderr
        )
        with self.cli_log_path.open("a") as log:
            log.write(f"$ modelhost {' '.join(args)}\n# exit {result.returncode} after {result.seconds:.3f} s\n")
            log.write(result.stdout + result.stderr + "\n")
        return result

    def endpoint(self, name: str) -> dict[str, Any]:
        status, body = http_call(self.port, "GET", f"/api/v1/endpoints/{name}")
        if status != 200:
            raise BenchmarkError(f"GET /api/v1/endpoints/{name} answered {status}: {body[:500]!r}")
        return dict(json.loads(body))

    def remember_processes(self) -> None:
        """Note every process below `up` now, so that none can outlive the run unnoticed."""
        for pid in descendants(self.pid):
            start = start_ticks(pid)
            if start is not None:
                self.seen.setdefault(pid, start)

    def alive(self, pid: int) -> bool:
        """PID still runs, and is the process we saw (not a new one that got its number)."""
        return pid in self.seen and start_ticks(pid) == self.seen[pid]

    def wait_gone(self, pids: Sequence[int], timeout_s: float) -> list[int]:
        """Wait until none of ``pids`` runs any more; those still running after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = [pid for pid in pids if self.alive(pid)]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    def stop(self) -> list[str]:
        """SIGTERM, then SIGKILL of its group after 60 s; then make sure no instance outlived it.

        Instances run in sessions of their own (outside `up`'s group) and stop by themselves when
        `up` goes; one that does not is a bug worth reporting, and is killed here by its pid.
        """
        problems: list[str] = []
        self.remember_processes()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                problems.append(f"modelhost up did not stop within {STOP_TIMEOUT_S:g} s of SIGTERM: SIGKILL")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # its own group (start_new_session): stragglers only
        self.process.wait()
        if self.process.returncode not in (0, -signal.SIGTERM):
            problems.append(f"modelhost up exited with {self.process.returncode}")
        left = self.wait_gone(list(self.seen), INSTANCE_EXIT_TIMEOUT_S)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if left:
            problems.append(
                f"processes of modelhost up still ran {INSTANCE_EXIT_TIMEOUT_S:g} s after it stopped"
                f" (killed): {', '.join(map(str, left))}"
            )
        self.keep_logs()
        return problems

    def keep_logs(self) -> None:
        """The instance logs go to the run's folder; the state directory is removed."""
        logs = self.state_dir / "logs"
        if logs.is_dir():
            shutil.copytree(logs, self.run_dir / "instance-logs", dirs_exist_ok=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])
