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
import re
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import artifacts
from dialects import MODELHOST_SENTIMENT
from frontdoor_report import (
    DIRECT,
    FRONT_DOOR,
    HIGH,
    LOW,
    busy_warning,
    cell,
    evaluate_targets,
    load_line,
    print_report,
    summaries,
    to_json,
)
from loadgen import LoadResult, run_wrk, write_bodies, wrk_path
from platform_process import INSTANCE_EXIT_TIMEOUT_S, Platform, clean_environment
from procstat import CpuSnapshot, CpuUse, children
from run import DEFAULT_WORKLOADS_SRC, describe_mismatch, request_bodies
from servers import HOST, http_call
from vocabulary import SENTIMENT_1, BenchmarkError
from workload_data import Workload, ensure_built, load_workload

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

ENDPOINT = "sentiment"
DEPLOY_TIMEOUT_S = 300.0
INVOKE_TIMEOUT_S = 60.0
FIRST_ANSWER_DEADLINE_S = 60.0  # retrying invoke after deploy returned, before giving up
MODEL_LOADED = re.compile(r"loaded \S+ model in ([0-9.]+) s")  # the model server's log line


@dataclass(frozen=True)
class Settings:
    duration_s: int
    warmup_s: int
    rounds: int
    cold_runs: int
    workloads_src: Path
    cache_dir: Path
    run_dir: Path  # this run's logs, request bodies and wrk reports
    handoff: bool = True  # `up --no-handoff` when False: every request proxied by the front door


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
    parser.add_argument(
        "--no-handoff",
        dest="handoff",
        action="store_false",
        help="start `modelhost up --no-handoff`: the front door proxies every request (the path before hand-off)",
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
        handoff=args.handoff,
    )
    if settings.duration_s < 1 or settings.rounds < 1 or settings.warmup_s < 0 or settings.cold_runs < 0:
        raise SystemExit("--duration and --rounds must be at least 1, --warmup and --cold-runs at least 0")
    return settings


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
    platform_ = Platform(settings.run_dir, environment, () if settings.handoff else ("--no-handoff",))
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
            f" model load {cell(run.model_load_s, 2)} s)",
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
