"""`facetrain run` refused: run.json's failure_reason, the notification it recorded and the terminal's
`done` line hold the plain message (what is wrong, what to do), never Lambda's error document or a stack
trace; the stack trace stays in lambdas.log (issue 27). The state machine's side: tests/workflow/
test_plain_failures.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from facetrain.contract.hyperparameters import VALID_KEYS
from facetrain_offline.cli import main
from facetrain_offline.run_summary import RunSummary, read_run_summary

NOT_PLAIN = ("Traceback", "stackTrace", "errorMessage", "errorType", '{"', 'File "')


def _refused(
    capsys: pytest.CaptureFixture[str], images: Path, out: Path, *args: str
) -> tuple[str, RunSummary]:
    """Run, expect the refusal (exit 1); the screen and run.json."""
    code = main(["run", str(images), "--out", str(out), *args])
    screen = capsys.readouterr().out
    assert code == 1, screen
    return screen, read_run_summary(out / "run.json")


def _assert_plain(screen: str, summary: RunSummary, error: str, reason: str) -> None:
    assert (summary.status, summary.error, summary.failure_reason) == ("FAILED", error, reason)
    (notification,) = summary.notifications
    execution = summary.executions[0].name
    assert notification.Message == f"facetrain execution {execution} failed ({error}): {reason}"
    assert f"\ndone   FAILED: {error}: {reason}\n" in screen
    done = screen[screen.index("\ndone   ") :]  # the terminal's last lines
    for text in (summary.failure_reason, notification.Message, done):
        assert not [marker for marker in NOT_PLAIN if marker in text], text


def test_an_unknown_setting(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"

    screen, summary = _refused(capsys, shared_data / "faces-dev", out, "-p", "learning_rate=0.1")

    _assert_plain(
        screen,
        summary,
        "InvalidInput",
        "The retraining input has 1 problem to fix:\n"
        f"- unknown key 'learning_rate' (from hyperparameters); valid setting keys: {', '.join(VALID_KEYS)}",
    )
    assert "Traceback" in (out / "lambdas.log").read_text()  # the stack trace stays in the log


def test_an_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "photos"
    images.mkdir()

    screen, summary = _refused(capsys, images, tmp_path / "out", "-p", "weights=none")

    assert summary.bucket
    _assert_plain(
        screen,
        summary,
        "InvalidInput",
        "The retraining input has 1 problem to fix:\n"
        "- no photos in the photos folder: put them in one folder per person, <name>/<photo>.jpg (on AWS "
        "under face_imgs/ in the data bucket)",
    )


@pytest.mark.slow
def test_a_failed_training_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The job's reason (its output/failure, SageMaker's FailureReason) reaches every place as written."""
    images = tmp_path / "photos"
    for person in ("ann", "bob"):
        (images / person).mkdir(parents=True)
        (images / person / "1.jpg").write_text("this is not a photo\n")

    screen, summary = _refused(capsys, images, tmp_path / "out", "-p", "weights=none")

    reason = summary.failure_reason or ""
    prefix = f"Training job {summary.training_job_name} Failed: AlgorithmError: No identity could be enrolled"
    assert reason.startswith(prefix), reason
    _assert_plain(screen, summary, "TrainingJobFailed", reason)
