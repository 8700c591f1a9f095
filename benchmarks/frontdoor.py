"""The platform's front door against the instance's own port, and the cold deploy, in one run.

    .venv/bin/python benchmarks/frontdoor.py              # about 3 minutes
    .venv/bin/python benchmarks/frontdoor.py --quick      # smoke run: 1 round, 3 s per measurement
    .venv/bin/python benchmarks/frontdoor.py --duration 20 --rounds 5 --cold-runs 5

Starts ``modelhost up`` on a free port with a fresh state directory, times N cold deploys of the
sentiment model (``modelhost deploy`` to the first right answer of ``modelhost invoke``), deploys
the benchmark endpoint and loads it with wrk, alternating the front door
(``/endpoints/sentiment/invocations``) and the instance's own port (``/invocations``), while
reading the CPU time the front door and the workers spend. Prints the table and the targets
(PASS/FAIL) and writes benchmarks/results/frontdoor-<time>.json, with the platform's log, the
instance logs and wrk's reports under benchmarks/results/frontdoor-<time>/. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import artifacts
from dialects import MODELHOST_SENTIMENT
from loadgen import LoadResult, run_wrk, write_bodies, wrk_path
from report import format_table
from run import DEFAULT_WORKLOADS_SRC, describe_mismatch, request_bodies
from servers import HOST, free_port, http_call
from vocabulary import SENTIMENT_1, BenchmarkError
from workload_data import Workload, ensure_built, load_workload

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

ENDPOINT = "sentiment"
DIRECT, FRONT_DOOR = "direct", "front door"
HIGH, LOW = 64, 1  # wrk connections: the throughput targets are stated at 64
RPS_RATIO_TARGET = 0.80  # front door req/s >= 80 % of direct
P99_RATIO_TARGET = 1.5  # front door p99 <= 1.5x direct
COLD_DEPLOY_TARGET_S = 3.0
BUSY_LOAD_AVERAGE = 0.5  # a 1-minute load average above this at the start: the numbers are suspect

HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0  # SIGTERM, then SIGKILL of the process group
INSTANCE_EXIT_TIMEOUT_S = 15.0  # instances stop by themselves once `up` has gone
DEPLOY_TIMEOUT_S = 300.0
INVOKE_TIMEOUT_S = 60.0
FIRST_ANSWER_DEADLINE_S = 60.0  # retrying invoke after deploy returned, before giving up
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODEL_LOADED = re.compile(r"loaded \S+ model in ([0-9.]+) s")  # the model server's log line
# Settings of `up` or of the model servers it starts (they inherit its environment): left out so
# that the run measures the defaults, whatever the calling shell exports.
STRIPPED_ENV_PREFIXES = ("MODELHOST_", "SAGEMAKER_", "SM_")


@dataclass(frozen=True)
class Settings:
    duration_s: int
    warmup_s: int
    rounds: int
    cold_runs: int
    workloads_src: Path
    cache_dir: Path
    run_dir: Path  # this run's logs, request bodies and wrk reports


# -- command line ----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 3 s measurements, 1 cold deploy")
    parser.add_argument("--duration", type=int, help="seconds per measurement (default 10; 3 with --quick)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up before each (default 2; 1 with --quick)")
    parser.add_argument("--rounds", type=int, help="direct/front-door pairs at 64 connections (default 3; 1 --quick)")
    parser.add_argument("--cold-runs", type=int, help="cold deploys to take the median of (default 3; 1 --quick)")
    parser.add_argument(
        "--workloads-src",
        type=Path,
        default=Path(os.environ.get("MODELHOST_WORKLOADS_SRC", DEFAULT_WORKLOADS_SRC)),
        help="folder of make_models.py and workloads.py (../shared/workloads)",
    )
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".cache", help="built models go here (.cache)")
    parser.add_argument("--results-dir", type=Path, default=HERE / "results", help="benchmarks/results")
    return parser.parse_args(argv)


def build_settings(args: argparse.Namespace, run_dir: Path) -> Settings:
    def pick(value: int | None, normal: int, quick: int) -> int:
        return value if value is not None else (quick if args.quick else normal)

    settings = Settings(
        duration_s=pick(args.duration, 10, 3),
        warmup_s=pick(args.warmup, 2, 1),
        rounds=pick(args.rounds, 3, 1),
        cold_runs=pick(args.cold_runs, 3, 1),
        workloads_src=args.workloads_src.resolve(),
        cache_dir=args.cache_dir.resolve(),
        run_dir=run_dir,
    )
    if settings.duration_s < 1 or settings.rounds < 1 or settings.warmup_s < 0 or settings.cold_runs < 0:
        raise SystemExit("--duration and --rounds must be at least 1, --warmup and --cold-runs at least 0")
    return settings


# -- /proc: processes and their CPU time -----------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3, the state, is index 0)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of every thread of PID, in clock ticks (None: it has gone)."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[11]) + int(fields[12])


def start_ticks(pid: int) -> int | None:
    """When PID started (clock ticks after boot): with the pid, it names one process, never a reused pid."""
    fields = _stat_fields(pid)
    return None if fields is None or fields[0] == "Z" else int(fields[19])


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                found.extend(int(child) for child in (task / "children").read_text().split())
    return sorted(set(found))


def descendants(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        found.append(child)
        found.extend(descendants(child))
    return found


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU ticks of the front door (the `up` process), the instance's master and each of its workers."""

    frontdoor: int | None
    master: int | None
    workers: dict[int, tuple[int | None, int | None]]  # pid: (start ticks, cpu ticks)

    @classmethod
    def take(cls, up_pid: int, master_pid: int) -> CpuSnapshot:
        workers = {pid: (start_ticks(pid), cpu_ticks(pid)) for pid in children(master_pid)}
        return cls(cpu_ticks(up_pid), cpu_ticks(master_pid), workers)


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds spent between two snapshots; None where a process went or a worker was replaced."""

    frontdoor_s: float | None
    master_s: float | None
    workers_s: float | None

    @classmethod
    def between(cls, before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
        def spent(start: int | None, end: int | None) -> float | None:
            return None if start is None or end is None else (end - start) / CLK_TCK

        same_workers = before.workers.keys() == after.workers.keys() and all(
            before.workers[pid][0] is not None and before.workers[pid][0] == after.workers[pid][0]
            for pid in before.workers
        )
        workers = None
        if same_workers and before.workers:
            ticks = [spent(before.workers[pid][1], after.workers[pid][1]) for pid in before.workers]
            workers = None if None in ticks else sum(t for t in ticks if t is not None)
        return cls(spent(before.frontdoor, after.frontdoor), spent(before.master, after.master), workers)


# -- the platform under test -----------------------------------------------------------------------
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

    def __init__(self, run_dir: Path, environment: dict[str, str]) -> None:
        self.command = modelhost_command()
        self.port = free_port()
        self.state_dir = Path(tempfile.mkdtemp(prefix="modelhost-frontdoor-"))
        self.run_dir = run_dir
        self.log_path = run_dir / "up.log"
        self.cli_log_path = run_dir / "cli.log"
        self.environment = environment
        self.seen: dict[int, int] = {}  # every process `up` started that we saw: pid -> start ticks
        run_dir.mkdir(parents=True, exist_ok=True)
        args = [self.command, "up", "--port", str(self.port), "--state-dir", str(self.state_dir)]
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


# -- answers ---------------------------------------------------------------------------------------
def verify_answer(body: bytes | str, texts: Sequence[str], expected: Sequence[Any], where: str) -> None:
    decode = MODELHOST_SENTIMENT.decode
    assert decode is not None
    try:
        answer = decode(json.loads(body))
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchmarkError(f"{where}: an answer of an unexpected shape: {body[:500]!r}") from exc
    if answer != expected:
        raise BenchmarkError(f"{where}: wrong answer: {describe_mismatch(texts, answer, expected)}")


def check_answer(port: int, path: str, workload: Workload, where: str) -> None:
    """One live request must answer what expected.json says before its numbers mean anything."""
    texts, expected = workload.expected_batch(SENTIMENT_1.texts_per_request)
    status, body = http_call(port, "POST", path, MODELHOST_SENTIMENT.encode(texts))
    if status != 200:
        raise BenchmarkError(f"{where}: POST {path} answered {status}: {body[:500]!r}")
    verify_answer(body, texts, expected, where)


# -- cold deploy -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColdDeploy:
    name: str
    total_s: float  # deploy command started -> the first invoke command that answered right returned
    deploy_s: float  # the deploy command alone (it returns once InService)
    invoke_s: float  # the invoke command that answered (process start, import, request)
    invoke_attempts: int  # > 1: the endpoint was InService but did not answer at once
    instance_pid: int | None
    model_load_s: float | None  # what the instance's log says loading the model took (None: not found)


def cold_deploy(platform_: Platform, artifact: Path, name: str, workload: Workload) -> ColdDeploy:
    texts, expected = workload.expected_batch(1)
    data = MODELHOST_SENTIMENT.encode(texts).decode()
    started = time.perf_counter()
    deployed = platform_.cli("deploy", str(artifact), "--name", name, timeout_s=DEPLOY_TIMEOUT_S)
    if deployed.returncode != 0:
        raise BenchmarkError(f"modelhost deploy {name} failed ({deployed.returncode}): {deployed.stderr[-2000:]}")
    attempts = 0
    while True:
        attempts += 1
        invoked = platform_.cli("invoke", name, "--data", data, timeout_s=INVOKE_TIMEOUT_S)
        if invoked.returncode == 0:
            verify_answer(invoked.stdout, texts, expected, f"modelhost invoke {name}")
            break
        if time.perf_counter() - started > FIRST_ANSWER_DEADLINE_S:
            raise BenchmarkError(f"modelhost invoke {name} still failing: {invoked.stderr[-2000:]}")
        time.sleep(0.05)
    total = time.perf_counter() - started
    instances = platform_.endpoint(name)["variants"][0]["instances"]
    platform_.remember_processes()
    log = platform_.cli("logs", name, timeout_s=INVOKE_TIMEOUT_S).stdout  # kept: rm removes the instance's log
    log_path = platform_.run_dir / "instance-logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(log)
    loaded = MODEL_LOADED.search(log)
    model_load_s = float(loaded.group(1)) if loaded else None
    return ColdDeploy(name, total, deployed.seconds, invoked.seconds, attempts, instances[0]["pid"], model_load_s)


def remove_endpoint(platform_: Platform, name: str, instance_pid: int | None) -> None:
    removed = platform_.cli("rm", name, timeout_s=DEPLOY_TIMEOUT_S)
    if removed.returncode != 0:
        raise BenchmarkError(f"modelhost rm {name} failed ({removed.returncode}): {removed.stderr[-2000:]}")
    if instance_pid is not None and platform_.wait_gone([instance_pid], INSTANCE_EXIT_TIMEOUT_S):
        raise BenchmarkError(f"{name}'s instance (pid {instance_pid}) still runs after modelhost rm")


# -- load ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Instance:
    port: int
    pid: int
    workers: tuple[int, ...]


@dataclass(frozen=True)
class Measurement:
    path: str  # DIRECT or FRONT_DOOR
    connections: int
    round: int
    result: LoadResult
    cpu: CpuUse | None  # None: not read

    def us_per_request(self, seconds: float | None) -> float | None:
        if seconds is None or not self.result.requests:
            return None
        return seconds * 1e6 / self.result.requests

    def to_json(self) -> dict[str, Any]:
        result = {key: value for key, value in asdict(self.result).items() if key != "report"}
        cpu = asdict(self.cpu) if self.cpu is not None else None
        per_request = {
            "frontdoor_cpu_us_per_request": self.us_per_request(self.cpu.frontdoor_s) if self.cpu else None,
            "workers_cpu_us_per_request": self.us_per_request(self.cpu.workers_s) if self.cpu else None,
            "master_cpu_us_per_request": self.us_per_request(self.cpu.master_s) if self.cpu else None,
        }
        return {
            "path": self.path,
            "connections": self.connections,
            "round": self.round,
            **result,
            "cpu_s": cpu,
            **per_request,
        }


@dataclass
class Results:
    load_average_at_start: tuple[float, float, float]
    stripped_environment: list[str] = field(default_factory=list)
    up: dict[str, Any] = field(default_factory=dict)
    instance: Instance | None = None
    benchmark_deploy_s: float | None = None
    cold: list[ColdDeploy] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    shutdown_problems: list[str] = field(default_factory=list)
    error: str | None = None


class LoadRun:
    """wrk against both paths of the benchmark endpoint, reading the CPU time around each measurement."""

    def __init__(self, settings: Settings, platform_: Platform, instance: Instance, bodies: Path, results: Results):
        self.settings = settings
        self.platform = platform_
        self.instance = instance
        self.bodies = bodies
        self.results = results
        self.urls = {
            DIRECT: f"http://{HOST}:{instance.port}/invocations",
            FRONT_DOOR: f"{platform_.url}/endpoints/{ENDPOINT}/invocations",
        }

    def run(self) -> None:
        for number in range(self.settings.rounds):
            # direct first in even rounds, the front door first in odd ones: a drift of the
            # machine's speed over the run then weighs on both paths alike
            order = (DIRECT, FRONT_DOOR) if number % 2 == 0 else (FRONT_DOOR, DIRECT)
            for path in order:
                self.measure(path, HIGH, number)
        for path in (DIRECT, FRONT_DOOR):
            self.measure(path, LOW, 0)

    def measure(self, path: str, connections: int, number: int) -> None:
        url = self.urls[path]
        if self.settings.warmup_s:
            run_wrk(url, self.bodies, connections, self.settings.warmup_s)
        before = CpuSnapshot.take(self.platform.pid, self.instance.pid)
        result = run_wrk(url, self.bodies, connections, self.settings.duration_s)
        after = CpuSnapshot.take(self.platform.pid, self.instance.pid)
        tag = "direct" if path == DIRECT else "frontdoor"
        report = self.settings.run_dir / "wrk" / f"{tag}-c{connections}-r{number}.txt"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(result.report)
        measurement = Measurement(path, connections, number, result, CpuUse.between(before, after))
        self.results.measurements.append(measurement)
        print(f"   {progress_line(measurement)}", flush=True)


def progress_line(m: Measurement) -> str:
    cpu = m.cpu or CpuUse(None, None, None)
    return (
        f"{m.path:<10} c={m.connections:<3} round {m.round}  {m.result.requests_per_s:>8,.0f} req/s"
        f"  p50 {m.result.p50_ms:6.2f} ms  p99 {m.result.p99_ms:6.2f} ms"
        f"  non-2xx {m.result.non_2xx}  sock err {m.result.socket_errors}"
        f"  CPU us/req: front door {_us(m.us_per_request(cpu.frontdoor_s))},"
        f" workers {_us(m.us_per_request(cpu.workers_s))}"
    )


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


# -- summary and targets ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """One table row: the medians over a path's rounds at one connection count."""

    path: str
    connections: int
    rounds: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    frontdoor_cpu_us_per_request: float | None  # CPU summed over the rounds / requests summed
    workers_cpu_us_per_request: float | None
    master_cpu_us_per_request: float | None


