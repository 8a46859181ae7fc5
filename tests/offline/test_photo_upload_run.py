"""`facetrain run` end to end on a folder whose people are linked in: the linked people are enrolled,
and what S3 cannot hold is named on the screen, not dropped in silence."""

from __future__ import annotations

import os
import shutil

import pytest
from facetrain.contract.enrollment_csv import parse_csv
from facetrain_offline.cli import main
from facetrain_offline.run_summary import read_run_summary

pytestmark = pytest.mark.slow


def test_people_linked_in_are_enrolled_and_what_s3_cannot_hold_is_named(shared_data, tmp_path, capsys):
    people = sorted(p for p in (shared_data / "faces-small").iterdir() if p.is_dir())
    images, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    shutil.copytree(people[0], images / "ann")  # a folder of its own
    shutil.copytree(people[1], elsewhere / "bob")
    (images / "bob").symlink_to(os.path.relpath(elsewhere / "bob", images))  # a relative link to a folder
    (images / "cy").symlink_to(people[2])  # an absolute link to a folder of the data set
    (images / "dee").mkdir()
    for photo in people[3].glob("*.jpg"):
        (images / "dee" / photo.name).symlink_to(photo)  # links to photos
    os.mkfifo(images / "ann" / "pipe.jpg")
    (images / "ann" / "gone.jpg").symlink_to("nowhere.jpg")
    out = tmp_path / "out"

    code = main(["run", str(images), "--out", str(out), "-p", "weights=none"])

    screen = capsys.readouterr().out
    assert code == 0, screen
    assert read_run_summary(out / "run.json").status == "SUCCEEDED"
    rows = parse_csv((out / "final_mean_embeddings.csv").read_text(), 512)
    assert sorted(identity for identity, _, _ in rows) == ["ann", "bob", "cy", "dee"]
    assert "upload 4 files (4 in 4 people's folders) to s3://" in screen
    assert "skip   ann/gone.jpg: a symbolic link to a file that does not exist; not uploaded" in screen
    assert "skip   ann/pipe.jpg: a FIFO (named pipe), not a photo file; not uploaded" in screen
