"""The printed report: the main table, memory and cold start, and the targets with PASS/FAIL.

Ratios compare rows of the same scenario at the same connection count: modelhost against the
seed stack (Flask + gunicorn), and every single-text server against the bare-HTTP ceiling.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from plan import SENTIMENT_1W_STEP, SENTIMENT_STEP
from vocabulary import NER_1, SENTIMENT_1, SENTIMENT_32, Results, Row, Scenario

FLASK, BARE, INPROCESS, MODELHOST = "flask", "bare", "inprocess", "modelhost"
HIGH, LOW = 64, 1  # the connection counts the targets are stated at


@dataclass(frozen=True)
class Target:
    name: str
    required: str
    measured: str
    passed: bool | None  # None: not measured in this run

    @property
    def status(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


# -- looking rows up ---------------------------------------------------------------------------
def find_row(rows: Sequence[Row], scenario: Scenario, server_key: str, connections: int | None) -> Row | None:
    for row in rows:
        if row.scenario == scenario and row.server_key == server_key and row.connections == connections:
            return row
    return None


def find_bare(rows: Sequence[Row], connections: int | None) -> Row | None:
    return next((row for row in rows if row.server_key == BARE and row.connections == connections), None)


def vs_flask(rows: Sequence[Row], row: Row) -> float | None:
    if not row.server_key.startswith(MODELHOST):
        return None
    flask = find_row(rows, row.scenario, FLASK, row.connections)
    return row.requests_per_s / flask.requests_per_s if flask and flask.requests_per_s else None


def vs_bare(rows: Sequence[Row], row: Row) -> float | None:
    if row.server_key in (BARE, INPROCESS) or row.scenario.texts_per_request != 1:
        return None
    bare = find_bare(rows, row.connections)
    return row.requests_per_s / bare.requests_per_s if bare and bare.requests_per_s else None


# -- tables --------------------------------------------------------------------------------------
def format_table(headers: Sequence[str], lines: Sequence[Sequence[str]], left: int = 2) -> str:
    """Plain text columns: the first ``left`` columns flush left, the rest flush right."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *lines, strict=True)]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if index < left else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(headers), rule, *(render(line) for line in lines)])


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def main_table(rows: Sequence[Row]) -> str:
    headers = ("scenario", "server", "conns", "req/s", "texts/s", "p50 ms", "p99 ms", "non-2xx", "sock err")
    headers += ("vs flask", "vs bare")
    lines = [
        (
            row.scenario.title,
            row.server,
            "-" if row.connections is None else str(row.connections),
            f"{row.requests_per_s:,.0f}",
            f"{row.texts_per_s:,.0f}",
            f"{row.p50_ms:.2f}",
            f"{row.p99_ms:.2f}",
            str(row.non_2xx),
            str(row.socket_errors),
            _ratio(vs_flask(rows, row)),
            _ratio(vs_bare(rows, row)),
        )
        for row in rows
    ]
    return format_table(headers, lines)


def memory_table(results: Results) -> str:
    headers = ("step", "server (after its load)", "processes", "RSS MiB", "PSS MiB")
    lines = [(m.step, m.server, str(m.processes), f"{m.rss_mib:.1f}", f"{m.pss_mib:.1f}") for m in results.memory]
    return format_table(headers, lines)


def cold_start_line(results: Results) -> str:
    if not results.cold_start_s:
        return "cold start: not measured"
    median = statistics.median(results.cold_start_s)
    runs = ", ".join(f"{seconds:.2f}" for seconds in results.cold_start_s)
    return f"cold start, process start to first 200 on /ping: median {median:.2f} s (runs: {runs})"


def targets_table(targets: Sequence[Target]) -> str:
    lines = [(t.name, t.required, t.measured, t.status) for t in targets]
    return format_table(("target", "required", "measured", "result"), lines, left=3)


# -- targets -------------------------------------------------------------------------------------
def _not_measured(name: str, required: str) -> Target:
    return Target(name, required, "not measured", None)


def _ratio_target(
    name: str, required: float, ours: Row | None, theirs: Row | None, value: Callable[[Row], float], unit: str
) -> Target:
    wanted = f">= {required:g}x"
    if ours is None or theirs is None or not value(theirs):
        return _not_measured(name, wanted)
    ratio = value(ours) / value(theirs)
    measured = f"{ratio:.2f}x ({value(ours):,.0f} vs {value(theirs):,.0f} {unit})"
    return Target(name, wanted, measured, ratio >= required)


