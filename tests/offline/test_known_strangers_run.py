"""`facetrain run DIR` with known strangers in DIR/_strangers/ (issue 24, item 3), end to end: validate puts
them in the manifest and counts them in run.json, two hosts each embed their shard of them and the master
gathers them, they are never enrolled, and published results refuse them as the evaluation counted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from facetrain.contract.embeddings_file import load_embeddings
from facetrain.contract.enrollment_csv import parse_csv
from facetrain.contract.names import STRANGERS_FOLDER
from facetrain_offline.cli import main
from facetrain_offline.run_summary import read_run_summary

pytestmark = pytest.mark.slow
STRANGERS = {  # faces-small's people, two directly in the folder and two in a sub-folder
    "angelina_jolie": "angelina_jolie.jpg",
    "kate_siegel": "kate_siegel.jpg",
    "paul_rudd": "visitors/paul_rudd.jpg",
    "shea_whigham": "visitors/shea_whigham.jpg",
}


@pytest.fixture(autouse=True)
def no_vggface2(tmp_path, monkeypatch):
    """A machine without the vggface2 weights (as every machine here): dlib-resnet is chosen."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def _photos(shared_data: Path, target: Path) -> list[Path]:
    shutil.copytree(shared_data / "faces-dev", target)
    strangers = []
    for person, place in STRANGERS.items():
        path = target / STRANGERS_FOLDER / place
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / "faces-small" / person / "1.jpg", path)
        strangers.append(path)
    return strangers


def test_strangers_in_the_photos_folder_are_searched_never_enrolled(shared_data, tmp_path, capsys):
    images, out, state = tmp_path / "photos", tmp_path / "out", tmp_path / "state"
    strangers = _photos(shared_data, images)

    options = ["--state", str(state), "--instance-count", "2", "--run-id", "with-strangers"]
    code = main(["run", str(images), "--out", str(out), *options])
    screen = capsys.readouterr().out

    assert code == 0, screen
    assert read_run_summary(out / "run.json").status == "SUCCEEDED"
    run = out / "runs" / "with-strangers"
    record = json.loads((state / "bucket" / "results" / "runs" / "with-strangers" / "run.json").read_text())
    manifest = json.loads((state / "bucket" / record["manifest_key"]).read_text())
    assert sorted(k for k in manifest[1:] if k.startswith(STRANGERS_FOLDER)) == sorted(
        f"{STRANGERS_FOLDER}/{place}" for place in STRANGERS.values()
    )
    assert (record["dataset"]["identities"], record["dataset"]["images"]) == (4, 24)
    assert record["dataset"]["strangers"] == 4
    rows = parse_csv((out / "final_mean_embeddings.csv").read_text(), 128)
    assert [identity for identity, _, _ in rows] == ["person_02", "person_04", "person_05", "person_10"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["hosts"] == 2
    assert (metrics["images_total"], metrics["images_accepted"]) == (24, 24)
    assert metrics["strangers"] == {"photos": 4, "used": 4, "rejected": 0, "rejections_by_reason": {}}
    known = metrics["evaluation"]["open_set"]["known_strangers"]
    assert known["trials"] == 4
    saved = load_embeddings((out / "saved_embeddings.pkl").read_bytes())
    assert sorted(r["key"] for r in saved["strangers"]) == sorted(
        f"{STRANGERS_FOLDER}/{place}" for place in STRANGERS.values()
    )  # both hosts' shares, gathered
    assert not [r for r in saved["records"] if r["key"].startswith(STRANGERS_FOLDER)]

    assert main(["identify", *map(str, strangers), "--results", str(out)]) in (0, 3)
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    accepted = [a for a in answers if a.get("identities")]
    assert len(accepted) == known["errors"], answers  # the published threshold refuses them as counted
