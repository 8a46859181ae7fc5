"""How many CPU threads the job's network work gets (ONNX Runtime's or torch's intra-op pool): the cores
this process may really use.

Both runtimes' defaults follow the machine's CPU count; in a container limited by a cgroup CPU quota (docker
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


def intra_op_threads() -> int:
    """Intra-op threads to give the runtime: OMP_NUM_THREADS when it is a positive integer (the operator's
    choice; ONNX Runtime's own pool does not read it, so it is passed on), else the usable cores."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return usable_cores()
