"""Nobody left out in silence (issue 27), through `facetrain run`: faces-dev plus a new hire whose photos are
all unusable (a blank image and a non-image, derived at test time). By default the run succeeds and names
the new hire, with their photos' reasons, on the terminal's last lines and in the notification; with
require_all_identities=true it fails, its reason counts them and gives the fix (naming nobody: SageMaker
keeps a job's failure reason for good), and the last lines name them. The training job's log lines
(`train  …` on the screen) name nobody."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from facetrain_offline.cli import main
from facetrain_offline.run_summary import RunSummary, read_run_summary
from PIL import Image

pytestmark = pytest.mark.slow
NEW_HIRE = "new_hire"  # not one of faces-dev's people
REASONS = "0 usable photos of 2 (no_face: 1, not_an_image: 1)"


def _photos(shared_data: Path, target: Path) -> Path:
    """faces-dev's people, and the new hire's unusable photos."""
    for identity in sorted(p for p in (shared_data / "faces-dev").iterdir() if p.is_dir()):
        shutil.copytree(identity, target / identity.name)
    (target / NEW_HIRE).mkdir()
    blank = io.BytesIO()
    Image.new("RGB", (240, 240), "gray").save(blank, format="JPEG")
    (target / NEW_HIRE / "blank.jpg").write_bytes(blank.getvalue())  # no face
    (target / NEW_HIRE / "badge.jpg").write_bytes(b"a scanned badge form, not a photo\n")  # not an image
    return target


def _run(
    capsys: pytest.CaptureFixture[str], images: Path, out: Path, *settings: str
) -> tuple[int, str, RunSummary]:
    code = main(["run", str(images), "--out", str(out), "-p", "weights=none", *settings])
    return code, capsys.readouterr().out, read_run_summary(out / "run.json")


def _job_log(screen: str) -> str:
    return "\n".join(line for line in screen.splitlines() if line.startswith("train  "))


def test_by_default_the_run_succeeds_and_its_last_lines_name_the_new_hire(shared_data, tmp_path, capsys):
    code, screen, summary = _run(capsys, _photos(shared_data, tmp_path / "photos"), tmp_path / "out")

    assert code == 0, screen
    lines = screen.splitlines()
    (left,) = [line for line in lines if line.startswith("left   ")]
    assert left.startswith(f"left   {NEW_HIRE} not enrolled: {REASONS}, fewer than min_images_per_identity=1")
    notified = max(i for i, line in enumerate(lines) if line.startswith(("notify ", "train  ")))
    done = next(i for i, line in enumerate(lines) if line.startswith("done   SUCCEEDED"))
    assert notified < lines.index(left) < done  # on the last lines: after the run's progress, above `done`
    (notification,) = summary.notifications
    assert notification.Subject == "facetrain retraining succeeded"
    assert "published 4 identities; 1 left out, named below." in notification.Message
    assert f"- {NEW_HIRE}: {REASONS}, fewer than min_images_per_identity=1" in notification.Message
    assert "train  " in screen and NEW_HIRE not in _job_log(screen)
    assert NEW_HIRE not in (tmp_path / "out" / "lambdas.log").read_text(encoding="utf-8")


def test_with_all_required_the_run_fails_with_the_fix_and_its_last_lines_name_the_new_hire(
    shared_data, tmp_path, capsys
):
    images = _photos(shared_data, tmp_path / "photos")
    code, screen, summary = _run(capsys, images, tmp_path / "out", "-p", "require_all_identities=true")

    assert code == 1, screen
    assert summary.status == "FAILED" and summary.training_jobs_started == 1
    # The job's failure reason (SageMaker's FailureReason, which cannot be deleted) counts and names nobody.
    assert "1 identity could not be enrolled (fewer usable photos than min_images_per_identity) and " in (
        summary.failure_reason
    )
    assert "set require_all_identities=false to publish the others" in summary.failure_reason
    assert NEW_HIRE not in summary.failure_reason
    # The terminal's last lines name them, from the run's evidence (metrics.json) copied into --out.
    lines = screen.splitlines()
    (left,) = [line for line in lines if line.startswith("left   ")]
    assert left.startswith(f"left   {NEW_HIRE} not enrolled: {REASONS}, fewer than min_images_per_identity=1")
    assert lines.index(left) < next(i for i, line in enumerate(lines) if line.startswith("done   FAILED"))
    (notification,) = summary.notifications
    assert notification.Subject == "facetrain retraining failed"
    assert "1 identity could not be enrolled" in notification.Message
    assert not (tmp_path / "out" / "final_mean_embeddings.csv").exists()
    assert "train  " in screen and NEW_HIRE not in _job_log(screen)