def summarize(measurements: Sequence[Measurement], path: str, connections: int) -> Summary | None:
    chosen = [m for m in measurements if m.path == path and m.connections == connections]
    if not chosen:
        return None

    def per_request(pick: str) -> float | None:
        spent = [getattr(m.cpu, pick) if m.cpu is not None else None for m in chosen]
        requests = sum(m.result.requests for m in chosen)
        if None in spent or not requests:
            return None
        return sum(s for s in spent if s is not None) * 1e6 / requests

    return Summary(
        path=path,
        connections=connections,
        rounds=len(chosen),
        requests_per_s=statistics.median(m.result.requests_per_s for m in chosen),
        p50_ms=statistics.median(m.result.p50_ms for m in chosen),
        p99_ms=statistics.median(m.result.p99_ms for m in chosen),
        non_2xx=sum(m.result.non_2xx for m in chosen),
        socket_errors=sum(m.result.socket_errors for m in chosen),
        frontdoor_cpu_us_per_request=per_request("frontdoor_s"),
        workers_cpu_us_per_request=per_request("workers_s"),
        master_cpu_us_per_request=per_request("master_s"),
    )


def summaries(measurements: Sequence[Measurement]) -> list[Summary]:
    found = (summarize(measurements, path, conns) for conns in (HIGH, LOW) for path in (DIRECT, FRONT_DOOR))
    return [summary for summary in found if summary is not None]


