"""SIGTERM handling: SageMaker's StopTrainingJob sends SIGTERM, then SIGKILL after a grace period.

The handler raises JobStopped where the job is, except inside `signals_deferred()` (while outputs are
moved into model/), where it waits until the block ends, so model/ never holds half of an output set.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType


class JobStopped(Exception):
    """SIGTERM arrived: SageMaker is stopping the job."""


class _StopState:
    deferred = False
    pending = False


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Signal handler: stop now, or at the end of the deferred block."""
    if _StopState.deferred:
        _StopState.pending = True
        return
    raise JobStopped("the job received SIGTERM (StopTrainingJob)")


def install() -> signal.Handlers | object:
    """Install the handler; returns the previous one."""
    return signal.signal(signal.SIGTERM, on_sigterm)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Let the block finish before a SIGTERM that arrives during it takes effect."""
    _StopState.deferred = True
    try:
        yield
    finally:
        _StopState.deferred = False
        if _StopState.pending:
            _StopState.pending = False
            raise JobStopped("the job received SIGTERM (StopTrainingJob) while writing its outputs")
