"""The in-process baseline: the reference predict code in a plain loop, no HTTP, no serialisation.

It is the ceiling a server can approach: its median single-predict time is what a one-connection
request can at best cost, and its batch-of-32 time per text is what batching can at best reach.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vocabulary import NER_1, SENTIMENT_1, SENTIMENT_32, Row, Scenario
from workload_data import Workload

SERVER_KEY = "inprocess"
SERVER_LABEL = "in-process (workloads.py)"
MIN_SAMPLES = 50


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call of one predict loop."""

    median_ms: float
    p99_ms: float
    samples: int


def time_calls(call: Callable[[Any], object], inputs: Sequence[Any], budget_s: float) -> Timing:
    """Call ``call`` on ``inputs`` in turn for about ``budget_s`` (after a short warm-up)."""
    for item in inputs[:10]:
        call(item)
    samples: list[int] = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(samples) < MIN_SAMPLES:
        item = inputs[len(samples) % len(inputs)]
        started = time.perf_counter_ns()
        call(item)
        samples.append(time.perf_counter_ns() - started)
    samples.sort()
    return Timing(statistics.median(samples) / 1e6, samples[int(0.99 * (len(samples) - 1))] / 1e6, len(samples))


def _row(scenario: Scenario, timing: Timing) -> Row:
    return Row(
        scenario=scenario,
        server_key=SERVER_KEY,
        server=SERVER_LABEL,
        connections=None,
        requests_per_s=1000 / timing.median_ms,
        p50_ms=timing.median_ms,
        p99_ms=timing.p99_ms,
        requests=timing.samples,
    )


def measure(reference: Any, sentiment: Workload, ner: Workload, budget_s: float) -> list[Row]:
    """Rows for single-text sentiment, 32-text sentiment and single-text NER, one thread each."""
    sentiment_model = reference.load("sentiment", str(sentiment.directory))
    single = time_calls(sentiment_model.predict_one, sentiment.texts, budget_s)
    batch = time_calls(sentiment_model.predict, sentiment.chunks(SENTIMENT_32.texts_per_request), budget_s)
    ner_model = reference.load("ner", str(ner.directory))
    ner_single = time_calls(ner_model.predict_one, ner.texts, budget_s)
    return [_row(SENTIMENT_1, single), _row(SENTIMENT_32, batch), _row(NER_1, ner_single)]
