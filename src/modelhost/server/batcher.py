"""Adaptive batching: requests that arrive while the model is busy are predicted together.

One inference thread per worker runs the pipeline, so the event loop keeps reading requests and
enforcing deadlines while the model works. Under load, batches form by themselves from what
queued up during the previous prediction. Before a batch goes, the batcher waits (at most
``max_delay``) only for requests known to be on their way: those the server is reading
(``announce``d, not yet submitted) and the callers the last batch just answered, if they come
straight back. A lone request never waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from modelhost.errors import ModelRaised, PredictionTimeout, ServiceUnavailable
from modelhost.inference.types import Invocation, Outcome

log = logging.getLogger("modelhost.batcher")

RunBatch = Callable[[Sequence[Invocation]], list[Outcome]]


SWEEP_INTERVAL_S = 0.1  # how often deadlines are checked: one timer per worker, none per request


@dataclass(frozen=True, slots=True)
class _Pending:
    invocation: Invocation
    future: asyncio.Future[Outcome]
    deadline: float


class AdaptiveBatcher:
    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch_size: int,
        max_delay_s: float,
        timeout_s: float,
        thread_initializer: Callable[[], None] | None = None,
        on_stuck: Callable[[str], None] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._on_stuck = on_stuck  # told when a prediction outlives a request's deadline
        self._max_batch_size = max_batch_size
        self._max_delay_s = max_delay_s
        self._timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(1, "modelhost-inference", initializer=thread_initializer)
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._arriving = 0
        self._busy_since: float | None = None
        self._running: list[_Pending] = []
        self._answered = 0  # callers the last batch answered ...
        self._queued_behind = 0  # ... and requests that queued up while it ran ...
        self._finished_at = 0.0  # ... and when it ended
        self._tasks: list[asyncio.Task[None]] = []

    # -- the request side -------------------------------------------------------------------
    def announce(self) -> None:
        """A request has started arriving; a batch being formed may wait for it."""
        self._arriving += 1

    def withdraw(self) -> None:
        """An announced request will not be submitted (its body was bad or never came)."""
        self._arriving -= 1
        self._wakeup.set()

    async def submit(self, invocation: Invocation, deadline: float) -> Outcome:
        """Predict one announced invocation; the answer or a timeout error by ``deadline``."""
        loop = asyncio.get_running_loop()
        self._start(loop)
        if self.stuck_for(loop.time()) > self._timeout_s:
            self._arriving -= 1
            self._report_stuck()
            return ServiceUnavailable("the model is stuck on an earlier request; this worker is being replaced, retry")
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.append(_Pending(invocation, future, deadline))
        self._arriving -= 1
        self._wakeup.set()
        return await future

    def enqueue(self, invocation: Invocation, deadline: float, done: Callable[[Outcome], None]) -> None:
        """``submit`` for callers that are callbacks, not tasks (a handed connection): ``done`` gets
        the outcome. Not announced: the request is whole when it comes."""
        loop = asyncio.get_running_loop()
        self._start(loop)
        if self.stuck_for(loop.time()) > self._timeout_s:
            self._report_stuck()
            done(ServiceUnavailable("the model is stuck on an earlier request; this worker is being replaced, retry"))
            return
        future: asyncio.Future[Outcome] = loop.create_future()
        future.add_done_callback(lambda finished: done(finished.result()))
        self._queue.append(_Pending(invocation, future, deadline))
        self._wakeup.set()

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._tasks:
            self._tasks = [loop.create_task(self._consume()), loop.create_task(self._sweep())]

    def stuck_for(self, now: float) -> float:
        """Seconds the current prediction has been running (0 when idle)."""
        return 0.0 if self._busy_since is None else now - self._busy_since

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- the model side ---------------------------------------------------------------------
    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._gather(loop)
            batch = [self._queue.popleft() for _ in range(min(self._max_batch_size, len(self._queue)))]
            live = [p for p in batch if not p.future.done()]  # timed out while queued
            if not live:
                continue
            self._busy_since = loop.time()
            self._running = live
            try:
                outcomes = await loop.run_in_executor(self._executor, self._run_batch, [p.invocation for p in live])
            except Exception as exc:  # a bug in the pipeline itself, not in the model
                log.exception("batch of %d failed", len(live))
                outcomes = [ModelRaised(f"internal error: {type(exc).__name__}")] * len(live)
            finally:
                self._busy_since = None
                self._running = []
            for pending, outcome in zip(live, outcomes, strict=True):
                if not pending.future.done():
                    pending.future.set_result(outcome)
            self._answered = len(live)
            self._queued_behind = len(self._queue)
            self._finished_at = loop.time()

    async def _sweep(self) -> None:
        """Answer every request past its deadline with a timeout, queued or being predicted."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = loop.time()
            for pending in (*self._queue, *self._running):
                if pending.deadline <= now and not pending.future.done():
                    pending.future.set_result(
                        PredictionTimeout(f"the model did not answer within {self._timeout_s:g} s")
                    )
            if self.stuck_for(now) > self._timeout_s:
                self._report_stuck()

    def _report_stuck(self) -> None:
        if self._on_stuck is not None:
            self._on_stuck(f"a prediction has run for more than the {self._timeout_s:g} s timeout")

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let requests about to come in join this batch, waiting at most max_delay.

        Two kinds are waited for: requests the server is reading (announced), and, when the
        last batch answered several callers, as many new requests as it answered: clients that
        get an answer tend to send their next request at once, and without waiting for them
        the callers split into two cohorts that alternate in half-size batches. A lone caller
        (last batch of one) never waits, nor does the first request after a quiet spell.
        """
        if self._max_batch_size <= 1 or self._max_delay_s <= 0:
            return
        came_back = loop.time() - self._finished_at <= self._max_delay_s
        returning = self._answered if self._answered > 1 and came_back else 0
        target = min(self._max_batch_size, self._queued_behind + returning)
        deadline = loop.time() + self._max_delay_s
        while len(self._queue) < self._max_batch_size and (len(self._queue) < target or self._arriving > 0):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return
