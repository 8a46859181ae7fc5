"""The job's failure file (SageMaker's FailureReason, quoted in the notification) holds the reason a person
reads, never a Python traceback, even one that an exception's message quotes (issue 27)."""

from __future__ import annotations

import traceback
from pathlib import Path

from facetrain.train import write_failure


def _traceback_of(error: Exception) -> str:
    """A real traceback: raised, caught and formatted by the stdlib, chained to its cause."""
    try:
        try:
            raise KeyError("rank")
        except KeyError as cause:
            raise error from cause
    except Exception:
        return traceback.format_exc()


def _written(tmp_path: Path, message: str) -> str:
    write_failure(tmp_path, message)
    return (tmp_path / "output" / "failure").read_text(encoding="utf-8")


def test_a_plain_reason_is_written_as_it_is(tmp_path: Path) -> None:
    reason = "No identity could be enrolled: 2 photos, none usable\n- ann/1.jpg: not a photo"
    assert _written(tmp_path, reason) == reason


def test_a_quoted_traceback_is_left_out_and_the_error_line_kept(tmp_path: Path) -> None:
    quoted = _traceback_of(RuntimeError("worker 1 ran out of memory"))
    message = (
        f"Internal error (ProcessRaisedException: -- Process 1 terminated with: {quoted}). This is a bug."
    )

    failure = _written(tmp_path, message)

    assert "Traceback" in message and 'File "' in message and "direct cause" in message
    assert failure == (
        "Internal error (ProcessRaisedException: -- Process 1 terminated with:\n"
        "KeyError: 'rank'\n"
        "RuntimeError: worker 1 ran out of memory\n"
        "). This is a bug."
    )
