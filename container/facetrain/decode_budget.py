"""A time budget for decoding one photo, enforced from inside Pillow's own read loop.

Pillow's ImageFile.load feeds the decoder from the file object block by block, and libjpeg consumes a
progressive JPEG's scans as their bytes arrive; so a file object that checks a deadline on every read
stops a decode that runs too long, in the decoding thread itself (no signal, no subprocess: it works in
the pipeline's decode threads and in `facetrain identify` alike). Written here because Pillow has no
time limit of its own.

A decode that ends past the deadline is refused too (`check` after it), so a photo is either decoded
within its budget or rejected. The time spent is at most the deadline plus the work of one read and of
the decoder's last steps (bounded by the pixel cap): JPEG reads are cut to JPEG_READ_BYTES (Pillow's JPEG
reader takes a short read as more to come, never as the end), and a JPEG with more than
jpeg_scans.MAX_JPEG_SCANS scans is refused before decoding, its scans counted as libjpeg finds them (stray
bytes between segments skipped, segment lengths read as libjpeg reads them), so one read's work is at most
that many scans. A decoder that pulls the whole file at once (libtiff, WebP) is checked before it starts
and when it ends: refused, not stopped early.
"""

from __future__ import annotations

import io
import time

# 16 KiB per read: a few hundred decoder calls for a 5 MB photo (no measurable cost), and at most a few
# scans' work between two deadline checks for the photos that are not refused for their scan count.
JPEG_READ_BYTES = 16 * 1024


class DecodeBudgetExceeded(Exception):
    """Decoding ran past its budget; carries the budget and the seconds spent when it was stopped."""

    def __init__(self, budget_seconds: float, elapsed_seconds: float) -> None:
        super().__init__(f"decoding stopped after {elapsed_seconds:.1f} s (budget {budget_seconds:g} s)")
        self.budget_seconds = budget_seconds
        self.elapsed_seconds = elapsed_seconds


class BudgetedBytes(io.BytesIO):
    """A photo's bytes for Pillow to read: unlimited until `start`, then every read checks the deadline
    (raising DecodeBudgetExceeded once it has passed) and returns at most `max_read` bytes when given."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._started: float | None = None
        self._budget = 0.0
        self._max_read: int | None = None

    def start(self, budget_seconds: float, max_read: int | None = None) -> None:
        """Start the clock: reads from now on must happen within `budget_seconds`."""
        self._started = time.monotonic()
        self._budget = budget_seconds
        self._max_read = max_read

    def check(self) -> None:
        """Raise DecodeBudgetExceeded when the clock runs and the budget is spent: called on every read,
        and once more when decoding has finished (its last steps, after the last read, count too)."""
        if self._started is not None:
            elapsed = time.monotonic() - self._started
            if elapsed > self._budget:
                raise DecodeBudgetExceeded(self._budget, elapsed)

    def read(self, size: int | None = -1, /) -> bytes:
        if self._started is not None:
            self.check()
            if self._max_read is not None:
                size = self._max_read if size is None or size < 0 else min(size, self._max_read)
        return super().read(size)
