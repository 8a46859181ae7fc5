"""Ctrl-C on `facetrain run` stops the execution as the console does, and the stack stops its training job.

The whole stop path runs: StopExecution → Step Functions' status-change event → the template's rule →
StopFunction → StopTrainingJob → the local SageMaker's SIGTERM → `train` exits 143 → the job is Stopped.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from facetrain_offline import cli
from facetrain_offline.run_summary import read_run_summary

pytestmark = pytest.mark.slow
FACETRAIN = Path(sys.executable).with_name("facetrain")


def _photos(shared_data: Path, target: Path) -> Path:
    for identity in sorted(p for p in (shared_data / "faces-dev").iterdir() if p.is_dir()):
        shutil.copytree(identity, target / identity.name)
    return target


def _lines_until(process: subprocess.Popen[str], wanted: str, timeout: float) -> list[str]:
    """Read the process's output until a line starting with `wanted` (or the timeout)."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=1) and (line := process.stdout.readline()):
            lines.append(line.rstrip("\n"))
            if line.startswith(wanted):
                return lines
        elif process.poll() is not None:
            break
    raise AssertionError(f"no line starting {wanted!r} within {timeout} s:\n" + "\n".join(lines))


def test_ctrl_c_stops_the_execution_and_its_training_job_and_publishes_nothing(shared_data, tmp_path):
    images = _photos(shared_data, tmp_path / "photos")
    out = tmp_path / "out"
    process = subprocess.Popen(
        [str(FACETRAIN), "run", str(images), "--out", str(out), "-p", "weights=none"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        before = _lines_until(process, "train  ", timeout=240)  # the job's container is running
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    screen = "\n".join(before) + "\n" + rest

    assert process.returncode == 130, screen
    assert "(Ctrl-C: as the console's Stop execution)" in screen
    summary = read_run_summary(out / "run.json")
    assert summary.status == "ABORTED" and summary.error == "ExecutionAborted", summary
    assert "training job: facetrain-" in summary.failure_reason
    assert summary.training_jobs_started == 1
    assert summary.training_job_status == "Stopped"
    assert summary.training_job_exit_code == 143  # train's answer to SIGTERM: no partial outputs
    assert summary.results == [] and not (out / "latest.json").exists()  # nothing published
    (notice,) = summary.notifications
    assert notice.Subject == "facetrain retraining failed"
    assert "was stopped (ABORTED)" in notice.Message and summary.training_job_name in notice.Message
    assert "Nothing was published" in notice.Message


def test_a_second_ctrl_c_exits_at_once_without_a_run_summary(tmp_path, monkeypatch, capsys):
    from facetrain_offline import runner

    def interrupted_again(options, say):  # the wait for the job to stop was interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", interrupted_again)
    (tmp_path / "photos").mkdir()
    code = cli.main(["run", str(tmp_path / "photos"), "--out", str(tmp_path / "out")])
    assert code == 130 and "interrupted" in capsys.readouterr().err
    assert not (tmp_path / "out" / "run.json").exists()
