"""Memory of a whole server process tree, from ``/proc/PID/smaps_rollup`` of the master and children.

RSS alone counts every page shared by the forked workers once per worker; PSS divides a shared
page among the processes sharing it, so summed over the tree it is the memory the server costs.
"""

from __future__ import annotations

from pathlib import Path

from vocabulary import BenchmarkError

KIB_PER_MIB = 1024


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, walking each thread's ``children`` list."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending.extend(int(child) for child in (task / "children").read_text().split())
            except (FileNotFoundError, ProcessLookupError):
                continue  # the thread or process ended while we looked
    return found


def _rollup_kib(pid: int) -> tuple[int, int]:
    """(Rss, Pss) of one process in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            values[name] = int(rest.split()[0])
    return values["Rss"], values["Pss"]


def tree_memory_mib(pid: int) -> tuple[int, float, float]:
    """(processes, RSS MiB, PSS MiB) summed over the tree rooted at ``pid``."""
    rss = pss = processes = 0
    for member in process_tree(pid):
        try:
            member_rss, member_pss = _rollup_kib(member)
        except FileNotFoundError:
            continue
        except PermissionError as exc:
            raise BenchmarkError(f"cannot read /proc/{member}/smaps_rollup: {exc}") from exc
        rss, pss, processes = rss + member_rss, pss + member_pss, processes + 1
    return processes, rss / KIB_PER_MIB, pss / KIB_PER_MIB
