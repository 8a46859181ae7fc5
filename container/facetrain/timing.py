"""Where a job's time goes: seconds per stage, as metrics.json's `timings` keeps them."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path


class StageTimer:
    """Seconds per stage as metrics.json keeps them (rounded, in the order they ran) and the total since
    the job started."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.record(name, time.perf_counter() - started)

    def record(self, name: str, seconds: float) -> None:
        self.seconds[name] = round(seconds, 4)

    def as_dict(self) -> dict[str, float]:
        """The stages so far and `total`."""
        return {**self.seconds, "total": round(time.perf_counter() - self.started, 4)}


def seconds_since_process_start(
    stat: Path = Path("/proc/self/stat"), uptime: Path = Path("/proc/uptime")
) -> float | None:
    """Seconds since this process started (the kernel's start time, so the interpreter's own start-up and
    every import count), at the kernel clock's tick resolution (10 ms); None where /proc cannot tell."""
    try:
        # Field 22 (starttime, clock ticks after boot); fields counted after the ")" that ends the name.
        start_ticks = int(stat.read_text().rsplit(")", 1)[1].split()[19])
        since_boot = float(uptime.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, since_boot - start_ticks / os.sysconf("SC_CLK_TCK"))
