"""The adaptive batcher with a real inference thread and a recording batch function."""

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from modelhost.errors import PredictionTimeout
from modelhost.inference.types import Invocation, Outcome, Rendered
from modelhost.server.batcher import AdaptiveBatcher


class Recorder:
    """Echoes each body back, after an optional pause; records every batch's size."""

    def __init__(self, pause: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.pause = pause
        self.release = threading.Event()

    def __call__(self, invocations: Sequence[Invocation]) -> list[Outcome]:
        self.sizes.append(len(invocations))
        if self.pause:
            time.sleep(self.pause)
        return [Rendered(inv.body, "text/plain") for inv in invocations]


def make(recorder, *, max_batch_size=32, max_delay_s=0.002, timeout_s=5.0) -> AdaptiveBatcher:
    return AdaptiveBatcher(recorder, max_batch_size=max_batch_size, max_delay_s=max_delay_s, timeout_s=timeout_s)


async def submit(batcher: AdaptiveBatcher, body: bytes, timeout: float = 5.0) -> Outcome:
    batcher.announce()
    deadline = asyncio.get_running_loop().time() + timeout
    return await batcher.submit(Invocation(body, "text/plain", None), deadline)


def test_each_caller_gets_its_own_answer_and_batches_form_under_load():
    async def scenario():
        recorder = Recorder(pause=0.01)
        batcher = make(recorder)
        outcomes = await asyncio.gather(*(submit(batcher, str(i).encode()) for i in range(100)))
        batcher.close()
        return recorder, outcomes

    recorder, outcomes = asyncio.run(scenario())
    assert [o.body for o in outcomes] == [str(i).encode() for i in range(100)]
    assert sum(recorder.sizes) == 100
    assert max(recorder.sizes) <= 32
    assert len(recorder.sizes) < 100  # requests were predicted together


def test_a_lone_request_does_not_wait_for_the_max_delay():
    async def scenario():
        batcher = make(Recorder(), max_delay_s=1.0)
        await submit(batcher, b"warm-up")
        started = time.perf_counter()
        await submit(batcher, b"alone")
        elapsed = time.perf_counter() - started
        batcher.close()
        return elapsed

    assert asyncio.run(scenario()) < 0.2


def test_a_batch_waits_for_announced_requests_but_not_past_the_max_delay():
    async def scenario():
        recorder = Recorder()
        batcher = make(recorder, max_delay_s=0.3)
        batcher.announce()  # a request whose body is still arriving
        started = time.perf_counter()
        first = asyncio.create_task(submit(batcher, b"first"))
        await asyncio.sleep(0.05)
        second = await batcher.submit(Invocation(b"second", None, None), asyncio.get_running_loop().time() + 5)
        await first
        together = list(recorder.sizes)
        batcher.announce()  # announced, never submitted: the batch goes after max_delay
        await submit(batcher, b"third")
        elapsed = time.perf_counter() - started
        batcher.withdraw()
        batcher.close()
        return together, second, elapsed

    together, second, elapsed = asyncio.run(scenario())
    assert together == [2]
    assert second.body == b"second"
    assert 0.3 <= elapsed < 1.5


def test_max_batch_size_is_respected():
    async def scenario():
        recorder = Recorder(pause=0.02)
        batcher = make(recorder, max_batch_size=4)
        await asyncio.gather(*(submit(batcher, b"x") for i in range(20)))
        batcher.close()
        return recorder.sizes

    assert max(asyncio.run(scenario())) <= 4


def test_a_stuck_prediction_times_out_and_is_visible_to_the_watchdog():
    async def scenario():
        recorder = Recorder(pause=1.0)
        batcher = make(recorder, timeout_s=0.2)
        started = time.perf_counter()
        outcome = await submit(batcher, b"slow", timeout=0.2)
        elapsed = time.perf_counter() - started
        stuck = batcher.stuck_for(asyncio.get_running_loop().time())
        batcher.close()
        return outcome, elapsed, stuck

    outcome, elapsed, stuck = asyncio.run(scenario())
    assert isinstance(outcome, PredictionTimeout)
    assert outcome.status == 504
    assert elapsed == pytest.approx(0.2, abs=0.15)
    assert stuck > 0.1


def test_callers_just_answered_are_waited_for_so_cohorts_merge():
    async def scenario():
        recorder = Recorder()
        batcher = make(recorder, max_delay_s=0.5)
        await asyncio.gather(*(submit(batcher, b"first") for _ in range(4)))  # one batch answers 4 callers
        started = time.perf_counter()
        first = asyncio.create_task(submit(batcher, b"again"))
        await asyncio.sleep(0.05)  # the other three come back a little later
        await asyncio.gather(first, *(submit(batcher, b"again") for _ in range(3)))
        waited = time.perf_counter() - started
        batcher.close()
        return recorder.sizes, waited

    sizes, waited = asyncio.run(scenario())
    assert sizes[-1] == 4  # the returning callers were predicted together
    assert waited < 0.4  # and not held for the whole max delay


def test_after_a_quiet_spell_a_request_does_not_wait_for_the_last_batch_callers():
    async def scenario():
        recorder = Recorder()
        batcher = make(recorder, max_delay_s=0.3)
        await asyncio.gather(*(submit(batcher, b"burst") for _ in range(4)))
        await asyncio.sleep(0.4)  # longer than max_delay: those callers are not coming back
        started = time.perf_counter()
        await submit(batcher, b"later")
        elapsed = time.perf_counter() - started
        batcher.close()
        return elapsed

    assert asyncio.run(scenario()) < 0.1
