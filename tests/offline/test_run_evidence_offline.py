"""`facetrain run`: a run that did not publish (refused by validate, below the quality gate, failed in its
training job) leaves its evidence in --out, under runs/<run id>/, and the terminal's last lines point at it
(issue 27, item 4)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from facetrain.contract.metrics import read_metrics
from facetrain_offline.cli import main
from facetrain_offline.run_summary import read_run_summary
from PIL import Image, ImageFilter, ImageOps

pytestmark = pytest.mark.slow
NEW_HIRE = "new_hire"  # not one of faces-dev's people


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["run", *args])
    return code, capsys.readouterr().out.splitlines()


def _top_level(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def test_a_refused_run_leaves_its_problems_in_out_and_the_last_lines_point_at_them(tmp_path, capsys):
    images, out = tmp_path / "photos", tmp_path / "out"
    images.mkdir()  # no person folder: validate refuses the run

    code, lines = _run(capsys, str(images), "--out", str(out), "--run-id", "empty", "-p", "weights=none")

    assert code == 1
    problems = out / "runs" / "empty" / "problems.json"
    assert problems.is_file()
    assert lines[-2:] == [
        f"see    {problems}: every problem that refused the run",
        f"run.json: {out}/run.json",
    ]
    done = max(i for i, line in enumerate(lines) if line.startswith("done   FAILED: "))
    assert done < len(lines) - 2  # the failure (its problems one a line) first, then where they are listed
    assert _top_level(out) == ["lambdas.log", "run.json", "runs"]  # nothing at the published files' place
    assert read_run_summary(out / "run.json").results == []  # nothing published was copied


def test_a_run_below_the_gate_leaves_its_report_and_rejected_list_in_out(shared_data, tmp_path, capsys):
    images, out, state = tmp_path / "photos", tmp_path / "out", tmp_path / "state"
    for person in sorted(p for p in (shared_data / "faces-dev").iterdir() if p.is_dir()):
        shutil.copytree(person, images / person.name)
    # faces-dev's 24 non-mated searches vouch for an FPIR below 14.2 % at best: --max-fpir 0.05 refuses it.
    gate = ["--max-fpir", "0.05", "--state", str(state)]

    code, lines = _run(capsys, str(images), "--out", str(out), "--run-id", "strict", *gate)

    assert code == 1, "\n".join(lines)
    folder = out / "runs" / "strict"
    bucket = state / "bucket" / "results" / "runs" / "strict"
    names = ["report.html", "rejected.csv", "quality_gate.json", "metrics.json"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)  # not the unpublished enrollment
    for name in names:
        assert (folder / name).read_bytes() == (bucket / name).read_bytes(), name
    assert lines[-4:] == [
        f"see    {folder}/report.html: the run's report",
        f"see    {folder}/rejected.csv: each photo not used, and why",
        f"see    {folder}/quality_gate.json: the quality gate's decision",
        f"run.json: {out}/run.json",
    ]
    assert _top_level(out) == ["lambdas.log", "run.json", "runs"]
    # The saved bucket's history names it, and that nothing is published.
    assert main(["runs", "--state", str(state)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[1].split()[0] == "strict" and "failed (quality gate)" in listing[1]
    assert listing[2] == "published: none"


def _faceless_photo(source: Path, target: Path) -> None:
    """A photo with no face in it, derived from a real one: its top-left corner (background), mirrored,
    blurred and enlarged to 320x240."""
    with Image.open(source) as photo:
        width, height = photo.size
        corner = photo.convert("RGB").crop((0, 0, width // 4, height // 4))
    blurred = ImageOps.mirror(corner).filter(ImageFilter.GaussianBlur(6)).resize((320, 240))
    target.parent.mkdir(parents=True, exist_ok=True)
    blurred.save(target, format="JPEG")


def test_a_job_refused_for_a_left_out_person_leaves_its_report_and_rejected_list_in_out(
    shared_data, tmp_path, capsys
):
    images, out = tmp_path / "photos", tmp_path / "out"
    people = sorted(p for p in (shared_data / "faces-dev").iterdir() if p.is_dir())
    for person in people:
        shutil.copytree(person, images / person.name)
    _faceless_photo(min(people[0].glob("*.jpg")), images / NEW_HIRE / "first-day.jpg")
    settings = ["-p", "weights=none", "-p", "require_all_identities=true"]

    code, lines = _run(capsys, str(images), "--out", str(out), "--run-id", "everyone", *settings)

    assert code == 1, "\n".join(lines)
    summary = read_run_summary(out / "run.json")
    assert summary.status == "FAILED" and summary.training_job_status == "Failed"
    # The job's failure is plain text that names nobody (SageMaker keeps a FailureReason for good).
    assert "could not be enrolled" in summary.failure_reason
    assert "require_all_identities=true fails the run" in summary.failure_reason
    assert NEW_HIRE not in summary.failure_reason and "Traceback" not in summary.failure_reason
    # What the failed job left in /opt/ml/model reached --out: SageMaker uploads it at the job's end,
    # whatever the outcome, and so does the local backend.
    folder = out / "runs" / "everyone"
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json", "rejected.csv", "report.html"]
    metrics = read_metrics((folder / "metrics.json").read_text(encoding="utf-8"))
    assert metrics.status == "failed" and list(metrics.identities_excluded) == [NEW_HIRE]
    (rejected,) = [row for row in (folder / "rejected.csv").read_text().splitlines() if NEW_HIRE in row]
    assert f"{NEW_HIRE}/first-day.jpg" in rejected and "no_face" in rejected
    assert NEW_HIRE in (folder / "report.html").read_text(encoding="utf-8")
    # The last lines name the new hire (from the copied metrics.json), then point at the evidence.
    (left,) = [i for i, line in enumerate(lines) if line.startswith("left   ")]
    assert lines[left].startswith(f"left   {NEW_HIRE} not enrolled: ") and "no_face: 1" in lines[left]
    done = max(i for i, line in enumerate(lines) if line.startswith("done   FAILED: "))
    assert left < done
    assert lines[-3:] == [
        f"see    {folder}/report.html: the run's report",
        f"see    {folder}/rejected.csv: each photo not used, and why",
        f"run.json: {out}/run.json",
    ]
    assert _top_level(out) == ["lambdas.log", "run.json", "runs"]  # nothing at the published files' place
    assert summary.results == []
