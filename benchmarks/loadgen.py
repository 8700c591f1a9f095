"""Load from a separate process: wrk POSTing prepared bodies, its summary read back as numbers.

wrk runs with one thread (the machine has two cores and the server needs the other) and the Lua
script ``post.lua``, which rotates through a file of bodies and prints a JSON summary; wrk's own
``--latency`` report is kept alongside as the raw record.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vocabulary import BenchmarkError

LUA_SCRIPT = Path(__file__).parent / "post.lua"
SUMMARY_MARKER = "WRK_JSON "
REQUEST_TIMEOUT_S = 5  # a slower answer counts as a timeout error, not as a latency


@dataclass(frozen=True)
class LoadResult:
    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non_2xx: int  # wrk's "Non-2xx or 3xx responses": status > 399
    socket_errors: int  # connect, read, write errors and timeouts
    report: str  # wrk's own text output


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchmarkError("wrk is not installed (apt-get install wrk)")
    return path


def write_bodies(path: Path, bodies: Iterable[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(body + b"\n" for body in bodies))
    return path


def run_wrk(url: str, bodies: Path, connections: int, duration_s: int) -> LoadResult:
    """POST ``bodies`` to ``url`` from ``connections`` keep-alive connections for ``duration_s``."""
    command = [
        wrk_path(),
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        f"--timeout={REQUEST_TIMEOUT_S}s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(bodies.resolve()),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    if completed.returncode != 0:
        raise BenchmarkError(f"wrk failed ({completed.returncode}): {completed.stderr or completed.stdout}")
    return _parse(completed.stdout)


def _parse(output: str) -> LoadResult:
    summary_line = next((line for line in output.splitlines() if line.startswith(SUMMARY_MARKER)), None)
    if summary_line is None:
        raise BenchmarkError(f"wrk printed no summary:\n{output}")
    summary = json.loads(summary_line.removeprefix(SUMMARY_MARKER))
    duration_s = summary["duration_us"] / 1e6
    errors = sum(summary[name] for name in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return LoadResult(
        requests=summary["requests"],
        duration_s=duration_s,
        requests_per_s=summary["requests"] / duration_s if duration_s else 0.0,
        p50_ms=summary["p50_us"] / 1000,
        p90_ms=summary["p90_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        mean_ms=summary["mean_us"] / 1000,
        max_ms=summary["max_us"] / 1000,
        non_2xx=summary["status_errors"],
        socket_errors=errors,
        report=output,
    )
