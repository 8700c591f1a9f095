"""Benchmark modelhost against the seed tutorials' stack (Flask + gunicorn) and a bare-HTTP ceiling.

    .venv/bin/python benchmarks/run.py                  # everything, about 6 minutes
    .venv/bin/python benchmarks/run.py --quick          # smoke run: 3 s per measurement
    .venv/bin/python benchmarks/run.py --only sentiment,flask-sentiment --duration 20

Every server runs as its own process on a free 127.0.0.1 port and is loaded by wrk from another
process. The run prints the main table, memory, cold start and the targets (PASS/FAIL), and writes
all of it to benchmarks/results/<time>.json, with server logs and wrk reports under
benchmarks/results/<time>/. See benchmarks/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import artifacts
import inprocess
from dialects import Dialect
from loadgen import LoadResult, run_wrk, write_bodies, wrk_path
from memory import tree_memory_mib
from plan import STEP_ORDER, Load, Models, ServerStep, sentiment_default, server_steps
from report import (
    Target,
    cold_start_line,
    evaluate_targets,
    main_table,
    memory_table,
    targets_table,
    vs_bare,
    vs_flask,
)
from servers import ServerProcess, cold_start_s, http_call, running
from vocabulary import SENTIMENT_1, BenchmarkError, MemoryReading, Results, Row
from workload_data import WORKLOAD_NAMES, Workload, ensure_built, load_workload, reference_module

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_WORKLOADS_SRC = REPO.parent / "shared" / "workloads"


@dataclass(frozen=True)
class Settings:
    duration_s: int
    warmup_s: int
    connections: tuple[int, ...]
    workers: int
    cold_start_runs: int
    inprocess_budget_s: float
    steps: tuple[str, ...]
    workloads_src: Path
    cache_dir: Path
    run_dir: Path  # this run's server logs, request bodies and wrk reports


# -- command line ----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s per measurement, 1 s warm-up")
    parser.add_argument("--duration", type=int, help="seconds per measurement (default 10; 3 with --quick)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up before each (default 2; 1 with --quick)")
    parser.add_argument(
        "--connections", type=connection_counts, default=(1, 64), help="wrk connection counts, comma-separated (1,64)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every server (2)")
    parser.add_argument("--cold-start-runs", type=int, default=3, help="cold starts to take the median of (3)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="STEP[,STEP]",
        help=f"run only these steps (repeatable): {', '.join(STEP_ORDER)}",
    )
    parser.add_argument(
        "--workloads-src",
        type=Path,
        default=Path(os.environ.get("MODELHOST_WORKLOADS_SRC", DEFAULT_WORKLOADS_SRC)),
        help="folder of make_models.py and workloads.py (../shared/workloads)",
    )
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".cache", help="built models go here (.cache)")
    parser.add_argument("--results-dir", type=Path, default=HERE / "results", help="benchmarks/results")
    return parser.parse_args(argv)


def connection_counts(value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in value.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {value!r}") from exc
    if min(counts) < 1:
        raise argparse.ArgumentTypeError("connection counts must be at least 1")
    return counts


def selected_steps(parser_only: list[str] | None) -> tuple[str, ...]:
    if not parser_only:
        return STEP_ORDER
    wanted = {name.strip() for value in parser_only for name in value.split(",") if name.strip()}
    unknown = wanted - set(STEP_ORDER)
    if unknown:
        raise SystemExit(f"unknown step(s) {', '.join(sorted(unknown))}; choose from {', '.join(STEP_ORDER)}")
    return tuple(name for name in STEP_ORDER if name in wanted)


def build_settings(args: argparse.Namespace, run_dir: Path) -> Settings:
    duration = args.duration or (3 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if duration < 1 or warmup < 0 or args.workers < 1 or args.cold_start_runs < 0:
        raise SystemExit("--duration and --workers must be at least 1, --warmup and --cold-start-runs at least 0")
    return Settings(
        duration_s=duration,
        warmup_s=warmup,
        connections=args.connections,
        workers=args.workers,
        cold_start_runs=args.cold_start_runs,
        inprocess_budget_s=1.0 if args.quick else 3.0,
        steps=selected_steps(args.only),
        workloads_src=args.workloads_src.resolve(),
        cache_dir=args.cache_dir.resolve(),
        run_dir=run_dir,
    )


# -- checks ----------------------------------------------------------------------------------------
def check_answer(server: ServerProcess, load: Load, workload: Workload) -> None:
    """One live request must answer what expected.json says before its numbers mean anything."""
    texts, expected = workload.expected_batch(load.scenario.texts_per_request)
    status, body = http_call(server.port, "POST", "/invocations", load.dialect.encode(texts))
    where = f"{server.spec.label}, {load.scenario.title}"
    if status != 200:
        raise BenchmarkError(f"{where}: POST /invocations answered {status}: {body[:500]!r}")
    if load.dialect.decode is None:
        return
    try:
        answer = load.dialect.decode(json.loads(body))
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchmarkError(f"{where}: an answer of an unexpected shape: {body[:500]!r}") from exc
    if answer != expected:
        raise BenchmarkError(f"{where}: wrong answer: {describe_mismatch(texts, answer, expected)}")


def describe_mismatch(texts: Sequence[str], answer: Sequence[Any], expected: Sequence[Any]) -> str:
    if len(answer) != len(expected):
        return f"{len(answer)} answers for {len(texts)} texts"
    index = next(i for i, (got, wanted) in enumerate(zip(answer, expected, strict=True)) if got != wanted)
    return f"for {texts[index]!r} got {answer[index]}, expected.json says {expected[index]}"


def request_bodies(dialect: Dialect, workload: Workload, texts_per_request: int) -> list[bytes]:
    return [dialect.encode(chunk) for chunk in workload.chunks(texts_per_request)]


# -- the run ---------------------------------------------------------------------------------------
class BenchmarkRun:
    """Runs the selected steps in order, filling ``results``; a failed step is recorded, not fatal."""

    def __init__(self, settings: Settings, workloads: dict[str, Workload], models: Models) -> None:
        self.settings = settings
        self.workloads = workloads
        self.models = models
        self.steps = server_steps(models, settings.workers)
        self.results = Results()
        self._sentiment_reference: Any = None

    def run(self) -> Results:
        for name in self.settings.steps:
            print(f"== {name}", flush=True)
            try:
                self.run_step(name)
            except Exception as exc:  # one broken step must not lose the other steps' numbers
                self.results.failures[name] = f"{type(exc).__name__}: {exc}"
                print(f"   FAILED: {type(exc).__name__}: {exc}", flush=True)
        return self.results

    def run_step(self, name: str) -> None:
        if name == "inprocess":
            self.inprocess()
        elif name == "cold-start":
            self.cold_start()
        else:
            self.server_step(self.steps[name])

    def inprocess(self) -> None:
        reference = reference_module(self.settings.workloads_src)
        budget = self.settings.inprocess_budget_s
        for row in inprocess.measure(reference, self.workloads["sentiment"], self.workloads["ner"], budget):
            self.results.rows.append(row)
            print(f"   {row.scenario.title:<20} {row.p50_ms:.3f} ms median, {row.p99_ms:.3f} ms p99", flush=True)

    def cold_start(self) -> None:
        spec = sentiment_default(self.models, self.settings.workers)
        for attempt in range(self.settings.cold_start_runs):
            seconds = cold_start_s(spec, self.settings.run_dir / "logs" / f"cold-start-{attempt}.log")
            self.results.cold_start_s.append(seconds)
            print(f"   {spec.label}: first 200 on /ping after {seconds:.2f} s", flush=True)

    def server_step(self, step: ServerStep) -> None:
        with running(step.server, self.settings.run_dir / "logs" / f"{step.name}.log") as server:
            for load in step.loads:
                self.measure_load(server, step, load)
            processes, rss, pss = tree_memory_mib(server.pid)
        spec = step.server
        self.results.memory.append(MemoryReading(step.name, spec.key, spec.label, spec.workers, processes, rss, pss))
        print(f"   memory after load: {processes} processes, RSS {rss:.1f} MiB, PSS {pss:.1f} MiB", flush=True)

    def measure_load(self, server: ServerProcess, step: ServerStep, load: Load) -> None:
        workload = self.workloads[load.scenario.workload]
        check_answer(server, load, workload)
        name = f"{step.name}-{load.scenario.key}"
        bodies = write_bodies(
            self.settings.run_dir / "bodies" / f"{name}.txt",
            request_bodies(load.dialect, workload, load.scenario.texts_per_request),
        )
        url = server.url("/invocations")
        for connections in self.settings.connections:
            if self.settings.warmup_s:
                run_wrk(url, bodies, connections, self.settings.warmup_s)
            paired = connections == 1 and load.scenario == SENTIMENT_1
            before = self.inprocess_single_ms() if paired else None
            result = run_wrk(url, bodies, connections, self.settings.duration_s)
            after = self.inprocess_single_ms() if paired else None
            report = self.settings.run_dir / "wrk" / f"{name}-c{connections}.txt"
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(result.report)
            row = to_row(step, load, connections, result)
            if before is not None and after is not None:
                row = replace(row, paired_inprocess_p50_ms=(before + after) / 2)
            self.results.rows.append(row)
            print(f"   {progress_line(row)}", flush=True)

    def inprocess_single_ms(self) -> float:
        """The reference single-text sentiment predict, timed now (median ms)."""
        workload = self.workloads["sentiment"]
        if self._sentiment_reference is None:
            reference = reference_module(self.settings.workloads_src)
            self._sentiment_reference = reference.load("sentiment", str(workload.directory))
        timing = inprocess.time_calls(
            self._sentiment_reference.predict_one, workload.texts, self.settings.inprocess_budget_s
        )
        return timing.median_ms


def to_row(step: ServerStep, load: Load, connections: int, result: LoadResult) -> Row:
    return Row(
        scenario=load.scenario,
        server_key=step.server.key,
        server=step.server.label,
        connections=connections,
        requests_per_s=result.requests_per_s,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        non_2xx=result.non_2xx,
        socket_errors=result.socket_errors,
        requests=result.requests,
    )


def progress_line(row: Row) -> str:
    return (
        f"{row.scenario.title:<20} {row.server:<30} c={row.connections:<3} {row.requests_per_s:>9,.0f} req/s"
        f"  p50 {row.p50_ms:6.2f} ms  p99 {row.p99_ms:6.2f} ms  non-2xx {row.non_2xx}  sock err {row.socket_errors}"
    )


# -- output ----------------------------------------------------------------------------------------
def print_report(results: Results, targets: Sequence[Target]) -> None:
    print()
    print(main_table(results.rows))
    print()
    if results.memory:
        print(memory_table(results))
        print()
    print(cold_start_line(results))
    print()
    print(targets_table(targets))
    for name, failure in results.failures.items():
        print(f"\nstep {name} FAILED: {failure}")


def to_json(
    results: Results, targets: Sequence[Target], settings: Settings, load_at_start: tuple[float, ...], elapsed_s: float
) -> dict[str, Any]:
    rows = [
        {
            **asdict(row),
            "texts_per_s": row.texts_per_s,
            "vs_flask": vs_flask(results.rows, row),
            "vs_bare": vs_bare(results.rows, row),
        }
        for row in results.rows
    ]
    cold = results.cold_start_s
    return {
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in asdict(settings).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,  # other work on the machine skews every number
            "load_average_at_end": os.getloadavg(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "elapsed_s": round(elapsed_s, 1),
        "rows": rows,
        "memory": [asdict(reading) for reading in results.memory],
        "cold_start_s": {"runs": cold, "median": statistics.median(cold) if cold else None},
        "targets": [{**asdict(target), "status": target.status} for target in targets],
        "failures": results.failures,
    }


def prepare_models(settings: Settings) -> tuple[dict[str, Workload], Models]:
    """Build what is missing: the workload models (make_models.py), then the served artifacts."""
    workloads_cache = settings.cache_dir / "workloads"
    ensure_built(settings.workloads_src, workloads_cache)
    workloads = {name: load_workload(name, workloads_cache) for name in WORKLOAD_NAMES}
    built = settings.cache_dir / "benchmarks"
    sentiment_dir = workloads["sentiment"].directory
    models = Models(
        workloads_src=settings.workloads_src,
        sentiment_dir=sentiment_dir,
        ner_dir=workloads["ner"].directory,
        sentiment_pipeline=artifacts.sentiment_pipeline(sentiment_dir, built),
        sentiment_seed=artifacts.sentiment_seed(sentiment_dir, built),
        modelhost_cache=built / "modelhost-cache",
    )
    return workloads, models


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    results_dir = args.results_dir.resolve()
    settings = build_settings(args, results_dir / stamp)
    wrk_path()  # fail before building anything when the load generator is missing
    started, load_at_start = time.monotonic(), os.getloadavg()
    workloads, models = prepare_models(settings)
    results = BenchmarkRun(settings, workloads, models).run()
    targets = evaluate_targets(results)
    print_report(results, targets)
    path = results_dir / f"{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(to_json(results, targets, settings, load_at_start, time.monotonic() - started), indent=1)
    )
    print(f"\nresults: {path}\nlogs and wrk reports: {settings.run_dir}")
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
