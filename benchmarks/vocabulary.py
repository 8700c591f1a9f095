"""Shared vocabulary of the benchmark harness: what a scenario is and what a measurement produced.

Every module of the harness speaks in these frozen dataclasses, so the report and the JSON file
are written from one shape and never from ad-hoc dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class BenchmarkError(Exception):
    """A step could not measure: a server did not start, answered wrongly, or wrk failed."""


@dataclass(frozen=True)
class Scenario:
    """What is asked of a server: which model, and how many texts each request carries."""

    key: str
    title: str
    workload: str
    texts_per_request: int


SENTIMENT_1 = Scenario("sentiment-1", "sentiment 1 text", "sentiment", 1)
SENTIMENT_32 = Scenario("sentiment-32", "sentiment 32 texts", "sentiment", 32)
NER_1 = Scenario("ner-1", "ner 1 text", "ner", 1)
NO_MODEL = Scenario("no-model", "no model, 1-text body", "sentiment", 1)  # the bare-HTTP ceiling


@dataclass(frozen=True)
class Row:
    """One line of the main table: a scenario measured against one server at one concurrency.

    ``connections`` is None for the in-process baseline, which has no HTTP at all.
    """

    scenario: Scenario
    server_key: str
    server: str
    connections: int | None
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int = 0
    socket_errors: int = 0
    requests: int = 0
    # The in-process single predict timed right before and after this row's load (their mean):
    # this machine's speed drifts over minutes, so a one-connection latency is compared with a
    # baseline taken around it rather than one taken at the start of the run.
    paired_inprocess_p50_ms: float | None = None

    @property
    def texts_per_s(self) -> float:
        return self.requests_per_s * self.scenario.texts_per_request


@dataclass(frozen=True)
class MemoryReading:
    """Resident memory of a whole server process tree (master and workers), read after its load."""

    step: str
    server_key: str
    server: str
    workers: int
    processes: int
    rss_mib: float  # counts pages shared by the processes once per process
    pss_mib: float  # shares each shared page out among its processes: the honest total


@dataclass
class Results:
    """Everything one run measured, filled in step by step."""

    rows: list[Row] = field(default_factory=list)
    memory: list[MemoryReading] = field(default_factory=list)
    cold_start_s: list[float] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
