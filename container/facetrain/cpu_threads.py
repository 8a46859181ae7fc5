"""How many CPU threads the job's torch work gets: the cores this process may really use.

torch's default follows the machine's CPU count; in a container limited by a cgroup CPU quota (docker
--cpus, Kubernetes limits) that oversubscribes the cores it actually gets, and OpenMP's threads then wait
on each other at every operator. An explicit OMP_NUM_THREADS is the operator's choice and is left alone.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def quota_cores(cpu_max: str) -> int | None:
    """Cores a cgroup v2 cpu.max line allows (rounded up), or None for no quota or an unreadable line."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def usable_cores(cpu_max_file: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may run on (its affinity), capped by the cgroup's CPU quota when there is one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota = quota_cores(cpu_max_file.read_text())
    except OSError:
        quota = None
    return min(cores, quota) if quota else cores


def torch_threads() -> int | None:
    """Intra-op threads to set for torch, or None when OMP_NUM_THREADS already decides."""
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    return usable_cores()
