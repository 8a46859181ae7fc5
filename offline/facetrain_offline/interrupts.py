"""Ctrl-C and kill (SIGTERM) during `facetrain run`: where they stop it, and where they wait.

Until the executions have ended, either signal raises KeyboardInterrupt in the main thread (the runner
then stops what runs, as the console's "Stop execution" does). Once the outcome is being read and the
results copied and saved (`held_off`), a signal is only noted and said: that work takes seconds, and
cutting it would leave a run that published reported as nothing, or a state half saved. A SIGKILL cannot
be held off; the state's save is crash-safe for it (bucket_state.recover_state).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

Printer = Callable[[str], None]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def kill_as_ctrl_c() -> Iterator[None]:
    """For the block, SIGTERM (a plain `kill`) does what Ctrl-C does: KeyboardInterrupt, so the run stops
    what it started instead of dying with its training job left running and nothing written. Only the
    main thread can set handlers; elsewhere (a test's worker thread) the block changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def held_off(say: Printer, doing: str) -> Iterator[list[int]]:
    """For the block, Ctrl-C and SIGTERM are noted and said (`doing`: what is finishing), not raised; the
    list holds the signals received."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        say(f"stop   {signal.Signals(signum).name} received while {doing}: that finishes first (seconds)")

    previous = {signum: signal.signal(signum, note) for signum in STOP_SIGNALS}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
