"""One background task per resource name: how the controllers run the slow part of a request.

A request changes the store and answers; starting or stopping processes runs as a task keyed by
the resource's name, which logs (never raises) a failure and forgets itself when done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable


class LifecycleTasks:
    def __init__(self, kind: str, log: logging.Logger) -> None:
        self._kind = kind  # "endpoint", "function": for task names and log lines
        self._log = log
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, work: Awaitable[None]) -> asyncio.Task[None]:
        """Run ``work`` as ``name``'s task (a task already there keeps running unless cancelled first)."""

        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("%s %s: lifecycle task failed", self._kind, name)
            finally:
                if self._tasks.get(name) is task:
                    del self._tasks[name]

        task = asyncio.create_task(run(), name=f"{self._kind} {name}")
        self._tasks[name] = task
        return task

    def get(self, name: str) -> asyncio.Task[None] | None:
        return self._tasks.get(name)

    async def cancel(self, name: str) -> None:
        """Stop ``name``'s task, if any, and wait until it has."""
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
