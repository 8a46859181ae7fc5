"""`facetrain run` as a newcomer runs it (no vggface2 weights here): a dlib-resnet enrollment that really
recognises people, published through the whole offline workflow, and the quality gate on real figures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from facetrain.contract.enrollment_csv import parse_csv
from facetrain.contract.rules_file import load_rules
from facetrain_offline.cli import main
from facetrain_offline.run_summary import RunSummary, read_run_summary

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def no_vggface2(tmp_path, monkeypatch):
    """A machine without the vggface2 weights (as every machine here): an empty TORCH_HOME."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def _faces_dev(shared_data: Path, target: Path, hold_out: bool = False) -> dict[str, Path]:
    """Copy faces-dev to `target`; with hold_out, leave each person's first photo out and return them."""
    held: dict[str, Path] = {}
    for identity in sorted(p for p in (shared_data / "faces-dev").iterdir() if p.is_dir()):
        photos = sorted(identity.iterdir())
        if hold_out:
            held[identity.name], photos = photos[0], photos[1:]
        (target / identity.name).mkdir(parents=True)
        for photo in photos:
            shutil.copy(photo, target / identity.name / photo.name)
    return held


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, RunSummary]:
    code = main(["run", *args])
    out = capsys.readouterr().out
    return code, out, read_run_summary(Path(args[args.index("--out") + 1]) / "run.json")


def test_newcomer_run_publishes_a_dlib_enrollment_that_identifies_held_out_photos(
    shared_data, tmp_path, capsys
):
    images, out = tmp_path / "photos", tmp_path / "out"
    held = _faces_dev(shared_data, images, hold_out=True)

    code, screen, summary = _run(capsys, str(images), "--out", str(out))

    assert code == 0, screen
    assert summary.status == "SUCCEEDED"
    notes = [line for line in screen.splitlines() if line.startswith("note   embedder=dlib-resnet")]
    assert len(notes) == 1 and "vggface2 weights are not at" in notes[0] and "embedder=facenet" in notes[0]
    assert "NOT FOR PRODUCTION" not in screen
    rules = load_rules((out / "rules.py").read_text())
    assert rules["embedder"] == "dlib-resnet" and rules["not_for_production"] is False
    rows = parse_csv((out / "final_mean_embeddings.csv").read_text(), 128)
    assert [identity for identity, _, _ in rows] == sorted(held)
    for name in ("final_mean_embeddings.csv", "rules.py", "report.html"):
        assert "NOT FOR PRODUCTION" not in (out / name).read_text(encoding="utf-8"), name
    assert "Error rates over all thresholds (DET)" in (out / "report.html").read_text(encoding="utf-8")
    latest = json.loads((out / "latest.json").read_text())
    assert latest["identification_accuracy"] == 1.0

    # identify as its own command, as the newcomer runs it: in this process the in-process Lambdas'
    # Powertools Logger (service "facetrain") still writes the facetrain logger's lines to stdout
    command = ["identify", *map(str, held.values()), "--results", str(out)]
    identified = subprocess.run(
        [sys.executable, "-m", "facetrain_offline.cli", *command],
        capture_output=True,
        text=True,
        check=False,
    )
    assert identified.returncode == 0, identified.stderr
    answers = [json.loads(line) for line in identified.stdout.splitlines()]
    assert [len(a["faces"]) for a in answers] == [1] * len(held)  # one face in each held-out portrait
    assert [(a["faces"][0]["identity"], a["faces"][0]["accepted"]) for a in answers] == [
        (name, True) for name in held
    ]
    assert [a["identities"] for a in answers] == [[name] for name in held]


