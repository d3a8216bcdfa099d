"""What a running local cluster costs this machine: CPU and memory of each component's process tree.

A component's tree is its process and every descendant (the pod runner's tree holds the pods it runs: the
real Knative and KServe controllers, our model servers). CPU is measured over an interval from the kernel's
per-process counters (/proc/<pid>/stat: utime + stime), so it is what the processes used, not a sample.
"""

from __future__ import annotations

import os
import pathlib
import time
from dataclasses import dataclass

PROC = pathlib.Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    component: str
    processes: int
    cpu_percent: float  # of one core, averaged over the interval
    rss_mib: float


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, cpu ticks, rss pages) of a process, None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[21])


def _snapshot() -> dict[int, tuple[int, int, int]]:
    stats = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    return stats


def _trees(roots: dict[str, int], stats: dict[int, tuple[int, int, int]]) -> dict[str, set[int]]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    trees = {}
    for name, root in roots.items():
        tree, todo = set(), [root] if root in stats else []
        while todo:
            pid = todo.pop()
            tree.add(pid)
            todo.extend(children.get(pid, ()))
        trees[name] = tree
    return trees


def measure(roots: dict[str, int], seconds: float) -> list[Usage]:
    """Usage of each named process tree over `seconds` (processes that start or end meanwhile count for the
    part of the interval they were seen at both ends of)."""
    before = _snapshot()
    started = time.monotonic()
    time.sleep(seconds)  # the interval being measured, not a wait for something
    after = _snapshot()
    elapsed = time.monotonic() - started
    rows = []
    for name, tree in _trees(roots, after).items():
        ticks = sum(after[p][1] - before[p][1] for p in tree if p in before)
        rss = sum(after[p][2] for p in tree) * PAGE / 2**20
        rows.append(Usage(name, len(tree), 100.0 * ticks / TICKS / elapsed, rss))
    return rows


def report(rows: list[Usage], seconds: float) -> str:
    lines = [f"{'component':<24} {'procs':>5} {'cpu % of a core':>16} {'rss MiB':>8}   over {seconds:g} s"]
    for row in sorted(rows, key=lambda r: -r.cpu_percent):
        lines.append(f"{row.component:<24} {row.processes:>5} {row.cpu_percent:>16.1f} {row.rss_mib:>8.0f}")
    total_cpu = sum(r.cpu_percent for r in rows)
    total_rss = sum(r.rss_mib for r in rows)
    lines.append(f"{'total':<24} {sum(r.processes for r in rows):>5} {total_cpu:>16.1f} {total_rss:>8.0f}")
    return "\n".join(lines)
