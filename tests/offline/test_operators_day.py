"""Issue 27's "Done when", through `facetrain run` as an operator runs it: a photos folder as people have it
(faces-dev photos, an iPhone HEIC and an AVIF photo, a Thumbs.db and other stray files, derived at test
time: tests/support/phone_photos.py) and a new hire whose photos are all unusable. The run succeeds,
enrolls the HEIC photo, skips the stray files with their reasons, names the new hire, and says so on its
last lines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from facetrain.contract.embeddings_file import load_embeddings
from facetrain_offline.cli import main
from facetrain_offline.run_summary import read_run_summary
from PIL import Image
from support.phone_photos import STRAY_FOLDER, phone_folder

pytestmark = pytest.mark.slow
NEW_HIRE = "new_hire"


def test_a_phone_folder_with_stray_files_and_an_unusable_new_hire_succeeds_and_says_so(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = phone_folder(shared_data / "faces-dev", tmp_path / "photos")
    (folder.root / NEW_HIRE).mkdir()
    blank = io.BytesIO()
    Image.new("RGB", (240, 240), "gray").save(blank, format="JPEG")
    (folder.root / NEW_HIRE / "first-day.jpg").write_bytes(blank.getvalue())  # no face in it
    out = tmp_path / "out"

    code = main(["run", str(folder.root), "--out", str(out), "-p", "weights=none"])

    screen = capsys.readouterr().out
    assert code == 0, screen
    lines = screen.splitlines()
    assert f"skip   {STRAY_FOLDER}/Thumbs.db: not a photo (a Windows thumbnail cache)" in "\n".join(lines)
    enrolled = {r["key"] for r in load_embeddings(out / "saved_embeddings.pkl")["records"]}
    assert "person_02/IMG_0001.HEIC" in enrolled and "person_04/IMG_0002.avif" in enrolled
    assert not any("Thumbs.db" in key or NEW_HIRE in key for key in enrolled)
    done = next(i for i, line in enumerate(lines) if line.startswith("done   SUCCEEDED"))
    (left,) = [i for i, line in enumerate(lines) if line.startswith(f"left   {NEW_HIRE} not enrolled: ")]
    assert done - left <= 3  # on the run's last lines, above `done`
    assert "no_face: 1" in lines[left]
    (notification,) = read_run_summary(out / "run.json").notifications
    assert f"- {NEW_HIRE}: " in notification.Message
