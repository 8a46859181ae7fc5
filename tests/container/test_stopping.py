"""SIGTERM while the outputs are moved into model/: the move completes, then the job stops."""

from __future__ import annotations

import os
import signal

import pytest
from facetrain import outputs, stopping


@pytest.fixture(autouse=True)
def _forget_the_stop_request():
    """The stop request is process state: a test that signals must not leave it set for the next test
    in this worker (an in-process `facetrain identify` would then stop at its first photo)."""
    yield
    previous = stopping.install()  # clears the request
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_during_the_commit_waits_for_every_file(tmp_path, monkeypatch):
    previous = stopping.install()
    real_replace = type(tmp_path).replace
    moved: list[str] = []

    def replace_then_signal(self, target):
        result = real_replace(self, target)
        moved.append(target.name)
        if len(moved) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives after the first file is in place
        return result

    monkeypatch.setattr(type(tmp_path), "replace", replace_then_signal)
    try:
        with pytest.raises(stopping.JobStopped, match="while writing its outputs"):
            outputs.write_outputs(tmp_path / "model", {"a.csv": b"a", "b.py": b"b", "c.pkl": b"c"})
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["a.csv", "b.py", "c.pkl"]


def test_sigterm_outside_a_deferred_block_stops_at_the_next_safe_point():
    previous = stopping.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes: it records, it does not raise
            pass
        assert stopping.requested()
        with pytest.raises(stopping.JobStopped):
            stopping.check()
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_is_never_swallowed_by_an_except_exception():
    """An `except Exception` between the signal and the safe point (as inside numpy's or torch's
    imports) cannot swallow the stop: it is a flag, not an exception in flight."""
    previous = stopping.install()
    try:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
        except Exception:  # what a library's optional-import guard does
            pytest.fail("the signal handler raised into the running code")
        with pytest.raises(stopping.JobStopped):
            stopping.check()
        stopping.install()  # a new run forgets the old request
        stopping.check()
    finally:
        signal.signal(signal.SIGTERM, previous)