def _throughput_targets(rows: Sequence[Row]) -> list[Target]:
    ours = find_row(rows, SENTIMENT_1, MODELHOST, HIGH)
    flask = find_row(rows, SENTIMENT_1, FLASK, HIGH)
    ours32 = find_row(rows, SENTIMENT_32, MODELHOST, HIGH)
    flask32 = find_row(rows, SENTIMENT_32, FLASK, HIGH)
    ner = find_row(rows, NER_1, MODELHOST, HIGH)
    flask_ner = find_row(rows, NER_1, FLASK, HIGH)
    req, texts = (lambda r: r.requests_per_s), (lambda r: r.texts_per_s)
    return [
        _ratio_target(f"sentiment 1 text @{HIGH}: vs flask+gunicorn", 7, ours, flask, req, "req/s"),
        _ratio_target(
            f"sentiment 1 text @{HIGH}: vs bare-HTTP ceiling", 0.25, ours, find_bare(rows, HIGH), req, "req/s"
        ),
        _ratio_target(f"sentiment 32 texts @{HIGH}: texts/s vs flask", 1.8, ours32, flask32, texts, "texts/s"),
        _ratio_target(f"ner 1 text @{HIGH}: vs flask+gunicorn", 3, ner, flask_ner, req, "req/s"),
    ]


def _latency_targets(rows: Sequence[Row]) -> list[Target]:
    targets = []
    busy = find_row(rows, SENTIMENT_1, MODELHOST, HIGH)
    name = f"sentiment 1 text @{HIGH}: p99"
    if busy is None:
        targets.append(_not_measured(name, "<= 25 ms"))
    else:
        targets.append(Target(name, "<= 25 ms", f"{busy.p99_ms:.2f} ms", busy.p99_ms <= 25))
    name, required = f"sentiment 1 text @{HIGH}: failed requests", "0 non-2xx, 0 socket errors"
    if busy is None:
        targets.append(_not_measured(name, required))
    else:
        measured = f"{busy.non_2xx} non-2xx, {busy.socket_errors} socket errors"
        targets.append(Target(name, required, measured, busy.non_2xx == 0 and busy.socket_errors == 0))
    lone = find_row(rows, SENTIMENT_1, MODELHOST, LOW)
    ceiling = find_row(rows, SENTIMENT_1, INPROCESS, None)
    name, required = f"sentiment 1 text @{LOW}: p50", "<= in-process + 0.5 ms"
    baseline, when = (lone.paired_inprocess_p50_ms, "around it") if lone else (None, "")
    if baseline is None and ceiling is not None:
        baseline, when = ceiling.p50_ms, "at the start"
    if lone is None or baseline is None:
        targets.append(_not_measured(name, required))
    else:
        measured = f"{lone.p50_ms:.2f} ms (in-process {baseline:.2f} ms, timed {when})"
        targets.append(Target(name, required, measured, lone.p50_ms <= baseline + 0.5))
    return targets


def _startup_and_memory_targets(results: Results) -> list[Target]:
    targets = []
    name = "cold start, median"
    if results.cold_start_s:
        median = statistics.median(results.cold_start_s)
        targets.append(Target(name, "<= 2 s", f"{median:.2f} s", median <= 2.0))
    else:
        targets.append(_not_measured(name, "<= 2 s"))
    two = next((m for m in results.memory if m.step == SENTIMENT_STEP), None)
    one = next((m for m in results.memory if m.step == SENTIMENT_1W_STEP), None)
    name = "sentiment PSS: 2 workers vs 1"
    if two is None or one is None:
        targets.append(_not_measured(name, "<= 1.3x"))
    else:
        ratio = two.pss_mib / one.pss_mib
        measured = f"{ratio:.2f}x ({two.pss_mib:.0f} vs {one.pss_mib:.0f} MiB)"
        targets.append(Target(name, "<= 1.3x", measured, ratio <= 1.3))
    return targets


def evaluate_targets(results: Results) -> list[Target]:
    return [
        *_throughput_targets(results.rows),
        *_latency_targets(results.rows),
        *_startup_and_memory_targets(results),
    ]
