"""Processes and their CPU time, read from /proc: the CPU ticks a process has spent, when it started
(so that a pid names one process, never a reused number), its children and all its descendants, and
snapshots of the front door's, an instance master's and its workers' ticks with the CPU seconds spent
between two of them. Linux only.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


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