def test_a_misfiled_photo_lowers_accuracy_below_the_gate_and_the_published_run_stays(
    shared_data, tmp_path, capsys
):
    images, state = tmp_path / "photos", tmp_path / "state"
    _faces_dev(shared_data, images)
    common = ["--state", str(state), "-p", "embedder=dlib-resnet"]
    first_code, screen, _ = _run(
        capsys, str(images), "--out", str(tmp_path / "out1"), "--run-id", "good", *common
    )
    assert first_code == 0, screen
    results = state / "bucket" / "results"
    published = {name: (results / name).read_bytes() for name in ("final_mean_embeddings.csv", "rules.py")}

    shutil.copy(shared_data / "faces-dev/person_04/img13.jpg", images / "person_02" / "misfiled.jpg")
    gate = ["--min-accuracy", "0.99"]
    code, screen, summary = _run(
        capsys, str(images), "--out", str(tmp_path / "out2"), "--run-id", "misfiled", *gate, *common
    )

    assert code == 1, screen
    assert summary.status == "FAILED"
    assert "QualityGateFailed" in summary.model_dump_json()
    assert json.loads((results / "latest.json").read_text())["run_id"] == "good"
    for name, body in published.items():
        assert (results / name).read_bytes() == body, name
    evaluation = json.loads((results / "runs" / "misfiled" / "metrics.json").read_text())["evaluation"]
    assert evaluation["identification_accuracy"] == pytest.approx(24 / 25)
    assert [s["photo"] for s in evaluation["suspected_mislabels"]] == ["person_02/misfiled.jpg"]
    decision = json.loads((results / "runs" / "misfiled" / "quality_gate.json").read_text())
    assert decision["passed"] is False


def test_a_max_fpir_the_searches_cannot_show_refuses_the_run_and_publishes_nothing(
    shared_data, tmp_path, capsys
):
    images, state = tmp_path / "photos", tmp_path / "state"
    _faces_dev(shared_data, images)
    # faces-dev gives 24 non-mated searches (one per photo, its own identity left out): none returns anyone,
    # a rate of 0, but their 95 % upper bound is 1 - 0.025 ** (1 / 24) = 14.2 %, above a 5 % limit.
    gate = ["--max-fpir", "0.05"]
    code, screen, summary = _run(
        capsys,
        str(images),
        "--out",
        str(tmp_path / "out"),
        "--run-id",
        "strict",
        *gate,
        "--state",
        str(state),
    )

    assert code == 1, screen
    assert summary.status == "FAILED"
    assert "QualityGateFailed" in summary.model_dump_json()
    results = state / "bucket" / "results"
    published = sorted(p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file())
    assert published and all(name.startswith("runs/strict/") for name in published), published
    assert not (tmp_path / "out" / "latest.json").exists()
    open_set = json.loads((results / "runs/strict/metrics.json").read_text())["evaluation"]["open_set"]
    assert (open_set["fpir"]["errors"], open_set["fpir"]["trials"]) == (0, 24)
    decision = json.loads((results / "runs/strict/quality_gate.json").read_text())
    assert decision["passed"] is False and decision["gate"]["max_fpir"] == 0.05
    assert decision["fpir_upper_95"] == open_set["fpir"]["upper_95"] == pytest.approx(0.1425, abs=1e-4)
    (problem,) = decision["problems"]
    assert "0 of 24 non-mated searches" in problem and "14.25% is above max_fpir 5.00%" in problem
    assert "_strangers/" in problem and "raise max_fpir" in problem
    assert problem in summary.model_dump_json()  # the execution's cause, as the console shows it


def test_the_embedder_chosen_for_a_run_without_settings(tmp_path, monkeypatch):
    from facetrain.inference.model_files import WEIGHT_FILES
    from facetrain_offline import embedder_choice

    lines: list[str] = []
    assert embedder_choice.default_embedder({}, lines.append) == {"embedder": "dlib-resnet"}
    assert len(lines) == 1 and "NOT FOR PRODUCTION" not in lines[0]
    for chosen in ({"embedder": "facenet"}, {"weights": "none"}, {"weights": "custom.pt"}):
        assert embedder_choice.default_embedder(dict(chosen), lines.append) == chosen
    assert len(lines) == 1

    monkeypatch.setattr(embedder_choice, "dlib_available", lambda: False)
    assert embedder_choice.default_embedder({}, lines.append) == {"weights": "none"}
    assert "NOT FOR PRODUCTION" in lines[-1] and "dlib-resnet is not installed" in lines[-1]

    weights = tmp_path / "torch-home" / "checkpoints" / WEIGHT_FILES["vggface2"]
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"stand-in: only its presence is looked at here")
    assert embedder_choice.default_embedder({"batch_size": "8"}, lines.append) == {"batch_size": "8"}