@dataclass(frozen=True)
class Target:
    name: str
    required: str
    measured: str
    passed: bool | None  # None: not measured

    @property
    def status(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


def find(rows: Sequence[Summary], path: str, connections: int) -> Summary | None:
    return next((row for row in rows if row.path == path and row.connections == connections), None)


def evaluate_targets(rows: Sequence[Summary], cold: Sequence[ColdDeploy]) -> list[Target]:
    targets = []
    direct, door = find(rows, DIRECT, HIGH), find(rows, FRONT_DOOR, HIGH)
    name = f"front door / direct req/s @{HIGH}"
    if direct is None or door is None or not direct.requests_per_s:
        targets.append(Target(name, f">= {RPS_RATIO_TARGET:.2f}", "not measured", None))
    else:
        ratio = door.requests_per_s / direct.requests_per_s
        measured = f"{ratio:.2f} ({door.requests_per_s:,.0f} vs {direct.requests_per_s:,.0f} req/s)"
        targets.append(Target(name, f">= {RPS_RATIO_TARGET:.2f}", measured, ratio >= RPS_RATIO_TARGET))
    name = f"front door / direct p99 @{HIGH}"
    if direct is None or door is None or not direct.p99_ms:
        targets.append(Target(name, f"<= {P99_RATIO_TARGET:g}x", "not measured", None))
    else:
        ratio = door.p99_ms / direct.p99_ms
        measured = f"{ratio:.2f}x ({door.p99_ms:.2f} vs {direct.p99_ms:.2f} ms)"
        targets.append(Target(name, f"<= {P99_RATIO_TARGET:g}x", measured, ratio <= P99_RATIO_TARGET))
    name, required = f"failed requests @{HIGH} (both paths)", "none"
    if direct is None or door is None:
        targets.append(Target(name, required, "not measured", None))
    else:
        failed = direct.non_2xx + direct.socket_errors + door.non_2xx + door.socket_errors
        measured = f"direct {direct.non_2xx} non-2xx, {direct.socket_errors} sock err; "
        measured += f"front door {door.non_2xx} non-2xx, {door.socket_errors} sock err"
        targets.append(Target(name, required, measured, failed == 0))
    name, required = "cold deploy, command to first answer (median)", f"<= {COLD_DEPLOY_TARGET_S:g} s"
    if not cold:
        targets.append(Target(name, required, "not measured", None))
    else:
        median = statistics.median(run.total_s for run in cold)
        targets.append(Target(name, required, f"{median:.2f} s", median <= COLD_DEPLOY_TARGET_S))
    return targets


# -- output ----------------------------------------------------------------------------------------
def _cell(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def main_table(rows: Sequence[Summary]) -> str:
    headers = ("scenario", "path", "conns", "rounds", "req/s (median)", "p50 ms", "p99 ms", "errors")
    headers += ("CPU us/req front door", "CPU us/req workers")
    lines = [
        (
            SENTIMENT_1.title,
            row.path,
            str(row.connections),
            str(row.rounds),
            f"{row.requests_per_s:,.0f}",
            f"{row.p50_ms:.2f}",
            f"{row.p99_ms:.2f}",
            f"{row.non_2xx + row.socket_errors}",
            _cell(row.frontdoor_cpu_us_per_request),
            _cell(row.workers_cpu_us_per_request),
        )
        for row in rows
    ]
    return format_table(headers, lines)


def cold_lines(cold: Sequence[ColdDeploy]) -> list[str]:
    if not cold:
        return ["cold deploy: not measured"]
    runs = ", ".join(f"{run.total_s:.2f}" for run in cold)
    lines = [
        f"cold deploy, `modelhost deploy` started to `modelhost invoke` answering right: "
        f"median {statistics.median(run.total_s for run in cold):.2f} s (runs: {runs})",
        f"   of which the deploy command {statistics.median(run.deploy_s for run in cold):.2f} s"
        f" and the invoke command {statistics.median(run.invoke_s for run in cold):.2f} s (medians)",
    ]
    loads = [run.model_load_s for run in cold if run.model_load_s is not None]
    if loads:
        lines.append(f"   the instance loading the model took {statistics.median(loads):.2f} s of it (its log, median)")
    if len(cold) > 1:
        lines.append(f"   the first deploy on the fresh platform: {cold[0].total_s:.2f} s")
    retried = [run for run in cold if run.invoke_attempts > 1]
    if retried:
        attempts = ", ".join(f"{run.name}: {run.invoke_attempts}" for run in retried)
        lines.append(f"   WARNING: invoke failed after deploy returned InService, answered on attempt {attempts}")
    return lines


def load_line(label: str, load: Sequence[float]) -> str:
    return f"load average {label}: " + ", ".join(f"{value:.2f}" for value in load) + " (1, 5, 15 min)"


def busy_warning(load: Sequence[float]) -> str | None:
    if load[0] <= BUSY_LOAD_AVERAGE:
        return None
    return (
        f"WARNING: the 1-minute load average was {load[0]:.2f} (> {BUSY_LOAD_AVERAGE}) at the start: something else "
        f"is using this {os.cpu_count()}-core machine, so these numbers are not final"
    )


def print_report(results: Results, rows: Sequence[Summary], targets: Sequence[Target], load_at_end: Any) -> None:
    print()
    if rows:
        print(main_table(rows))
        print()
        direct, door = find(rows, DIRECT, LOW), find(rows, FRONT_DOOR, LOW)
        if direct is not None and door is not None:
            print(
                f"front door latency overhead @{LOW}: p50 +{door.p50_ms - direct.p50_ms:.2f} ms,"
                f" p99 +{door.p99_ms - direct.p99_ms:.2f} ms"
            )
        if results.instance is not None:
            print(f"instance: port {results.instance.port}, {len(results.instance.workers)} worker(s)")
        print()
    for line in cold_lines(results.cold):
        print(line)
    print()
    print(format_table(("target", "required", "measured", "result"), [t_row(t) for t in targets], left=3))
    print()
    print(load_line("at start", results.load_average_at_start))
    print(load_line("at end", load_at_end))
    warning = busy_warning(results.load_average_at_start)
    if warning:
        print(warning)
    for problem in results.shutdown_problems:
        print(f"SHUTDOWN PROBLEM: {problem}")
    if results.error:
        print(f"\nFAILED: {results.error}")


def t_row(target: Target) -> tuple[str, str, str, str]:
    return (target.name, target.required, target.measured, target.status)


def to_json(
    results: Results,
    rows: Sequence[Summary],
    targets: Sequence[Target],
    settings: Settings,
    load_at_end: Any,
    elapsed_s: float,
) -> dict[str, Any]:
    cold = results.cold
    loads = [run.model_load_s for run in cold if run.model_load_s is not None]
    return {
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in asdict(settings).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "clock_ticks_per_s": CLK_TCK,
            "load_average_at_start": results.load_average_at_start,
            "load_average_at_end": load_at_end,
            "busy_at_start": results.load_average_at_start[0] > BUSY_LOAD_AVERAGE,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "environment_left_out": results.stripped_environment,
        "elapsed_s": round(elapsed_s, 1),
        "scenario": asdict(SENTIMENT_1),
        "up": results.up,
        "instance": asdict(results.instance) if results.instance else None,
        "benchmark_deploy_s": results.benchmark_deploy_s,
        "cold_deploy": {
            "runs": [asdict(run) for run in cold],
            "median_s": statistics.median(run.total_s for run in cold) if cold else None,
            "first_s": cold[0].total_s if cold else None,  # the first on a fresh platform: the coldest
            "median_deploy_s": statistics.median(run.deploy_s for run in cold) if cold else None,
            "median_invoke_s": statistics.median(run.invoke_s for run in cold) if cold else None,
            "median_model_load_s": statistics.median(loads) if loads else None,
        },
        "measurements": [m.to_json() for m in results.measurements],
        "rows": [asdict(row) for row in rows],
        "targets": [{**asdict(target), "status": target.status} for target in targets],
        "shutdown_problems": results.shutdown_problems,
        "error": results.error,
    }


# -- the run ---------------------------------------------------------------------------------------
def prepare(settings: Settings) -> tuple[Workload, Path, Path]:
    """The sentiment workload, its served artifact and the request bodies, built as run.py builds them."""
    workloads_cache = settings.cache_dir / "workloads"
    ensure_built(settings.workloads_src, workloads_cache)
    workload = load_workload(SENTIMENT_1.workload, workloads_cache)
    artifact = artifacts.sentiment_pipeline(workload.directory, settings.cache_dir / "benchmarks")
    bodies = write_bodies(
        settings.run_dir / "bodies" / f"{ENDPOINT}-{SENTIMENT_1.key}.txt",
        request_bodies(MODELHOST_SENTIMENT, workload, SENTIMENT_1.texts_per_request),
    )
    return workload, artifact, bodies


def deploy_benchmark_endpoint(platform_: Platform, artifact: Path, workload: Workload, results: Results) -> Instance:
    deployed = platform_.cli("deploy", str(artifact), "--name", ENDPOINT, timeout_s=DEPLOY_TIMEOUT_S)
    if deployed.returncode != 0:
        raise BenchmarkError(f"modelhost deploy {ENDPOINT} failed ({deployed.returncode}): {deployed.stderr[-2000:]}")
    results.benchmark_deploy_s = deployed.seconds
    endpoint = platform_.endpoint(ENDPOINT)
    described = endpoint["variants"][0]["instances"][0]
    port, pid = described["port"], described["pid"]
    if port is None or pid is None:
        raise BenchmarkError(f"{ENDPOINT} is {endpoint['status']} but its instance has no port or pid: {described}")
    workers = tuple(children(pid))
    if not workers:
        raise BenchmarkError(f"{ENDPOINT}'s instance (pid {pid}) has no worker processes")
    platform_.remember_processes()
    instance = Instance(port, pid, workers)
    results.instance = instance
    print(f"   {ENDPOINT}: deployed in {deployed.seconds:.2f} s, port {port}, pid {pid}, workers {list(workers)}")
    check_answer(port, "/invocations", workload, f"{ENDPOINT}, direct")
    check_answer(platform_.port, f"/endpoints/{ENDPOINT}/invocations", workload, f"{ENDPOINT}, front door")
    return instance


def run_benchmark(settings: Settings, results: Results, holder: list[Platform]) -> None:
    print("== prepare", flush=True)
    workload, artifact, bodies = prepare(settings)
    environment, results.stripped_environment = clean_environment()
    if results.stripped_environment:
        print(f"   left out of modelhost's environment: {', '.join(results.stripped_environment)}")
    print("== modelhost up", flush=True)
    platform_ = Platform(settings.run_dir, environment)
    holder.append(platform_)
    healthy_s = platform_.wait_healthy()
    results.up = {"pid": platform_.pid, "port": platform_.port, "command": platform_.command, "healthy_s": healthy_s}
    print(f"   pid {platform_.pid} on port {platform_.port}, healthy after {healthy_s:.2f} s", flush=True)

    print(f"== cold deploy x{settings.cold_runs}", flush=True)
    for number in range(settings.cold_runs):
        run = cold_deploy(platform_, artifact, f"cold-{number}", workload)
        results.cold.append(run)
        print(
            f"   {run.name}: first right answer after {run.total_s:.2f} s"
            f" (deploy {run.deploy_s:.2f} s, invoke {run.invoke_s:.2f} s, attempts {run.invoke_attempts},"
            f" model load {_cell(run.model_load_s, 2)} s)",
            flush=True,
        )
        remove_endpoint(platform_, run.name, run.instance_pid)

    print(f"== {ENDPOINT}: direct vs front door", flush=True)
    instance = deploy_benchmark_endpoint(platform_, artifact, workload, results)
    LoadRun(settings, platform_, instance, bodies, results).run()


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Cleanup must run to its end: a second Ctrl-C must not leave a platform behind."""
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    results_dir = args.results_dir.resolve()
    settings = build_settings(args, results_dir / f"frontdoor-{stamp}")
    wrk_path()  # fail before building anything when the load generator is missing
    started = time.monotonic()
    results = Results(load_average_at_start=os.getloadavg())
    print(load_line("at start", results.load_average_at_start))
    warning = busy_warning(results.load_average_at_start)
    if warning:
        print(warning)
    signal.signal(signal.SIGTERM, raise_interrupt)
    holder: list[Platform] = []
    exit_code = 0
    try:
        run_benchmark(settings, results, holder)
    except KeyboardInterrupt as exc:
        results.error = f"interrupted ({str(exc) or 'SIGINT'})"
        exit_code = 130
    except Exception as exc:  # the numbers so far, the logs and a clean stop still matter
        results.error = f"{type(exc).__name__}: {exc}"
        exit_code = 1
    finally:
        if holder:
            with signals_ignored():
                print("== stopping modelhost up", flush=True)
                results.shutdown_problems = holder[0].stop()
    if results.shutdown_problems:
        exit_code = exit_code or 1
    rows = summaries(results.measurements)
    targets = evaluate_targets(rows, results.cold)
    load_at_end = os.getloadavg()
    print_report(results, rows, targets, load_at_end)
    path = results_dir / f"frontdoor-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = to_json(results, rows, targets, settings, load_at_end, time.monotonic() - started)
    path.write_text(json.dumps(document, indent=1))
    print(f"\nresults: {path}\nlogs and wrk reports: {settings.run_dir}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
