"""A poll loop in a daemon thread for the duration of a block: the offline stand-in for services that AWS
runs by itself (Lambda's SQS event sources, Step Functions' status events)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def in_background(
    name: str, poll_once: Callable[[], int], stop: threading.Event, interval: float
) -> Iterator[None]:
    """Call poll_once in a daemon thread until the block ends: again at once while it finds work, else
    after `interval` seconds."""
    stop.clear()

    def loop() -> None:
        while not stop.is_set():
            if not poll_once():
                stop.wait(interval)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
