"""How many CPUs this container may use: the cgroup CPU limit, not the host's core count.

A pod limited to 2 CPUs on a 64-core node must run 2 compute threads; 64 threads would be throttled
by the CFS quota and make every request slow. Order of precedence: explicit setting (flag or the
``MODEL_NUM_THREADS`` environment variable), cgroup v2 ``cpu.max``, cgroup v1 ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``, then the CPUs this process may be scheduled on.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup quota (e.g. 1.5), or None when there is no limit."""
    cpu_max = _read(cgroup_root / "cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"
    if cpu_max is not None:
        quota, _, period = cpu_max.partition(" ")
        if quota == "max" or not period:
            return None
        return int(quota) / int(period)
    quota_us = _read(cgroup_root / "cpu" / "cpu.cfs_quota_us")  # cgroup v1: -1 means no limit
    period_us = _read(cgroup_root / "cpu" / "cpu.cfs_period_us")
    if quota_us is None or period_us is None or int(quota_us) <= 0:
        return None
    return int(quota_us) / int(period_us)


def schedulable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def compute_threads(explicit: int | None = None, cgroup_root: Path = CGROUP_ROOT) -> int:
    """Number of intra-op compute threads to use.

    A fractional limit rounds down (1.5 CPUs -> 1 thread) so the threads never outrun the quota;
    the result is at least 1 and at most the CPUs the process may run on.
    """
    if explicit is None and os.environ.get("MODEL_NUM_THREADS"):
        explicit = int(os.environ["MODEL_NUM_THREADS"])
    if explicit is not None:
        if explicit < 1:
            raise ValueError(f"number of threads must be at least 1, got {explicit}")
        return explicit
    cpus = schedulable_cpus()
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)
