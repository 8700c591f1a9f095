"""What frontdoor.py reports: the measurements summarized into one row per path and connection
count (medians over the rounds, CPU per request), the targets checked against those rows and the cold
deploys (PASS/FAIL/n/a), the printed table and lines, and the document written as the results JSON.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procstat import CLK_TCK
from report import format_table
from vocabulary import SENTIMENT_1

if TYPE_CHECKING:
    from frontdoor import ColdDeploy, Measurement, Results, Settings

DIRECT, FRONT_DOOR = "direct", "front door"
HIGH, LOW = 64, 1  # wrk connections: the throughput targets are stated at 64
RPS_RATIO_TARGET = 0.80  # front door req/s >= 80 % of direct
P99_RATIO_TARGET = 1.5  # front door p99 <= 1.5x direct
COLD_DEPLOY_TARGET_S = 3.0
BUSY_LOAD_AVERAGE = 0.5  # a 1-minute load average above this at the start: the numbers are suspect


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
def cell(value: float | None, digits: int = 0) -> str:
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
            cell(row.frontdoor_cpu_us_per_request),
            cell(row.workers_cpu_us_per_request),
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
