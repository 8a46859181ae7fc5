"""Where a job's time goes: seconds per stage, as metrics.json's `timings` keeps them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


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
