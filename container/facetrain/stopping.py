"""SIGTERM handling: SageMaker's StopTrainingJob sends SIGTERM, then SIGKILL after a grace period.

The handler only records the signal. The job acts on it at safe points, `check()`: after start-up,
between photos, before the outputs are committed. Raising from the handler itself would land wherever
the interpreter happens to be, where any `except Exception` (inside numpy, torch or matplotlib imports,
or a loader) could swallow it. `signals_deferred()` brackets the commit of the outputs into model/: a
signal that arrives during it stops the job once every file is in place, so model/ never holds half an
output set.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType


class JobStopped(Exception):
    """SIGTERM arrived: SageMaker is stopping the job."""


class _StopState:
    requested = False
    deferred = False


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Signal handler: record the request; `check()` acts on it."""
    _StopState.requested = True


def install() -> signal.Handlers | object:
    """Install the handler for a new run (forgetting any earlier request); returns the previous one."""
    _StopState.requested = False
    _StopState.deferred = False
    return signal.signal(signal.SIGTERM, on_sigterm)


def requested() -> bool:
    """Whether SIGTERM has arrived."""
    return _StopState.requested


def check() -> None:
    """A safe point: raise JobStopped if SIGTERM has arrived (outside a deferred block)."""
    if _StopState.requested and not _StopState.deferred:
        raise JobStopped("the job received SIGTERM (StopTrainingJob)")


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """A safe point before the block; a SIGTERM during the block takes effect once it has finished."""
    check()
    _StopState.deferred = True
    try:
        yield
    finally:
        _StopState.deferred = False
        if _StopState.requested:
            raise JobStopped("the job received SIGTERM (StopTrainingJob) while writing its outputs")
